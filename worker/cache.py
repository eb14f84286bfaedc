"""Result cache and in-flight coalescing by fingerprint: the policy (the keys and scripts are ``store.cache``).

- Cache: a succeeded answer is reused by any later line with the same fingerprint for ``cache_ttl_s`` (and at most
  twice that: ``store.cache``'s generations), without an API call. Only successes are cached: a refusal or truncation
  may be worth another try. The cache points at the line whose result holds the answer; the lookup follows the
  pointer in Redis, and :meth:`ResultCache.resolve` finishes what Redis cannot: a result that has left for the
  batch's results sink is read back from its part (:class:`SinkLines`) and checked like one in the stream, and a
  pointer found stale is deleted. A pointer that leads nowhere is a miss, never an error.
- Coalescing: the job that will call the API for a fingerprint holds a lease that a background task keeps extending
  while the job works. Identical jobs that find the lease wait for it to go, then read the cache. If the owner's
  worker dies, the lease lapses within ``coalesce_lease_s`` and a waiter takes over, so nobody waits on a dead owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from store.batches import BatchStore
from store.cache import CachedAnswer, CacheStore, Lookup, Source, answer_from_line
from store.codec import ResultCodec
from store.keys import BatchKeys
from store.scripts import RoundTrip, Slot

if TYPE_CHECKING:
    from store.sink.reader import SinkReader

__all__ = ["CachedAnswer", "Coalescer", "Lease", "ResultCache", "SinkLines"]

log = logging.getLogger("worker.cache")

SINK_READERS = 2
"""Source batches whose sink readers a worker keeps. Each keeps up to ``store.sink.reader.CACHED_PARTS`` decoded
parts (some 10 MB each at 10,000 lines of ~1 KB), so this bounds what hits on sink results hold in a worker."""
STALE_RETRIES = 3
"""Pointers a read of the cache drops, one after the other, before it calls it a miss."""


class SinkLines:
    """Reads cached answers that have left Redis: a result line back from its batch's results sink, through one
    :class:`store.sink.reader.SinkReader` per source batch, the last :data:`SINK_READERS` kept (so a run of hits on
    the same batch reads each part once)."""

    def __init__(self, store: CacheStore, batches: BatchStore, *, readers: int = SINK_READERS) -> None:
        self._store = store
        self._batches = batches
        self._max = readers
        self._readers: OrderedDict[tuple[str, int], SinkReader] = OrderedDict()

    async def line(self, source: Source) -> bytes | None:
        """The result line the source's entry holds in its batch's sink; None if the batch has no sink (any more) or
        no part holds it. Raises what reading the part raises (the object store unreachable, a part unreadable)."""
        from store.sink.reader import SinkReader  # the sink's formats load only when a hit needs them

        key = (source.batch_id, source.batch_number)  # an id used again by a later batch is another batch
        reader = self._readers.get(key)
        if reader is not None:
            self._readers.move_to_end(key)
        else:
            spec = await self._batches.spec(source.batch_id)
            if spec is None or spec.results is None:
                return None
            keys = self._store.keys
            # a cache hit reads one line: keep few decoded parts (a part is ~10 MB of Python objects)
            reader = SinkReader(self._store.redis, keys, keys.batch(source.batch_id), spec.results, cached_parts=2)
            self._readers[key] = reader
            while len(self._readers) > self._max:
                self._readers.popitem(last=False)
        return await reader.line(source.ordinal, source.entry)

    def drop(self, source: Source) -> None:
        """Forget the reader of the source's batch (it failed: the next hit starts afresh)."""
        self._readers.pop((source.batch_id, source.batch_number), None)


class ResultCache:
    def __init__(self, store: CacheStore, ttl_s: int, sinks: SinkLines | None = None) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._sinks = sinks

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0

    async def resolve(self, fingerprint: str, lookup: Lookup) -> Lookup:
        """The lookup with its pointer followed to the end: an answer in a results sink read back and checked, a
        stale pointer deleted (then no answer: the caller waits for the lease's owner and reads again, as when
        another job holds it)."""
        return (await self._resolve(fingerprint, lookup))[0]

    async def _resolve(self, fingerprint: str, lookup: Lookup) -> tuple[Lookup, bool]:
        """The resolved lookup, and whether a stale pointer was deleted on the way (another may be behind it)."""
        if lookup.stale is not None:
            await self._store.forget(lookup.stale)
            return Lookup(token=lookup.token), True
        source = lookup.in_sink
        if source is None:
            return lookup, False
        if self._sinks is None:
            return Lookup(token=lookup.token), False
        try:
            line = await self._sinks.line(source)
        except Exception as exc:  # an unreachable store, a part unreadable: a miss (the API answers), the pointer kept
            self._sinks.drop(source)
            log.warning(
                "cached answer in line %d of batch %s not read from its results sink: %s",
                source.ordinal,
                source.batch_id,
                exc,
            )
            return Lookup(token=lookup.token), False
        # No line (the batch has no sink, no part holds the entry: its slot moved on since) or another document's
        answer = answer_from_line(line, fingerprint) if line is not None else None
        if answer is None:
            await self._store.forget(source)
        return Lookup(answer=answer, token=lookup.token), answer is None

    async def get(self, fingerprint: str, codec: ResultCodec) -> CachedAnswer | None:
        """The cached answer, taking no lease (stale pointers met on the way are deleted)."""
        for _ in range(STALE_RETRIES):
            resolved, dropped = await self._resolve(fingerprint, await self._store.lookup(fingerprint, codec))
            if resolved.answer is not None or not dropped:
                return resolved.answer
        return None

    def queue_put(self, trip: RoundTrip, fingerprint: str, batch: BatchKeys, ordinal: int) -> Slot[bool]:
        """Point the fingerprint at line ``ordinal`` of ``batch``, as a step of ``trip`` after the line's record."""
        return self._store.queue_put(trip, fingerprint, batch, ordinal, ttl_s=self._ttl_s)

    async def put(self, fingerprint: str, batch: BatchKeys, ordinal: int) -> bool:
        return await self._store.put(fingerprint, batch, ordinal, ttl_s=self._ttl_s)


class Lease:
    """Held by the one job calling the API for a fingerprint; kept alive by a background task until released."""

    def __init__(self, coalescer: Coalescer, fingerprint: str, token: str) -> None:
        self._coalescer = coalescer
        self.fingerprint = fingerprint
        self.token = token
        self._keeper = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        store, lease_ms = self._coalescer.store, self._coalescer.lease_ms
        while True:
            await asyncio.sleep(self._coalescer.lease_s / 3)
            try:
                if not await store.extend(self.fingerprint, self.token, lease_ms=lease_ms):
                    log.warning(
                        "coalescing lease of %s was lost; an identical job may call the API too", self.fingerprint
                    )
                    return
            except Exception:  # a Redis blip must not kill the job; the lease may lapse, which is safe
                log.warning("could not extend the coalescing lease of %s", self.fingerprint, exc_info=True)

    async def release(self) -> None:
        await self._stop_keeping()
        await self._coalescer.store.release(self.fingerprint, self.token)

    async def queue_release(self, trip: RoundTrip) -> None:
        """Stop extending the lease now and let it go as a step of ``trip`` (after the steps before it)."""
        await self._stop_keeping()
        self._coalescer.store.queue_release(trip, self.fingerprint, self.token)

    async def _stop_keeping(self) -> None:
        self._keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._keeper


class Coalescer:
    def __init__(self, store: CacheStore, lease_s: float) -> None:
        self.store = store
        self.lease_s = lease_s

    @property
    def lease_ms(self) -> int:
        return int(self.lease_s * 1000)

    async def claim(self, fingerprint: str) -> Lease | None:
        token = await self.store.claim(fingerprint, lease_ms=self.lease_ms)
        return Lease(self, fingerprint, token) if token is not None else None

    def queue_lookup(self, trip: RoundTrip, fingerprint: str, codec: ResultCodec) -> Slot[Lookup]:
        """The cached answer or the lease, in one step of ``trip`` (``store.cache.LOOKUP``); see :meth:`held_lease`
        (and ``ResultCache.resolve`` for what the lookup leaves to finish)."""
        return self.store.queue_lookup(trip, fingerprint, codec, lease_ms=self.lease_ms)

    def held_lease(self, fingerprint: str, lookup: Lookup) -> Lease | None:
        """The lease a lookup took, kept alive from now on; None if it found an answer or another job's lease."""
        return Lease(self, fingerprint, lookup.token) if lookup.token is not None else None

    async def wait_for_owner(self, fingerprint: str, *, max_wait_s: float, poll_s: float = 0.1) -> bool:
        """Wait until nobody holds the fingerprint's lease. False if it is still held after ``max_wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while await self.store.held(fingerprint):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(poll_s)
        return True
