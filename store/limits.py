"""The admission buckets' Redis side: two Lua scripts, the scope hash and the in-flight set they keep.

The algorithm (scopes, limits configured or learned, slow start, the provider's account, what settles how) is
explained once, in the design note of ``worker.admission``; this module only holds the scripts and their KEYS/ARGV.

Per scope: the hash ``{p}rl:{scope}`` (:class:`BucketField`), and the sorted set ``{p}rl:{scope}:flight`` of the
reservations not settled yet (member ``{id}|{output tokens}|{tokens}``, score = when it lapses), so what a worker
that died had reserved is given back once its reservation lapses. A reservation is ``{p}rl:resv:{id}`` =
``tokens|output|explicit|tokens left|output in flight|requests left|corrections`` (the buckets right after it,
``none`` where a bucket had no limit then, and the sums of corrections so far), deleted when settled (which is what
makes settling happen once).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

from store.redis_typing import awaited
from store.scripts import Arg, LuaScript, RoundTrip, Slot, single

RESERVATION_TTL_MS = 30 * 60 * 1000
BUCKET_IDLE_TTL_MS = 60 * 60 * 1000


def scope_id(api_key: str, model: str, endpoint: str = "") -> str:
    """Names a provider limit (endpoint, key, model) without revealing the key: ``{p}rl:{scope}``."""
    return hashlib.sha256(f"{endpoint}\n{api_key}".encode()).hexdigest()[:16] + ":" + model


class BucketField:
    REQUESTS: Final = "rq"
    TOKENS: Final = "tk"
    UPDATED_MS: Final = "ts"
    COOL_UNTIL_MS: Final = "cool"
    FILL: Final = "fill"
    LEARNED_RPM: Final = "lr"
    """The provider's requests per minute, from ``x-ratelimit-limit-requests`` (shared by every worker)."""
    LEARNED_TPM: Final = "lt"
    PROVISIONAL_RPM: Final = "pr"
    """Slow start: the request rate allowed while no limit is known."""
    PROVISIONAL_PHASE: Final = "pg"
    """0 = doubling (slow start), 1 = growing gently (after the first 429)."""
    OUTPUT_CHARGE: Final = "oc"
    """What the provider charges per request for output when no maximum is sent, as learned from its account."""
    FLIGHT_OUTPUT: Final = "fo"
    """Output tokens reserved by calls not settled yet."""
    FLIGHT_COST: Final = "fc"
    """Everything reserved by calls not settled yet (input and output)."""
    CORRECTIONS_TK: Final = "ct"
    """The sum of every correction the provider's account made to the token bucket so far."""
    CORRECTIONS_RQ: Final = "cr"


_NAMES: dict[str, str | int] = {
    "RQ": BucketField.REQUESTS,
    "TK": BucketField.TOKENS,
    "TS": BucketField.UPDATED_MS,
    "COOL": BucketField.COOL_UNTIL_MS,
    "FILL": BucketField.FILL,
    "LR": BucketField.LEARNED_RPM,
    "LT": BucketField.LEARNED_TPM,
    "PR": BucketField.PROVISIONAL_RPM,
    "PG": BucketField.PROVISIONAL_PHASE,
    "OC": BucketField.OUTPUT_CHARGE,
    "FO": BucketField.FLIGHT_OUTPUT,
    "FC": BucketField.FLIGHT_COST,
    "CT": BucketField.CORRECTIONS_TK,
    "CR": BucketField.CORRECTIONS_RQ,
    "IDLE_TTL_MS": BUCKET_IDLE_TTL_MS,
}

# Shared by both scripts. KEYS[1] = scope hash, KEYS[2] = reservation, KEYS[3] = in-flight set.
# ARGV[1] = now ms ("" = Redis server time), [2] configured rpm, [3] configured tpm (0 = none), [4] headroom,
# [5] window ms, [6] burst fraction, [7] fill recovery per ms, [8] slow-start first rpm, [9] slow-start ceiling rpm,
# [10] reservation TTL ms.
_PRELUDE = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
else
  now = tonumber(ARGV[1])
end
local cfg_rpm, cfg_tpm = tonumber(ARGV[2]), tonumber(ARGV[3])
local headroom, window, burst = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local recovery, ss_first, ss_ceiling, ttl = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local h = redis.call('HMGET', KEYS[1], '$RQ', '$TK', '$TS', '$COOL', '$FILL', '$LR', '$LT', '$PR', '$PG', '$OC', '$FO',
  '$FC', '$CT', '$CR')
local lr, lt = tonumber(h[6]) or 0, tonumber(h[7]) or 0
local pr, pg, oc, fo = tonumber(h[8]) or ss_first, tonumber(h[9]) or 0, tonumber(h[10]), tonumber(h[11]) or 0
local fc, ct, cr = tonumber(h[12]) or 0, tonumber(h[13]) or 0, tonumber(h[14]) or 0
local r_rate, r_cap, t_rate, t_cap, unknown
local function limit_of(configured, learned)
  if configured > 0 and learned > 0 then return math.min(configured, learned) end
  return math.max(configured, learned)
end
local function set_rates()
  local rpm, tpm = limit_of(cfg_rpm, lr), limit_of(cfg_tpm, lt)
  unknown = rpm == 0 and tpm == 0
  if unknown then rpm = pr end
  r_rate, t_rate = rpm * headroom / 60000, tpm * headroom / 60000
  r_cap = 0
  if r_rate > 0 then r_cap = math.max(r_rate * window * burst, 1) end
  t_cap = t_rate * window * burst
end
set_rates()
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
  local out = {'$RQ', rq, '$TK', tk, '$TS', now, '$COOL', cool, '$FILL', fill, '$LR', lr, '$LT', lt, '$PR', pr,
    '$PG', pg, '$FO', fo, '$FC', fc, '$CT', ct, '$CR', cr}
  if oc then
    out[#out + 1] = '$OC'
    out[#out + 1] = oc
  end
  redis.call('HSET', KEYS[1], unpack(out))
  redis.call('PEXPIRE', KEYS[1], $IDLE_TTL_MS)
  redis.call('PEXPIRE', KEYS[3], $IDLE_TTL_MS)
end
"""

# ARGV[11] = input-token estimate, [12] output tokens to reserve (the maximum, or the default reserve),
# [13] 1 if the request sends that maximum, [14] reservation id.
# Returns {admitted (1/0), wait ms, now ms, tokens reserved, of which output}.
ADMIT = LuaScript(
    "admit",
    _PRELUDE
    + """
-- Reservations that lapsed unsettled (their worker died) give their output back.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 10)) do
  local m = {}
  for part in string.gmatch(member, '[^|]+') do m[#m + 1] = part end
  fo, fc = math.max(fo - tonumber(m[2]), 0), math.max(fc - tonumber(m[3]), 0)
  redis.call('ZREM', KEYS[3], member)
end
local input, reserve, explicit = tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13] == '1'
local out = reserve
if not explicit and oc then out = math.min(reserve, math.ceil(oc * 1.1) + 8) end
local cost = input + out
if now < cool then
  save()
  return {0, cool - now, now, 0, 0}
end
-- A request larger than the bucket goes when the bucket is full, and leaves it in debt.
local need_t = math.min(cost, t_cap)
local r_ok = r_rate == 0 or rq >= 1
local t_ok = t_rate == 0 or tk >= need_t
if r_ok and t_ok then
  if r_rate > 0 then rq = rq - 1 end
  if t_rate > 0 then tk = tk - cost end
  fo, fc = fo + out, fc + cost
  save()
  -- What the reservation is, and how the buckets stood right after it (none: not limited then): its reply's
  -- account is compared with that.
  local at_t, at_r = t_rate > 0 and tk or 'none', r_rate > 0 and rq or 'none'
  local state = {cost, out, explicit and '1' or '0', at_t, fo, at_r, ct, cr}
  redis.call('SET', KEYS[2], table.concat(state, '|'), 'PX', ttl)
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[14] .. '|' .. out .. '|' .. cost)
  return {1, 0, now, cost, out}
end
local wait = 0
if not r_ok then wait = math.max(wait, (1 - rq) / (r_rate * fill)) end
if not t_ok then wait = math.max(wait, (need_t - tk) / (t_rate * fill)) end
save()
return {0, math.ceil(wait), now, 0, 0}
""",
    _NAMES,
)

# ARGV[11] = outcome (worker.classify.Settle: ok, limited, unavailable, failed), [12] real input tokens ("" = none),
# [13] real output tokens, [14] cool-down ms ("" = none), [15] slow factor, [16] minimum fill,
# [17]-[22] the provider's account, each "" when not sent or not valid: limit-requests, limit-tokens,
# remaining-requests, remaining-tokens, reset-requests ms, reset-tokens ms; [23] learning weight,
# [24] slow-start growth per answered call (rpm), [25] growth after a 429 (rpm), [26] factor on a 429,
# [27] reservation id, [28] the largest output charge to believe (the default reserve).
# Returns 1 if this call settled the reservation, 0 if it was already settled (or lapsed).
SETTLE = LuaScript(
    "settle",
    _PRELUDE
    + """
local raw = redis.call('GET', KEYS[2])
if not raw then return 0 end
local r = {}
for part in string.gmatch(raw, '[^|]+') do r[#r + 1] = part end
local cost, out, explicit = tonumber(r[1]), tonumber(r[2]), r[3] == '1'
local tk_at, fo_at, rq_at = tonumber(r[4]), tonumber(r[5]), tonumber(r[6])
-- Corrections made since this call was admitted were about that same moment too: count them in, not twice.
if tk_at then tk_at = tk_at + ct - tonumber(r[7]) end
if rq_at then rq_at = rq_at + cr - tonumber(r[8]) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[27] .. '|' .. out .. '|' .. cost)
fo, fc = math.max(fo - out, 0), math.max(fc - cost, 0)
local outcome = ARGV[11]
if outcome == 'limited' or outcome == 'unavailable' then
  if t_rate > 0 then tk = math.min(t_cap, tk + cost) end
  if r_rate > 0 then rq = math.min(r_cap, rq + 1) end
  if outcome == 'limited' then
    if ARGV[14] ~= '' then cool = math.max(cool, now + tonumber(ARGV[14])) end
    fill = math.max(tonumber(ARGV[16]), fill * tonumber(ARGV[15]))
    if unknown then
      pr = math.max(ss_first, pr * tonumber(ARGV[26]))
      pg = 1
    end
  end
elseif outcome == 'ok' and unknown then
  if pg == 0 then pr = pr + tonumber(ARGV[24]) else pr = pr + tonumber(ARGV[25]) end
  pr = math.min(ss_ceiling, pr)
end
-- The provider's limits, learned, shared and followed when they change.
local limit_r, limit_t = tonumber(ARGV[17]), tonumber(ARGV[18])
if limit_r then lr = limit_r end
if limit_t then lt = limit_t end
set_rates()
rq, tk = math.min(r_cap, rq), math.min(t_cap, tk)
-- The provider's account wins, both ways. Its deficit when it took this call (how long its bucket needs to be full
-- again, at its rate) is what ours should have been right after we admitted it, less the output other calls then in
-- flight still held; the difference applies to our bucket now, whatever was reserved since.
local rem_r, rem_t = tonumber(ARGV[19]), tonumber(ARGV[20])
local reset_r, reset_t = tonumber(ARGV[21]), tonumber(ARGV[22])
local real_input = tonumber(ARGV[12])
local corrected = false
if outcome == 'ok' and rem_t and t_rate > 0 then
  local provider_tpm = limit_t or limit_of(cfg_tpm, lt)
  if reset_t and provider_tpm > 0 then
    local deficit = reset_t * provider_tpm / 60000 * headroom
    local delta = 0
    if tk_at then
      delta = (t_cap - deficit - (fo_at - out)) - tk_at
      tk = math.min(t_cap, tk + delta)
      ct = ct + delta
    else
      -- Admitted before the limit was known, so nothing was taken from this bucket: start it from the provider's
      -- account less everything still in flight (a little conservative, once).
      tk = math.min(t_cap, t_cap - deficit - fc)
    end
    corrected = true
    if not explicit and real_input then
      local implied = math.max(0, math.min(cost - real_input - delta, tonumber(ARGV[28])))
      if oc then oc = oc + tonumber(ARGV[23]) * (implied - oc) else oc = implied end
    end
  else
    tk = math.min(tk, rem_t)
  end
end
if outcome == 'ok' and not corrected and real_input and t_rate > 0 then
  -- No account to go by: the input estimate gives way to the real input; the output stays as reserved.
  tk = math.min(t_cap, tk + cost - (real_input + out))
end
if outcome == 'ok' and rem_r and r_rate > 0 then
  local provider_rpm = limit_r or limit_of(cfg_rpm, lr)
  if reset_r and provider_rpm > 0 then
    local target = r_cap - reset_r * provider_rpm / 60000 * headroom
    if rq_at then
      rq = math.min(r_cap, rq + target - rq_at)
      cr = cr + target - rq_at
    else
      rq = math.min(r_cap, target)
    end
  else
    rq = math.min(rq, rem_r)
  end
end
save()
return 1
""",
    _NAMES,
)


@dataclass(frozen=True)
class BucketParams:
    """ARGV[1..10] of both scripts: the clock, the configured limits and the bucket's shape."""

    now_ms: int | None
    configured_rpm: int
    configured_tpm: int
    headroom: float
    window_ms: float
    burst_fraction: float
    recovery_per_ms: float
    slow_start_rpm: float
    slow_start_ceiling_rpm: float

    def args(self) -> list[Arg]:
        return [
            "" if self.now_ms is None else str(self.now_ms),
            self.configured_rpm,
            self.configured_tpm,
            self.headroom,
            self.window_ms,
            self.burst_fraction,
            self.recovery_per_ms,
            self.slow_start_rpm,
            self.slow_start_ceiling_rpm,
            RESERVATION_TTL_MS,
        ]


@dataclass(frozen=True)
class ProviderAccount:
    """What a reply's ``x-ratelimit-*`` headers said, each None when absent or not valid."""

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests_ms: float | None = None
    reset_tokens_ms: float | None = None

    def args(self) -> list[Arg]:
        values = (
            self.limit_requests,
            self.limit_tokens,
            self.remaining_requests,
            self.remaining_tokens,
            self.reset_requests_ms,
            self.reset_tokens_ms,
        )
        return ["" if value is None else value for value in values]


@dataclass(frozen=True)
class SettleArgs:
    """ARGV[11..28] of ``SETTLE``."""

    outcome: str
    input_tokens: int | None
    output_tokens: int | None
    cooldown_ms: float | None
    slow_factor: float
    min_fill: float
    account: ProviderAccount
    learning_weight: float
    slow_start_growth_rpm: float
    avoidance_growth_rpm: float
    backoff_factor: float
    reservation_id: str
    output_charge_ceiling: int

    def args(self) -> list[Arg]:
        return [
            self.outcome,
            "" if self.input_tokens is None else self.input_tokens,
            "" if self.output_tokens is None else self.output_tokens,
            "" if self.cooldown_ms is None else self.cooldown_ms,
            self.slow_factor,
            self.min_fill,
            *self.account.args(),
            self.learning_weight,
            self.slow_start_growth_rpm,
            self.avoidance_growth_rpm,
            self.backoff_factor,
            self.reservation_id,
            self.output_charge_ceiling,
        ]


@dataclass(frozen=True)
class Admitted:
    admitted: bool
    wait_ms: int
    now_ms: int
    tokens: int
    output_tokens: int


def _admitted(reply: list[int]) -> Admitted:
    admitted, wait_ms, now_ms, tokens, output = reply
    return Admitted(bool(admitted), int(wait_ms), int(now_ms), int(tokens), int(output))


class LimitStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._admit = ADMIT.bind(redis)
        self._settle = SETTLE.bind(redis)

    def queue_admit(
        self,
        trip: RoundTrip,
        bucket: str,
        flight: str,
        reservation: str,
        reservation_id: str,
        params: BucketParams,
        *,
        input_tokens: int,
        output_tokens: int,
        explicit_max: bool,
    ) -> Slot[Admitted]:
        """``ADMIT`` as a step of ``trip``; when admitted, the ``reservation`` key exists for the steps after it."""
        args = [*params.args(), input_tokens, output_tokens, "1" if explicit_max else "0", reservation_id]
        return trip.script(self._admit, [bucket, reservation, flight], args, _admitted)

    def queue_settle(
        self, trip: RoundTrip, bucket: str, flight: str, reservation: str, params: BucketParams, how: SettleArgs
    ) -> Slot[bool]:
        """``SETTLE`` as a step of ``trip``: False if the reservation was settled already."""
        return trip.script(self._settle, [bucket, reservation, flight], [*params.args(), *how.args()], bool)

    async def settle(self, bucket: str, flight: str, reservation: str, params: BucketParams, how: SettleArgs) -> bool:
        return await single(self._redis, lambda trip: self.queue_settle(trip, bucket, flight, reservation, params, how))

    async def learned(self, bucket: str) -> dict[str, int]:
        """The provider's per-minute limits the admission learned for a scope (``rpm``/``tpm``, those it knows)."""
        raw = await awaited(self._redis.hmget(bucket, [BucketField.LEARNED_RPM, BucketField.LEARNED_TPM]))
        found = {name: int(float(value)) for name, value in zip(("rpm", "tpm"), raw, strict=True) if value}
        return {name: value for name, value in found.items() if value > 0}

    async def levels(self, bucket: str) -> dict[str, float]:
        """A scope's stored state (for tests); not refilled to now."""
        raw = await awaited(self._redis.hgetall(bucket))
        return {k.decode(): float(v) for k, v in raw.items()}
