"""A batch's state as its record says (counters kept by the store's scripts), and the list of batches."""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from store.batches import BatchNotFoundError, BatchRecord, BatchStore, Footprint
from store.keys import Keys

__all__ = ["BatchNotFoundError", "BatchOverview", "batch_state", "list_batches", "read_status"]


async def read_status(redis: Redis, keys: Keys, batch_id: str) -> BatchRecord:
    """The batch's record; raises ``BatchNotFoundError`` for an unknown (or expired) batch."""
    return await BatchStore(redis, keys).get(batch_id)


def batch_state(record: BatchRecord, *, feeder_alive: bool) -> str:
    """One word for where a batch stands."""
    if record.complete:
        return "cancelled" if record.cancelled_at is not None else "complete"
    if record.cancelled_at is not None:
        return "cancelling"
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
    for record in await store.list(limit=limit):
        alive = await store.feeder_alive(record.batch_id)
        overviews.append(
            BatchOverview(
                record=record,
                state=batch_state(record, feeder_alive=alive),
                age_s=max(time.time() - record.created_ms / 1000, 0.0),
                footprint=await store.footprint(record.batch_id),
            )
        )
    return overviews
