"""A batch's state as its record says (counters kept by the store's scripts), and the list of batches."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import ClassVar

from redis.asyncio import Redis

from producer.errors import EXIT_INCOMPLETE, EXIT_PAUSED, ProducerError
from schemas.registry import codec_for, load_schema_from_record
from store.batches import BatchNotFoundError, BatchRecord, BatchSnapshot, BatchStore, Footprint
from store.keys import Keys
from store.provider_batches import Part, ProviderBatchStore
from store.sink.state import SinkStore

__all__ = [
    "BatchNotFoundError",
    "BatchOverview",
    "BatchPausedError",
    "IncompleteSubmitError",
    "batch_state",
    "ensure_fed",
    "list_batches",
    "read_snapshot",
    "read_status",
]


class IncompleteSubmitError(ProducerError, RuntimeError):
    """Not every line of the batch is enqueued, and no submit is feeding it: it cannot complete by waiting."""

    exit_code: ClassVar[int] = EXIT_INCOMPLETE

    def __init__(self, record: BatchRecord) -> None:
        super().__init__(incomplete_message(record))
        self.record = record


class BatchPausedError(ProducerError, RuntimeError):
    """The batch paused on an error every line would meet (``store.pause``): waiting cannot finish it."""

    exit_code: ClassVar[int] = EXIT_PAUSED

    def __init__(self, record: BatchRecord) -> None:
        super().__init__(paused_message(record))
        self.record = record


def paused_message(record: BatchRecord) -> str:
    return (
        f"batch {record.batch_id} is paused ({record.pending:,} of {record.lines:,} lines waiting): {record.paused} "
        f"- fix it, then `producer resume {record.batch_id}` (or `producer cancel {record.batch_id}`)"
    )


def incomplete_message(record: BatchRecord) -> str:
    return (
        f"submit incomplete: {record.fed:,} of {record.lines:,} lines enqueued - rerun the same submit to finish "
        f"(batch {record.batch_id})"
    )


def ensure_fed(snapshot: BatchSnapshot) -> None:
    """Raise ``IncompleteSubmitError`` when the batch can only complete after its submit is run again. Decided on
    one :class:`BatchSnapshot` (record and feeder read at one instant), never on a record and a later look at the
    feeder: a feed that finished between the two would look abandoned."""
    if snapshot.interrupted:
        raise IncompleteSubmitError(snapshot.record)


async def read_status(redis: Redis, keys: Keys, batch_id: str) -> BatchRecord:
    """The batch's record; raises ``BatchNotFoundError`` for an unknown (or expired) batch."""
    return await BatchStore(redis, keys).get(batch_id)


async def read_snapshot(redis: Redis, keys: Keys, batch_id: str) -> BatchSnapshot:
    """The batch's record, its feeder and the live workers at one instant; raises ``BatchNotFoundError``."""
    return await BatchStore(redis, keys).snapshot(batch_id)


def batch_state(record: BatchRecord, *, feeder_alive: bool) -> str:
    """One word for where a batch stands."""
    if record.complete:
        return "cancelled" if record.cancelled_at is not None else "complete"
    if record.cancelled_at is not None:
        return "cancelling"
    if record.paused is not None:
        return "paused"
    if not record.sealed or not record.fully_fed:
        return "feeding" if feeder_alive else "interrupted"
    return "running"


@dataclass(frozen=True)
class BatchOverview:
    record: BatchRecord
    state: str
    age_s: float
    footprint: Footprint


async def list_batches(redis: Redis, keys: Keys, *, limit: int = 100) -> list[BatchOverview]:
    """The newest batches first, with their state, age and Redis footprint."""
    store = BatchStore(redis, keys)
    overviews = []
    for snapshot in await store.list(limit=limit):
        record = snapshot.record
        overviews.append(
            BatchOverview(
                record=record,
                state=batch_state(record, feeder_alive=snapshot.feeder_alive),
                age_s=max(time.time() - record.created_ms / 1000, 0.0),
                footprint=await store.footprint(record.batch_id),
            )
        )
    return overviews


@dataclass(frozen=True)
class VenueStatus:
    """A batch's lines on the Batch API venue: how many are in each state, and its provider batches (parts)."""

    venue: str
    deadline_at: float | None
    lines: dict[str, int]
    """``staged`` (for the next provider batch), ``sent`` (in one), ``answered`` (being recorded), ``resend`` (going
    on), ``sync`` (gone on synchronously); recorded lines have left these counts."""
    parts: list[Part]

    def to_json_dict(self) -> dict[str, object]:
        return {
            "venue": self.venue,
            "deadline_at": self.deadline_at,
            "lines": self.lines,
            "provider_batches": [
                {
                    "part": p.number,
                    "provider_batch_id": p.provider_batch_id,
                    "state": p.state,
                    "status": p.status,
                    "lines": p.lines,
                    "counts": p.counts,
                    "answered": p.answered,
                    "sent_on": p.resent,
                    "missing": p.missing,
                    "error": p.error,
                }
                for p in self.parts
            ],
        }


async def read_venue(redis: Redis, keys: Keys, record: BatchRecord) -> VenueStatus | None:
    """The batch's Batch API venue state (None for a ``sync`` batch)."""
    if record.spec.venue == "sync":
        return None
    store, batch_keys = ProviderBatchStore(redis, keys), keys.batch(record.batch_id)
    return VenueStatus(
        record.spec.venue, record.spec.deadline_at, await store.line_states(batch_keys), await store.parts(batch_keys)
    )


@dataclass(frozen=True)
class SinkStatus:
    """Where a batch's results sink stands: lines written to parts, lines still waiting in Redis, its last error."""

    url: str
    format: str
    parts: int
    rows: int
    waiting: int
    """Results recorded and not written to a part yet (still in Redis)."""
    stale: int
    complete: bool
    error: str | None
    error_at: float | None

    def to_json_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


async def read_sink(redis: Redis, keys: Keys, record: BatchRecord) -> SinkStatus | None:
    """The batch's results sink state (None without ``--results``)."""
    sink = record.spec.results
    if sink is None:
        return None
    batch_keys = keys.batch(record.batch_id)
    state = await SinkStore(redis, keys).state(batch_keys)
    waiting = await SinkStore(redis, keys).waiting(batch_keys)
    return SinkStatus(
        url=f"{sink.url}/{record.batch_id}",
        format=sink.format,
        parts=len(state.parts),
        rows=state.rows,
        waiting=waiting,
        stale=len(state.stale),
        complete=state.done,
        error=state.error,
        error_at=state.error_at,
    )


def schema_warnings(record: BatchRecord) -> list[str]:
    """The lossy steps of the batch's schema conversion (``schemas.codec``): each place and what is checked locally
    instead, as ``submit`` warned of them. Rebuilt from the record (no module is imported: a pydantic ref is
    rebuilt from its recorded JSON Schema); empty for a schema converted without loss, or recorded before codecs."""
    spec = record.spec
    schema = load_schema_from_record(spec.schema_ref, spec.json_schema, spec.source_schema, name=spec.schema_name)
    codec = codec_for(schema)
    return codec.warnings() if codec is not None else []
