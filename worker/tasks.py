"""The arq job: one input line from queue to recorded result. Orchestration only.

Ending of a try, and what happens:

- validated output, refusal, truncation, invalid after repairs, 4xx → result recorded (succeeded / failed);
- 429, 5xx, timeout, connection error → ``arq.Retry`` with backoff, until the last try, which records
  ``retries_exhausted`` (or ``timeout``) instead, so no line is left without a result;
- the line already recorded (the job ran twice) → nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import arq

from schemas.jobs import ExtractionJob
from schemas.results import ErrorInfo, ErrorType, ResultRecord, Status
from worker.account import JobAccount
from worker.adapters.base import PermanentApiError, TransientApiError
from worker.batches import BatchNotFoundError, LoadedBatch
from worker.extraction import Extracted, Rejected, extract_once
from worker.pricing import cost_usd
from worker.prompt import first_request
from worker.retry import backoff_delay
from worker.state import WorkerState

log = logging.getLogger("worker.tasks")


async def extract(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
    """arq entry point. ``payload`` is an ``ExtractionJob`` as a JSON object."""
    state: WorkerState = ctx["state"]
    job = ExtractionJob.model_validate(payload)
    job_try: int = ctx.get("job_try", 1)
    return await run_job(state, job, job_try)


async def run_job(state: WorkerState, job: ExtractionJob, job_try: int) -> str:
    if await state.recorder.is_recorded(job.batch_id, job.custom_id):
        return "already-recorded"
    try:
        batch = await state.batches.get(job.batch_id)
    except BatchNotFoundError:
        log.error("dropping job %s: its batch record is gone", job.custom_id)
        return "batch-missing"

    account = JobAccount(state.redis, state.keys.job_usage(job.batch_id, job.custom_id))
    last_try = job_try >= state.settings.max_tries
    try:
        async with asyncio.timeout(state.settings.job_timeout_s):
            outcome = await extract_once(
                state.adapter(batch.spec.api),
                first_request(batch.spec, job.text, store=state.settings.store),
                batch.validator,
                max_repairs=state.settings.max_repairs,
                on_call=account.add_call,
            )
    except PermanentApiError as exc:
        outcome = Rejected(exc.error_type, exc.message, exc.status_code)
    except TransientApiError as exc:
        if not last_try:
            raise _retry(state, job, job_try, exc.message, exc.retry_after_s) from None
        outcome = Rejected(
            exc.error_type if exc.error_type is ErrorType.TIMEOUT else ErrorType.RETRIES_EXHAUSTED,
            f"gave up after {job_try} tries; last error: {exc.message}",
            exc.status_code,
        )
    except TimeoutError:
        if not last_try:
            raise _retry(state, job, job_try, "job time limit reached", None) from None
        outcome = Rejected(ErrorType.TIMEOUT, f"the job ran past its {state.settings.job_timeout_s:g}s limit")

    await _record(state, job, batch, account, outcome)
    return outcome.__class__.__name__.lower()


def _retry(state: WorkerState, job: ExtractionJob, job_try: int, reason: str, retry_after_s: float | None) -> arq.Retry:
    delay = backoff_delay(
        job_try, base_s=state.settings.backoff_base_s, cap_s=state.settings.backoff_cap_s, retry_after_s=retry_after_s
    )
    log.warning(
        "line %s of batch %s: try %d failed (%s); retrying in %.2fs",
        job.custom_id,
        job.batch_id,
        job_try,
        reason,
        delay,
    )
    return arq.Retry(defer=delay)


async def _record(
    state: WorkerState, job: ExtractionJob, batch: LoadedBatch, account: JobAccount, outcome: Extracted | Rejected
) -> None:
    totals = await account.totals()
    spec = batch.spec
    common: dict[str, Any] = {
        "custom_id": job.custom_id,
        "batch_id": job.batch_id,
        "api": spec.api,
        "model": spec.model,
        "schema": spec.schema_ref,
        "fingerprint": job.fingerprint,
        "usage": totals.usage,
        "cost_usd": cost_usd(totals.usage, state.settings.price_for(spec.model)),
        "attempts": totals.attempts,
        "repairs": totals.repairs,
        "latency_ms": totals.latency_ms,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    if isinstance(outcome, Extracted):
        record = ResultRecord(
            status=Status.SUCCEEDED, output=outcome.output, response_id=outcome.reply.response_id, **common
        )
    else:
        record = ResultRecord(
            status=Status.FAILED,
            error=ErrorInfo(type=outcome.error_type, message=outcome.message, status_code=outcome.status_code),
            response_id=outcome.response_id or totals.last_response_id,
            **common,
        )
    # Shielded: a SIGTERM arriving now must not leave a paid answer unrecorded.
    await asyncio.shield(state.recorder.record(record))
