"""A batch's budget in dollars and in tokens, held for the whole fleet by Redis.

Every call reserves its worst case before it goes out, in the script that counts it as sent
(``store.accounts.BEGIN_CALL``): its input estimate and its output cap (``--max-output-tokens``, else the worker's
``default_output_reserve``) at the price of the tier asked for. The reservation is refused when what the batch has
spent, plus what its calls in flight have reserved, plus this call's worst case would pass a budget. If it would pass
even with nothing in flight, the same step pauses the batch (``PAUSED``: "budget reached ..."), so no worker starts
another call for it, and the job goes back to the queue unrecorded (its line stays pending); otherwise the line only
waits a moment, for the calls in flight to settle (most cost less than their worst case), and tries again. When the call
returns (``ADD_CALL``) its reservation is replaced by what it cost (its usage at the price of the tier that served it).
A reservation left over (a call nobody saw return: SIGKILL) moves to *spent* when the line's next try begins
(``store.accounts.BEGIN_TRY``) or the line is recorded (``store.results.RECORD``): it may have been billed.

**The bound.** The batch never spends more than its budget plus the amount by which its calls in flight, at the
moment the budget was reached, cost more than they reserved. With ``--max-output-tokens`` set a call's output cannot
pass its reservation, so the excess is at most the input under-estimate of those calls (the estimate is calibrated,
see ``worker.tokens``); without it, also what their output passed ``default_output_reserve``. A call whose
provider price is unknown reserves and costs 0 dollars (submit refuses ``--budget-usd`` for such a model).

A batch without a budget reserves nothing (its calls' worst cases are not kept), but what it spends is counted from
its first call, so a budget set later by ``producer budget`` counts what was spent before it. Amounts are integers:
micro-dollars (a price in USD per million tokens times tokens is micro-dollars) and tokens.
``producer budget BATCH --usd X --tokens N`` sets the budgets and, when the batch was paused by its budget, resumes it.

**A batch and its shadow** (``producer.submit.shadow``) share the budget given to the main batch, split between them
once, at submit, in proportion to their estimates (``producer.submit.estimate``: dollars by estimated cost, tokens by
estimated tokens). The main record keeps the shadow's shares (``SHADOW_SHARE_*``) and the whole (``GROUP_BUDGET_*``);
each record's own ``BUDGET_*`` is its part, enforced by the scripts above exactly as for any batch. ``SPLIT_BUDGET``
records the shares and gives both their parts in one step (``producer budget MAIN`` splits a new whole by the same
shares and lifts a budget pause on both); a shadow recorded later takes its part as it is created (``SHADOW_PART_LUA``,
in ``store.batches.CREATE``). A part is never 0 ("none"): the shadow's is at least 1 and the main's the rest. Split
rather than pooled because each batch's calls reserve and settle against their own record (``store.accounts``); the cost
is that an estimate that is off pauses one batch while the other has budget left: ``producer budget MAIN`` with a larger
whole goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from store.fields import F
from store.keys import BatchKeys
from store.scripts import LuaScript

MICRO = 1_000_000

# Lua functions over KEYS[1], the batch record (include in a script with F.lua_names()).
BUDGET_LUA = """
local function budget_over(wm, wt)
  -- false: the call fits; 'wait': it fits once the calls in flight have settled; else the pause reason (it cannot
  -- fit even with nothing in flight). Second value: whether the batch has a budget at all.
  local b = redis.call('HMGET', KEYS[1], '$BUDGET_MICRO_USD', '$SPENT_MICRO_USD', '$RESERVED_MICRO_USD',
    '$BUDGET_TOKENS', '$SPENT_TOKENS', '$RESERVED_TOKENS')
  if not b[1] and not b[4] then return false, false end
  local su, ru, st, rt = tonumber(b[2] or '0'), tonumber(b[3] or '0'), tonumber(b[5] or '0'), tonumber(b[6] or '0')
  if b[1] and su + wm > tonumber(b[1]) then
    return string.format('budget reached: $$%.4f spent, and the next call may cost $$%.4f, over the budget of '
      .. '$$%.4f (raise it: producer budget BATCH --usd X)', su / 1e6, wm / 1e6, tonumber(b[1]) / 1e6), true
  end
  if b[4] and st + wt > tonumber(b[4]) then
    return string.format('token budget reached: %d tokens billed, and the next call may take %d, over the budget '
      .. 'of %d (raise it: producer budget BATCH --tokens N)', st, wt, tonumber(b[4])), true
  end
  if (b[1] and su + ru + wm > tonumber(b[1])) or (b[4] and st + rt + wt > tonumber(b[4])) then return 'wait', true end
  return false, true
end
local function budget_reserve(wm, wt)
  if wm > 0 then redis.call('HINCRBY', KEYS[1], '$RESERVED_MICRO_USD', wm) end
  if wt > 0 then redis.call('HINCRBY', KEYS[1], '$RESERVED_TOKENS', wt) end
end
local function budget_settle(wm, wt, am, at)
  -- the reservation (made by this same call, so never more than what is reserved) becomes what the call cost
  if wm > 0 then redis.call('HINCRBY', KEYS[1], '$RESERVED_MICRO_USD', -wm) end
  if wt > 0 then redis.call('HINCRBY', KEYS[1], '$RESERVED_TOKENS', -wt) end
  if am > 0 then redis.call('HINCRBY', KEYS[1], '$SPENT_MICRO_USD', am) end
  if at > 0 then redis.call('HINCRBY', KEYS[1], '$SPENT_TOKENS', at) end
end
"""

# Lua functions: lifting a budget pause, and the parts of a budget given to a batch and its shadow.
_LIFT_LUA = """
local function lift_budget_pause(record)
  -- the pause reason lifted ('' if the batch was not paused by its budget)
  local reason = redis.call('HGET', record, '$PAUSED') or ''
  if string.find(reason, 'budget reached', 1, true) then
    redis.call('HDEL', record, '$PAUSED', '$PAUSED_AT')
    return reason
  end
  return ''
end
"""

SHADOW_PART_LUA = """
local function budget_parts(whole, share)
  -- {the main batch's part, the shadow's}: the shadow's share, at least 1, the main's the rest (never 0 = none)
  if whole < 2 then return {whole, whole} end
  local part = math.floor(whole * share + 0.5)
  if part < 1 then part = 1 elseif part > whole - 1 then part = whole - 1 end
  return {whole - part, part}
end
local function shadow_budget(record, main)
  -- a shadow batch being recorded (record) takes its part of the budget given to its main batch (main)
  local m = redis.call('HMGET', main, '$GROUP_BUDGET_MICRO_USD', '$GROUP_BUDGET_TOKENS', '$SHADOW_SHARE_USD',
    '$SHADOW_SHARE_TOKENS')
  for i, own in ipairs({'$BUDGET_MICRO_USD', '$BUDGET_TOKENS'}) do
    if m[i] and m[i + 2] then
      redis.call('HSET', record, own, string.format('%d', budget_parts(tonumber(m[i]), tonumber(m[i + 2]))[2]))
    end
  end
end
"""

# KEYS: batch record. ARGV: budget micro-dollars ("" = leave, "0" = none), budget tokens (the same). Returns the
# pause reason it lifted ("" if the batch was not paused by its budget); -1 when the batch is gone.
SET_BUDGET = LuaScript(
    "budget_set",
    _LIFT_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i, field in ipairs({'$BUDGET_MICRO_USD', '$BUDGET_TOKENS'}) do
  if ARGV[i] == '0' then redis.call('HDEL', KEYS[1], field)
  elseif ARGV[i] ~= '' then redis.call('HSET', KEYS[1], field, ARGV[i]) end
end
return lift_budget_pause(KEYS[1])
""",
    F.lua_names(),
)

# KEYS: the main batch's record, its shadow's (which may not exist yet). ARGV: the whole budget in micro-dollars
# ("" = leave, "0" = none), in tokens (the same); the shadow's shares of each, recorded unless the main batch has
# shares already; "1" to do nothing at all when it had (a submit run again keeps a split made since). Gives each
# record its part of each whole and lifts a budget pause on both. Returns {1, the main's pause lifted, the shadow's}
# ("" = none); {0, "", ""} when it did nothing; {-1, "", ""} when the main batch is gone.
SPLIT_BUDGET = LuaScript(
    "budget_split",
    _LIFT_LUA
    + SHADOW_PART_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, '', ''} end
local fresh = redis.call('HSETNX', KEYS[1], '$SHADOW_SHARE_USD', ARGV[3])
redis.call('HSETNX', KEYS[1], '$SHADOW_SHARE_TOKENS', ARGV[4])
if fresh == 0 and ARGV[5] == '1' then return {0, '', ''} end
local shadow = redis.call('EXISTS', KEYS[2]) == 1
local shares = redis.call('HMGET', KEYS[1], '$SHADOW_SHARE_USD', '$SHADOW_SHARE_TOKENS')
local fields = {{'$GROUP_BUDGET_MICRO_USD', '$BUDGET_MICRO_USD'}, {'$GROUP_BUDGET_TOKENS', '$BUDGET_TOKENS'}}
for i = 1, 2 do
  local whole, own = fields[i][1], fields[i][2]
  if ARGV[i] == '0' then
    redis.call('HDEL', KEYS[1], whole, own)
    if shadow then redis.call('HDEL', KEYS[2], own) end
  elseif ARGV[i] ~= '' then
    local parts = budget_parts(tonumber(ARGV[i]), tonumber(shares[i]))
    redis.call('HSET', KEYS[1], whole, ARGV[i], own, string.format('%d', parts[1]))
    if shadow then redis.call('HSET', KEYS[2], own, string.format('%d', parts[2])) end
  end
end
return {1, lift_budget_pause(KEYS[1]), shadow and lift_budget_pause(KEYS[2]) or ''}
""",
    F.lua_names(),
)


@dataclass(frozen=True)
class BudgetState:
    budget_usd: float | None
    spent_usd: float
    reserved_usd: float
    budget_tokens: int | None
    spent_tokens: int
    reserved_tokens: int


@dataclass(frozen=True)
class BudgetSplit:
    """How a batch with a shadow shares its budget with it (the main batch's record says)."""

    shadow_share_usd: float
    """The shadow's share of a dollar budget (its estimated cost over both batches')."""
    shadow_share_tokens: float
    group_usd: float | None
    """The dollar budget given to the two together (None: none); each batch's own part is its ``BudgetState``."""
    group_tokens: int | None


def split_from(fields: Mapping[str, bytes]) -> BudgetSplit | None:
    """The split a batch record holds (None: the batch shares no budget with a shadow)."""
    usd, tokens = fields.get(F.SHADOW_SHARE_USD), fields.get(F.SHADOW_SHARE_TOKENS)
    if usd is None or tokens is None:
        return None
    group_usd, group_tokens = fields.get(F.GROUP_BUDGET_MICRO_USD), fields.get(F.GROUP_BUDGET_TOKENS)
    return BudgetSplit(
        shadow_share_usd=float(usd),
        shadow_share_tokens=float(tokens),
        group_usd=int(group_usd) / MICRO if group_usd is not None else None,
        group_tokens=int(group_tokens) if group_tokens is not None else None,
    )


@dataclass(frozen=True)
class Shares:
    """The shadow's shares of the budgets (0 < share < 1)."""

    usd: float
    tokens: float


@dataclass(frozen=True)
class Lifted:
    """What ``split`` did: whether it split (False: shares were recorded before and ``only_if_new``), and the budget
    pauses it lifted (None: not paused by the budget)."""

    split: bool
    main: str | None
    shadow: str | None


def micro_usd(usd: float) -> int:
    return round(usd * MICRO)


def _budget_arg(value: float | int | None, *, usd: bool) -> str:
    if value is None:
        return ""
    return str(micro_usd(value) if usd else int(value))


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class BudgetStore:
    def __init__(self, redis: Redis) -> None:
        self._set = SET_BUDGET.bind(redis)
        self._split = SPLIT_BUDGET.bind(redis)

    async def split(
        self,
        main: BatchKeys,
        shadow: BatchKeys,
        *,
        usd: float | None,
        tokens: int | None,
        shares: Shares,
        only_if_new: bool = False,
    ) -> Lifted | None:
        """Give a batch and its shadow their parts of the budgets given to the two (0 removes one), by the shares the
        main record holds (``shares`` are recorded when it holds none). None when the main batch is gone."""
        code, lifted_main, lifted_shadow = await self._split(
            [main.record, shadow.record],
            [
                _budget_arg(usd, usd=True),
                _budget_arg(tokens, usd=False),
                repr(shares.usd),
                repr(shares.tokens),
                "1" if only_if_new else "0",
            ],
        )
        if int(code) < 0:
            return None
        return Lifted(int(code) == 1, _text(lifted_main) or None, _text(lifted_shadow) or None)

    async def set(self, keys: BatchKeys, *, usd: float | None, tokens: int | None) -> str | int | None:
        """Set the budgets given (0 removes one); returns the budget pause it lifted, None, or -1 (no batch)."""
        raw = await self._set(
            [keys.record],
            ["" if usd is None else str(micro_usd(usd)), "" if tokens is None else str(tokens)],
        )
        if isinstance(raw, int):
            return raw
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return text or None
