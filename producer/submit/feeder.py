"""Keep a batch's window of the queue full: enqueue its lines as earlier ones finish (``store.feed`` explains the
window and the cursor), and re-open failed lines for ``retry`` the same way.

The feeder reads the input again for the text of the lines it enqueues and checks each line against the batch's
line index first, so a line is only ever enqueued with the document the batch was submitted with. While it works it
refreshes the batch's feeder heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from producer.input.readers import InputLine, LineSource
from producer.submit.attachments import AttachmentStager, Uploader
from producer.submit.indexer import BatchExistsError, check_against_index
from schemas.attachments import Attachment
from schemas.jobs import ExtractionJob, Fingerprinter
from store.batches import BatchRecord
from store.feed import FeedAnswer, FeedCode, FeedState, FeedStore
from store.keys import BatchKeys, Keys
from store.lines import LineIndex, SlotStatus
from store.queue import job_payload, now_ms

HEARTBEAT_EVERY_S = 5.0
SLOT_SCAN = 10_000
"""Slots read per round trip when ``retry`` looks for failed lines."""


class BatchGoneError(BatchExistsError):
    """The batch was deleted (or expired) while it was being fed."""


@dataclass
class FeedResult:
    enqueued: int = 0
    """Jobs this call put on the queue."""
    fed: int = 0
    """The batch's feed cursor at the end: lines enqueued so far, by any feeder."""
    lines: int = 0
    cancelled: bool = False
    skipped: list[str] = field(default_factory=list)
    """Lines not re-opened, with the reason (retry: the input changed)."""


ProgressHook = Callable[[FeedState], None]


def job_payloads(
    batch_id: str,
    chunk: list[tuple[int, InputLine]],
    fingerprints: list[str],
    attachments: list[tuple[Attachment, ...]],
) -> list[bytes]:
    """The arq payload of each (ordinal, line): the only place the line's text goes into Redis. ``attachments`` are
    each line's as staged (``producer.submit.attachments``): references to bytes stored or uploaded already."""
    stamp = now_ms()
    return [
        job_payload(
            ExtractionJob(
                batch_id=batch_id,
                ordinal=ordinal,
                custom_id=line.custom_id,
                text=line.text,
                fingerprint=fingerprint,
                line=line.line,
                attachments=staged,
            ),
            stamp,
        )
        for (ordinal, line), fingerprint, staged in zip(chunk, fingerprints, attachments, strict=True)
    ]


class Feeder:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        record: BatchRecord,
        *,
        window: int,
        chunk: int = 1000,
        poll_s: float = 0.2,
        uploader: Uploader | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._record = record
        self._batch_keys: BatchKeys = keys.batch(record.batch_id)
        self._feeds = FeedStore(redis, keys)
        self._index = LineIndex(redis)
        self._window = window
        self._chunk = max(1, min(chunk, window))
        self._poll_s = poll_s
        self._fingerprint = Fingerprinter(record.spec)
        self._stager = AttachmentStager(redis, self._batch_keys, record.spec, uploader)

    # ------------------------------------------------------------------------------------------------- submit
    async def feed(self, source: LineSource, *, on_progress: ProgressHook | None = None) -> FeedResult:
        """Enqueue the batch's lines from its feed cursor until every line is enqueued (or the batch is cancelled).

        Run it inside ``feeding`` (``submit`` does) so that others can see the batch is being fed.
        """
        result = FeedResult(lines=self._record.lines)
        state = await self._state()
        upcoming = enumerate(source.lines(), start=source.first_ordinal)
        ready: list[tuple[int, InputLine]] = []  # read from the input, not enqueued yet
        while not (state.cancelled or state.fed >= state.lines):
            want = min(self._chunk, state.lines - state.fed)
            if self._window - state.queued < want:
                state = await self._wait(on_progress)
                continue
            ready = [(o, line) for o, line in ready if o >= state.fed]  # another feeder may have moved on
            while len(ready) < want:
                ordinal, line = next(upcoming, (-1, None))
                if line is None:
                    raise BatchExistsError(
                        f"the input has fewer lines than batch {self._record.batch_id!r} ({state.lines})"
                    )
                if ordinal >= state.fed:
                    ready.append((ordinal, line))
            chunk, ready = ready[:want], ready[want:]
            answer = await self._feeds.feed(self._batch_keys, state.fed, self._window, await self._jobs(chunk))
            if answer.code == FeedCode.DONE:
                result.enqueued += want
                state = FeedState(state.lines, state.indexed, answer.count, answer.queued, cancelled=False)
                if on_progress is not None:
                    on_progress(state)
            else:
                ready = chunk + ready
                self._refused(answer)
                state = await self._state()
        result.fed, result.cancelled = state.fed, state.cancelled
        return result

    async def _jobs(self, chunk: list[tuple[int, InputLine]]) -> list[tuple[str, bytes]]:
        """(first-generation job id, payload) per (ordinal, line), each line checked against the index first."""
        payloads = await self._payloads(chunk)
        return [(self._keys.job_id(self._record.batch_id, o), p) for (o, _), p in zip(chunk, payloads, strict=True)]

    async def _payloads(self, chunk: list[tuple[int, InputLine]]) -> list[bytes]:
        lines = [line for _, line in chunk]
        entries = [(self._fingerprint(line.text, line.described), line.custom_id) for line in lines]
        check_against_index(lines, entries, await self._index.read_at(self._batch_keys, [o for o, _ in chunk]))
        staged = await self._stager.stage(lines)
        return job_payloads(self._record.batch_id, chunk, [fp for fp, _ in entries], staged)

    # -------------------------------------------------------------------------------------------------- retry
    async def reopen_failed(self, source: LineSource, *, on_progress: ProgressHook | None = None) -> FeedResult:
        """Re-enqueue every line whose latest result is ``failed``, a window at a time, under fresh arq ids."""
        result = FeedResult(lines=self._record.lines)
        async with feeding(self._redis, self._keys, self._record.batch_id):
            batch: list[tuple[int, InputLine]] = []
            async for ordinal, line in self._failed_lines(source):
                batch.append((ordinal, line))
                if len(batch) >= self._chunk:
                    result.enqueued += await self._reopen(batch, result, on_progress)
                    batch = []
            if batch:
                result.enqueued += await self._reopen(batch, result, on_progress)
        return result

    async def _failed_lines(self, source: LineSource) -> AsyncIterator[tuple[int, InputLine]]:
        slots: list[SlotStatus] = []
        base = -SLOT_SCAN
        for ordinal, line in enumerate(source.lines(), start=source.first_ordinal):
            if ordinal >= self._record.indexed:
                return
            if ordinal >= base + SLOT_SCAN:
                base = ordinal
                slots = [s.status for s in await self._index.slots(self._batch_keys, base, SLOT_SCAN)]
            if slots[ordinal - base] is SlotStatus.FAILED:
                yield ordinal, line

    async def _reopen(
        self, batch: list[tuple[int, InputLine]], result: FeedResult, on_progress: ProgressHook | None
    ) -> int:
        payloads = await self._payloads(batch)
        pairs = [(ordinal, payload) for (ordinal, _), payload in zip(batch, payloads, strict=True)]
        while True:
            answer = await self._feeds.reopen(self._record.batch_id, self._window, pairs)
            if answer.code == FeedCode.DONE:
                return answer.count
            if answer.code == FeedCode.FULL:
                await self._wait(on_progress)
                continue
            self._refused(answer)
            result.cancelled = True
            return 0

    # ------------------------------------------------------------------------------------------------ helpers
    async def _state(self) -> FeedState:
        state = await self._feeds.state(self._batch_keys)
        if state is None:
            raise BatchGoneError(f"batch {self._record.batch_id!r} was deleted (or expired) while it was being fed")
        return state

    async def _wait(self, on_progress: ProgressHook | None) -> FeedState:
        await asyncio.sleep(self._poll_s)
        state = await self._state()
        if on_progress is not None:
            on_progress(state)
        return state

    def _refused(self, answer: FeedAnswer) -> None:
        if answer.code == FeedCode.GONE:
            raise BatchGoneError(f"batch {self._record.batch_id!r} was deleted (or expired) while it was being fed")
        if answer.code == FeedCode.NOT_INDEXED:
            raise BatchExistsError(f"batch {self._record.batch_id!r}: lines are fed before they are indexed")
        # MOVED, FULL, CANCELLED: the caller re-reads the state and decides.


@contextlib.asynccontextmanager
async def feeding(redis: Redis, keys: Keys, batch_id: str) -> AsyncIterator[None]:
    """This process is feeding the batch: refresh its feeder heartbeat until the block ends (``status``, ``wait``
    and ``collect --follow`` tell "being submitted" from "submit interrupted" by it)."""
    feeds, batch_keys = FeedStore(redis, keys), keys.batch(batch_id)
    owner = f"{socket.gethostname()}-{os.getpid()}"

    async def beat() -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY_S)
            await feeds.heartbeat(batch_keys, owner)

    await feeds.heartbeat(batch_keys, owner)  # before anyone is told the batch exists
    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(Exception):
            await feeds.release(batch_keys, owner)
