"""What happens to a batch over time, on the event loop's clock, and how each of its lines is answered.

One task per batch (kept by :class:`~simulator.batches.BatchBook`, stopped by reset and shutdown)::

    validating (batch_validating_s) -- input checks (simulator.batch_input) --> failed
        -- enqueued-token limit --> failed (token_limit_exceeded)
        --> in_progress: lines answered in input order, batch_lines_per_s, not while `hold`
            -- all answered --> finalizing (batch_finalizing_s) --> completed
            -- expire_after_lines answered, or 24 h --> expired
            -- cancel (validating or in_progress) --> cancelling (batch_cancelling_s) --> cancelled

A line is answered by the synchronous endpoints' own steps (:func:`answer_body`: parse, read attachments, context
window, :func:`simulator.completion.complete`, render) without their HTTP-only ones (authentication, flex capacity,
rate limits, the fault book, latency). A body's ``service_tier`` is ignored: batches are not served on a tier.
Answers are billed in the ledger at the ``batch`` venue (half the synchronous price) and use a prompt cache of their
own per batch. A body the endpoint refuses gets its 400 in the error file, as does a planned HTTP 500
(``server_error_share``); both are unbilled. When the batch ends, its output lines (answers) and error lines are
written, each file shuffled, as ``batch_output`` files; lines it never got to are in the error file with
``batch_expired`` / ``batch_cancelled``. Which lines get which fault is drawn from ``fault_seed`` and the
``custom_id`` (exact counts: ``round(share x lines)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from simulator.batch_input import InputLine, batch_error, check_input
from simulator.batches import COMPLETION_WINDOW_S, ENDPOINTS, ORGANIZATION, Batch
from simulator.completion import complete, prompt_tokens
from simulator.context_window import check_context_window
from simulator.documents import resolve_attachments
from simulator.errors import ApiError
from simulator.faults import FaultKind, fault_uniform, http_fault_error
from simulator.files import BATCH_OUTPUT, FILE_ID_ALPHABET
from simulator.prompt_cache import PromptCache
from simulator.render import render_chat_completion, render_response
from simulator.request import Endpoint, ExtractionRequest, parse_request
from simulator.state import SimulatorState
from simulator.tokens import Usage

logger = logging.getLogger(__name__)

_EXPIRED = ("batch_expired", "This request could not be executed before the completion window expired.")
_CANCELLED = ("batch_cancelled", "This request was not executed because the batch was cancelled.")
_YIELD_EVERY = 64
"""Lines answered between two yields to the event loop when the pace leaves no time to sleep."""
_MIN_SLEEP_S = 0.002
_MAX_LAG_S = 0.1
"""How far behind its pace a batch may fall before the pace is reset (no burst after a slow stretch)."""


@dataclass(frozen=True, slots=True)
class LinePlan:
    """The ``custom_id``s that get each line fault."""

    server_error: frozenset[str] = frozenset()
    invalid_answer: frozenset[str] = frozenset()
    dropped: frozenset[str] = frozenset()


def plan_lines(batch: Batch, lines: Sequence[InputLine], seed: int) -> LinePlan:
    """Which lines get a 500, an invalid answer, or are dropped: disjoint sets, drawn from ``seed`` and custom id."""
    ids = [line.custom_id for line in lines]
    faults = batch.faults

    def pick(count: int, purpose: str, taken: frozenset[str]) -> frozenset[str]:
        pool = sorted((cid for cid in ids if cid not in taken), key=lambda cid: fault_uniform(seed, cid, 0, purpose))
        return frozenset(pool[:count])

    errors = pick(round(faults.server_error_share * len(ids)), "batch_server_error", frozenset())
    invalid = pick(round(faults.invalid_answer_share * len(ids)), "batch_invalid_answer", errors)
    dropped = pick(faults.drop_lines, "batch_drop", errors | invalid)
    return LinePlan(errors, invalid, dropped)


def _without_service_tier(body: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "service_tier"}


async def _resolved(state: SimulatorState, endpoint: Endpoint, body: dict[str, Any]) -> ExtractionRequest:
    parsed = parse_request(endpoint, _without_service_tier(body))
    parsed = await resolve_attachments(parsed, state.files, state.config.document_limits())
    check_context_window(parsed, state.config.context_windows)
    return parsed


async def answer_body(
    state: SimulatorState, endpoint: Endpoint, body: dict[str, Any], *, invalid: bool, cache: PromptCache
) -> tuple[int, dict[str, Any], Usage | None]:
    """(status, body, usage) for one line: the synchronous endpoint's answer, billed at the batch venue."""
    try:
        parsed = await _resolved(state, endpoint, body)
    except ApiError as exc:
        return exc.status, exc.body(), None
    completion = complete(
        parsed,
        seed=state.config.seed,
        cache=cache,
        fault=FaultKind.INVALID_OUTPUT if invalid else None,
        perturbed=state.config.perturbed(parsed.endpoint),
    )
    state.ledger.bill(parsed.fingerprint(), completion.usage, parsed.service_tier, venue="batch")
    state.ledger.ok(parsed.input_key())
    render = render_response if endpoint == "responses" else render_chat_completion
    return 200, render(parsed, completion), completion.usage


def _line_id() -> str:
    return "batch_req_" + "".join(secrets.choice(FILE_ID_ALPHABET) for _ in range(24))


def _answered(line: InputLine, status: int, body: dict[str, Any]) -> dict[str, Any]:
    response = {"status_code": status, "request_id": secrets.token_hex(16), "body": body}
    return {"id": _line_id(), "custom_id": line.custom_id, "response": response, "error": None}


def _not_run(line: InputLine, ending: tuple[str, str]) -> dict[str, Any]:
    code, message = ending
    error = {"code": code, "message": message}
    return {"id": _line_id(), "custom_id": line.custom_id, "response": None, "error": error}


async def run_batch(state: SimulatorState, batch: Batch) -> None:
    """Move ``batch`` through its life (see the module docstring); any unexpected error fails it."""
    try:
        await _run(state, batch)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("simulated batch %s failed", batch.id)
        batch.errors = [batch_error("server_error", "The simulator failed while processing this batch.")]
        batch.mark("failed", "failed_at")


async def _run(state: SimulatorState, batch: Batch) -> None:
    settings = state.batches.settings
    if await _pause(batch, settings.batch_validating_s):
        await _end(state, batch, (), _CANCELLED)
        return
    settings = state.batches.settings
    checked = await asyncio.to_thread(  # up to 200 MB of JSON: off the event loop
        check_input, batch.input_data, batch.endpoint, max_bytes=settings.max_input_bytes, max_lines=settings.max_lines
    )
    batch.model = checked.model
    if batch.cancel_requested:
        await _end(state, batch, (), _CANCELLED)
        return
    errors = list(checked.errors)
    if not errors and settings.fail_validation:  # a refusal this simulator's own checks would not make
        errors.append(batch_error(settings.fail_validation, "The simulator was told to fail this batch.", line=1))
    if errors:
        batch.errors = errors
        batch.mark("failed", "failed_at")
        return
    lines = checked.lines
    if not await _within_token_limit(state, batch, lines):
        return
    if batch.cancel_requested:
        await _end(state, batch, (), _CANCELLED)
        return
    batch.total = len(lines)
    batch.mark("in_progress", "in_progress_at")
    answered, ending = await _answer_lines(state, batch, lines, plan_lines(batch, lines, state.config.fault_seed))
    await _end(state, batch, lines[answered:], ending)


async def _end(state: SimulatorState, batch: Batch, rest: Sequence[InputLine], ending: tuple[str, str] | None) -> None:
    """Write the files and end as ``ending`` says: cancelled, expired, or (None) finalizing then completed."""
    if ending is None:
        batch.mark("finalizing", "finalizing_at")
        await asyncio.sleep(state.batches.settings.batch_finalizing_s)
        _write_files(state, batch, (), _EXPIRED)  # every line was answered: no line is left to end
        batch.mark("completed", "completed_at")
        return
    if ending is _CANCELLED:
        await asyncio.sleep(state.batches.settings.batch_cancelling_s)
    _write_files(state, batch, rest, ending)
    if ending is _CANCELLED:
        batch.mark("cancelled", "cancelled_at")
    else:
        batch.mark("expired", "expired_at")


async def _pause(batch: Batch, seconds: float) -> bool:
    """Wait ``seconds``, less if the batch is cancelled meanwhile; True if it was."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not batch.cancel_requested:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        batch.wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(batch.wake.wait(), remaining)
    return True


async def _held(state: SimulatorState, batch: Batch) -> bool:
    """Wait while batches are held; True if the batch is cancelled (meanwhile or before)."""
    while state.batches.settings.hold and not batch.cancel_requested:
        batch.wake.clear()
        await batch.wake.wait()
    return batch.cancel_requested


async def _within_token_limit(state: SimulatorState, batch: Batch, lines: Sequence[InputLine]) -> bool:
    """Count the input against the model's enqueued-token limit, if it has one; fail the batch past it."""
    model = batch.model or ""
    limit = state.batches.settings.enqueued_token_limit.get(model, 0)
    if not limit:
        return True
    tokens = 0
    for index, line in enumerate(lines):
        with contextlib.suppress(ApiError):  # a refused body is answered with its 400 later: no room in the queue
            tokens += prompt_tokens(await _resolved(state, ENDPOINTS[batch.endpoint], line.body))
        if index % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
    if batch.cancel_requested:
        return True
    if state.batches.enqueued_tokens(model) + tokens > limit:
        message = (
            f"Enqueued token limit reached for {model} in organization {ORGANIZATION}. Limit: {limit:,} enqueued "
            "tokens. Please try again once some in_progress batches have been completed."
        )
        batch.errors = [batch_error("token_limit_exceeded", message)]
        batch.mark("failed", "failed_at")
        return False
    batch.input_tokens = tokens
    return True


async def _answer_lines(
    state: SimulatorState, batch: Batch, lines: Sequence[InputLine], plan: LinePlan
) -> tuple[int, tuple[str, str] | None]:
    """Answer lines in order at the configured pace; (lines answered, how the batch ends: None = all answered)."""
    loop = asyncio.get_running_loop()
    cache = PromptCache()
    endpoint = ENDPOINTS[batch.endpoint]
    expire_after = batch.faults.expire_after_lines
    due = loop.time()
    for index, line in enumerate(lines):
        if await _held(state, batch):
            return index, _CANCELLED
        if (expire_after is not None and index >= expire_after) or (
            loop.time() >= batch.created_loop_time + COMPLETION_WINDOW_S
        ):
            return index, _EXPIRED
        await _answer_line(state, batch, line, plan, endpoint, cache)
        due = max(due + 1 / state.batches.settings.batch_lines_per_s, loop.time() - _MAX_LAG_S)
        wait = due - loop.time()
        if wait >= _MIN_SLEEP_S:
            if await _pause(batch, wait):
                return index + 1, _CANCELLED
        elif index % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)
    if await _held(state, batch):  # answered everything, but a held batch stays in_progress
        return len(lines), _CANCELLED
    return len(lines), None


async def _answer_line(
    state: SimulatorState, batch: Batch, line: InputLine, plan: LinePlan, endpoint: Endpoint, cache: PromptCache
) -> None:
    if line.custom_id in plan.server_error:
        error = http_fault_error(FaultKind.HTTP_500)
        assert error is not None
        batch.failed += 1
        batch.error_lines.append(_answered(line, error.status, error.body()))
        return
    invalid = line.custom_id in plan.invalid_answer
    status, body, usage = await answer_body(state, endpoint, line.body, invalid=invalid, cache=cache)
    if usage is None:
        batch.failed += 1
        batch.error_lines.append(_answered(line, status, body))
        return
    batch.completed += 1
    batch.bill(usage)
    if line.custom_id in plan.dropped or batch.faults.no_output_file:
        return  # answered and billed, but in neither file
    batch.output_lines.append(_answered(line, status, body))


def _write_files(state: SimulatorState, batch: Batch, rest: Sequence[InputLine], ending: tuple[str, str]) -> None:
    """Store the output and error files (each only if it has a line), shuffled; ``rest`` end as ``ending``."""
    rng = random.Random(f"{state.config.seed}:{batch.id}")
    errors = batch.error_lines + [_not_run(line, ending) for line in rest]
    for kind, records in (("output", batch.output_lines), ("error", errors)):
        if not records:
            continue
        data = b"".join(orjson.dumps(record) + b"\n" for record in _shuffled(records, rng))
        stored = state.files.add(f"{batch.id}_{kind}.jsonl", BATCH_OUTPUT, data, batch.output_expires_after_s)
        if kind == "output":
            batch.output_file_id = stored.id
        else:
            batch.error_file_id = stored.id


def _shuffled(records: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """``records`` in a random order that is never their own (with two or more): order is not guaranteed."""
    shuffled = list(records)
    rng.shuffle(shuffled)
    if len(shuffled) > 1 and shuffled == records:
        shuffled = shuffled[1:] + shuffled[:1]
    return shuffled
