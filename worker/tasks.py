"""The arq job: one input line from queue to recorded result. Orchestration only.

Ending of a try, and what happens:

- validated output, refusal, truncation, invalid after repairs, 4xx → result recorded (succeeded / failed);
- 429, 5xx, timeout, connection error → ``arq.Retry`` with backoff, until the error budget (``max_tries``) or the
  retry horizon is spent, then ``retries_exhausted`` (or ``timeout``) is recorded, so no line is left without a result;
- admission further away than ``admission_max_sleep_s`` → ``arq.Retry`` deferred until then, which frees the worker
  slot and does not count as an error;
- the line already recorded (the job ran twice) → nothing;
- a cached answer for the fingerprint → recorded as a cache hit, no call; an identical line in flight → wait for it
  (or come back later) and take its answer;
- the batch cancelled → recorded ``cancelled``, no call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import arq

from schemas.jobs import ExtractionJob
from schemas.records import line_result
from schemas.results import ErrorInfo, ErrorType, Status
from schemas.settings import Settings
from worker.account import JobAccount
from worker.adapters.base import PermanentApiError, TransientApiError
from worker.admission import AdmissionDeferredError
from worker.batches import BatchNotFoundError, LoadedBatch
from worker.cache import CachedAnswer
from worker.calls import JobCalls
from worker.extraction import Extracted, Rejected, extract_once
from worker.prompt import first_request
from worker.retry import backoff_delay
from worker.state import WorkerState

log = logging.getLogger("worker.tasks")


class Cancelled:
    """The batch was cancelled before this line started."""


Outcome = Extracted | Rejected | CachedAnswer | Cancelled


async def extract(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """arq entry point. ``payload`` is an ``ExtractionJob`` as a JSON object."""
    state: WorkerState = ctx["state"]
    job = ExtractionJob.model_validate(payload)
    job_try: int = ctx.get("job_try", 1)
    job_id: str = ctx.get("job_id") or state.keys.job_id(job.batch_id, job.ordinal)
    state.metrics.jobs_in_flight.inc()
    try:
        return await run_job(state, job, job_try, job_id)
    finally:
        state.metrics.jobs_in_flight.dec()


async def run_job(state: WorkerState, job: ExtractionJob, job_try: int, job_id: str) -> str:
    """One try of one line, as arq job ``job_id`` (which leaves the queue when the line is recorded)."""
    line = await state.results.line_state(state.keys.batch(job.batch_id), job.ordinal)
    if not line.batch_exists:
        log.warning("dropping line %d of batch %s: the batch was deleted or has expired", job.ordinal, job.batch_id)
        return "batch-missing"
    if line.recorded:
        return "already-recorded"
    try:
        batch = await state.batches.get(job.batch_id)
    except BatchNotFoundError:
        log.warning("dropping line %d of batch %s: the batch was deleted", job.ordinal, job.batch_id)
        return "batch-missing"
    account = JobAccount(state.accounts, batch.keys, job.ordinal)
    cancelled = line.cancelled
    if cancelled:
        outcome: Outcome = Cancelled()
    elif batch.spec.use_cache and state.cache.enabled:
        outcome = await _cached_or_coalesced(state, job, batch, account, job_try)
    else:
        outcome = await _attempt(state, job, batch, account, job_try)
    await _record(state, job, batch, account, outcome, job_id)
    return outcome.__class__.__name__.lower()


async def _cached_or_coalesced(
    state: WorkerState, job: ExtractionJob, batch: LoadedBatch, account: JobAccount, job_try: int
) -> Outcome:
    """A cached answer if there is one; else wait for an identical job in flight; else call the API ourselves."""
    hit = await state.cache.get(job.fingerprint, batch.codec)
    if hit is not None:
        return hit
    lease = await state.coalescer.claim(job.fingerprint)
    if lease is None:
        gone = await state.coalescer.wait_for_owner(job.fingerprint, max_wait_s=state.settings.admission_max_sleep_s)
        hit = await state.cache.get(job.fingerprint, batch.codec)
        if hit is not None:
            return hit
        lease = await state.coalescer.claim(job.fingerprint) if gone else None
        if lease is None:
            # Still someone else's call: come back later without holding the slot (not an error).
            if job_try < arq_max_tries(state.settings):
                raise arq.Retry(defer=state.settings.admission_max_sleep_s)
            return Rejected(ErrorType.RETRIES_EXHAUSTED, f"an identical line stayed in flight for {job_try} tries")
    try:
        outcome = await _attempt(state, job, batch, account, job_try)
        if isinstance(outcome, Extracted):
            # Cache before the lease goes, so the jobs waiting on it find the answer.
            answer = CachedAnswer(outcome.output, outcome.reply.response_id, job.batch_id, job.custom_id)
            await state.cache.put(job.fingerprint, answer, batch.codec)
        return outcome
    finally:
        await lease.release()


async def _attempt(
    state: WorkerState, job: ExtractionJob, batch: LoadedBatch, account: JobAccount, job_try: int
) -> Extracted | Rejected:
    """One try at the API. Raises ``arq.Retry`` for transient errors and long admission waits."""
    settings = state.settings
    calls = JobCalls(
        state.admission,
        state.estimator,
        account,
        state.metrics,
        api=batch.spec.api,
        default_output_reserve=settings.default_output_reserve,
    )
    try:
        async with asyncio.timeout(settings.job_timeout_s):
            return await extract_once(
                state.adapter(batch.spec.api),
                first_request(batch.spec, job.text, store=settings.store),
                batch.validator,
                max_repairs=settings.max_repairs,
                hooks=calls,
            )
    except AdmissionDeferredError as exc:
        # Waiting for the shared rate limit is not an error: it does not use up the error budget, only arq's
        # try counter, which allows max_tries + max_deferrals starts.
        if job_try < arq_max_tries(settings):
            raise arq.Retry(defer=exc.wait_s) from None
        return Rejected(ErrorType.RETRIES_EXHAUSTED, f"still waiting for admission after {job_try} deferrals")
    except PermanentApiError as exc:
        return Rejected(exc.error_type, exc.message, exc.status_code)
    except (TransientApiError, TimeoutError) as exc:
        return await _transient(state, job, job_try, account, exc)


def arq_max_tries(settings: Settings) -> int:
    return settings.max_tries + settings.max_deferrals


async def _transient(
    state: WorkerState, job: ExtractionJob, job_try: int, account: JobAccount, exc: TransientApiError | TimeoutError
) -> Rejected:
    """Retry later (raises ``arq.Retry``), or give up once the error budget or the retry horizon is spent."""
    settings = state.settings
    now_ms = int(time.time() * 1000)
    # A 429 is the provider pacing us, not the job failing: it does not count against max_tries (admission and the
    # shared cool-down handle it); the retry horizon still bounds it.
    rate_limited = isinstance(exc, TransientApiError) and exc.rate_limited
    errors, first_error_ms = await account.note_transient_error(now_ms, count=not rate_limited)
    horizon_spent = now_ms - first_error_ms >= settings.retry_horizon_s * 1000
    if isinstance(exc, TimeoutError):
        reason, retry_after, status = f"the try ran past its {settings.job_timeout_s:g}s limit", None, None
    else:
        reason, retry_after, status = exc.message, exc.retry_after_s, exc.status_code
    if errors < settings.max_tries and not horizon_spent and job_try < arq_max_tries(settings):
        raise _retry(state, job, max(errors, 1), reason, retry_after)
    timed_out = isinstance(exc, TimeoutError) or (
        isinstance(exc, TransientApiError) and exc.error_type is ErrorType.TIMEOUT
    )
    return Rejected(
        ErrorType.TIMEOUT if timed_out else ErrorType.RETRIES_EXHAUSTED,
        f"gave up after {errors} failed tries over {(now_ms - first_error_ms) / 1000:.1f}s; last error: {reason}",
        status,
    )


def _retry(state: WorkerState, job: ExtractionJob, errors: int, reason: str, retry_after_s: float | None) -> arq.Retry:
    settings = state.settings
    delay = backoff_delay(
        errors, base_s=settings.backoff_base_s, cap_s=settings.backoff_cap_s, retry_after_s=retry_after_s
    )
    log.warning(
        "line %s of batch %s: %s (error %d); retrying in %.2fs", job.custom_id, job.batch_id, reason, errors, delay
    )
    return arq.Retry(defer=delay)


async def _record(
    state: WorkerState, job: ExtractionJob, batch: LoadedBatch, account: JobAccount, outcome: Outcome, job_id: str
) -> None:
    totals = await account.totals()
    common: dict[str, Any] = {
        "custom_id": job.custom_id,
        "fingerprint": job.fingerprint,
        "totals": totals,
        "price": state.settings.price_for(batch.spec.model),
    }
    if isinstance(outcome, Extracted):
        record = line_result(
            batch.spec, status=Status.SUCCEEDED, output=outcome.output, response_id=outcome.reply.response_id, **common
        )
    elif isinstance(outcome, CachedAnswer):
        record = line_result(
            batch.spec,
            status=Status.SUCCEEDED,
            output=outcome.output,
            response_id=outcome.response_id,
            cache_hit=True,
            **common,
        )
    elif isinstance(outcome, Cancelled):
        record = line_result(batch.spec, status=Status.CANCELLED, **common)
    else:
        record = line_result(
            batch.spec,
            status=Status.FAILED,
            error=ErrorInfo(type=outcome.error_type, message=outcome.message, status_code=outcome.status_code),
            response_id=outcome.response_id,
            **common,
        )
    # Shielded: a SIGTERM arriving now must not leave a paid answer unrecorded.
    recorded = await asyncio.shield(
        state.results.record(batch.keys, state.keys.queue, job.ordinal, record, batch.codec, job_id=job_id)
    )
    if recorded == 1:
        state.metrics.jobs_finished.labels(record.status.value).inc()
        if record.cache_hit:
            state.metrics.cache_hits.inc()
    elif recorded < 0:
        log.warning("line %d of batch %s finished after the batch was deleted", job.ordinal, job.batch_id)
