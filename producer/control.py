"""``retry`` (re-run the failed lines), ``cancel`` (stop the rest), ``resume`` (go on after a pause) and ``delete``
(forget the batch) for a batch.

``retry`` needs the failed lines' text, which Redis no longer holds once a line is finished: it reads the input again
(the file recorded at submit, or another copy of it) and checks each line against the batch's index, so only the
documents the batch was submitted with are run again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from producer.attachments import Uploader
from producer.feeder import Feeder, FeedResult, ProgressHook
from producer.readers import LineSource
from schemas.pricing import ModelPrice
from schemas.records import line_result, now_iso
from schemas.results import Status
from store.accounts import Accounts
from store.batches import BatchStore
from store.blobs import BlobStore
from store.codec import ResultCodec
from store.feed import CancelItem, FeedStore
from store.keys import Keys
from store.lines import LineIndex
from store.pause import PauseStore, Resumed
from store.queue import batch_job_ids

CANCEL_ATTEMPTS = 5
"""A waiting line whose account changes while it is being cancelled (its job ran meanwhile) is tried again."""


class BatchCancelledError(RuntimeError):
    pass


async def resume(redis: Redis, keys: Keys, batch_id: str) -> Resumed:
    """Lift a batch's pause (``store.pause``) and wake its waiting lines now. Raises ``BatchNotFoundError``."""
    await BatchStore(redis, keys).get(batch_id)  # an unknown batch is an error, not a no-op
    return await PauseStore(redis, keys).resume(batch_id)


async def retry_failed(
    redis: Redis,
    keys: Keys,
    batch_id: str,
    source: LineSource,
    *,
    window: int,
    chunk: int = 1000,
    on_progress: ProgressHook | None = None,
    uploader: Uploader | None = None,
) -> FeedResult:
    """Re-enqueue every line whose latest result is ``failed`` (``enqueued`` of the result says how many).

    Their new results replace the failed ones in ``collect``'s output; the batch's token totals keep counting the
    failed attempts, which were billed.
    """
    record = await BatchStore(redis, keys).get(batch_id)
    if record.cancelled_at is not None:
        raise BatchCancelledError(f"batch {batch_id!r} was cancelled; its failed lines are not run again")
    feeder = Feeder(redis, keys, record, window=window, chunk=chunk, uploader=uploader)
    return await feeder.reopen_failed(source, on_progress=on_progress)


@dataclass(frozen=True)
class CancelResult:
    never_enqueued: int
    """Lines still waiting for the feeder: they end cancelled without ever being enqueued."""
    waiting: int
    """Lines taken off the queue and recorded cancelled."""


async def cancel(redis: Redis, keys: Keys, batch_id: str, *, price: ModelPrice | None) -> CancelResult:
    """Stop a batch: no more lines are fed, waiting ones are taken off the queue and recorded ``cancelled`` (with the
    usage their earlier tries were billed), and jobs picked up later see the flag. Running lines finish normally."""
    record = await BatchStore(redis, keys).get(batch_id)
    batch_keys = keys.batch(batch_id)
    feeds, accounts, index = FeedStore(redis, keys), Accounts(redis), LineIndex(redis)
    _newly, _cancel_from, never_enqueued = await feeds.begin_cancel(batch_keys, now_iso())
    codec = ResultCodec(record.spec.json_schema)
    waiting = 0
    async for job_ids in batch_job_ids(redis, keys, batch_id):
        by_ordinal = {Keys.job_ordinal(job_id): job_id for job_id in job_ids}
        for _ in range(CANCEL_ATTEMPTS):
            if not by_ordinal:
                break
            ordinals = sorted(by_ordinal)
            lines = await index.read_at(batch_keys, ordinals)
            items = [
                CancelItem(
                    job_id=by_ordinal[line.ordinal],
                    ordinal=line.ordinal,
                    account_version=account.version,
                    record=line_result(
                        record.spec,
                        custom_id=line.custom_id,
                        fingerprint=line.fingerprint,
                        status=Status.CANCELLED,
                        totals=account.totals,
                        price=price,
                    ),
                    codec=codec,
                )
                for line, account in zip(lines, await accounts.get_many(batch_keys, ordinals), strict=True)
            ]
            cancelled, stale = await feeds.cancel_waiting(batch_keys, items)
            waiting += cancelled
            by_ordinal = {ordinal: by_ordinal[ordinal] for ordinal in stale}
    return CancelResult(never_enqueued=never_enqueued, waiting=waiting)


@dataclass(frozen=True)
class Deleted:
    waiting: int
    """Jobs taken off the queue."""
    files_deleted: int = 0
    """Files uploaded for the batch (``--attach upload``) deleted at the provider."""
    files_left: tuple[str, ...] = ()
    """Uploaded files not deleted (no uploader given, or the provider refused): they expire on their own."""


async def delete(redis: Redis, keys: Keys, batch_id: str, *, uploader: Uploader | None = None) -> Deleted:
    """Remove every key of the batch and its waiting jobs, and the files uploaded for it (with ``uploader``)."""
    store = BatchStore(redis, keys)
    await store.get(batch_id)  # raises BatchNotFoundError for an unknown batch
    file_ids = sorted(set((await BlobStore(redis).all_uploaded(keys.batch(batch_id))).values()))
    deleted, left = 0, list(file_ids)
    if uploader is not None and file_ids:
        outcomes = await asyncio.gather(*(uploader.delete(f) for f in file_ids), return_exceptions=True)
        left = [f for f, ok in zip(file_ids, outcomes, strict=True) if isinstance(ok, BaseException)]
        deleted = len(file_ids) - len(left)
    return Deleted(await store.delete(batch_id), deleted, tuple(left))
