"""The Batch API routes: ``POST``/``GET /v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``,
and ``GET``/``POST /_sim/batches`` for tests.

``POST /v1/batches`` takes the spec's ``CreateBatchRequest``: ``input_file_id`` (a stored file of purpose ``batch``;
unknown: 404 ``No such File object``), ``endpoint`` (``/v1/responses`` or ``/v1/chat/completions``; any other: 400),
``completion_window`` (``24h`` only), ``metadata`` (up to 16 string pairs, keys up to 64 and values up to 512
characters) and ``output_expires_after`` (``{"anchor": "created_at", "seconds": 3600..2592000}``, for the output
and error files); any other key is a 400. It answers the new batch (``validating``), whose life
:mod:`simulator.batch_runner` then runs in the background. Past ``creates_per_hour`` creations in a rolling hour it
answers 429 ``rate_limit_exceeded`` with ``retry-after``. ``GET /v1/batches`` is ``listBatches``: newest first,
``limit`` 1-100 (default 20), ``after`` a batch id. Cancelling a ``validating`` or ``in_progress`` batch answers it
``cancelling``; a ``cancelling`` or ``cancelled`` one is answered as it is; any other status gets a 409. Unknown ids
get a 404. Authentication is the other routes' (:func:`~simulator.replies.authorize`); every call is in the request
log (``batches.create``, ``batches.list``, ``batches.retrieve``, ``batches.cancel``). Messages the real API's
documentation does not quote (the 404, 409 and 429, the purpose check) are the simulator's own wording.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pydantic
from aiohttp import web

from simulator.batch_runner import run_batch
from simulator.batches import ENDPOINTS, LIST_LIMIT_DEFAULT, LIST_LIMIT_MAX, ORGANIZATION, Batch, BatchSettings
from simulator.errors import ApiError, invalid_request, missing_parameter
from simulator.files import EXPIRES_AFTER_MAX_S, EXPIRES_AFTER_MIN_S
from simulator.replies import authorize, error_response, json_response, list_limit, list_response, request_id
from simulator.state import STATE_KEY, SimulatorState

_CREATE_KEYS = frozenset({"input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"})
_METADATA_MAX_PAIRS = 16
_METADATA_KEY_MAX = 64
_METADATA_VALUE_MAX = 512
_CANCELLABLE = frozenset({"validating", "in_progress"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/batches", _create)
    app.router.add_get("/v1/batches", _list)
    app.router.add_get("/v1/batches/{batch_id}", _retrieve)
    app.router.add_post("/v1/batches/{batch_id}/cancel", _cancel)
    app.router.add_get("/_sim/batches", _get_settings)
    app.router.add_post("/_sim/batches", _set_settings)
    app.on_shutdown.append(_stop_batches)


async def _stop_batches(app: web.Application) -> None:
    await app[STATE_KEY].batches.close()


def not_found(batch_id: str, param: str | None = None) -> ApiError:
    return ApiError(404, f"No batch found with id '{batch_id}'.", param=param)


def _log(state: SimulatorState, request: web.Request, endpoint: str, status: int, body: object) -> None:
    state.requests.append(endpoint, status, body, request.headers, request_id=request_id(request))


# -- create ---------------------------------------------------------------------------------------------------------


async def _create(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    raw = await request.read()
    try:
        body: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = raw.decode(errors="replace")
    try:
        authorize(request, state.config.require_api_key)
        batch = _new_batch(state, body)
    except ApiError as exc:
        _log(state, request, "batches.create", exc.status, body)
        return error_response(exc)
    _log(state, request, "batches.create", 200, body)
    state.batches.start(asyncio.create_task(run_batch(state, batch), name=f"simulated {batch.id}"))
    if state.batches.settings.create_answer_delay_s:  # the batch exists; its answer is late (a lost answer, a crash)
        await asyncio.sleep(state.batches.settings.create_answer_delay_s)
    return json_response(batch.object())


def _new_batch(state: SimulatorState, body: object) -> Batch:
    if not isinstance(body, dict):
        raise invalid_request(
            "We could not parse the JSON body of your request. The body must be a JSON object.", code="invalid_json"
        )
    unknown = sorted(set(body) - _CREATE_KEYS)
    if unknown:
        raise invalid_request(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0])
    input_file_id = _required_string(body, "input_file_id")
    endpoint = _required_string(body, "endpoint")
    if endpoint not in ENDPOINTS:
        supported = " and ".join(f"'{name}'" for name in ENDPOINTS)
        raise invalid_request(
            f"Invalid value: '{endpoint}'. Supported values are: {supported}.", param="endpoint", code="invalid_value"
        )
    window = _required_string(body, "completion_window")
    if window != "24h":
        raise invalid_request(
            f"Invalid value: '{window}'. Supported values are: '24h'.", param="completion_window", code="invalid_value"
        )
    metadata = _metadata(body.get("metadata"))
    expires_after_s = _output_expires_after(body.get("output_expires_after"))
    stored = state.files.get(input_file_id)
    if stored is None:
        raise ApiError(404, f"No such File object: {input_file_id}", param="input_file_id")
    if stored.purpose != "batch":
        raise invalid_request(
            f"Invalid 'input_file_id': '{input_file_id}' has purpose '{stored.purpose}'. "
            "A batch input file must be uploaded with purpose 'batch'.",
            param="input_file_id",
            code="invalid_value",
        )
    wait_s = state.batches.admit_create()
    if wait_s > 0:
        raise _too_many_creates(state.batches.settings.creates_per_hour, wait_s)
    return state.batches.new_batch(
        endpoint=endpoint,
        input_file_id=input_file_id,
        input_data=stored.data,
        metadata=metadata,
        output_expires_after_s=expires_after_s,
    )


def _required_string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is None:
        raise missing_parameter(name)
    if not isinstance(value, str):
        raise invalid_request(f"Invalid type for '{name}': expected a string.", param=name, code="invalid_type")
    return value


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_request("Invalid type for 'metadata': expected an object.", param="metadata", code="invalid_type")
    if len(value) > _METADATA_MAX_PAIRS:
        raise invalid_request(
            f"Invalid 'metadata': too many properties. Expected an object with at most {_METADATA_MAX_PAIRS} "
            f"properties, but got an object with {len(value)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > _METADATA_KEY_MAX:
            raise invalid_request(
                f"Invalid 'metadata': key too long. Expected a key with a maximum length of {_METADATA_KEY_MAX}, "
                f"but got a key with length {len(key)} instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(item, str):
            raise invalid_request(
                f"Invalid type for 'metadata.{key}': expected a string.", param=f"metadata.{key}", code="invalid_type"
            )
        if len(item) > _METADATA_VALUE_MAX:
            raise invalid_request(
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                f"{_METADATA_VALUE_MAX}, but got a string with length {len(item)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )
    return dict(value)


def _output_expires_after(value: object) -> int | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("anchor") != "created_at":
        raise invalid_request(
            "Invalid 'output_expires_after': expected an object with 'anchor': 'created_at' and 'seconds'.",
            param="output_expires_after.anchor",
            code="invalid_value",
        )
    seconds = value.get("seconds")
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        raise invalid_request(
            "Invalid type for 'output_expires_after.seconds': expected an integer.",
            param="output_expires_after.seconds",
            code="invalid_type",
        )
    if not EXPIRES_AFTER_MIN_S <= seconds <= EXPIRES_AFTER_MAX_S:
        raise invalid_request(
            f"Invalid 'output_expires_after.seconds': integer out of range. Expected a value between "
            f"{EXPIRES_AFTER_MIN_S} and {EXPIRES_AFTER_MAX_S}, but got {seconds} instead.",
            param="output_expires_after.seconds",
            code="invalid_value",
        )
    return seconds


def _too_many_creates(limit: int, wait_s: float) -> ApiError:
    seconds = max(math.ceil(wait_s), 1)
    return ApiError(
        429,
        f"Rate limit reached for batch creations in organization {ORGANIZATION}: Limit {limit} / 1h. "
        f"Please try again in {seconds}s.",
        error_type="requests",
        code="rate_limit_exceeded",
        headers={"retry-after": str(seconds), "retry-after-ms": str(math.ceil(wait_s * 1000))},
    )


# -- list, retrieve, cancel -----------------------------------------------------------------------------------------


async def _list(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    logged = dict(request.query)
    try:
        authorize(request, state.config.require_api_key)
        limit = list_limit(request.query.get("limit"), default=LIST_LIMIT_DEFAULT, maximum=LIST_LIMIT_MAX)
        after = request.query.get("after")
        page = state.batches.page(limit=limit, after=after)
        if page is None:
            assert after is not None
            raise not_found(after, param="after")
    except ApiError as exc:
        _log(state, request, "batches.list", exc.status, logged)
        return error_response(exc)
    _log(state, request, "batches.list", 200, logged)
    batches, has_more = page
    return list_response([batch.object() for batch in batches], has_more)


async def _lookup(request: web.Request, endpoint: str) -> tuple[SimulatorState, Batch | web.Response]:
    """The batch the path names, or the error response to send (already logged)."""
    state = request.app[STATE_KEY]
    batch_id = request.match_info["batch_id"]
    try:
        authorize(request, state.config.require_api_key)
        batch = state.batches.get(batch_id)
        if batch is None:
            raise not_found(batch_id)
    except ApiError as exc:
        _log(state, request, endpoint, exc.status, {"batch_id": batch_id})
        return state, error_response(exc)
    return state, batch


async def _retrieve(request: web.Request) -> web.StreamResponse:
    state, found = await _lookup(request, "batches.retrieve")
    if isinstance(found, web.Response):
        return found
    _log(state, request, "batches.retrieve", 200, {"batch_id": found.id})
    return json_response(found.object())


async def _cancel(request: web.Request) -> web.StreamResponse:
    state, found = await _lookup(request, "batches.cancel")
    if isinstance(found, web.Response):
        return found
    if found.status in _CANCELLABLE:
        found.cancel_requested = True
        found.mark("cancelling", "cancelling_at")
        found.wake.set()
    elif found.status not in ("cancelling", "cancelled"):
        error = ApiError(409, f"Cannot cancel a batch with status '{found.status}'.")
        _log(state, request, "batches.cancel", error.status, {"batch_id": found.id})
        return error_response(error)
    _log(state, request, "batches.cancel", 200, {"batch_id": found.id})
    return json_response(found.object())


# -- control --------------------------------------------------------------------------------------------------------


async def _get_settings(request: web.Request) -> web.StreamResponse:
    """The batch settings, every batch's summary, enqueued tokens per model and creations in the last hour."""
    return json_response(request.app[STATE_KEY].batches.snapshot())


async def _set_settings(request: web.Request) -> web.StreamResponse:
    """Change the settings a JSON object names (the others stay); 400 (OpenAI shape) for a bad body.

    Answers as ``GET /_sim/batches``. Line faults apply to batches created from then on; the times, limits and
    ``hold`` to every batch from now on (``{"hold": false}`` releases held batches at once).
    """
    book = request.app[STATE_KEY].batches
    raw = await request.read()
    try:
        given = orjson.loads(raw)
        if not isinstance(given, dict):
            raise ValueError("expected a JSON object")
        book.configure(BatchSettings.model_validate({**book.settings.model_dump(), **given}))
    except (orjson.JSONDecodeError, ValueError) as exc:
        detail = exc.errors(include_url=False) if isinstance(exc, pydantic.ValidationError) else str(exc)
        return error_response(invalid_request(f"Invalid batch settings: {detail}"))
    return json_response(book.snapshot())
