"""The aiohttp application: OpenAI-compatible routes under ``/v1`` and control routes under ``/_sim``.

Request flow for ``/v1/responses`` and ``/v1/chat/completions``: authentication
(401), parsing (400s, an unsupported strict schema among them, and the model's
rules for ``service_tier``, effort, ``temperature``/``top_p`` and ``max_tokens``:
:mod:`simulator.model_families`), reading and
charging the images and files the messages carry (400s for bad ones;
:mod:`simulator.documents`), the model's
context window (400 ``context_length_exceeded``), flex capacity (429
``resource_unavailable``, unbilled and not admitted: :mod:`simulator.tiers`),
rate-limit admission (429, immediate), fault decision,
base latency with seeded jitter (or the slow-response delay), then a dropped
connection or HTTP fault (unbilled) or generation (billed, with
per-output-token latency; with ``charge_output="actual"`` and no max output
tokens, the output is then charged to the token bucket), then ledger and
request log (each entry with its ``x-request-id`` and the tier that served it). Every answer carries a unique
``x-request-id`` and the ``x-ratelimit-*`` headers (as of
admission for admitted requests; as of the response for 200s under
``charge_output="actual"``), which a middleware then rewrites or removes as
``limit_headers`` says, and stamps the other headers real responses carry.

``POST /v1/responses/input_tokens`` counts a Responses body's input exactly as
``/v1/responses`` would charge it (attachments included), without admitting it
to the rate limiter; the Files API (:mod:`simulator.files_api`) stores uploads
that messages can name by ``file_id``; the Batch API (:mod:`simulator.batches_api`) answers the lines of an
uploaded file in the background with the same steps, billed at the batch price.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic
from aiohttp import web

from simulator import batches_api, files_api
from simulator.completion import Completion, charges_output_later, complete, prompt_tokens, rate_limit_charge
from simulator.config import SimulatorConfig
from simulator.context_window import check_context_window
from simulator.documents import resolve_attachments
from simulator.errors import ApiError, invalid_request
from simulator.faults import OUTPUT_FAULTS, FaultKind, FaultRule, FaultSettings, http_fault_error
from simulator.ratelimit import style_headers
from simulator.render import render_chat_completion, render_response
from simulator.replies import REQUEST_ID_KEY, authorize, error_response, json_response, new_request_id, request_id
from simulator.request import Endpoint, ExtractionRequest, parse_request
from simulator.state import STATE_KEY, SimulatorState
from simulator.tiers import resource_unavailable

__all__ = ["MAX_BODY_BYTES", "STATE_KEY", "create_app", "error_response", "json_response"]

MAX_BODY_BYTES = 1024 * 1024 * 1024
"""aiohttp's ``client_max_size`` (1 MB by default): big enough that requests carrying 512 MB of images (as base64,
a third more) or a 512 MB upload reach the simulator's own checks and get the API's 400, not a bare 413."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Renderer = Callable[[ExtractionRequest, Completion], dict[str, Any]]

_FAULT_RULES = pydantic.TypeAdapter(list[FaultRule])
_TRUE = frozenset({"1", "true", "yes"})
_MAX_LIMIT = 2**53
"""The largest per-minute limit ``POST /_sim/limits`` takes (bucket arithmetic is in floats)."""


class LimitSettings(pydantic.BaseModel):
    """The body of ``POST /_sim/limits``: the per-minute limits to enforce from now on (absent = unchanged)."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True)

    rpm: int = pydantic.Field(default=0, ge=0, le=_MAX_LIMIT)
    tpm: int = pydantic.Field(default=0, ge=0, le=_MAX_LIMIT)


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """A fresh simulator application with its own state (``app[STATE_KEY]``)."""
    app = web.Application(middlewares=[_openai_headers], client_max_size=MAX_BODY_BYTES)
    app[STATE_KEY] = SimulatorState.from_config(config or SimulatorConfig())
    app.router.add_post("/v1/responses", _responses)
    app.router.add_post("/v1/responses/input_tokens", _input_tokens)
    app.router.add_post("/v1/chat/completions", _chat_completions)
    files_api.add_routes(app)
    batches_api.add_routes(app)
    app.router.add_route("*", "/v1/{tail:.*}", _unknown_api_path)
    app.router.add_get("/_sim/ledger", _ledger)
    app.router.add_get("/_sim/requests", _requests)
    app.router.add_post("/_sim/reset", _reset)
    app.router.add_get("/_sim/faults", _get_faults)
    app.router.add_post("/_sim/faults", _set_faults)
    app.router.add_get("/_sim/limits", _get_limits)
    app.router.add_post("/_sim/limits", _set_limits)
    return app


@web.middleware
async def _openai_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stamp ``x-request-id``, ``openai-processing-ms`` and the rate-limit headers; OpenAI-shape router errors.

    The rate-limit headers (and a 429's ``retry-after*``) are then styled as ``limit_headers`` says.
    """
    started = time.perf_counter()
    rid = request[REQUEST_ID_KEY] = new_request_id()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        message = f"Invalid URL ({request.method} {request.path})" if exc.status == 404 else exc.reason
        response = error_response(ApiError(exc.status, message))
    state = request.app[STATE_KEY]
    if "x-ratelimit-limit-requests" not in response.headers:  # API routes set them as of admission
        response.headers.update(state.rate_limits.headers())
    style_headers(response.headers, state.config.limit_headers, response.status)
    response.headers["x-request-id"] = rid
    response.headers["openai-processing-ms"] = str(round((time.perf_counter() - started) * 1000))
    response.headers.setdefault("openai-version", "2020-10-01")
    return response


async def _responses(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "responses", render_response)


async def _chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, "chat.completions", render_chat_completion)


@dataclass(slots=True)
class _Call:
    """What the route learns about one API call on the way: its rate-limit headers, its charge, how it ended."""

    rate_headers: dict[str, str] | None = None
    outcome: int | str = 200
    charge: dict[str, Any] | None = None

    def charged(self, parsed: ExtractionRequest) -> None:
        """Remember the input charge of the parsed, resolved request (for the request log)."""
        self.charge = {
            "input_tokens": prompt_tokens(parsed),
            "attachment_tokens": parsed.attachment_tokens(),
            "attachments": [attachment.record() for attachment in parsed.attachments()],
            "reasoning_effort": parsed.reasoning_effort,
        }

    def served(self, parsed: ExtractionRequest) -> None:
        """The request was answered (and billed) on its tier."""
        assert self.charge is not None
        self.charge["service_tier"] = parsed.service_tier


async def _read_body(request: web.Request) -> object:
    raw = await request.read()
    try:
        body: object = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = raw.decode(errors="replace")
    return body


async def _parse_and_resolve(
    request: web.Request, state: SimulatorState, endpoint: Endpoint, body: object, *, require_format: bool = True
) -> ExtractionRequest:
    """Authorize, parse, then read and charge the request's images and files (all 401/400s come from here)."""
    authorize(request, state.config.require_api_key)
    parsed = parse_request(endpoint, body, require_format=require_format)
    return await resolve_attachments(parsed, state.files, state.config.document_limits())


async def _input_tokens(request: web.Request) -> web.StreamResponse:
    """``POST /v1/responses/input_tokens``: ``{"object": "response.input_tokens", "input_tokens": N}``.

    N is exactly the input a ``/v1/responses`` call with this body would be charged (schema, messages,
    instructions, images and files), and the prompt cache is not touched. The call is not admitted to the rate
    limiter: its tokens are not taken from the bucket and it uses no request slot. Whether OpenAI's counter
    counts against RPM (or TPM) is unverified.
    """
    state = request.app[STATE_KEY]
    body = await _read_body(request)
    call = _Call()
    try:
        parsed = await _parse_and_resolve(request, state, "responses", body, require_format=False)
        call.charged(parsed)
        assert call.charge is not None
        response = json_response({"object": "response.input_tokens", "input_tokens": call.charge["input_tokens"]})
    except ApiError as exc:
        response = error_response(exc)
        call.outcome = exc.status
    state.ledger.count("responses.input_tokens", call.outcome)
    state.requests.append(
        "responses.input_tokens", call.outcome, body, request.headers, call.charge, request_id=request_id(request)
    )
    return response


async def _serve(request: web.Request, endpoint: Endpoint, render: Renderer) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    state.ledger.arrived()
    body = await _read_body(request)
    call = _Call()
    response: web.Response
    try:
        response = await _answer(request, state, endpoint, body, render, call)
    except ApiError as exc:
        response = error_response(exc)
        call.outcome = exc.status
    rate_headers = call.rate_headers if call.rate_headers is not None else state.rate_limits.headers(_model_of(body))
    for name, value in rate_headers.items():
        response.headers.setdefault(name, value)
    state.ledger.count(endpoint, call.outcome)
    logged_id = None if call.outcome == "dropped" else request_id(request)  # a dropped connection had no response
    state.requests.append(endpoint, call.outcome, body, request.headers, call.charge, request_id=logged_id)
    return response


async def _answer(
    request: web.Request, state: SimulatorState, endpoint: Endpoint, body: object, render: Renderer, call: _Call
) -> web.Response:
    """Authorize, parse, read attachments, check flex capacity and admit (429s), pick a fault, wait, then answer."""
    parsed = await _parse_and_resolve(request, state, endpoint, body)
    call.charged(parsed)
    check_context_window(parsed, state.config.context_windows)
    input_key = parsed.input_key()
    if parsed.service_tier == "flex" and state.flex.unavailable(state.faults.seed, input_key):
        state.ledger.resource_unavailable()  # before admission: no bucket is charged, nothing is billed
        raise resource_unavailable()
    charge_output = state.config.charge_output
    charge = rate_limit_charge(parsed, state.config.default_max_output_tokens, charge_output)
    admission = state.rate_limits.admit(parsed.model, charge)
    call.rate_headers = admission.headers
    if not admission.admitted:
        assert admission.error is not None
        assert admission.limited_by is not None
        state.ledger.reject(admission.limited_by)
        raise admission.error
    state.ledger.admit(charge)

    decision = state.faults.decide(parsed.input_text(), input_key)
    fault = decision.fault
    if fault is FaultKind.SLOW_RESPONSE:
        delay_s = state.faults.slow_response_ms / 1000
    else:
        delay_s = state.base_delay_s(input_key, decision.attempt)
    await asyncio.sleep(delay_s)
    if fault is FaultKind.DROPPED_CONNECTION:
        _drop_connection(request)
        call.outcome = "dropped"
        return web.Response(status=204)
    if fault is not None and (error := http_fault_error(fault)) is not None:
        raise error

    completion = complete(
        parsed,
        seed=state.config.seed,
        cache=state.prompt_cache,
        fault=fault if fault in OUTPUT_FAULTS else None,
        perturbed=state.config.perturbed(parsed.endpoint),
    )
    state.ledger.bill(parsed.fingerprint(), completion.usage, parsed.service_tier)
    state.ledger.ok(input_key)
    call.served(parsed)
    output_tokens = completion.usage.output_tokens
    try:
        await asyncio.sleep(state.output_delay_s(output_tokens))
    finally:  # the answer is complete (or the server is shutting down): a billed answer's output is charged
        if charges_output_later(parsed, charge_output):
            state.rate_limits.charge(parsed.model, output_tokens)
            state.ledger.charge_output(output_tokens)
    if charge_output == "actual":
        call.rate_headers = state.rate_limits.headers(parsed.model)  # as of the response, after that charge
    if _client_gone(request):
        state.ledger.abandon()  # billed all the same, as OpenAI bills a request the client timed out on
    return json_response(render(parsed, completion))


def _model_of(body: object) -> str | None:
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else None


def _drop_connection(request: web.Request) -> None:
    """Close the connection with no response at all; aiohttp then skips writing the one the route returns."""
    transport = request.transport
    if transport is not None:
        transport.close()


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _unknown_api_path(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].ledger.count(None, 404)
    return error_response(ApiError(404, f"Invalid URL ({request.method} {request.path})"))


async def _ledger(request: web.Request) -> web.StreamResponse:
    """The ledger; ``?series=1`` adds the per-second series, ``?tiers=1`` the usage per served tier, ``?venues=1`` the
    usage per venue (synchronous calls, batch lines at half the price).

    Both are kept out by default to keep the answer small (and its shape what clients already read).
    """
    series = request.query.get("series", "").lower() in _TRUE
    tiers = request.query.get("tiers", "").lower() in _TRUE
    venues = request.query.get("venues", "").lower() in _TRUE
    return json_response(request.app[STATE_KEY].ledger.snapshot(series=series, tiers=tiers, venues=venues))


async def _requests(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[STATE_KEY].requests.snapshot())


async def _reset(request: web.Request) -> web.StreamResponse:
    request.app[STATE_KEY].reset()
    return json_response({"ok": True})


async def _get_limits(request: web.Request) -> web.StreamResponse:
    """The enforced per-minute limits: ``{"rpm", "tpm", "window_s"}`` (0 = unlimited)."""
    return json_response(request.app[STATE_KEY].rate_limits.limits())


async def _set_limits(request: web.Request) -> web.StreamResponse:
    """Replace the per-minute limits of every model at once (a tier change); 400 (OpenAI shape) for a bad body.

    The body is an object ``{"rpm": n, "tpm": n}`` (each key optional: absent = unchanged; 0 = unlimited;
    integers from 0 to 2**53). Buckets keep their level, clipped to the new capacity, and refill at the new
    rate from now on. The answer is the new limits, as ``GET /_sim/limits``.
    """
    state = request.app[STATE_KEY]
    raw = await request.read()
    try:
        settings = LimitSettings.model_validate_json(raw)
    except pydantic.ValidationError as exc:
        return error_response(invalid_request(f"Invalid rate limits: {exc.errors(include_url=False)}"))
    given = settings.model_fields_set
    state.set_limits(
        rpm=settings.rpm if "rpm" in given else None,
        tpm=settings.tpm if "tpm" in given else None,
    )
    return json_response(state.rate_limits.limits())


async def _get_faults(request: web.Request) -> web.StreamResponse:
    """The rules with their counts (a JSON list); ``?full=1``: rules, rates and settings (an object)."""
    faults = request.app[STATE_KEY].faults
    if request.query.get("full", "").lower() in _TRUE:
        return json_response(faults.settings_snapshot())
    return json_response(faults.snapshot())


async def _set_faults(request: web.Request) -> web.StreamResponse:
    """Set faults; 400 (OpenAI shape) if the body does not parse.

    A JSON list replaces the count-limited rules (answer: the rule list). An
    object ``{"rules", "rates", "seed", "max_per_input", "slow_response_ms"}``
    (all optional) changes what it names and restarts the per-input counts
    (answer: the full settings, as ``GET /_sim/faults?full=1``).
    """
    faults = request.app[STATE_KEY].faults
    raw = await request.read()
    try:
        if raw.lstrip()[:1] == b"[":
            faults.replace(_FAULT_RULES.validate_json(raw))
            return json_response(faults.snapshot())
        faults.configure(FaultSettings.model_validate_json(raw))
    except pydantic.ValidationError as exc:
        return error_response(invalid_request(f"Invalid fault settings: {exc.errors(include_url=False)}"))
    return json_response(faults.settings_snapshot())
