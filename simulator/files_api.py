"""The Files API routes: ``POST``/``GET /v1/files``, ``GET``/``DELETE /v1/files/{file_id}``, ``GET …/content``, and
``GET /_sim/files`` and ``POST /_sim/files/hold`` for tests.

Uploads are ``multipart/form-data`` with ``file`` and ``purpose`` (one of :data:`~simulator.files.PURPOSES`) and,
optionally, ``expires_after[anchor]=created_at`` with ``expires_after[seconds]`` between 3600 and 2592000. They
count against no rate limit and bill nothing, but every Files call is in the request log (the upload's entry has
``purpose``, ``filename``, ``bytes`` and ``sha256`` as its body, not the bytes). An unknown id is the API's 404
``"No such File object: <id>"`` (``param: "id"``, as the openai-dotnet tests quote it).

``GET /v1/files`` is the spec's ``listFiles``: ``purpose``, ``limit`` (1-10,000, default 10,000), ``order``
(``asc``/``desc``, default ``desc``) and ``after`` (a file id: the page starts after it), answered as
``ListFilesResponse``. ``POST /_sim/files/hold`` with ``{"hold": true}`` holds the answer of every upload after
storing it, until ``{"hold": false}`` (or ``/_sim/reset``) answers them all (``simulator.files``).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from simulator.errors import ApiError, invalid_request, missing_parameter
from simulator.files import (
    EXPIRES_AFTER_MAX_S,
    EXPIRES_AFTER_MIN_S,
    LIST_LIMIT_MAX,
    MAX_UPLOAD_BYTES,
    PURPOSES,
    StoredFile,
)
from simulator.replies import authorize, error_response, json_response, list_limit, list_response, request_id
from simulator.state import STATE_KEY, SimulatorState


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/files", _create)
    app.router.add_get("/v1/files", _list)
    app.router.add_get("/v1/files/{file_id}", _retrieve)
    app.router.add_delete("/v1/files/{file_id}", _delete)
    app.router.add_get("/v1/files/{file_id}/content", _content)
    app.router.add_get("/_sim/files", _list_for_tests)
    app.router.add_post("/_sim/files/hold", _hold)


def not_found(file_id: str) -> ApiError:
    return ApiError(404, f"No such File object: {file_id}", param="id")


def _log(state: SimulatorState, request: web.Request, endpoint: str, status: int, body: object) -> None:
    state.requests.append(endpoint, status, body, request.headers, request_id=request_id(request))


async def _create(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    logged: dict[str, object] = {}
    try:
        authorize(request, state.config.require_api_key)
        stored = await _upload(request, state, logged)
    except ApiError as exc:
        _log(state, request, "files.create", exc.status, logged)
        return error_response(exc)
    _log(state, request, "files.create", 200, logged)
    await state.files.released()  # stored; a held upload's client learns its id only when the hold is lifted
    return json_response(stored.object())


async def _upload(request: web.Request, state: SimulatorState, logged: dict[str, object]) -> StoredFile:
    form = await request.post()
    field = form.get("file")
    if not isinstance(field, web.FileField):
        raise missing_parameter("file")
    purpose = form.get("purpose")
    if purpose is None:
        raise missing_parameter("purpose")
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        supported = ", ".join(f"'{value}'" for value in PURPOSES[:-1]) + f", and '{PURPOSES[-1]}'"
        raise invalid_request(
            f"Invalid value: {purpose!r}. Supported values are: {supported}.", param="purpose", code="invalid_value"
        )
    expires_after_s = _expires_after(form.get("expires_after[anchor]"), form.get("expires_after[seconds]"))
    data = await asyncio.to_thread(field.file.read)
    logged.update({"purpose": purpose, "filename": field.filename, "bytes": len(data)})
    if len(data) > MAX_UPLOAD_BYTES:
        raise invalid_request("File is too large.")
    stored = state.files.add(field.filename, purpose, data, expires_after_s)
    logged["sha256"] = stored.sha256
    return stored


def _expires_after(anchor: object, seconds: object) -> int | None:
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise invalid_request(
            f"Invalid value: '{anchor}'. Supported values are: 'created_at'.",
            param="expires_after.anchor",
            code="invalid_value",
        )
    try:
        value = int(str(seconds))
    except ValueError:
        raise invalid_request(
            "Invalid type for 'expires_after.seconds': expected an integer.",
            param="expires_after.seconds",
            code="invalid_type",
        ) from None
    if not EXPIRES_AFTER_MIN_S <= value <= EXPIRES_AFTER_MAX_S:
        raise invalid_request(
            f"Invalid 'expires_after.seconds': integer out of range. Expected a value between "
            f"{EXPIRES_AFTER_MIN_S} and {EXPIRES_AFTER_MAX_S}, but got {value} instead.",
            param="expires_after.seconds",
            code="invalid_value",
        )
    return value


async def _list(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    query = request.query
    logged = dict(query)
    try:
        authorize(request, state.config.require_api_key)
        limit = list_limit(query.get("limit"), default=LIST_LIMIT_MAX, maximum=LIST_LIMIT_MAX)
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise invalid_request(
                f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                param="order",
                code="invalid_value",
            )
        after = query.get("after")
        page = state.files.page(purpose=query.get("purpose"), limit=limit, order=order, after=after)
        if page is None:
            raise ApiError(404, f"No such File object: {after}", param="after")
    except ApiError as exc:
        _log(state, request, "files.list", exc.status, logged)
        return error_response(exc)
    _log(state, request, "files.list", 200, logged)
    files, has_more = page
    return list_response([stored.object() for stored in files], has_more)


async def _lookup(request: web.Request, endpoint: str) -> tuple[SimulatorState, StoredFile | web.Response]:
    """The file the path names, or the error response to send (already logged)."""
    state = request.app[STATE_KEY]
    file_id = request.match_info["file_id"]
    try:
        authorize(request, state.config.require_api_key)
        stored = state.files.get(file_id)
        if stored is None:
            raise not_found(file_id)
    except ApiError as exc:
        _log(state, request, endpoint, exc.status, {"file_id": file_id})
        return state, error_response(exc)
    _log(state, request, endpoint, 200, {"file_id": file_id})
    return state, stored


async def _retrieve(request: web.Request) -> web.StreamResponse:
    _, found = await _lookup(request, "files.retrieve")
    return found if isinstance(found, web.Response) else json_response(found.object())


async def _delete(request: web.Request) -> web.StreamResponse:
    state, found = await _lookup(request, "files.delete")
    if isinstance(found, web.Response):
        return found
    state.files.delete(found.id)
    return json_response({"id": found.id, "object": "file", "deleted": True})


async def _content(request: web.Request) -> web.StreamResponse:
    _, found = await _lookup(request, "files.content")
    if isinstance(found, web.Response):
        return found
    return web.Response(body=found.data, content_type="application/octet-stream")


async def _list_for_tests(request: web.Request) -> web.StreamResponse:
    """What is stored (no content) and how many uploads each content (sha256) had since the last reset."""
    return json_response(request.app[STATE_KEY].files.snapshot())


async def _hold(request: web.Request) -> web.StreamResponse:
    """``{"hold": true}``: answer no upload until ``{"hold": false}`` (each is stored first). Answers the state."""
    files = request.app[STATE_KEY].files
    body = await request.json()
    hold = body.get("hold") if isinstance(body, dict) else None
    if not isinstance(hold, bool):
        return error_response(invalid_request("'hold' must be true or false.", param="hold"))
    files.set_hold(hold)
    return json_response({"hold": files.held})
