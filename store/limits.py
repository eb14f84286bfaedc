"""The admission buckets' Redis side: two Lua scripts and the bucket hash they keep.

The algorithm (scopes, capacities, cool-downs, slow-down, what settles how) is explained once, in the design note
of ``worker.admission``; this module only holds the scripts and their KEYS/ARGV. The bucket hash ``{p}rl:{scope}``
has the fields of :class:`BucketField`; a reservation is ``{p}rl:resv:{id}`` = the tokens it reserved, deleted when
settled (which is what makes settling happen once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from store.redis_typing import awaited
from store.scripts import Arg, LuaScript

RESERVATION_TTL_MS = 30 * 60 * 1000
BUCKET_IDLE_TTL_MS = 60 * 60 * 1000


class BucketField:
    REQUESTS: Final = "rq"
    TOKENS: Final = "tk"
    UPDATED_MS: Final = "ts"
    COOL_UNTIL_MS: Final = "cool"
    FILL: Final = "fill"


_NAMES: dict[str, str | int] = {
    "RQ": BucketField.REQUESTS,
    "TK": BucketField.TOKENS,
    "TS": BucketField.UPDATED_MS,
    "COOL": BucketField.COOL_UNTIL_MS,
    "FILL": BucketField.FILL,
    "IDLE_TTL_MS": BUCKET_IDLE_TTL_MS,
}

# Shared by both scripts: refill both buckets and recover the fill factor up to `now`.
# ARGV[1] = now in ms ("" = Redis server time), ARGV[2..5] = request rate/ms, request capacity, token rate/ms,
# token capacity, ARGV[6] = fill recovery per ms.
_PRELUDE = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local r_rate, r_cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local t_rate, t_cap = tonumber(ARGV[4]), tonumber(ARGV[5])
local recovery = tonumber(ARGV[6])
local h = redis.call('HMGET', KEYS[1], '$RQ', '$TK', '$TS', '$COOL', '$FILL')
local rq = tonumber(h[1]) or r_cap
local tk = tonumber(h[2]) or t_cap
local ts = tonumber(h[3]) or now
local cool = tonumber(h[4]) or 0
local fill = tonumber(h[5]) or 1
local elapsed = math.max(now - ts, 0)
rq = math.min(r_cap, rq + r_rate * fill * elapsed)
tk = math.min(t_cap, tk + t_rate * fill * elapsed)
fill = math.min(1, fill + recovery * elapsed)
local function save()
  redis.call('HSET', KEYS[1], '$RQ', rq, '$TK', tk, '$TS', now, '$COOL', cool, '$FILL', fill)
  redis.call('PEXPIRE', KEYS[1], $IDLE_TTL_MS)
end
"""

# KEYS[1] = bucket hash, KEYS[2] = reservation key. ARGV[7] = tokens to reserve, ARGV[8] = reservation TTL ms.
# Returns {admitted (1/0), wait in ms, now in ms}.
ADMIT = LuaScript(
    "admit",
    _PRELUDE
    + """
local cost = tonumber(ARGV[7])
if now < cool then
  save()
  return {0, cool - now, now}
end
-- A request larger than the bucket goes when the bucket is full, and leaves it in debt.
local need_t = math.min(cost, t_cap)
local r_ok = r_rate == 0 or rq >= 1
local t_ok = t_rate == 0 or tk >= need_t
if r_ok and t_ok then
  if r_rate > 0 then rq = rq - 1 end
  if t_rate > 0 then tk = tk - cost end
  save()
  redis.call('SET', KEYS[2], cost, 'PX', tonumber(ARGV[8]))
  return {1, 0, now}
end
local wait = 0
if not r_ok then wait = math.max(wait, (1 - rq) / (r_rate * fill)) end
if not t_ok then wait = math.max(wait, (need_t - tk) / (t_rate * fill)) end
save()
return {0, math.ceil(wait), now}
""",
    _NAMES,
)

# KEYS[1] = bucket hash, KEYS[2] = reservation key.
# ARGV[7] = real token charge ("" = keep what was reserved), ARGV[8] = 1 to return the request slot,
# ARGV[9], ARGV[10] = provider's remaining requests / tokens ("" = not sent),
# ARGV[11] = cool-down in ms ("" = none), ARGV[12] = slow factor, ARGV[13] = minimum fill.
# Returns 1 if this call settled the reservation, 0 if it was already settled (or expired).
SETTLE = LuaScript(
    "settle",
    _PRELUDE
    + """
local reserved = tonumber(redis.call('GET', KEYS[2]))
if not reserved then
  return 0
end
redis.call('DEL', KEYS[2])
if ARGV[7] ~= '' and t_rate > 0 then
  local refund = reserved - math.max(tonumber(ARGV[7]), 0)
  tk = math.min(t_cap, tk + refund)
end
if ARGV[8] == '1' and r_rate > 0 then rq = math.min(r_cap, rq + 1) end
if ARGV[9] ~= '' and r_rate > 0 then rq = math.min(rq, tonumber(ARGV[9])) end
if ARGV[10] ~= '' and t_rate > 0 then tk = math.min(tk, tonumber(ARGV[10])) end
if ARGV[11] ~= '' then
  cool = math.max(cool, now + tonumber(ARGV[11]))
  fill = math.max(tonumber(ARGV[13]), fill * tonumber(ARGV[12]))
end
save()
return 1
""",
    _NAMES,
)


@dataclass(frozen=True)
class BucketParams:
    """ARGV[1..6] of both scripts: the clock and the scope's rates and capacities."""

    now_ms: int | None
    request_rate_per_ms: float
    request_capacity: float
    token_rate_per_ms: float
    token_capacity: float
    recovery_per_ms: float

    def args(self) -> list[Arg]:
        return [
            "" if self.now_ms is None else str(self.now_ms),
            self.request_rate_per_ms,
            self.request_capacity,
            self.token_rate_per_ms,
            self.token_capacity,
            self.recovery_per_ms,
        ]


class LimitStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._admit = ADMIT.bind(redis)
        self._settle = SETTLE.bind(redis)

    async def admit(self, bucket: str, reservation: str, params: BucketParams, tokens: int) -> tuple[bool, int, int]:
        """(admitted, wait ms if not, Redis time ms)."""
        admitted, wait_ms, now_ms = await self._admit(
            [bucket, reservation], [*params.args(), tokens, RESERVATION_TTL_MS]
        )
        return bool(admitted), int(wait_ms), int(now_ms)

    async def settle(
        self,
        bucket: str,
        reservation: str,
        params: BucketParams,
        *,
        charge: int | None,
        return_request: bool,
        remaining: Sequence[int | None],
        cooldown_ms: float | None,
        slow_factor: float,
        min_fill: float,
    ) -> bool:
        remaining_requests, remaining_tokens = remaining
        args: list[Arg] = [
            *params.args(),
            "" if charge is None else charge,
            "1" if return_request else "0",
            "" if remaining_requests is None else remaining_requests,
            "" if remaining_tokens is None else remaining_tokens,
            "" if cooldown_ms is None else cooldown_ms,
            slow_factor,
            min_fill,
        ]
        return bool(await self._settle([bucket, reservation], args))

    async def levels(self, bucket: str) -> dict[str, float]:
        """A scope's stored state (tests, status); not refilled to now."""
        raw = await awaited(self._redis.hgetall(bucket))
        return {k.decode(): float(v) for k, v in raw.items()}
