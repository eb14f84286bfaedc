"""The aiohttp application: OpenAI-compatible routes under ``/v1`` and control routes under ``/_sim``.

Request flow for ``/v1/responses`` and ``/v1/chat/completions``: base latency,
authentication, parsing (400s), fault lookup, HTTP fault (unbilled) or
generation (billed, with per-output-token latency), then ledger and request
log. A middleware stamps every response with the headers real responses carry.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pydantic
from aiohttp import web

from simulator.completion import Completion, complete
from simulator.config import SimulatorConfig
from simulator.errors import ApiError, invalid_request
from simulator.faults import OUTPUT_FAULTS, FaultRule, http_fault_error
from simulator.render import render_chat_completion, render_response
from simulator.request import Endpoint, ExtractionRequest, parse_request
from simulator.state import SimulatorState

STATE_KEY = web.AppKey("simulator_state", SimulatorState)
MAX_BODY_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Renderer = Callable[[ExtractionRequest, Completion], dict[str, Any]]

_FAULT_RULES = pydantic.TypeAdapter(list[FaultRule])


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """A fresh simulator application with its own state (``app[STATE_KEY]``)."""
    app = web.Application(middlewares=[_openai_headers], client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = SimulatorState.from_config(config or SimulatorConfig())
    app.router.add_post("/v1/responses", _responses)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_route("*", "/v1/{tail:.*}", _unknown_api_path)
    app.router.add_get("/_sim/ledger", _ledger)
    app.router.add_get("/_sim/requests", _requests)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_get("/_sim/faults", _get_faults)
    app.router.add_post("/_sim/faults", _set_faults)
    return app


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers)


@web.middleware
async def _openai_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stamp ``x-request-id``, ``openai-processing-ms`` and the rate-limit headers; OpenAI-shape router errors."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        message = f"Invalid URL ({request.method} {request.path})" if exc.status == 404 else exc.reason
        response = error_response(ApiError(exc.status, message))
    for name, value in request.app[STATE_KEY].rate_limits.headers().items():
        response.headers.setdefault(name, value)
    response.headers["x-request-id"] = "req_" + secrets.token_hex(16)
    response.headers["openai-processing-ms"] = str(round((time.perf_counter() - started) * 1000))
    response.headers.setdefault("openai-version", "2020-10-01")
    return response


async def _responses(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "responses", render_response)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "chat.completions", render_chat_completion)


async def _serve(request: web.Request, endpoint: Endpoint, render: Renderer) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    raw = await request.read()
    body: object
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = raw.decode(errors="replace")
    await asyncio.sleep(state.base_delay_s())
    try:
        response = await _answer(request, state, endpoint, body, render)
    except ApiError as exc:
        response = error_response(exc)
    state.ledger.count(endpoint, response.status)
    state.requests.append(endpoint, response.status, body, request.headers)
    return response


async def _answer(
    request: web.Request, state: SimulatorState, endpoint: Endpoint, body: object, render: Renderer
) -> web.Response:
    _authorize(request, state.config.require_api_key)
    parsed = parse_request(endpoint, body)
    fault = state.faults.take(parsed.input_text())
    if fault is not None and (error := http_fault_error(fault)) is not None:
        raise error
    completion = complete(
        parsed, seed=state.config.seed, cache=state.prompt_cache, fault=fault if fault in OUTPUT_FAULTS else None
    )
    state.ledger.bill(parsed.fingerprint(), completion.usage)
    await asyncio.sleep(state.output_delay_s(completion.usage.output_tokens))
    return json_response(render(parsed, completion))


def _authorize(request: web.Request, api_key: str | None) -> None:
    """401 unless ``Authorization: Bearer <api_key>`` (when a key is required). Never echoes the key."""
    if api_key is None:
        return
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise ApiError(
            401,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


async def _unknown_api_path(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].ledger.count(None, 404)
    return error_response(ApiError(404, f"Invalid URL ({request.method} {request.path})"))


async def _ledger(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[STATE_KEY].ledger.snapshot())


async def _requests(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[STATE_KEY].requests.snapshot())


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].reset()
    return json_response({"ok": True})


async def _get_faults(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[STATE_KEY].faults.snapshot())


async def _set_faults(request: web.Request) -> web.StreamResponse:
    """Replace the fault rules with the posted JSON list; 400 (OpenAI shape) if it does not parse."""
    faults = request.app[STATE_KEY].faults
    try:
        rules = _FAULT_RULES.validate_json(await request.read())
    except pydantic.ValidationError as exc:
        return error_response(invalid_request(f"Invalid fault rules: {exc.errors(include_url=False)}"))
    faults.replace(rules)
    return json_response(faults.snapshot())
