"""``retry`` (re-run the failed lines), ``cancel`` (stop the rest), ``resume`` (go on after a pause), ``budget`` (set
it) and ``delete`` (forget the batch) for a batch.

A batch's shadow (``producer.submit.shadow``) is part of it for ``cancel`` and ``budget``: cancelling the batch cancels
the shadow (or, not recorded yet, keeps it from being made), and a budget set on the batch is split with the shadow.

``retry`` needs the failed lines' text, which Redis no longer holds once a line is finished: it reads the input again
(the file recorded at submit, or another copy of it) and checks each line against the batch's index, so only the
documents the batch was submitted with are run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import openai
from redis.asyncio import Redis

from producer.errors import BatchStateError, InputError
from producer.input.readers import LineSource
from producer.submit.attachments import Uploader
from producer.submit.feeder import Feeder, FeedResult, ProgressHook
from schemas.pricing import ModelPrice
from schemas.records import line_result, now_iso
from schemas.results import Status
from store.accounts import Accounts
from store.batches import BatchNotFoundError, BatchRecord, BatchStore
from store.budget import BudgetStore, Shares
from store.codec import ResultCodec
from store.feed import CancelItem, FeedStore
from store.keys import Keys
from store.lines import LineIndex
from store.pause import PauseStore, Resumed
from store.provider_batches import ProviderBatchStore
from store.queue import batch_job_ids
from store.uploads import BatchFiles, Intent, Swept, UploadStore, delete_files

CANCEL_ATTEMPTS = 5
"""A waiting line whose account changes while it is being cancelled (its job ran meanwhile) is tried again."""


class BatchCancelledError(BatchStateError, RuntimeError):
    pass


class ShadowBudgetError(InputError, ValueError):
    """A shadow batch's budget is a part of its main batch's: it is set there."""


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
    shadow: ShadowCancelled | None = None
    """The batch's shadow batch, cancelled with it (None: the batch has no shadow)."""
    at_provider: int = 0
    """Lines in provider batches (the Batch API venue): their provider batches are cancelled by the workers; what
    they answered before is recorded (it was billed), the rest ends cancelled."""


@dataclass(frozen=True)
class ShadowCancelled:
    batch_id: str
    result: CancelResult | None
    """None: the shadow was not recorded yet, and now never will be (its creation checks the main batch)."""


async def cancel(
    redis: Redis,
    keys: Keys,
    batch_id: str,
    *,
    price: ModelPrice | None,
    price_of: Callable[[str], ModelPrice | None] | None = None,
) -> CancelResult:
    """Stop a batch: no more lines are fed, waiting ones are taken off the queue and recorded ``cancelled`` (with the
    usage their earlier tries were billed), and jobs picked up later see the flag. Running lines finish normally.

    Its shadow batch is cancelled too (its lines priced by ``price_of`` its model). The batch's feed is closed first
    and the shadow looked up after: a shadow recorded later is refused by ``store.batches.CREATE``."""
    store, feeds = BatchStore(redis, keys), FeedStore(redis, keys)
    record = await store.get(batch_id)
    _newly, _cancel_from, never_enqueued = await feeds.begin_cancel(keys.batch(batch_id), now_iso())
    shadow_id = record.spec.shadow
    shadow = await _record_or_none(store, shadow_id) if shadow_id is not None else None
    shadow_unfed = 0
    if shadow is not None:  # closed before either queue is walked: no shadow line starts meanwhile
        _newly, _cancel_from, shadow_unfed = await feeds.begin_cancel(keys.batch(shadow.batch_id), now_iso())
    waiting, at_provider = await _cancel_waiting(redis, keys, record, price)
    result = CancelResult(never_enqueued, waiting, at_provider=at_provider)
    if shadow_id is None:
        return result
    if shadow is None:
        return dataclasses.replace(result, shadow=ShadowCancelled(shadow_id, None))
    shadow_price = price_of(shadow.spec.model) if price_of is not None else None
    shadow_waiting, shadow_at_provider = await _cancel_waiting(redis, keys, shadow, shadow_price)
    cancelled = CancelResult(shadow_unfed, shadow_waiting, at_provider=shadow_at_provider)
    return dataclasses.replace(result, shadow=ShadowCancelled(shadow_id, cancelled))


async def _cancel_waiting(redis: Redis, keys: Keys, record: BatchRecord, price: ModelPrice | None) -> tuple[int, int]:
    """Take the batch's waiting jobs off the queue and record their lines cancelled (its feed is closed already);
    lines held by a provider batch are left to their jobs. Returns (cancelled, left to the provider batches)."""
    batch_keys = keys.batch(record.batch_id)
    feeds, accounts, index = FeedStore(redis, keys), Accounts(redis), LineIndex(redis)
    venue = ProviderBatchStore(redis, keys)
    codec = ResultCodec(record.spec.json_schema)
    waiting = at_provider = 0
    async for job_ids in batch_job_ids(redis, keys, record.batch_id):
        by_ordinal = {Keys.job_ordinal(job_id): job_id for job_id in job_ids}
        if record.spec.venue != "sync":
            held = await venue.at_provider(batch_keys, sorted(by_ordinal))
            at_provider += len(held)
            by_ordinal = {ordinal: job for ordinal, job in by_ordinal.items() if ordinal not in held}
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
    return waiting, at_provider


@dataclass(frozen=True)
class BudgetChange:
    """What ``set_budget`` did to one batch."""

    record: BatchRecord
    """As it is now (its ``budget`` is its part)."""
    lifted: str | None
    """The budget pause it lifted (None: it was not paused by its budget)."""
    rescheduled: int
    """Waiting lines made due now (a lifted pause)."""


@dataclass(frozen=True)
class BudgetSet:
    main: BudgetChange
    shadow_id: str | None
    """The batch's shadow batch, if it has one."""
    shadow: BudgetChange | None
    """None: no shadow, or not recorded yet (it takes its part when it is)."""


async def set_budget(redis: Redis, keys: Keys, batch_id: str, *, usd: float | None, tokens: int | None) -> BudgetSet:
    """Set a batch's budgets (0 removes one; None leaves it) and resume it if its budget had paused it.

    A batch with a shadow: the budgets are for the two together, split by the shares recorded at submit
    (``store.budget``), and both are resumed. A shadow batch's own budget is refused (``ShadowBudgetError``)."""
    store, budgets = BatchStore(redis, keys), BudgetStore(redis)
    record = await store.get(batch_id)
    if record.spec.shadow_of is not None:
        main = record.spec.shadow_of
        raise ShadowBudgetError(
            f"{batch_id} is the shadow of {main}: its budget is a part of {main}'s (set it with producer budget {main})"
        )
    shadow_id = record.spec.shadow
    shadow = await _record_or_none(store, shadow_id) if shadow_id is not None else None
    if shadow_id is None or (record.budget_split is None and shadow is None):
        lifted = await budgets.set(keys.batch(batch_id), usd=usd, tokens=tokens)
        if lifted == -1:
            raise BatchNotFoundError(f"batch {batch_id!r} is gone")
        changed = await _budget_change(redis, keys, batch_id, lifted if isinstance(lifted, str) else None)
        return BudgetSet(changed, shadow_id, None)
    split = record.budget_split
    if split is not None:
        shares = Shares(split.shadow_share_usd, split.shadow_share_tokens)
    else:  # a batch submitted before budgets covered its shadow: split by lines, as well as the records tell
        share = shadow.lines / (shadow.lines + record.lines) if shadow is not None else 0.0
        shares = Shares(share, share)
    done = await budgets.split(keys.batch(batch_id), keys.batch(shadow_id), usd=usd, tokens=tokens, shares=shares)
    if done is None:
        raise BatchNotFoundError(f"batch {batch_id!r} is gone")
    changed = await _budget_change(redis, keys, batch_id, done.main)
    if shadow is None:
        return BudgetSet(changed, shadow_id, None)
    return BudgetSet(changed, shadow_id, await _budget_change(redis, keys, shadow_id, done.shadow))


async def _record_or_none(store: BatchStore, batch_id: str) -> BatchRecord | None:
    try:
        return await store.get(batch_id)
    except BatchNotFoundError:
        return None


async def _budget_change(redis: Redis, keys: Keys, batch_id: str, lifted: str | None) -> BudgetChange:
    rescheduled = (await resume(redis, keys, batch_id)).rescheduled if lifted is not None else 0
    return BudgetChange(await BatchStore(redis, keys).get(batch_id), lifted, rescheduled)


@dataclass(frozen=True)
class Deleted:
    waiting: int
    """Jobs taken off the queue."""
    files_deleted: int = 0
    """Files uploaded for the batch (``--attach upload``) deleted at the provider, those of interrupted uploads too."""
    files_left: tuple[str, ...] = ()
    """Uploaded files not deleted (no uploader given, or the provider refused): a worker's uploads sweep deletes them
    (``worker.uploads_sweep``); they expire 30 days after upload in any case."""
    uploads_unsettled: int = 0
    """Interrupted uploads that may still land (or whose lookup fell short): the uploads sweep looks again."""
    provider_batches_cancelled: int = 0
    """Provider batches of the batch still in flight (the Batch API venue), cancelled at the provider."""


DELETE_PASS = 1000
"""Files (and interrupted uploads) handled per pass over the batch's files set."""


async def delete(redis: Redis, keys: Keys, batch_id: str, *, uploader: Uploader | None = None) -> Deleted:
    """Remove every key of the batch and its waiting jobs, and the files uploaded for it (with ``uploader``).

    Every upload is in the batch's files set (``store.uploads``) before the keys go, so what is not deleted here -- no
    ``uploader``, a provider error, an interrupted upload that may still land -- is left to the worker's uploads sweep.
    """
    store = BatchStore(redis, keys)
    record = await store.get(batch_id)  # raises BatchNotFoundError for an unknown batch
    provider_files = await _provider_batch_files(redis, keys, batch_id, uploader)
    uploads = UploadStore(redis, keys)
    files = BatchFiles(batch_id, record.created_ms)
    await uploads.track_hash(files)
    waiting = await store.delete(batch_id)
    await uploads.defer(files, 0)  # gone now: whatever is not deleted below is the sweep's at once
    if uploader is None:
        return Deleted(waiting, files_left=(*await _file_ids(uploads, files), *provider_files.left))
    swept, cursor = Swept(), 0
    while True:
        part = await delete_files(uploads, files, uploader, cursor=cursor, max_members=DELETE_PASS)
        swept.add(part)
        cursor = part.cursor
        if cursor == 0:
            break
    return Deleted(
        waiting,
        swept.deleted + swept.gone + provider_files.deleted,
        (*swept.failed, *provider_files.left),
        swept.open_intents,
        provider_batches_cancelled=provider_files.cancelled,
    )


@dataclass
class _ProviderFiles:
    cancelled: int = 0
    deleted: int = 0
    left: list[str] = dataclasses.field(default_factory=list)


async def _provider_batch_files(redis: Redis, keys: Keys, batch_id: str, uploader: Uploader | None) -> _ProviderFiles:
    """The batch's provider batches (the Batch API venue): those in flight cancelled, every file they made deleted
    (their input, output and error files), before the batch's keys go. Without ``uploader`` (no API key) their ids
    are returned as left: they expire at the provider after 30 days."""
    done = _ProviderFiles()
    for part in await ProviderBatchStore(redis, keys).parts(keys.batch(batch_id)):
        files = [
            f for f in (part.input_file_id, part.output_file_id, part.error_file_id) if f and not part.files_deleted
        ]
        if uploader is None:
            done.left += files
            continue
        if part.provider_batch_id and part.state in ("creating", "sent"):
            with contextlib.suppress(openai.APIError):
                await uploader.client.batches.cancel(part.provider_batch_id)
                done.cancelled += 1
        for file_id in files:
            try:
                await uploader.delete(file_id)
                done.deleted += 1
            except openai.APIError:
                done.left.append(file_id)
    return done


async def _file_ids(uploads: UploadStore, files: BatchFiles) -> list[str]:
    found: set[str] = set()
    cursor = -1
    while cursor != 0:
        cursor, members = await uploads.members(files, cursor=max(cursor, 0))
        found.update(m for m in members if Intent.parse(m) is None)
    return sorted(found)
