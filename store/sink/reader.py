"""Reading result lines back from a batch's sink: one line by its stream entry, or every part in the order written.

A line whose result has left Redis is found through its slot's entry id: the part whose range holds it
(:class:`store.sink.parts.PartIndex`) has a row for its ordinal. Parts are read whole (a part is one object of a few
MB) and the last :data:`CACHED_PARTS` decoded ones are kept: lines finish roughly in input order, so reading in input
order touches each part about once. The index is a snapshot: a part committed, or rewritten without a stale row,
after it was taken is found by taking it again (:meth:`SinkReader.refresh`).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from schemas.jobs import ResultsSink
from store.keys import BatchKeys, Keys
from store.objects import ObjectStore, ObjectStoreError, open_location
from store.sink.coding import decode_off_loop
from store.sink.parts import PartIndex, PartRecord, entry_key
from store.sink.state import SinkState, SinkStore

CACHED_PARTS = 8


PREFETCH_PARTS = 2
"""Parts read ahead by :meth:`SinkReader.rows_in_input_order`: fetched at once, decoded one after the other on the
parts thread (``store.sink.coding``) while the caller writes the rows before them."""
MAX_REORDER_ROWS = 200_000
"""Rows :meth:`SinkReader.rows_in_input_order` may hold back waiting for an earlier line (lines finish near input
order: a queue window apart); more, and the caller reads line by line instead."""


class ReorderOverflowError(Exception):
    """Lines finished too far out of input order for the reorder buffer (or the parts changed while read)."""


class SinkReadError(Exception):
    """A line the sink should hold and does not (a part missing or unreadable): which line, which part, why."""


def batch_objects(sink: ResultsSink, batch_id: str) -> ObjectStore:
    """The object store of one batch's parts (``{url}/{batch id}/``)."""
    return ObjectStore(open_location(sink.url).child(batch_id))


class SinkReader:
    def __init__(
        self, redis: Redis, keys: Keys, batch_keys: BatchKeys, sink: ResultsSink, *, cached_parts: int = CACHED_PARTS
    ) -> None:
        self._cached_parts = cached_parts
        self._store = SinkStore(redis, keys)
        self._keys = batch_keys
        self.sink = sink
        self.objects = batch_objects(sink, batch_keys.batch_id)
        self.state = SinkState()
        self.index = PartIndex([])
        self._parts: OrderedDict[str, dict[int, bytes]] = OrderedDict()

    async def refresh(self) -> SinkState:
        self.state = await self._store.state(self._keys)
        self.index = PartIndex(self.state.parts)
        return self.state

    async def part_rows(self, part: PartRecord) -> dict[int, bytes]:
        """Ordinal → result line of every row of ``part`` (decoded once, kept among the last few)."""
        rows = self._parts.get(part.name)
        if rows is not None:
            self._parts.move_to_end(part.name)
            return rows
        data = await self.objects.get(part.name)
        decoded = await decode_off_loop(data, self.sink.format)
        rows = dict(decoded)
        self._parts[part.name] = rows
        while len(self._parts) > self._cached_parts:
            self._parts.popitem(last=False)
        return rows

    async def line(self, ordinal: int, entry: str) -> bytes | None:
        """The result line of ``ordinal`` written from stream entry ``entry``; None if no committed part holds that
        entry even after a refresh (it was never written: the caller's view of the slot is older than a retry)."""
        for attempt in range(2):
            part = self.index.find(entry)
            if part is not None:
                try:
                    rows = await self.part_rows(part)
                except ObjectStoreError:
                    if attempt == 0:  # rewritten without a stale row since the snapshot: its name changed
                        await self.refresh()
                        continue
                    raise
                found = rows.get(ordinal)
                if found is not None:
                    return found
                raise SinkReadError(f"line {ordinal}: part {part.name} has no row for it")
            if attempt == 0:
                await self.refresh()
        return None

    async def rows_in_input_order(
        self, lines: int, *, max_buffered: int = MAX_REORDER_ROWS
    ) -> AsyncIterator[list[tuple[int, bytes]]]:
        """Every row of a *complete* sink (its manifest says so: one row per line) in input order, chunk by chunk:
        parts are read in the order written (the next one fetched while this one is handed out) and their rows held
        in a reorder buffer until every earlier line has come. No per-line Redis read: what makes ``collect`` of a
        finished batch fast. Raises :class:`ReorderOverflowError` when more than ``max_buffered`` rows wait, or the
        parts are not what the manifest promised (a retry reopened the batch meanwhile)."""
        state = await self.refresh()
        if not state.done:
            raise ReorderOverflowError("the sink is not complete")
        parts = self.index.all
        buffered: dict[int, bytes] = {}
        expected = 0

        async def fetch(part: PartRecord) -> list[tuple[int, bytes]]:
            data = await self.objects.get(part.name)
            return await decode_off_loop(data, self.sink.format)

        # the next PREFETCH_PARTS parts are fetched and decoded (in threads) while this one is handed out
        pending = deque(asyncio.ensure_future(fetch(part)) for part in parts[:PREFETCH_PARTS])
        try:
            for at in range(len(parts)):
                rows = await pending.popleft()
                if at + PREFETCH_PARTS < len(parts):
                    pending.append(asyncio.ensure_future(fetch(parts[at + PREFETCH_PARTS])))
                buffered.update(rows)
                ready = []
                while expected in buffered:
                    ready.append((expected, buffered.pop(expected)))
                    expected += 1
                if ready:
                    yield ready
                if len(buffered) > max_buffered:
                    raise ReorderOverflowError(f"more than {max_buffered} rows wait for an earlier line")
        finally:
            for future in pending:
                future.cancel()
        if buffered or expected != lines:
            raise ReorderOverflowError(f"the parts hold {expected + len(buffered)} rows in order, not {lines} lines")

    async def parts_ending_after(self, entry: str) -> AsyncIterator[tuple[PartRecord, dict[int, bytes]]]:
        """The committed parts whose range ends after ``entry``, in stream order, each with its rows (a reader that
        saw entries up to ``entry`` in the stream finds the rest of that part, and every later one)."""
        await self.refresh()
        for part in self.index.parts:
            if entry_key(part.last) > entry_key(entry):
                yield part, await self.part_rows(part)
