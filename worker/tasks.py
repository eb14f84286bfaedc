"""The arq job: one input line from queue to recorded result. Orchestration only.

A try of a line ends in one of four ways, and every one of them is accounted for:

- **a final outcome** -- validated output, a cached answer, a refusal, truncation, still invalid after repairs, a
  4xx, a document too large to send or whose attachment bytes are gone, the batch cancelled -- is recorded once
  (``store.results``);
- **an ending that another try may fix** -- a 429, a 5xx, a timeout, a dropped connection, an answer cut off well
  below its cap, a wait for admission, for an identical line in flight or for the batch's calls in flight to settle
  its budget, or anything unexpected (a bug, Redis failing past its retries) -- is classified (:func:`classify`) and
  counted in the line's account; the one policy (``worker.policy.decide``) then either hands the job back to arq for
  later (``arq.Retry``) or gives up and records the line ``failed`` with the policy's error type
  (``retries_exhausted``, ``timeout``, ``truncated``, ``internal_error``);
- **the batch is paused, or about to be** -- a paused batch (``store.pause``; its budget reached: ``store.budget``)
  starts no call, and a call that failed batch-wide counts towards its pause (``_batch_wide_failure``) -- the job is
  handed back to arq unrecorded, outside the policy, to look again after ``pause_recheck_s``
  (``PAUSE_PENDING_RETRY_S`` while a batch-wide failure has not paused the batch yet);
- **the job is taken away** -- SIGTERM's drain cancels it: arq puts it back on the queue and it runs again.

What arq itself can do to a job, and what each becomes (the boundary is ``worker.app.ExtractionWorker``):

| arq path | becomes |
| --- | --- |
| the function returns (it recorded the line, or the line was recorded already) | nothing more |
| ``arq.Retry`` (the policy, a paused batch) | the job runs again after the delay; arq's try counter is no limit |
| ``CancelledError`` (SIGTERM after ``job_completion_wait``) | arq re-queues the job at once |
| an exception escapes the function, or arq's own time limit (ours + 5 s) fires | ``internal_error`` recorded |
| "job expired" (its job key is gone), an unreadable payload, an unknown function | ``internal_error`` recorded |
| "max retries exceeded" (arq's try counter; set out of reach) | ``internal_error`` recorded |
| ``Job.abort()`` | nothing: aborting is off (``allow_abort_jobs=False``), so the job runs and records |

Round trips to Redis per line (one call, no repair, admitted at once), each a pipeline or one script
(``store.scripts.RoundTrip``); arq's poll of the queue (one ``ZRANGEBYSCORE`` for up to ``queue_read_limit`` jobs) and
health beats are shared by many lines and not counted:

| step | cache miss | cache hit | cache off |
| --- | ---: | ---: | ---: |
| arq claims the job (``store.queue.CLAIM``, one script where arq sends WATCH, EXISTS, ZSCORE, MULTI/EXEC) | 1 | 1 | 1 |
| arq reads the job and counts the try (its MULTI/GET/INCRBY/EXPIRE/EXEC) | 1 | 1 | 1 |
| the line's state, its cached answer or lease (``LOOKUP``), its account | 1 | 1 | 1 |
| admission, and the call counted as sent if admitted (``ADMIT`` + ``BEGIN_CALL``) | 1 | - | 1 |
| the call's usage and its reservation's settlement (``ADD_CALL`` + ``SETTLE``) | 1 | - | 1 |
| the line recorded (``RECORD``, which also does arq's clean-up), the cache's pointer to it, lease release | 1 | 1 | 1 |
| arq's own clean-up (``finish_job``): skipped, nothing is left | - | - | - |
| **total** | **6** | **4** | **6** |

(Before: 17, 10 and 13.) Each repair call adds 2 (admission and begin, usage and settlement); a retry adds the policy's
note and arq's re-queue. ``python -m bench.overhead`` measures the commands Redis runs per line, scripts' inner
commands included.

A line whose batch is gone (deleted, expired) records nothing. Identifiers in log lines are the line's number in the
input (``ExtractionJob.line``: what the user's editor shows, 1-based) and a ``repr`` of its custom_id, so control
characters never reach a log line unescaped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import arq
from pydantic import ValidationError

from schemas.attachments import attachment_tokens
from schemas.input_limits import context_window
from schemas.jobs import BatchSpec, ExtractionJob, document_fingerprint
from schemas.pricing import BATCH_TIER
from schemas.records import now_iso
from schemas.results import ErrorInfo, ErrorType, Status
from store.cache import Lookup
from store.provider_batches import LineVenue
from store.results import LineState
from store.scripts import RoundTrip
from worker.account import JobAccount
from worker.adapters.base import ApiAdapter
from worker.adapters.errors import ApiCallError, redact
from worker.adapters.responses import count_input_tokens
from worker.batches import BatchNotFoundError, LoadedBatch
from worker.cache import CachedAnswer, Lease
from worker.calls import BudgetHeldError, BudgetReachedError, JobCalls, worst_case
from worker.classify import classify_call_error
from worker.extraction import CallHooks, CutOffError, Extracted, Rejected, extract_once
from worker.logs import RepeatSummary
from worker.policy import Ending, GiveUp, TryEnded, WaitingError, decide
from worker.prompt import Part, first_request
from worker.state import WorkerState
from worker.venue.lines import Answer, ReplayAdapter, ReplayHooks
from worker.venue.route import PARK_S, Replay, route_line

log = logging.getLogger("worker.tasks")
REPEATS = RepeatSummary(log)
"""Retries of one batch for one reason are one warning per interval, with a count (a provider outage is loud once)."""

PAUSE_PENDING_RETRY_S = 2.0
"""A line whose call failed batch-wide before the batch paused tries again this soon (see ``_batch_wide_failure``)."""
ARQ_MAX_TRIES = 1_000_000
"""arq counts every start of a job, waits included; our policy owns the limits, so arq's is set out of reach."""


class Cancelled:
    """The batch was cancelled before this line started."""


class LineInFlightError(WaitingError):
    """An identical line (same fingerprint) is being answered by another job; its answer will be in the cache."""


Outcome = Extracted | Rejected | CachedAnswer | Cancelled


async def extract(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """arq entry point. ``payload`` is an ``ExtractionJob`` as a JSON object."""
    state: WorkerState = ctx["state"]
    job_id: str = ctx["job_id"]
    state.metrics.jobs_in_flight.inc()
    try:
        try:
            job = ExtractionJob.model_validate(payload)
        except ValidationError as exc:
            reason = f"the job's payload is not a line ({exc.error_count()} errors)"
            await state.boundary.record_unfinished(job_id, reason)
            ended = "unreadable"
        else:
            ended = await run_job(state, job, ctx.get("job_try", 1), job_id)
    except arq.Retry:
        raise
    except BaseException as exc:  # arq ends the job now; the boundary records the line if it must
        state.boundary.note_exception(job_id, exc)
        raise
    finally:
        state.metrics.jobs_in_flight.dec()
    state.boundary.ended_properly(job_id)
    return ended


async def run_job(state: WorkerState, job: ExtractionJob, job_try: int, job_id: str) -> str:
    """One try of one line, as arq job ``job_id`` (which leaves the queue when the line is recorded)."""
    try:
        batch = await state.batches.get(job.batch_id)  # read once per batch and process
    except BatchNotFoundError:
        log.warning("dropping line %d of batch %s: the batch was deleted", job.line, job.batch_id)
        return "batch-missing"
    account = JobAccount(state.accounts, batch.keys, job.ordinal)
    # One round trip: the line's state, its cached answer or its lease, and its account (the totals a line answered
    # without a call records), after settling what an earlier try of the line left in flight (a killed worker's call:
    # possibly billed, its budget reservation released).
    trip = state.trip()
    line = state.results.queue_line_state(trip, batch.keys, job.ordinal)
    caching = batch.spec.use_cache and state.cache.enabled
    lookup = state.coalescer.queue_lookup(trip, job.fingerprint, batch.codec) if caching else None
    known = account.queue_begin_try(trip)
    blobs = [a.ref for a in job.attachments if a.source == "blob"]
    stored = state.blobs.queue_get(trip, batch.keys, blobs) if blobs else None
    await trip.run()
    held = _Held(state.coalescer.held_lease(job.fingerprint, lookup.value) if lookup is not None else None)
    try:
        if not line.value.batch_exists:
            log.warning("dropping line %d of batch %s: the batch was deleted or has expired", job.line, job.batch_id)
            return "batch-missing"
        if line.value.recorded:
            return "already-recorded"
        account.remember(known.value)
        parts_or_refusal = _ready(batch, job, blobs, stored.value if stored else [])
        found = await state.cache.resolve(job.fingerprint, lookup.value) if lookup else None
        outcome, provider_batch = await _outcome(
            state, job, batch, account, line.value, found, held, parts_or_refusal, job_id
        )

        async def then(finish: RoundTrip) -> None:
            # In the record's round trip, after it: the cache's pointer to the line just recorded, then the lease let
            # go (so the jobs waiting on it find the answer).
            lease, held.lease = held.lease, None
            if lease is not None:
                if isinstance(outcome, Extracted):
                    state.cache.queue_put(finish, job.fingerprint, batch.keys, job.ordinal)
                await lease.queue_release(finish)

        await _record(
            state, job, batch, account, outcome, job_id, state.trip(), provider_batch=provider_batch, then=then
        )
        if batch.spec.venue != "sync":
            await state.venue.forget(batch.keys, job.ordinal)
        return outcome.__class__.__name__.lower()
    finally:
        if held.lease is not None:  # the try ended some other way (a retry, a timeout): let the lease go now
            await held.lease.release()


async def _outcome(
    state: WorkerState,
    job: ExtractionJob,
    batch: LoadedBatch,
    account: JobAccount,
    line: LineState,
    found: Lookup | None,
    held: _Held,
    parts: tuple[Part, ...] | Rejected,
    job_id: str,
) -> tuple[Outcome, str | None]:
    """The line's outcome, and the provider batch that answered it (if one did). A line in a provider batch waits
    for it, cancelled or paused or not; one it answered is recorded with that answer, which was billed
    (``worker.venue.route``). Hands the job back (``arq.Retry``) when the line must wait."""
    venue_line = await _provider_holds(state, batch, job.ordinal)
    answered = venue_line is not None and venue_line.state == "answered"
    outcome: Outcome
    provider_batch: str | None = None
    if line.cancelled and not answered:
        outcome = Cancelled()
    elif line.paused is not None and not answered:  # no call until `producer resume`
        raise arq.Retry(defer=state.settings.pause_recheck_s)
    elif isinstance(parts, Rejected):
        outcome = parts  # too large for the API, or its bytes are gone: no call
    elif batch.spec.venue != "sync":
        outcome, provider_batch = await _venue_try(
            state, job, batch, account, found, held, parts, job_id, venue_line or LineVenue()
        )
    else:
        outcome = await _try(state, job, batch, account, found, held, parts)
    if isinstance(outcome, Rejected) and outcome.batch_wide and state.settings.pause_after_failures > 0:
        if provider_batch is not None:  # a provider batch's stale answer: after `resume`, a fresh call decides
            await state.venue.answer_failed(batch.keys, job.ordinal, why=outcome.error_type.value)
        await _batch_wide_failure(state, job, outcome)  # the line waits: hands the job back, records nothing
    return outcome, provider_batch


def _usable(found: Lookup | None, batch: LoadedBatch) -> CachedAnswer | None:
    """The cached answer this batch may take: one valid under its own schema (the strict schema, and so the
    fingerprint, is shared by schemas that differ only in what is checked locally); None for none."""
    if found is None or found.answer is None or not batch.validator.accepts_stored(found.answer.output):
        return None
    return found.answer


async def _provider_holds(state: WorkerState, batch: LoadedBatch, ordinal: int) -> LineVenue | None:
    """The line's state on the Batch API venue (None for a ``sync`` batch); parks the job while a provider batch
    holds the line."""
    if batch.spec.venue == "sync":
        return None
    held = await state.venue.line(batch.keys, ordinal)
    if held.state in ("staged", "sent"):
        raise arq.Retry(defer=PARK_S)
    return held


async def _venue_try(
    state: WorkerState,
    job: ExtractionJob,
    batch: LoadedBatch,
    account: JobAccount,
    found: Lookup | None,
    held: _Held,
    parts: tuple[Part, ...],
    job_id: str,
    venue_line: LineVenue,
) -> tuple[Outcome, str | None]:
    """A line of a batch on ``batch-api`` or ``auto``: the cache first (a cached answer costs nothing), then where
    ``route_line`` sends it: the provider batch's answer replayed, the line staged (the job parks), or a call now."""
    spec = batch.spec
    cached = _usable(found, batch)
    if cached is not None and venue_line.state != "answered":
        return cached, None
    request = first_request(spec, job.text, store=state.settings.store, cache_key=batch.prompt_key, parts=parts)
    tokens = state.estimator.estimate(request)[0]
    output = spec.params.max_output_tokens or state.settings.default_output_reserve
    try:
        route = await route_line(
            state.venue,
            batch,
            job.ordinal,
            job_id,
            adapter=state.adapter(spec.api),
            request=request,
            tokens=tokens,
            worst=worst_case(state.settings.price_for(spec.model, BATCH_TIER), tokens, output),
            known=venue_line,
        )
    except BudgetReachedError:  # the batch is paused on its budget: the line waits, unrecorded
        raise arq.Retry(defer=state.settings.pause_recheck_s) from None
    except BudgetHeldError as exc:  # the budget is held by lines in flight: the one policy says when to look again
        return await _decide(state, job, account, TryEnded(Ending.HELD, str(exc))), None
    if isinstance(route, Replay):
        outcome = await _try(state, job, batch, account, None, held, parts, replay=route.answer, counted=route.counted)
        return outcome, route.answer.provider_batch_id
    tier = "flex" if route.venue == "flex" else None
    return await _try(state, job, batch, account, found, held, parts, tier=tier), None


def _ready(
    batch: LoadedBatch, job: ExtractionJob, blobs: list[str], stored: list[bytes | None]
) -> tuple[Part, ...] | Rejected:
    """The line's attachments with the bytes of its stored blobs (``store.blobs``), or why it must not be sent: over
    the batch's input limits (the API would refuse it), or its bytes gone."""
    spec = batch.spec
    files = sum(attachment_tokens(spec.model, a, spec.image_detail) for a in job.attachments)
    too_large = batch.too_large(job.text, files)
    if too_large is not None:
        return Rejected(ErrorType.INPUT_TOO_LARGE, too_large)
    found = dict(zip(blobs, stored, strict=True))
    parts = []
    for attachment in job.attachments:
        data = found.get(attachment.ref) if attachment.source == "blob" else None
        if attachment.source == "blob" and data is None:
            return Rejected(
                ErrorType.INTERNAL_ERROR,
                f"the bytes of attachment {attachment.filename!r} are not in Redis (the batch completed while this "
                "line was being fed again); run `producer retry` for it",
            )
        parts.append(Part(attachment, data))
    return tuple(parts)


async def _try(
    state: WorkerState,
    job: ExtractionJob,
    batch: LoadedBatch,
    account: JobAccount,
    found: Lookup | None,
    held: _Held,
    parts: tuple[Part, ...],
    *,
    replay: Answer | None = None,
    counted: bool = False,
    tier: str | None = None,
) -> Outcome:
    """One try within the job's time limit; every ending without a final outcome goes through the one policy, but the
    batch's budget reached (the line waits for the batch to be resumed, unrecorded). ``replay``: the provider batch's
    answer to the try's first call (``counted``: its usage is in the line's account already, from an earlier try);
    ``tier``: the tier the venue chose (``flex``)."""
    limit_s = state.settings.job_timeout_s
    replaying = None
    if replay is not None:

        async def note_counted() -> None:
            await state.venue.mark_counted(batch.keys, job.ordinal)

        replaying = ReplayAdapter(state.adapter(batch.spec.api), replay, counted=counted, on_counted=note_counted)
    try:
        async with asyncio.timeout(limit_s):
            if replaying is not None:
                return await _attempt(state, job, batch, account, parts, replaying=replaying)
            return await _answer(state, job, batch, account, found, held, parts, tier=tier)
    except BudgetReachedError:  # the batch is paused on its budget: the line waits, unrecorded
        raise arq.Retry(defer=state.settings.pause_recheck_s) from None
    except Exception as exc:
        classified = classify(exc, job_timeout_s=state.settings.job_timeout_s, secrets=state.secrets)
        if isinstance(classified, TryEnded) and classified.ending is Ending.INTERNAL:
            log.warning(
                "line %d (%r) of batch %s: %s",
                job.line,
                job.custom_id,
                job.batch_id,
                classified.reason,
                exc_info=exc,
            )
        if replaying is not None and replaying.calls == 1 and isinstance(classified, TryEnded):
            # The provider batch's answer itself cannot be used (cut off well below the cap): the line goes on as
            # one its provider batch did not answer; a failed repair call is retried with the answer kept.
            await state.venue.answer_failed(batch.keys, job.ordinal, why=classified.ending.value)
        return classified if isinstance(classified, Rejected) else await _decide(state, job, account, classified)


@dataclass
class _Held:
    """The coalescing lease this try holds, if any (taken by the first lookup or after waiting for another job)."""

    lease: Lease | None


def classify(exc: Exception, *, job_timeout_s: float, secrets: tuple[str, ...]) -> Rejected | TryEnded:
    """The one place an exception from a try becomes a final failure or an ending for the policy (a failed call's
    facts are read by ``worker.classify``)."""
    if isinstance(exc, ApiCallError):
        verdict = classify_call_error(exc)
        outcome = verdict.final or verdict.ended
        assert outcome is not None
        return outcome
    if isinstance(exc, WaitingError):
        return TryEnded(Ending.WAITING, exc.reason, wait_s=exc.wait_s)
    if isinstance(exc, BudgetHeldError):
        return TryEnded(Ending.HELD, str(exc))
    if isinstance(exc, CutOffError):  # cut off well below the cap: billed, and another try may finish it
        return TryEnded(Ending.TRUNCATED, exc.reason)
    if isinstance(exc, TimeoutError):
        return TryEnded(Ending.TIMEOUT, f"the try ran past its {job_timeout_s:g}s limit")
    return TryEnded(Ending.INTERNAL, redact(f"{type(exc).__name__}: {exc}", secrets)[:500])


async def _decide(state: WorkerState, job: ExtractionJob, account: JobAccount, ended: TryEnded) -> Rejected:
    """Count the ending and ask the policy: hand the job back for later (raises ``arq.Retry``), or give up."""
    now_ms = int(time.time() * 1000)
    history = await account.note_ending(ended.ending, now_ms, capacity=ended.capacity)
    if history is None:  # the batch was deleted meanwhile: recording finds it gone and writes nothing
        return Rejected(ErrorType.INTERNAL_ERROR, "the batch was deleted", ended.status_code)
    decision = decide(state.limits, ended, history, now_ms=now_ms)
    if isinstance(decision, GiveUp):
        return Rejected(decision.error_type, decision.message, ended.status_code)
    if ended.ending not in (Ending.WAITING, Ending.HELD):
        REPEATS.warning(
            (job.batch_id, ended.ending, ended.status_code),
            time.monotonic(),
            "line %d (%r) of batch %s: %s; retrying in %.2fs",
            job.line,
            job.custom_id,
            job.batch_id,
            ended.reason,
            decision.delay_s,
        )
    raise arq.Retry(defer=decision.delay_s)


async def _batch_wide_failure(state: WorkerState, job: ExtractionJob, failure: Rejected) -> NoReturn:
    """A failure every line of the batch would meet: count it, pause the batch at the limit (``store.pause``), and
    hand this line back to the queue unrecorded, to run again after ``producer resume``."""
    limit = state.settings.pause_after_failures
    noted = await state.pauses.note_batch_wide(
        state.keys.batch(job.batch_id), failure.message, pause_after=limit, now_iso=now_iso()
    )
    if noted.paused_now:
        log.error(
            "batch %s paused: %d calls failed with %s (%s); fix it, then `producer resume %s` (or `producer cancel`)",
            job.batch_id,
            noted.failures,
            failure.error_type.value,
            failure.message,
            job.batch_id,
        )
    # Until the pause, a short wait: the next try either succeeds (a blip) or adds to the count.
    raise arq.Retry(defer=state.settings.pause_recheck_s if noted.failures >= limit else PAUSE_PENDING_RETRY_S)


async def _answer(
    state: WorkerState,
    job: ExtractionJob,
    batch: LoadedBatch,
    account: JobAccount,
    found: Lookup | None,
    held: _Held,
    parts: tuple[Part, ...],
    *,
    tier: str | None = None,
) -> Outcome:
    """The line's answer: from the cache, from an identical line in flight, or from the API. ``found`` is what the
    first lookup found (None: the batch does not use the cache)."""
    if found is None:
        return await _attempt(state, job, batch, account, parts, tier=tier)
    cached = _usable(found, batch)
    if cached is not None:
        return cached
    if held.lease is None:  # another job is calling the API for this document: wait for its answer
        wait_s = state.settings.admission_max_sleep_s
        gone = await state.coalescer.wait_for_owner(job.fingerprint, max_wait_s=wait_s)
        hit = await state.cache.get(job.fingerprint, batch.codec)
        if hit is not None and batch.validator.accepts_stored(hit.output):
            return hit
        held.lease = await state.coalescer.claim(job.fingerprint) if gone else None
        if held.lease is None:  # still someone else's call: come back later without holding the slot
            raise LineInFlightError(wait_s, "an identical line is being answered by another job")
    return await _attempt(state, job, batch, account, parts, tier=tier)


async def _attempt(
    state: WorkerState,
    job: ExtractionJob,
    batch: LoadedBatch,
    account: JobAccount,
    parts: tuple[Part, ...],
    *,
    tier: str | None = None,
    replaying: ReplayAdapter | None = None,
) -> Extracted | Rejected:
    """One try at the API (calls, validation, repairs). Errors propagate to ``_try``'s one handler. ``replaying``:
    the first call is answered by a provider batch (``worker.venue.lines``)."""
    settings, spec = state.settings, batch.spec
    fallback = _flex_fallback_due(spec, account)
    calls = JobCalls(
        state.admission,
        state.estimator,
        account,
        state.metrics,
        state.trip,
        api=spec.api,
        default_output_reserve=settings.default_output_reserve,
        price_of=lambda tier: settings.price_for(spec.model, tier),
        flex_fallback=fallback,
        counter=(lambda request: count_input_tokens(state.http, request)) if spec.count_tokens == "exact" else None,
    )
    request = first_request(
        spec,
        job.text,
        store=settings.store,
        cache_key=batch.prompt_key,
        parts=parts,
        service_tier="auto" if fallback else tier,
    )
    adapter: ApiAdapter = replaying if replaying is not None else state.adapter(spec.api)
    hooks: CallHooks = ReplayHooks(calls, replaying) if replaying is not None else calls
    return await extract_once(
        adapter,
        request,
        batch.validator,
        max_repairs=settings.max_repairs,
        hooks=hooks,
        context_window=context_window(spec.model, settings),
    )


def _flex_fallback_due(spec: BatchSpec, account: JobAccount) -> bool:
    """A flex line whose calls have been refused for capacity for ``--flex-fallback-after`` seconds goes as ``auto``."""
    since = account.flex_unavailable_since_ms
    if spec.service_tier != "flex" or spec.flex_fallback_after_s is None or since is None:
        return False
    return time.time() * 1000 - since >= spec.flex_fallback_after_s * 1000


async def _record(
    state: WorkerState,
    job: ExtractionJob,
    batch: LoadedBatch,
    account: JobAccount,
    outcome: Outcome,
    job_id: str,
    trip: RoundTrip,
    *,
    provider_batch: str | None = None,
    then: Callable[[RoundTrip], Awaitable[None]] | None = None,
) -> None:
    """Record the line as a step of ``trip``, with ``then``'s steps after it (the cache's pointer to the line and the
    lease release). ``provider_batch``: the provider batch whose answer the line was recorded with."""
    recorder = state.recorder
    common: dict[str, Any] = {
        "provider_batch_id": provider_batch,
        "custom_id": job.custom_id,
        "fingerprint": job.fingerprint,
        "totals": await account.totals(),
        "document": document_fingerprint(job.text, job.attachments),
    }
    if isinstance(outcome, Extracted):
        record = recorder.build(
            batch,
            status=Status.SUCCEEDED,
            output=outcome.output,
            response_id=outcome.reply.response_id,
            invalid_fields=outcome.invalid_fields,
            **common,
        )
    elif isinstance(outcome, CachedAnswer):
        record = recorder.build(
            batch,
            status=Status.SUCCEEDED,
            output=outcome.output,
            response_id=outcome.response_id,
            cache_hit=True,
            **common,
        )
    elif isinstance(outcome, Cancelled):
        record = recorder.build(batch, status=Status.CANCELLED, **common)
    else:
        record = recorder.build(
            batch,
            status=Status.FAILED,
            error=ErrorInfo(type=outcome.error_type, message=outcome.message, status_code=outcome.status_code),
            response_id=outcome.response_id,
            invalid_fields=outcome.invalid_fields,
            **common,
        )
        if outcome.error_type is ErrorType.INTERNAL_ERROR:
            log.error("line %d (%r) of batch %s failed: %s", job.line, job.custom_id, job.batch_id, outcome.message)
    done = recorder.queue(trip, batch, job.ordinal, record, job_id=job_id)
    if then is not None:
        await then(trip)
    # Shielded: a SIGTERM arriving now must not leave a paid answer unrecorded.
    await asyncio.shield(trip.run())
    recorded = done.value
    recorder.count(recorded, record)
    if recorded == 1:
        state.boundary.cleaned_up(job_id)  # the job left the queue with all arq keeps for it
    elif recorded < 0:
        log.warning("line %d of batch %s finished after the batch was deleted", job.line, job.batch_id)
