"""The result cache and the coalescing leases, both keyed by a line's fingerprint (policy: ``worker.cache``).

- ``{p}cache:{provider}:{fp}``: a succeeded answer (its output and response id), stored with the batch's result
  codec and a TTL; shared by every batch with the same fingerprint *and provider*: the provider is a
  hash of the endpoint (base URL) the worker calls, so an answer from a local server is never served as OpenAI's.
- ``{p}inflight:{provider}:{fp}``: the lease of the job calling the API for the fingerprint: a random token, set
  with NX and a short TTL that its owner keeps extending (``OWNER_ONLY``); identical jobs wait until it goes.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from store.codec import ResultCodec
from store.keys import Keys
from store.redis_typing import awaited
from store.scripts import LuaScript, RoundTrip, Slot, single

# KEYS[1] = lease. ARGV[1] = token, ARGV[2] = TTL in ms (extend) or "" (release). Only the owner may touch it.
OWNER_ONLY = LuaScript(
    "lease_owner_only",
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  return redis.call('DEL', KEYS[1])
end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
""",
)


# KEYS: answer, lease. ARGV: lease token, lease TTL ms. The line's cached answer, else its lease if nobody holds it:
# {1, stored answer}, {2} (the lease is now this token's), or {0} (another job holds the lease). One step where a
# lookup and a claim were two round trips.
LOOKUP = LuaScript(
    "cache_lookup",
    """
local answer = redis.call('GET', KEYS[1])
if answer then return {1, answer} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
""",
)


@dataclass(frozen=True)
class CachedAnswer:
    output: dict[str, Any]
    response_id: str | None


@dataclass(frozen=True)
class Lookup:
    """What a line found: the cached ``answer``, or the lease ``token`` it now holds, or neither (someone else's)."""

    answer: CachedAnswer | None = None
    token: str | None = None


def _decode(raw: bytes, codec: ResultCodec) -> CachedAnswer:
    data = orjson.loads(codec.decode(raw))
    return CachedAnswer(data["output"], data.get("response_id"))


DEFAULT_ENDPOINT = "https://api.openai.com/v1"


def provider_endpoint(base_url: str | None) -> str:
    """The provider's base URL as every key derived from it spells it (``OPENAI_BASE_URL``, else OpenAI's)."""
    return (base_url or DEFAULT_ENDPOINT).rstrip("/")


def provider_id(endpoint: str) -> str:
    """Names a provider's endpoint in keys without spelling its URL."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:16]


class CacheStore:
    def __init__(self, redis: Redis, keys: Keys, endpoint: str) -> None:
        self._redis = redis
        self._keys = keys
        self._provider = provider_id(endpoint)
        self._owner_only = OWNER_ONLY.bind(redis)
        self._lookup = LOOKUP.bind(redis)

    def cache_key(self, fingerprint: str) -> str:
        return self._keys.cache(self._provider, fingerprint)

    async def count_cached(self, fingerprints: Iterable[str], *, chunk: int = 1000) -> int:
        """How many of these fingerprints have a cached answer (read only; ``chunk`` EXISTS per round trip)."""
        found, pending = 0, []
        for fingerprint in fingerprints:
            pending.append(self.cache_key(fingerprint))
            if len(pending) >= chunk:
                found += await self._count(pending)
                pending = []
        if pending:
            found += await self._count(pending)
        return found

    async def _count(self, keys: list[str]) -> int:
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return sum(int(x) for x in await pipe.execute())

    def lease_key(self, fingerprint: str) -> str:
        return self._keys.inflight(self._provider, fingerprint)

    async def get(self, fingerprint: str, codec: ResultCodec) -> CachedAnswer | None:
        raw = await awaited(self._redis.get(self.cache_key(fingerprint)))
        return None if raw is None else _decode(raw, codec)

    def queue_lookup(self, trip: RoundTrip, fingerprint: str, codec: ResultCodec, *, lease_ms: int) -> Slot[Lookup]:
        """As a step of ``trip``: the cached answer, else the fingerprint's lease (:class:`Lookup`)."""
        token = secrets.token_hex(16)

        def parse(reply: list[Any]) -> Lookup:
            if int(reply[0]) == 1:
                return Lookup(answer=_decode(reply[1], codec))
            return Lookup(token=token if int(reply[0]) == 2 else None)

        return trip.script(
            self._lookup, [self.cache_key(fingerprint), self.lease_key(fingerprint)], [token, lease_ms], parse
        )

    def queue_put(
        self, trip: RoundTrip, fingerprint: str, answer: CachedAnswer, codec: ResultCodec, *, ttl_s: int
    ) -> None:
        payload = orjson.dumps({"output": answer.output, "response_id": answer.response_id})
        trip.command("SET", self.cache_key(fingerprint), codec.encode(payload), "EX", ttl_s)

    async def put(self, fingerprint: str, answer: CachedAnswer, codec: ResultCodec, *, ttl_s: int) -> None:
        trip = RoundTrip(self._redis)
        self.queue_put(trip, fingerprint, answer, codec, ttl_s=ttl_s)
        await trip.run()

    async def claim(self, fingerprint: str, *, lease_ms: int) -> str | None:
        """Take the fingerprint's lease: its token, or None when another job holds it."""
        token = secrets.token_hex(16)
        taken = await self._redis.set(self.lease_key(fingerprint), token, nx=True, px=lease_ms)
        return token if taken else None

    async def extend(self, fingerprint: str, token: str, *, lease_ms: int) -> bool:
        return bool(await self._owner_only([self.lease_key(fingerprint)], [token, str(lease_ms)]))

    def queue_release(self, trip: RoundTrip, fingerprint: str, token: str) -> Slot[bool]:
        return trip.script(self._owner_only, [self.lease_key(fingerprint)], [token, ""], bool)

    async def release(self, fingerprint: str, token: str) -> bool:
        return await single(self._redis, lambda trip: self.queue_release(trip, fingerprint, token))

    async def held(self, fingerprint: str) -> bool:
        return bool(await awaited(self._redis.exists(self.lease_key(fingerprint))))
