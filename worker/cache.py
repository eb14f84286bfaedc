"""The result cache and in-flight coalescing, both keyed by the line's fingerprint.

- Cache: ``{p}cache:{fp}`` holds a succeeded answer (JSON) for ``cache_ttl_s``; any batch with the same fingerprint
  reuses it without an API call. Only successes are cached: a refusal or truncation may be worth another try.
- Coalescing: the job that will call the API for a fingerprint holds a lease, ``{p}inflight:{fp}`` = a random token,
  set with NX and a short TTL that a background task keeps extending while the job works. Identical jobs that find
  the lease wait for it to go, then read the cache. If the owner's worker dies, the lease lapses within
  ``coalesce_lease_s`` and a waiter takes over, so nobody waits on a dead owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from schemas.keys import Keys
from schemas.redis_typing import awaited

log = logging.getLogger("worker.cache")

# KEYS[1] = lease; ARGV[1] = token, ARGV[2] = TTL in ms (extend) or "" (release). Only the owner may touch it.
_OWNER_ONLY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  return redis.call('DEL', KEYS[1])
end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""


@dataclass(frozen=True)
class CachedAnswer:
    output: dict[str, Any]
    response_id: str | None
    batch_id: str
    custom_id: str


class ResultCache:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s

    @property
    def enabled(self) -> bool:
        return self._ttl_s > 0

    async def get(self, fingerprint: str) -> CachedAnswer | None:
        raw = await awaited(self._redis.get(self._keys.cache(fingerprint)))
        if raw is None:
            return None
        data = orjson.loads(raw)
        return CachedAnswer(data["output"], data.get("response_id"), data["batch_id"], data["custom_id"])

    async def put(self, fingerprint: str, answer: CachedAnswer) -> None:
        payload = orjson.dumps(
            {
                "output": answer.output,
                "response_id": answer.response_id,
                "batch_id": answer.batch_id,
                "custom_id": answer.custom_id,
            }
        )
        await self._redis.set(self._keys.cache(fingerprint), payload, ex=self._ttl_s)


class Lease:
    """Held by the one job calling the API for a fingerprint; kept alive by a background task until released."""

    def __init__(self, coalescer: Coalescer, key: str, token: str) -> None:
        self._coalescer = coalescer
        self.key = key
        self.token = token
        self._keeper = asyncio.create_task(self._keep_alive())

    async def _keep_alive(self) -> None:
        ttl_ms = int(self._coalescer.lease_s * 1000)
        while True:
            await asyncio.sleep(self._coalescer.lease_s / 3)
            try:
                if not await self._coalescer.owner_only(self.key, self.token, str(ttl_ms)):
                    log.warning("coalescing lease %s was lost; an identical job may call the API too", self.key)
                    return
            except Exception:  # a Redis blip must not kill the job; the lease may lapse, which is safe
                log.warning("could not extend coalescing lease %s", self.key, exc_info=True)

    async def release(self) -> None:
        self._keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._keeper
        await self._coalescer.owner_only(self.key, self.token, "")


class Coalescer:
    def __init__(self, redis: Redis, keys: Keys, lease_s: float) -> None:
        self._redis = redis
        self._keys = keys
        self.lease_s = lease_s
        self._script = redis.register_script(_OWNER_ONLY)

    async def owner_only(self, key: str, token: str, ttl_ms: str) -> bool:
        return bool(await self._script(keys=[key], args=[token, ttl_ms]))

    async def claim(self, fingerprint: str) -> Lease | None:
        key, token = self._keys.inflight(fingerprint), secrets.token_hex(16)
        taken = await self._redis.set(key, token, nx=True, px=int(self.lease_s * 1000))
        return Lease(self, key, token) if taken else None

    async def wait_for_owner(self, fingerprint: str, *, max_wait_s: float, poll_s: float = 0.1) -> bool:
        """Wait until nobody holds the fingerprint's lease. False if it is still held after ``max_wait_s``."""
        key = self._keys.inflight(fingerprint)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait_s
        while await awaited(self._redis.exists(key)):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(poll_s)
        return True
