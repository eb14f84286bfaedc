"""The job boundary: a line whose job ended without recording it gets a ``failed`` result, never silence.

arq ends a job in ways our job function never sees (``worker.tasks`` lists them): its job key expired, its payload
could not be read, its try counter ran out, or an exception (or arq's own time limit) ended the function before it
recorded the line. ``worker.app.ExtractionWorker`` hands each of those to :meth:`JobBoundary.record_unfinished`
*before* arq cleans up after the job, so if recording fails too (Redis down), arq's clean-up fails with it and the
job stays in Redis to run again. The line, named by its arq job id, is recorded as ``internal_error`` with the
reason -- unless it was recorded already, or its batch is gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import orjson

from schemas.results import ErrorInfo, ErrorType, Status
from store.accounts import Accounts
from store.keys import Keys
from store.lines import LineIndex
from store.results import ResultStore
from worker.adapters.errors import redact
from worker.batches import BatchCache, BatchNotFoundError
from worker.recorder import LineRecorder

log = logging.getLogger("worker.boundary")


@dataclass
class JobBoundary:
    keys: Keys
    batches: BatchCache
    lines: LineIndex
    accounts: Accounts
    results: ResultStore
    recorder: LineRecorder
    secrets: tuple[str, ...]
    _ended: set[str] = field(default_factory=set)
    _exceptions: dict[str, str] = field(default_factory=dict)
    _cleaned_up: set[str] = field(default_factory=set)

    def ended_properly(self, job_id: str) -> None:
        """The job function returned: the line is recorded (or needed no record)."""
        self._ended.add(job_id)

    def cleaned_up(self, job_id: str) -> None:
        """Recording the line took its job off the queue with everything arq keeps for it (``store.queue``)."""
        self._cleaned_up.add(job_id)

    def take_cleaned_up(self, job_id: str) -> bool:
        """Whether nothing is left for arq's own clean-up of ``job_id`` (and forget it)."""
        if job_id in self._cleaned_up:
            self._cleaned_up.discard(job_id)
            return True
        return False

    def note_exception(self, job_id: str, exc: BaseException) -> None:
        """What ended the job function, for the reason arq's finish will not know."""
        self._exceptions[job_id] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__

    def take_exception(self, job_id: str) -> str | None:
        return self._exceptions.pop(job_id, None)

    def take_ended(self, job_id: str) -> bool:
        """Whether the job function returned for ``job_id`` (and forget it)."""
        if job_id in self._ended:
            self._ended.discard(job_id)
            return True
        return False

    async def record_unfinished(self, job_id: str, reason: str) -> bool:
        """Record the line of ``job_id`` as ``internal_error`` unless it has a result. True if it recorded."""
        parsed = self.keys.parse_job_id(job_id)
        if parsed is None:
            log.warning("job %r is not one of ours (%s); nothing to record", job_id, reason)
            return False
        batch_id, ordinal = parsed
        batch_keys = self.keys.batch(batch_id)
        line = await self.results.line_state(batch_keys, ordinal)
        if not line.batch_exists or line.recorded:
            return False
        try:
            batch = await self.batches.get(batch_id)
        except BatchNotFoundError:
            return False
        (indexed,) = await self.lines.read_at(batch_keys, [ordinal])
        account = await self.accounts.get(batch_keys, ordinal)
        message = redact(f"the job ended without a result: {reason}", self.secrets)[:500]
        record = self.recorder.build(
            batch,
            custom_id=indexed.custom_id,
            fingerprint=indexed.fingerprint,
            status=Status.FAILED,
            totals=account.totals,
            error=ErrorInfo(type=ErrorType.INTERNAL_ERROR, message=message),
        )
        recorded = await self.recorder.record(batch, ordinal, record, job_id=job_id)
        if recorded == 1:
            log.error(
                "line %d (%r) of batch %s: %s; recorded as internal_error",
                ordinal,
                indexed.custom_id,
                batch_id,
                message,
            )
        return recorded == 1


def failure_reason(result_data: bytes | None) -> str:
    """What arq says about a job it failed without running it (the ``r`` of its serialized result)."""
    if not result_data:
        return "arq failed the job"
    try:
        return str(orjson.loads(result_data).get("r") or "arq failed the job")
    except (orjson.JSONDecodeError, AttributeError):
        return "arq failed the job"
