"""Recording a line's final result: the one place in the worker that builds the result line from the batch, the line
and its account (``schemas.records.line_result``, priced at the tier that served it), records it once
(``store.results``) and counts it. The job (``worker.tasks``) and the job boundary (``worker.boundary``, for a job
that ended without recording its line) both record through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.records import CallTotals, line_result
from schemas.results import ResultRecord, Status
from schemas.settings import WorkerSettings
from store.keys import Keys
from store.results import ResultStore
from store.scripts import RoundTrip, Slot
from worker.batches import LoadedBatch
from worker.metrics import WorkerMetrics


@dataclass(frozen=True)
class LineRecorder:
    settings: WorkerSettings
    keys: Keys
    results: ResultStore
    metrics: WorkerMetrics

    def build(
        self,
        batch: LoadedBatch,
        *,
        custom_id: str,
        fingerprint: str,
        status: Status,
        totals: CallTotals,
        **outcome: Any,
    ) -> ResultRecord:
        """The line's result: ``outcome`` is what ``line_result`` takes besides (output, error, response id, ...)."""
        spec = batch.spec
        return line_result(
            spec,
            custom_id=custom_id,
            fingerprint=fingerprint,
            status=status,
            totals=totals,
            price=self.settings.price_for(spec.model, totals.service_tier),  # the tier that served it
            **outcome,
        )

    def queue(
        self, trip: RoundTrip, batch: LoadedBatch, ordinal: int, record: ResultRecord, *, job_id: str
    ) -> Slot[int]:
        """Record it as the last step of ``trip``: 1 recorded, 0 recorded already, -1 the batch is gone."""
        return self.results.queue_record(trip, batch.keys, self.keys.queue, ordinal, record, batch.codec, job_id=job_id)

    async def record(self, batch: LoadedBatch, ordinal: int, record: ResultRecord, *, job_id: str) -> int:
        """Record it in a round trip of its own (what :meth:`queue` answers)."""
        recorded = await self.results.record(batch.keys, self.keys.queue, ordinal, record, batch.codec, job_id=job_id)
        self.count(recorded, record)
        return recorded

    def count(self, recorded: int, record: ResultRecord) -> None:
        """The metrics of a line recorded now (nothing when it had been recorded already)."""
        if recorded == 1:
            self.metrics.jobs_finished.labels(record.status.value).inc()
            if record.cache_hit:
                self.metrics.cache_hits.inc()
