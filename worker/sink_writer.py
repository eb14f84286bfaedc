"""The sink writer: the background task on every worker that moves finished result lines out of Redis into parts.

Each run (every ``sink_tick_s``) claims batches with a results sink that are due (``store.sink.state``: a claim is a
lease, so one worker writes a batch at a time and a dead worker's batch is taken up when its lease lapses) and, for
each, follows the protocol of ``store.sink.state``:

1. **write** parts while there is a part's worth of results (``sink_part_lines``), the oldest has waited
   ``sink_flush_after_s``, or the batch is done: read the rows, encode them (``store.sink.formats``, in a thread),
   upload the part under its content name, commit (which trims the rows from Redis). Up to half the claim's lease
   (``sink_lease_s``), then the batch is due again at once, so a batch far behind does not starve the others.
2. **clean** stale rows: a part holding a row that a ``retry`` or ``--replace-changed`` superseded is rewritten
   without it, under its new name; the old object is deleted.
3. **finish** a done batch: a cancel's never-enqueued lines are written as parts of synthesized ``cancelled`` lines,
   objects no committed part names (a late writer's orphans) are deleted, and the manifest says ``complete``.

The manifest (``_manifest.json``) is rewritten after every run that changed the parts. A sink that fails (bucket
unreachable, an upload refused) ends the run for that batch: the error is kept for ``status`` and logged, the batch
is due again after a backoff, and its results wait in Redis meanwhile -- nothing is lost, nothing written twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from schemas.jobs import BatchSpec, ResultsFormat, ResultsSink
from schemas.records import now_iso
from schemas.settings import WorkerSettings
from store.batches import BatchNotFoundError, BatchRecord, BatchStore
from store.codec import ResultCodec
from store.keys import BatchKeys, Keys
from store.lines import LineIndex, SlotStatus
from store.objects import ObjectStore, ObjectStoreError
from store.results import ResultStore, never_enqueued
from store.sink.coding import decode_off_loop, encode_off_loop
from store.sink.formats import PartEncoder, part_suffix
from store.sink.parts import (
    MANIFEST,
    PART_PREFIX,
    PartIndex,
    PartRecord,
    entry_key,
    manifest_json,
    next_entry,
    part_name,
)
from store.sink.reader import batch_objects
from store.sink.state import NextRows, SinkState, SinkStore
from worker.metrics import WorkerMetrics
from worker.periodic import Periodic

log = logging.getLogger("worker.sink")

CLAIMS_PER_RUN = 4
DONE_RECHECK_S = 60.0
"""How often a complete batch is looked at again (a ``retry`` reopens it)."""
MAX_BACKOFF_S = 120.0


@dataclass
class _Batch:
    """What a writer keeps per batch between runs: its encoder (the Parquet schema is derived once)."""

    spec: BatchSpec
    format: ResultsFormat
    encoder: PartEncoder
    codec: ResultCodec
    objects: ObjectStore
    failures: int = 0


class SinkWriter(Periodic):
    name = "sink writer"
    log = log

    def __init__(
        self, redis: Redis, keys: Keys, settings: WorkerSettings, metrics: WorkerMetrics | None = None
    ) -> None:
        self._metrics = metrics
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._sink = SinkStore(redis, keys)
        self._batches = BatchStore(redis, keys)
        self._results = ResultStore(redis)
        self._index = LineIndex(redis)
        self._known: dict[str, _Batch] = {}
        self.every_s = settings.sink_tick_s

    async def run_once(self) -> int:
        written = 0
        for _ in range(CLAIMS_PER_RUN):  # one claim at a time: a claim's lease starts when its work does
            due = await self._sink.claim_due(lease_s=self._settings.sink_lease_s, limit=1)
            if not due:
                break
            written += await self.write_batch(due[0])
        return written

    async def write_batch(self, batch_id: str) -> int:
        """One claim's work on one batch (see the module docstring); the parts written."""
        keys = self._keys.batch(batch_id)
        try:
            record = await self._batches.get(batch_id)
        except BatchNotFoundError:
            await self._sink.unschedule(batch_id)
            self._known.pop(batch_id, None)
            return 0
        sink = record.spec.results
        if sink is None:
            await self._sink.unschedule(batch_id)
            return 0
        known = self._known.get(batch_id)
        if known is None or known.spec != record.spec:
            known = self._known[batch_id] = _Batch(
                record.spec,
                sink.format,
                PartEncoder(sink.format, record.spec.source_schema),
                ResultCodec(record.spec.json_schema),
                batch_objects(sink, batch_id),
            )
        try:
            written, more = await self._write_parts(keys, record, known)
            state = await self._sink.state(keys)
            changed = await self._clean_stale(keys, state, known, sink)
            record = await self._batches.get(batch_id)
            done = await self._finish(keys, record, known, sink) if record.completed_ms is not None else False
            if written or changed or done:
                await self._write_manifest(keys, record, known, sink, complete=done)
        except BatchNotFoundError:
            await self._sink.unschedule(batch_id)
            return 0
        except ObjectStoreError as exc:
            known.failures += 1
            if self._metrics is not None:
                self._metrics.sink_errors.inc()
            backoff = min(MAX_BACKOFF_S, 2.0 ** min(known.failures, 7))
            log.warning("results sink of batch %s: %s (next try in %.0f s)", batch_id, exc, backoff)
            await self._sink.note_error(keys, str(exc))
            await self._sink.reschedule(batch_id, after_s=backoff)
            return 0
        known.failures = 0
        if done:
            await self._sink.reschedule(batch_id, after_s=DONE_RECHECK_S)
        else:
            await self._sink.reschedule(batch_id, after_s=0 if more else self._settings.sink_tick_s)
        return written

    async def _write_parts(self, keys: BatchKeys, record: BatchRecord, known: _Batch) -> tuple[int, bool]:
        """Write parts while there are enough results (or old enough ones); (parts written, more waiting)."""
        settings = self._settings
        deadline = time.monotonic() + settings.sink_lease_s / 2  # then back to the schedule: others get a turn
        written = 0
        while True:
            read = await self._sink.read_next(keys, settings.sink_part_lines)
            if read is None:
                raise BatchNotFoundError(keys.batch_id)
            if read.scanned == 0 or read.first is None or read.last is None:
                return written, False
            oldest_age_s = time.time() - entry_key(read.first)[0] / 1000
            finished = record.done >= record.lines
            if read.scanned < settings.sink_part_lines and oldest_age_s < settings.sink_flush_after_s and not finished:
                return written, False
            if time.monotonic() > deadline:
                return written, True
            committed = await self._write_part(keys, read, known)
            if committed < 0:
                raise BatchNotFoundError(keys.batch_id)
            if committed == 0:  # another writer moved on (this one's claim lapsed): leave the batch to it
                return written, False
            written += 1
            record = await self._batches.get(keys.batch_id)

    async def _write_part(self, keys: BatchKeys, read: NextRows, known: _Batch) -> int:
        assert read.first is not None
        assert read.last is not None
        rows = [(ordinal, known.codec.decode(stored)) for ordinal, _entry, stored in read.rows]
        data = await encode_off_loop(known.encoder, rows)
        suffix = part_suffix(known.format)
        entries = [read.first, read.last, *(entry for _o, entry, _s in read.rows)]
        name = part_name(read.next_part, entries, suffix)
        await known.objects.put(name, data)
        part = PartRecord(read.next_part, name, read.first, read.last, len(rows), len(data))
        committed = await self._sink.commit(keys, read, part, next_entry(read.last))
        if committed == 1 and self._metrics is not None:
            self._metrics.sink_parts.inc()
            self._metrics.sink_lines.inc(len(rows))
        return committed

    async def _clean_stale(self, keys: BatchKeys, state: SinkState, known: _Batch, sink: ResultsSink) -> bool:
        """Rewrite each part that holds a superseded row without it; whether any part changed."""
        if not state.stale:
            return False
        index = PartIndex(state.parts)
        by_part: dict[int, tuple[PartRecord, dict[str, int]]] = {}
        for entry, ordinal in state.stale.items():
            part = index.find(entry)
            if part is not None:
                by_part.setdefault(part.n, (part, {}))[1][entry] = ordinal
        changed = False
        for part, stale in by_part.values():
            data = await known.objects.get(part.name)
            drop = set(stale.values())
            rows = [row for row in await decode_off_loop(data, sink.format) if row[0] not in drop]
            new_data = await encode_off_loop(known.encoder, rows)
            name = part_name(part.n, [part.name, *map(str, sorted(drop))], part_suffix(sink.format))
            await known.objects.put(name, new_data)
            new = PartRecord(part.n, name, part.first, part.last, len(rows), len(new_data))
            if await self._sink.replace_part(keys, part, new, list(stale)):
                await known.objects.delete(part.name)
                changed = True
        return changed

    async def _finish(self, keys: BatchKeys, record: BatchRecord, known: _Batch, sink: ResultsSink) -> bool:
        """For a batch whose every line is final: write a cancel's synthesized lines, delete orphans; True once
        the sink holds every line (the manifest may say complete)."""
        state = await self._sink.state(keys)
        read = await self._sink.read_next(keys, 1)
        if read is None:
            raise BatchNotFoundError(keys.batch_id)
        if read.scanned or state.stale:
            return False
        if record.cancel_from is not None and record.cancel_from < record.indexed:
            if not await self._write_cancelled(keys, record, known, sink):
                return False
            state = await self._sink.state(keys)
        if state.done:
            return True
        names = {p.name for p in state.parts}
        for name in await known.objects.list():
            if name.startswith(PART_PREFIX) and name not in names:
                await known.objects.delete(name)
        await self._sink.mark_done(keys)
        return True

    async def _write_cancelled(self, keys: BatchKeys, record: BatchRecord, known: _Batch, sink: ResultsSink) -> bool:
        """Parts of the synthesized ``cancelled`` lines of a cancel (lines never enqueued have no stream entry);
        True when all are written."""
        assert record.cancel_from is not None
        await self._sink.start_cancelled(keys, record.cancel_from)
        price = self._settings.price_for(record.spec.model)
        while True:
            state = await self._sink.state(keys)
            cursor = state.cancel_cursor if state.cancel_cursor is not None else record.cancel_from
            if cursor >= record.indexed:
                return True
            count = min(self._settings.sink_part_lines, record.indexed - cursor)
            lines = await self._index.read(keys, cursor, count)
            slots = await self._results.read_range(keys, cursor, len(lines))
            rows = []
            for line, (status, _entry, _stored) in zip(lines, slots, strict=True):
                if status == SlotStatus.PENDING:
                    rows.append((line.ordinal, orjson.dumps(never_enqueued(record, line, price).to_json_dict())))
            data = await encode_off_loop(known.encoder, rows)
            name = part_name(state.next_part, ["cancelled", str(cursor), str(cursor + count)], part_suffix(sink.format))
            await known.objects.put(name, data)
            part = PartRecord(state.next_part, name, "", "", len(rows), len(data))
            done = await self._sink.commit_cancelled(
                keys, cursor=cursor, next_part=state.next_part, part=part, new_cursor=cursor + count
            )
            if done != 1:
                return False

    async def _write_manifest(
        self, keys: BatchKeys, record: BatchRecord, known: _Batch, sink: ResultsSink, *, complete: bool
    ) -> None:
        state = await self._sink.state(keys)
        doc = manifest_json(
            batch_id=record.batch_id,
            fmt=sink.format,
            lines=record.lines,
            parts=state.parts,
            complete=complete,
            updated_at=now_iso(),
        )
        await known.objects.put(MANIFEST, doc)
