"""Live workers and the leases on the jobs they run: one sorted set and arq's claim keys, kept by one script.

**The registry** (``{p}workers``, a sorted set): member = a worker's lease owner (its name plus a token unique to
the process), score = when its registration lapses (ms, Redis's own clock). Every worker renews its entry every
third of its lease (:data:`RENEW`), and takes it out when it stops (:meth:`WorkerRegistry.leave`); entries that
lapsed are removed by the next renewal of any worker. "How many workers are alive" is one ``ZCOUNT`` from now on
(:data:`COUNT_LIVE_LUA`, inside ``store.batches.SNAPSHOT``) -- no ``SCAN`` of the keyspace, whatever else the Redis
holds (a result cache of millions of keys, other applications' data).

**Leases** instead of five-minute claims. arq claims a job by setting ``arq:in-progress:{id}`` with a TTL; arq's
own is the longest job timeout plus 10 s, so a SIGKILLed worker's jobs waited that long (315 s by default) before
another worker could take them. Our claim (``store.queue.CLAIM``) holds the owner as its value and lasts one lease
(``EXTRACT_JOB_LEASE_S``, 10 s by default); the same renewal that keeps the worker registered extends the claims it
still owns. A worker that dies stops renewing: its claims lapse within one lease, and the next poll of any other
worker takes the jobs up again. A claim that is no longer ours (it lapsed while this worker's loop was stalled, and
another worker took the job) is not extended and is reported: the line may then run twice at once, which recording
once (``store.results``) makes harmless for the result; its calls may be paid twice.

Renewal (registry entry and every claim) is one script call per worker per third of a lease, however many jobs it
runs: its cost grows with the fleet, not with the queue or the keyspace.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from store.keys import Keys
from store.queue import ARQ_NAMES
from store.redis_typing import awaited
from store.scripts import LuaScript

NOW_LUA = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""
"""Redis's clock in ms: every process's lease and registry times are read off one clock, whatever its own says."""

# KEYS[1] = the registry. ARGV: owner, lease ms, then the job ids the owner runs.
# Registers the owner until now + lease, drops lapsed entries, extends each claim the owner still holds.
# Returns the job ids whose claims another worker holds now (this one's lapsed and the job was taken).
RENEW = LuaScript(
    "renew_leases",
    NOW_LUA
    + """
local now, lease = now_ms(), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
local lost = {}
for i = 3, #ARGV do
  local claim = '$IN_PROGRESS_PREFIX' .. ARGV[i]
  local holder = redis.call('GET', claim)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', claim, lease)
  elseif holder then
    lost[#lost + 1] = ARGV[i]
  end
  -- no claim at all: the job just ended (recording or arq's clean-up removed it) or it lapsed; nothing to renew
end
return lost
""",
    ARQ_NAMES,
)

# The number of a registry's registrations that have not lapsed (used by ``store.batches.SNAPSHOT``).
COUNT_LIVE_LUA = """
local function live_workers(registry)
  return redis.call('ZCOUNT', registry, '(' .. now_ms(), '+inf')
end
"""


class WorkerRegistry:
    """One worker's entry in the registry and the leases on its jobs (``worker.leases.LeaseKeeper`` drives it)."""

    def __init__(self, redis: Redis, keys: Keys, owner: str) -> None:
        self._redis = redis
        self._registry = keys.workers
        self.owner = owner
        self._renew = RENEW.bind(redis)

    async def renew(self, job_ids: Sequence[str], *, lease_ms: int) -> list[str]:
        """Register the worker for one more lease and extend its claims; the job ids whose claims it lost."""
        lost = await self._renew([self._registry], [self.owner, lease_ms, *job_ids])
        return [job_id.decode() if isinstance(job_id, bytes) else str(job_id) for job_id in lost]

    async def leave(self) -> None:
        """Take the worker out of the registry at once (a clean stop), instead of at the end of its lease."""
        await awaited(self._redis.zrem(self._registry, self.owner))


async def forget_health(redis: Redis, health_key: str) -> None:
    """A stopping worker's arq health key goes at once (``arq --check`` then sees it gone, not stale)."""
    await awaited(redis.delete(health_key))
