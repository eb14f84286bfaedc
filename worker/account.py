"""A job's running account of API calls, kept in Redis so it survives retries and worker restarts.

Every call is counted the moment it returns, billed or not, so the usage in the final result line covers every
billed call of every try (a repair, a retry after a 5xx on the second call) and matches the provider's bill.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from schemas.redis_typing import awaited
from schemas.results import Usage
from worker.adapters.base import ModelReply

ACCOUNT_TTL_S = 7 * 24 * 3600
"""An account outlives any sane retry horizon, then expires if its job was lost."""

_USAGE_FIELDS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens")


@dataclass(frozen=True)
class AccountTotals:
    usage: Usage
    attempts: int
    repairs: int
    latency_ms: int
    last_response_id: str | None


class JobAccount:
    def __init__(self, redis: Redis, key: str) -> None:
        self._redis = redis
        self._key = key

    async def add_call(self, reply: ModelReply | None, latency_ms: int, repair: bool) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(self._key, "attempts", 1)
        pipe.hincrby(self._key, "latency_ms", latency_ms)
        if repair:
            pipe.hincrby(self._key, "repairs", 1)
        if reply is not None:
            for name, value in reply.usage.as_counts().items():
                if value:
                    pipe.hincrby(self._key, name, value)
            if reply.response_id:
                pipe.hset(self._key, "response_id", reply.response_id)
        pipe.expire(self._key, ACCOUNT_TTL_S)
        await pipe.execute()

    async def note_transient_error(self, now_ms: int, *, count: bool = True) -> tuple[int, int]:
        """Note a try that ended in a transient error (``count``: against the error budget).

        Returns (errors counted so far, time of the first transient error in ms).
        """
        pipe = self._redis.pipeline(transaction=True)
        pipe.hincrby(self._key, "errors", 1 if count else 0)
        pipe.hsetnx(self._key, "first_error_ms", str(now_ms))
        pipe.hget(self._key, "first_error_ms")
        pipe.expire(self._key, ACCOUNT_TTL_S)
        errors, _, first_error_ms, _ = await pipe.execute()
        return int(errors), int(first_error_ms)

    async def totals(self) -> AccountTotals:
        raw = await awaited(self._redis.hgetall(self._key))
        values = {k.decode(): v.decode() for k, v in raw.items()}
        usage = Usage(**{name: int(values.get(name, 0)) for name in _USAGE_FIELDS})
        return AccountTotals(
            usage=usage,
            attempts=int(values.get("attempts", 0)),
            repairs=int(values.get("repairs", 0)),
            latency_ms=int(values.get("latency_ms", 0)),
            last_response_id=values.get("response_id"),
        )
