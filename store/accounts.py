"""A running line's account of its API calls and its tries, kept in Redis so it survives retries and restarts.

One hash per batch, ``{p}batch:{id}:accounts``: field = the line's ordinal, value = a small JSON object that the
scripts below update atomically:

| key | what |
| --- | --- |
| ``n``, ``r``, ``l`` | calls made (billed or not), repairs, their latency in ms |
| ``u`` | usage billed, in ``USAGE_FIELDS`` order |
| ``id`` | the last response id |
| ``o``, ``oe`` | calls sent and not returned yet, and their input estimate: an abandoned call (SIGKILL) stays |
| ``p``, ``pt`` | calls without an answer that may still be billed (client timeout, dropped connection) |
| ``e``, ``i``, ``w``, ``f`` | the retry history (``worker.policy``): errors, internal errors, waits, first error ms |
| ``v`` | a version bumped by every change (``cancel`` builds a record from one version) |
| ``rq``, ``st``, ``ff`` | the last call's provider request id, the tier that served it, a flex fallback to auto |
| ``fu`` | when a flex call of the line was first refused for capacity (ms; ``--flex-fallback-after``) |
| ``rl`` | tries of the line that ended in a 429 (``e`` counts the other errors) |
| ``tr`` | tries of the line cut off well below the cap (``truncated``; also counted in ``e``) |
| ``bm``, ``bt`` | the budget reservations (micro-dollars, tokens) of its calls in flight (``store.budget``) |

Every call is counted the moment it returns, so the line's result covers every billed call of every try. A call
that never returns (its worker was killed) is settled when the line's next try begins (``BEGIN_TRY``): it becomes
possibly billed and its budget reservation is released as spent.
Recording the line deletes its field and adds what is left in ``o``/``p`` to the batch's *possibly billed* totals
(``store.results``), so the hash holds only lines in flight and vanishes when none is. Nothing is written for a
batch that no longer exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from schemas.records import CallTotals
from schemas.results import Usage
from store.budget import BUDGET_LUA
from store.fields import F
from store.keys import BatchKeys
from store.redis_typing import awaited
from store.scripts import Arg, LuaScript, RoundTrip, Slot, single
from store.usage import USAGE_FIELDS, usage_args, usage_from

_N = len(USAGE_FIELDS)


@dataclass(frozen=True)
class BudgetCharge:
    """An amount against a batch's budget (``store.budget``): micro-dollars and tokens."""

    micro_usd: int = 0
    tokens: int = 0


NO_CHARGE = BudgetCharge()

_ACCOUNT_LUA = """
local function load_account()
  local raw = redis.call('HGET', KEYS[2], ARGV[1])
  return raw and cjson.decode(raw) or {}
end
local function save_account(a)
  a.v = (a.v or 0) + 1
  local encoded = cjson.encode(a)
  redis.call('HSET', KEYS[2], ARGV[1], encoded)
  return a.v, encoded
end
"""

# KEYS: batch record, accounts[, the call's admission reservation]. ARGV: ordinal, input-token estimate of the call
# about to be sent, its worst-case cost in micro-dollars and in tokens (``store.budget``), now (ISO-8601). With a
# reservation key, nothing happens unless it exists: the worker sends this in the same round trip as the admission
# (``store.limits.ADMIT``), which creates it only if the call was admitted.
# Returns the account's new version, 0 when not admitted, -1 when the batch is gone, -2 when the call would pass the
# batch's budget (the batch is paused with the reason; nothing is counted), -3 when it would pass it only because of
# the calls in flight (wait for them to settle; nothing is counted).
BEGIN_CALL = LuaScript(
    "account_begin_call",
    _ACCOUNT_LUA
    + BUDGET_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if #KEYS >= 3 and redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
local wm, wt = tonumber(ARGV[3] or '0'), tonumber(ARGV[4] or '0')
local over, budgeted = budget_over(wm, wt)
if not budgeted then wm, wt = 0, 0 end  -- nothing to hold back: no reservation to keep
if over == 'wait' then return -3 end
if over then
  if redis.call('HSETNX', KEYS[1], '$PAUSED', over) == 1 then redis.call('HSET', KEYS[1], '$PAUSED_AT', ARGV[5]) end
  return -2
end
budget_reserve(wm, wt)
local a = load_account()
a.o = (a.o or 0) + 1
a.oe = (a.oe or 0) + tonumber(ARGV[2])
a.bm = (a.bm or 0) + wm
a.bt = (a.bt or 0) + wt
return save_account(a)
""",
    F.lua_names(),
)

# KEYS: batch record, accounts. ARGV: ordinal, latency ms, repair (1/0), response id ("" = none), possibly billed
# (1/0: no answer, but the provider may have counted it), the call's input-token estimate, the usage, then the
# provider's request id ("" = none), the tier that served it ("" = unknown), the call's budget reservation
# (micro-dollars, tokens), what it cost (micro-dollars, tokens), 1 if it was a flex line's fallback to auto, and the
# call's uncalibrated input estimate (0 = none; with the reported input it calibrates ``producer estimate``).
# Returns the account as saved (JSON: the job records its totals from it, without reading it again), or -1 when the
# batch is gone.
ADD_CALL = LuaScript(
    "account_add_call",
    _ACCOUNT_LUA
    + BUDGET_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local a = load_account()
local estimate = tonumber(ARGV[6])
a.n = (a.n or 0) + 1
a.l = (a.l or 0) + tonumber(ARGV[2])
if ARGV[3] == '1' then a.r = (a.r or 0) + 1 end
if ARGV[4] ~= '' then a.id = ARGV[4] end
if (a.o or 0) > 0 then
  a.o = a.o - 1
  a.oe = math.max((a.oe or 0) - estimate, 0)
end
if ARGV[5] == '1' then
  a.p = (a.p or 0) + 1
  a.pt = (a.pt or 0) + estimate
end
local u = a.u or {}
for i = 1, $N do u[i] = (u[i] or 0) + tonumber(ARGV[6 + i]) end
a.u = u
local at = 6 + $N
if ARGV[at + 1] ~= '' then a.rq = ARGV[at + 1] end
if ARGV[at + 2] ~= '' then a.st = ARGV[at + 2] end
local wm, wt = math.min(tonumber(ARGV[at + 3]), a.bm or 0), math.min(tonumber(ARGV[at + 4]), a.bt or 0)
budget_settle(wm, wt, tonumber(ARGV[at + 5]), tonumber(ARGV[at + 6]))
a.bm, a.bt = (a.bm or 0) - wm, (a.bt or 0) - wt
if ARGV[at + 7] == '1' then a.ff = 1 end
local raw, input = tonumber(ARGV[at + 8] or '0'), tonumber(ARGV[7] or '0')
if raw > 0 and input > 0 then
  redis.call('HINCRBY', KEYS[1], '$CALIBRATION_RAW_INPUT', raw)
  redis.call('HINCRBY', KEYS[1], '$CALIBRATION_INPUT', input)
end
local _, encoded = save_account(a)
return encoded
""",
    {**F.lua_names(), "N": _N},
)

# KEYS: batch record, accounts. ARGV: ordinal, now ms, ending (worker.policy.Ending value), flex refused for capacity
# (1/0: a 429 resource_unavailable). A try that ended in an error (not a wait) also counts in the batch record:
# RATE_LIMITED for a 429, TRIES_FAILED for anything else.
# Returns {errors, internal errors, waits, first error ms (0 = none), cut-offs}; {-1, 0, 0, 0, 0} when the batch is
# gone.
NOTE_ENDING = LuaScript(
    "account_note_ending",
    _ACCOUNT_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0, 0, 0, 0} end
local a = load_account()
local ending = ARGV[3]
if ARGV[4] == '1' then a.fu = a.fu or tonumber(ARGV[2]) end
if ending == 'waiting' or ending == 'held' then
  a.w = (a.w or 0) + 1
else
  a.f = a.f or tonumber(ARGV[2])
  if ending == 'internal' then
    a.i = (a.i or 0) + 1
  elseif ending ~= 'rate_limited' then
    a.e = (a.e or 0) + 1
    if ending == 'truncated' then a.tr = (a.tr or 0) + 1 end
  else
    a.rl = (a.rl or 0) + 1
  end
  -- the batch's own running counts, for `wait` ("retries and 429s in the last minute")
  redis.call('HINCRBY', KEYS[1], ending == 'rate_limited' and '$RATE_LIMITED' or '$TRIES_FAILED', 1)
end
save_account(a)
return {a.e or 0, a.i or 0, a.w or 0, a.f or 0, a.tr or 0}
""",
    F.lua_names(),
)


# KEYS: batch record, accounts. ARGV: ordinal. A try of the line begins: no call of an earlier try can still answer
# (only one try of a line runs at a time, under its lease: ``store.workers``), so calls still counted as outstanding
# were abandoned -- their worker was killed, or the try was cancelled mid-call. Each becomes *possibly billed*, and
# its budget reservation is settled as spent (it may have been billed) and released from what is in flight: the
# batch's other lines stop waiting for it, and if it passed the budget the next call pauses the batch with the reason.
# Returns the account as it is now (saved only when something was settled), or nothing when there is none.
BEGIN_TRY = LuaScript(
    "account_begin_try",
    _ACCOUNT_LUA
    + BUDGET_LUA
    + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return false end
local a = cjson.decode(raw)
local open, bm, bt = a.o or 0, a.bm or 0, a.bt or 0
if open == 0 and bm == 0 and bt == 0 then return raw end
if open > 0 then
  a.p, a.pt = (a.p or 0) + open, (a.pt or 0) + (a.oe or 0)
  a.o, a.oe = 0, 0
end
if (bm > 0 or bt > 0) and redis.call('EXISTS', KEYS[1]) == 1 then budget_settle(bm, bt, bm, bt) end
a.bm, a.bt = 0, 0
local _, encoded = save_account(a)
return encoded
""",
    F.lua_names(),
)


@dataclass(frozen=True)
class Account:
    """A line's account, decoded; its retry history is what ``NOTE_ENDING`` answers (:class:`EndingCounts`)."""

    totals: CallTotals
    version: int
    outstanding: int
    """Calls sent whose end nobody saw (an abandoned call)."""
    possibly_billed: int
    flex_unavailable_since_ms: int | None = None
    """When a flex call of the line was first refused for capacity."""


def decode_account(raw: bytes | None) -> Account:
    if raw is None:
        return Account(CallTotals(), 0, 0, 0, None)
    data = orjson.loads(raw)
    usage = data.get("u") or []
    return Account(
        totals=CallTotals(
            usage=usage_from(usage) if usage else Usage(),
            attempts=int(data.get("n", 0)),
            repairs=int(data.get("r", 0)),
            latency_ms=int(data.get("l", 0)),
            last_response_id=data.get("id"),
            last_request_id=data.get("rq"),
            service_tier=data.get("st"),
            flex_fallback=bool(data.get("ff")),
            retries=int(data.get("e", 0)) + int(data.get("i", 0)),
            rate_limited=int(data.get("rl", 0)),
        ),
        version=int(data.get("v", 0)),
        outstanding=int(data.get("o", 0)),
        possibly_billed=int(data.get("p", 0)),
        flex_unavailable_since_ms=int(data["fu"]) if data.get("fu") is not None else None,
    )


def _account_or_gone(raw: bytes | int) -> Account | None:
    return None if isinstance(raw, int) else decode_account(raw)


@dataclass(frozen=True)
class EndingCounts:
    errors: int
    internal: int
    waits: int
    first_error_ms: int | None
    cut_offs: int = 0


class Accounts:
    """The accounts of one Redis connection's lines; cheap to share across jobs."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._begin_call = BEGIN_CALL.bind(redis)
        self._add_call = ADD_CALL.bind(redis)
        self._note_ending = NOTE_ENDING.bind(redis)
        self._begin_try = BEGIN_TRY.bind(redis)

    def queue_begin_call(
        self,
        trip: RoundTrip,
        keys: BatchKeys,
        ordinal: int,
        *,
        estimate: int,
        if_reserved: str | None = None,
        worst: BudgetCharge = NO_CHARGE,
        now_iso: str = "",
    ) -> Slot[int]:
        """A call is about to be sent: until :meth:`queue_add_call` it counts as outstanding (possibly billed if
        abandoned), and its ``worst`` case is reserved against the batch's budget (-2: refused, the batch paused; -3:
        wait for the calls in flight). With ``if_reserved`` (a reservation key queued before it in ``trip``), only if
        that reservation was made (0: it was not)."""
        script_keys = [keys.record, keys.accounts] + ([if_reserved] if if_reserved is not None else [])
        args: list[Arg] = [ordinal, estimate, worst.micro_usd, worst.tokens, now_iso]
        return trip.script(self._begin_call, script_keys, args, int)

    async def begin_call(self, keys: BatchKeys, ordinal: int, *, estimate: int, worst: BudgetCharge = NO_CHARGE) -> int:
        return await single(
            self._redis, lambda trip: self.queue_begin_call(trip, keys, ordinal, estimate=estimate, worst=worst)
        )

    def queue_add_call(
        self,
        trip: RoundTrip,
        keys: BatchKeys,
        ordinal: int,
        *,
        usage: Usage | None,
        response_id: str | None,
        latency_ms: int,
        repair: bool,
        possibly_billed: bool = False,
        estimate: int = 0,
        request_id: str | None = None,
        service_tier: str | None = None,
        reserved: BudgetCharge = NO_CHARGE,
        cost: BudgetCharge = NO_CHARGE,
        flex_fallback: bool = False,
        raw_input: int = 0,
    ) -> Slot[Account | None]:
        """Count one API call that returned (``usage`` None: no reply), as a step of ``trip``, and replace its budget
        reservation by its ``cost``: the account after it, or None when the batch is gone."""
        counts = usage_args(usage) if usage is not None else [0] * _N
        args = [
            ordinal,
            latency_ms,
            "1" if repair else "0",
            response_id or "",
            "1" if possibly_billed else "0",
            estimate,
            *counts,
            request_id or "",
            service_tier or "",
            reserved.micro_usd,
            reserved.tokens,
            cost.micro_usd,
            cost.tokens,
            "1" if flex_fallback else "0",
            raw_input,
        ]
        return trip.script(self._add_call, [keys.record, keys.accounts], args, _account_or_gone)

    async def note_ending(
        self, keys: BatchKeys, ordinal: int, now_ms: int, ending: str, *, flex_unavailable: bool = False
    ) -> EndingCounts | None:
        """Count a try's ending (a ``worker.policy.Ending`` value). None when the batch is gone."""
        errors, internal, waits, first, cut_offs = await self._note_ending(
            [keys.record, keys.accounts], [ordinal, now_ms, ending, "1" if flex_unavailable else "0"]
        )
        if int(errors) < 0:
            return None
        return EndingCounts(int(errors), int(internal), int(waits), int(first) or None, int(cut_offs))

    def queue_begin_try(self, trip: RoundTrip, keys: BatchKeys, ordinal: int) -> Slot[Account]:
        """A try of the line begins (:data:`BEGIN_TRY`): calls an earlier try left unanswered are settled as possibly
        billed and their budget reservations released. The account after that."""
        return trip.script(self._begin_try, [keys.record, keys.accounts], [ordinal], decode_account)

    def queue_get(self, trip: RoundTrip, keys: BatchKeys, ordinal: int) -> Slot[Account]:
        return trip.command("HGET", keys.accounts, str(ordinal), parse=decode_account)

    async def get(self, keys: BatchKeys, ordinal: int) -> Account:
        return await single(self._redis, lambda trip: self.queue_get(trip, keys, ordinal))

    async def get_many(self, keys: BatchKeys, ordinals: Sequence[int]) -> list[Account]:
        if not ordinals:
            return []
        raw = await awaited(self._redis.hmget(keys.accounts, [str(o) for o in ordinals]))
        return [decode_account(value) for value in raw]
