"""Result cache and in-flight coalescing by fingerprint: the policy (the keys and scripts are ``store.cache``).

- Cache: a succeeded answer is reused by any later line with the same fingerprint for ``cache_ttl_s``, without an
  API call. Only successes are cached: a refusal or truncation may be worth another try.
- Coalescing: the job that will call the API for a fingerprint holds a lease that a background task keeps extending
  while the job works. Identical jobs that find the lease wait for it to go, then read the cache. If the owner's
  worker dies, the lease lapses within ``coalesce_lease_s`` and a waiter takes over, so nobody waits on a dead owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from store.cache import CachedAnswer, CacheStore, Lookup
from store.codec import ResultCodec
from store.scripts import RoundTrip, Slot

__all__ = ["CachedAnswer", "Coalescer", "Lease", "ResultCache"]

log = logging.getLogger("worker.cache")


class ResultCache:
    def __init__(self, store: CacheStore, ttl_s: int) -> None:
        self._store = store
        self._ttl_s = ttl_s

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0

    async def get(self, fingerprint: str, codec: ResultCodec) -> CachedAnswer | None:
        return await self._store.get(fingerprint, codec)

    async def put(self, fingerprint: str, answer: CachedAnswer, codec: ResultCodec) -> None:
        await self._store.put(fingerprint, answer, codec, ttl_s=self._ttl_s)

    def queue_put(self, trip: RoundTrip, fingerprint: str, answer: CachedAnswer, codec: ResultCodec) -> None:
        self._store.queue_put(trip, fingerprint, answer, codec, ttl_s=self._ttl_s)


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
        """The cached answer or the lease, in one step of ``trip`` (``store.cache.LOOKUP``); see :meth:`held_lease`."""
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
