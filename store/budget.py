"""A batch's budget in dollars and in tokens, held for the whole fleet by Redis.

Every call reserves its worst case before it goes out, in the script that counts it as sent
(``store.accounts.BEGIN_CALL``): its input estimate and its output cap (``--max-output-tokens``, else the output the
admission reserves) at the price of the tier asked for. The reservation is refused when what the batch has spent,
plus what its calls in flight have reserved, plus this call's worst case would pass a budget. If it would pass even
with nothing in flight, the same step pauses the batch (``PAUSED``: "budget reached ..."), so no worker starts another
call for it, and the job goes back to the queue unrecorded (its line stays pending); otherwise the line only waits a
moment, for the calls in flight to settle (most cost less than their worst case), and tries again. When the call
returns (``ADD_CALL``) its reservation is replaced by what it cost
(its usage at the price of the tier that served it). A line recorded with a reservation left over (a call nobody saw
return: SIGKILL) moves it to *spent* (``store.results.RECORD``): it may have been billed.

**The bound.** The batch never spends more than its budget plus the amount by which its calls in flight, at the
moment the budget was reached, cost more than they reserved. With ``--max-output-tokens`` set a call's output cannot
pass its reservation, so the excess is at most the input under-estimate of those calls (the estimate is calibrated,
see ``worker.tokens``); without it, also what their output passed the admission's output reserve. A call whose
provider price is unknown reserves and costs 0 dollars (submit refuses ``--budget-usd`` for such a model).

A batch without a budget reserves nothing (its calls' worst cases are not kept), but what it spends is counted from
its first call, so a budget set later by ``producer budget`` counts what was spent before it. Amounts are integers:
micro-dollars (a price in USD per million tokens times tokens is micro-dollars) and tokens.
``producer budget BATCH --usd X --tokens N`` sets the budgets and, when the batch was paused by its budget, resumes it.
"""

from __future__ import annotations

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

# KEYS: batch record. ARGV: budget micro-dollars ("" = leave, "0" = none), budget tokens (the same). Returns the
# pause reason it lifted ("" if the batch was not paused by its budget); -1 when the batch is gone.
SET_BUDGET = LuaScript(
    "budget_set",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i, field in ipairs({'$BUDGET_MICRO_USD', '$BUDGET_TOKENS'}) do
  if ARGV[i] == '0' then redis.call('HDEL', KEYS[1], field)
  elseif ARGV[i] ~= '' then redis.call('HSET', KEYS[1], field, ARGV[i]) end
end
local reason = redis.call('HGET', KEYS[1], '$PAUSED') or ''
if string.find(reason, 'budget reached', 1, true) then
  redis.call('HDEL', KEYS[1], '$PAUSED', '$PAUSED_AT')
  return reason
end
return ''
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


def micro_usd(usd: float) -> int:
    return round(usd * MICRO)


class BudgetStore:
    def __init__(self, redis: Redis) -> None:
        self._set = SET_BUDGET.bind(redis)

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
