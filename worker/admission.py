"""Shared admission control: two token buckets per limit scope, held in Redis, shared by every worker.

Algorithm
---------
A *scope* is one provider limit: the hash of the API key plus the model (OpenAI limits are per organisation and
model, and every process using the key shares them). Its Redis hash ``{p}rl:{scope}`` holds two token buckets:

- requests: refills at ``rpm/60`` per second, capacity ``rpm/60 * limit_window_s * BURST_FRACTION``;
- tokens: refills at ``tpm/60`` per second, capacity ``tpm/60 * limit_window_s * BURST_FRACTION``.

Capacity is seconds of the limit, not a minute: providers enforce limits over sub-minute slices, so a full minute's
burst would be rejected. Both rates are scaled by ``limit_headroom`` (0.98 by default). Time is Redis server time
(``TIME`` inside the script), so worker clocks never matter.

A call first *reserves* one request and its token estimate (input estimate + max output tokens, which is what
OpenAI's limiter charges) from both buckets or from neither, atomically (``_ADMIT``). Denied, it learns how long
until both buckets hold enough. After the reply it *settles* the reservation exactly once (``_SETTLE``, guarded by
deleting the reservation key ``{p}rl:resv:{id}``):

- a reply with usage: the input estimate is replaced by the real input tokens (refund or charge the difference;
  a refund can never exceed what was reserved); output tokens stay charged as the provider charges them
  (``reconcile_output_tokens`` switches that for providers that count real output);
- a 429: the provider did not count the call, so the whole reservation is returned; a shared cool-down starts
  (``retry-after`` wins; one second if absent) that blocks every worker of the scope, and the fill rate drops
  to ``SLOW_FACTOR`` of itself, recovering linearly at ``RECOVERY_PER_S`` back to full;
- other failures: the charge stands (the provider may have counted the call);
- ``x-ratelimit-remaining-requests|tokens`` on any reply can only lower the buckets, never raise them.

A bucket whose limit is 0 is not enforced; the cool-down applies regardless, so even a scope without configured
limits backs off together after a 429.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from schemas.keys import Keys
from schemas.redis_typing import awaited
from schemas.settings import Settings

SLOW_FACTOR = 0.8
"""After a 429 the fill rate is multiplied by this (never below MIN_FILL)."""
MIN_FILL = 0.25
RECOVERY_PER_S = 0.05
"""Fill factor regained per second after a slow-down: from 0.8 back to 1.0 in 4 s, from the floor in 15 s."""
BURST_FRACTION = 0.9
"""Our buckets hold this fraction of the provider's burst. Requests admitted here reach the provider a few
milliseconds later and not in the same order or spacing (scheduling on busy hosts), so a burst that fits our
bucket can arrive compressed; the missing tenth absorbs about 100 ms of such compression. Steady-state
throughput is set by the refill rate, so this costs nothing once the first burst is spent."""
DEFAULT_COOLDOWN_S = 1.0
RESERVATION_TTL_MS = 30 * 60 * 1000
BUCKET_IDLE_TTL_MS = 60 * 60 * 1000

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
local h = redis.call('HMGET', KEYS[1], 'rq', 'tk', 'ts', 'cool', 'fill')
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
  redis.call('HSET', KEYS[1], 'rq', rq, 'tk', tk, 'ts', now, 'cool', cool, 'fill', fill)
  redis.call('PEXPIRE', KEYS[1], IDLE_TTL_MS)
end
""".replace("IDLE_TTL_MS", str(BUCKET_IDLE_TTL_MS))

# KEYS[1] = bucket hash, KEYS[2] = reservation key. ARGV[7] = tokens to reserve, ARGV[8] = reservation TTL ms.
# Returns {admitted (1/0), wait in ms, now in ms}.
_ADMIT = (
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
"""
)

# KEYS[1] = bucket hash, KEYS[2] = reservation key.
# ARGV[7] = real token charge ("" = keep what was reserved), ARGV[8] = 1 to return the request slot,
# ARGV[9], ARGV[10] = provider's remaining requests / tokens ("" = not sent),
# ARGV[11] = cool-down in ms ("" = none), ARGV[12] = slow factor, ARGV[13] = minimum fill.
# Returns 1 if this call settled the reservation, 0 if it was already settled (or expired).
_SETTLE = (
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
"""
)


@dataclass(frozen=True)
class Scope:
    key: str
    request_rate_per_ms: float
    request_capacity: float
    token_rate_per_ms: float
    token_capacity: float

    def params(self) -> list[float]:
        return [self.request_rate_per_ms, self.request_capacity, self.token_rate_per_ms, self.token_capacity]


@dataclass(frozen=True)
class Reservation:
    scope: Scope
    key: str
    tokens: int
    input_tokens: int
    """The part of ``tokens`` that estimated the input; settled against the real input tokens."""
    admitted_at_ms: int
    """Redis server time of admission."""
    waited_s: float = 0.0


class AdmissionDeferredError(Exception):
    """Admission is further away than the job should sleep: hand the worker slot back and come back later."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"admission in {wait_s:.2f}s")
        self.wait_s = wait_s


def scope_id(api_key: str, model: str) -> str:
    """Names a provider limit without revealing the key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16] + ":" + model


class AdmissionController:
    def __init__(
        self, redis: Redis, keys: Keys, settings: Settings, api_key: str, *, clock_ms: Callable[[], int] | None = None
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._api_key = api_key
        self._clock_ms = clock_ms  # tests drive a fake clock; production uses Redis server time
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._scopes: dict[str, Scope] = {}

    def scope(self, model: str) -> Scope:
        scope = self._scopes.get(model)
        if scope is None:
            limits = self._settings.limits_for(model)
            headroom, window_s = self._settings.limit_headroom, self._settings.limit_window_s
            r_rate = limits.rpm * headroom / 60_000
            t_rate = limits.tpm * headroom / 60_000
            scope = Scope(
                key=self._keys.rate_limit(scope_id(self._api_key, model)),
                request_rate_per_ms=r_rate,
                request_capacity=max(r_rate * window_s * 1000 * BURST_FRACTION, 1.0) if r_rate else 0.0,
                token_rate_per_ms=t_rate,
                token_capacity=t_rate * window_s * 1000 * BURST_FRACTION,
            )
            self._scopes[model] = scope
        return scope

    def _argv(self, scope: Scope) -> list[str | float]:
        now = "" if self._clock_ms is None else str(self._clock_ms())
        return [now, *scope.params(), RECOVERY_PER_S / 1000]

    async def try_acquire(self, model: str, input_tokens: int, output_tokens: int) -> tuple[Reservation | None, float]:
        """One attempt: a reservation, or None and the seconds until one could succeed."""
        scope = self.scope(model)
        key = self._keys.reservation(secrets.token_hex(12))
        tokens = input_tokens + output_tokens
        admitted, wait_ms, now_ms = await self._admit(
            keys=[scope.key, key], args=[*self._argv(scope), tokens, RESERVATION_TTL_MS]
        )
        if admitted:
            return Reservation(scope, key, tokens, input_tokens, int(now_ms)), 0.0
        return None, int(wait_ms) / 1000

    async def acquire(
        self, model: str, input_tokens: int, output_tokens: int, *, may_defer: bool, deadline_s: float | None = None
    ) -> Reservation:
        """Wait for admission. Waits longer than ``admission_max_sleep_s`` raise ``AdmissionDeferredError`` when
        ``may_defer`` (the job hands its slot back), else are slept too (up to ``deadline_s``)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            reservation, wait_s = await self.try_acquire(model, input_tokens, output_tokens)
            if reservation is not None:
                return dataclasses.replace(reservation, waited_s=loop.time() - started)
            # Jitter spreads the wake-ups of jobs that were told the same wait.
            wait_s += random.uniform(0.0, 0.1 * wait_s + 0.005)  # noqa: S311 - scheduling jitter
            if may_defer and wait_s > self._settings.admission_max_sleep_s:
                raise AdmissionDeferredError(wait_s)
            if deadline_s is not None and loop.time() + wait_s > started + deadline_s:
                raise AdmissionDeferredError(wait_s)
            await asyncio.sleep(wait_s)

    async def settle(
        self,
        reservation: Reservation,
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        rate_limited: bool = False,
        retry_after_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Reconcile a reservation with what happened, exactly once. Returns False if it was already settled."""
        output_reserved = reservation.tokens - reservation.input_tokens
        charge: int | str = ""
        if rate_limited:
            charge = 0
        elif input_tokens is not None:
            output = output_tokens if self._settings.reconcile_output_tokens and output_tokens is not None else None
            charge = input_tokens + (output if output is not None else output_reserved)
        remaining_requests, remaining_tokens = _remaining(headers or {})
        cooldown: float | str = ""
        if rate_limited:
            cooldown = 1000 * (retry_after_s if retry_after_s is not None else DEFAULT_COOLDOWN_S)
        settled = await self._settle(
            keys=[reservation.scope.key, reservation.key],
            args=[
                *self._argv(reservation.scope),
                charge,
                "1" if rate_limited else "0",
                remaining_requests,
                remaining_tokens,
                cooldown,
                SLOW_FACTOR,
                MIN_FILL,
            ],
        )
        return bool(settled)

    async def levels(self, model: str) -> dict[str, float]:
        """The scope's stored state (for tests, status and metrics); not refilled to now."""
        raw = await awaited(self._redis.hgetall(self.scope(model).key))
        return {k.decode(): float(v) for k, v in raw.items()}


def _remaining(headers: Mapping[str, str]) -> tuple[int | str, int | str]:
    def number(name: str) -> int | str:
        value = headers.get(name)
        if value is None:
            return ""
        try:
            return max(math.floor(float(value)), 0)
        except ValueError:
            return ""

    return number("x-ratelimit-remaining-requests"), number("x-ratelimit-remaining-tokens")
