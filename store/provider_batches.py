"""The Batch API venue's records: each line's way through a provider batch, the parts (provider batches) a batch
made, the fleet-wide enqueued-token reservations and the cap on creations per hour. The one writer of these keys.

A line of a ``batch-api`` batch (``schemas.venues``) moves through these states, each a small JSON object under
``l:{ordinal}`` of the batch's ``venue`` hash (``s`` the state, ``n`` its part, ``t`` its estimated input tokens,
``j`` the arq job id to wake, ``r`` the provider batches it went through without an answer, ``w`` why it left the
last one)::

    (none) --STAGE--> staged --SEAL--> sent --DELIVER--> answered --(recorded: FORGET)--> (none)
                         ^               |
                         `-- STAGE <-- resend <--RESEND-- (expired, cancelled, failed, in neither file)
    (none|resend) --MOVE--> sync   (the line goes on synchronously: ``choose_venue`` said so)

- ``STAGE`` (the line's job): the request body under ``b:{ordinal}`` and the ordinal in the batch's ``staging``
  zset; the batch into the fleet's ``venue:staging`` index. A line in any state but ``resend`` is not staged again.
  A batch with a budget (``store.budget``) reserves the line's worst case at the batch price as it is staged, by
  the same rule as a synchronous call's (refused while what is in flight would pass the budget; the batch paused
  when it cannot fit at all); the reservation is let go right after the job has charged the answer's cost
  (``COUNTED``: charge first, so the budget is never under-counted), or when the line is sent on (``RESEND``,
  ``ANSWER_FAILED``) or recorded (``FORGET``).
- ``SEAL`` (the part keeper): up to a part's lines and bytes of the staged ones, oldest first, become part ``n``: its
  record ``p:{n}`` (JSON, :class:`Part`), its ordinals ``o:{n}``, and ``{id}:{n}`` in the fleet's ``venue:parts``.
  The bodies stay until the provider batch is created (``drop_bodies``): a worker that dies uploading loses nothing.
- ``DELIVER`` (the part keeper, reading the output file): an answer (``a:{ordinal}``) for a line still ``sent`` in
  that part; ``RESEND`` the same for a line the part ended without. Both return the job ids to wake.
- The job records the line with the answer, then ``FORGET`` removes its state and answer.

The fleet's indexes are schedules and locks at once: ``claim_due`` takes the members whose time has come and pushes
them a lease ahead in one script, so exactly one worker works on a part (or seals a batch) at a time, and a worker
that dies is replaced when its lease lapses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from store.accounts import NO_CHARGE, BudgetCharge
from store.budget import BUDGET_LUA
from store.fields import F
from store.keys import BatchKeys, Keys
from store.queue import RESCHEDULE, now_ms
from store.redis_typing import awaited
from store.scripts import LuaScript

# KEYS: record, venue, staging, fleet staging. ARGV: ordinal, body, tokens, job id, now ms, batch id, the line's worst
# case at the batch price (micro-dollars, tokens), now (ISO-8601). Returns 'staged', 'gone' (no batch), 'budget_wait'
# (it fits the budget once what is in flight settles), 'budget_paused' (it cannot fit: the batch is paused, as a
# call's BEGIN_CALL would), or the line's state when it is not to be staged again.
STAGE = LuaScript(
    "venue_stage",
    BUDGET_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local field = 'l:' .. ARGV[1]
local raw = redis.call('HGET', KEYS[2], field)
local rounds = 0
if raw then
  local st = cjson.decode(raw)
  if st.s ~= 'resend' then return st.s end
  rounds = st.r or 0
end
local wm, wt = tonumber(ARGV[7]), tonumber(ARGV[8])
local over, budgeted = budget_over(wm, wt)
if not budgeted then wm, wt = 0, 0 end
if over == 'wait' then return 'budget_wait' end
if over then
  if redis.call('HSETNX', KEYS[1], '$PAUSED', over) == 1 then redis.call('HSET', KEYS[1], '$PAUSED_AT', ARGV[9]) end
  return 'budget_paused'
end
budget_reserve(wm, wt)
redis.call('HSET', KEYS[2], 'b:' .. ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], field,
  cjson.encode({s = 'staged', t = tonumber(ARGV[3]), j = ARGV[4], r = rounds, bm = wm, bt = wt}))
redis.call('HINCRBY', KEYS[2], 'staged_bytes', string.len(ARGV[2]))
redis.call('ZADD', KEYS[3], tonumber(ARGV[5]), ARGV[1])
redis.call('ZADD', KEYS[4], 'NX', tonumber(ARGV[5]), ARGV[6])
return 'staged'
""",
    F.lua_names(),
)

# KEYS: record, venue, staging, fleet staging, fleet parts. ARGV: batch id, now ms, max lines, max bytes, max
# tokens (0: none), wait ms, part JSON template (without lines/bytes/tokens). Returns the new part's number, or 0.
SEAL = LuaScript(
    "venue_seal",
    """
local count = redis.call('ZCARD', KEYS[3])
if count == 0 or redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  return 0
end
local now, max_lines, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local max_tokens, wait = tonumber(ARGV[5]), tonumber(ARGV[6])
local oldest = tonumber(redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')[2])
local staged_bytes = tonumber(redis.call('HGET', KEYS[2], 'staged_bytes') or '0')
if count < max_lines and staged_bytes < max_bytes and now - oldest < wait then return 0 end
local ords = redis.call('ZRANGE', KEYS[3], 0, max_lines - 1)
local n = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local taken, bytes, tokens = {}, 0, 0
for _, ord in ipairs(ords) do
  local size = redis.call('HSTRLEN', KEYS[2], 'b:' .. ord)
  local st = cjson.decode(redis.call('HGET', KEYS[2], 'l:' .. ord))
  if #taken > 0 and (bytes + size > max_bytes or (max_tokens > 0 and tokens + st.t > max_tokens)) then break end
  bytes, tokens = bytes + size, tokens + st.t
  st.s, st.n = 'sent', n
  redis.call('HSET', KEYS[2], 'l:' .. ord, cjson.encode(st))
  redis.call('ZREM', KEYS[3], ord)
  taken[#taken + 1] = ord
end
local part = cjson.decode(ARGV[7])
part.number, part.lines, part.size, part.tokens = n, #taken, bytes, tokens
redis.call('HSET', KEYS[2], 'o:' .. n, table.concat(taken, ','))
redis.call('HSET', KEYS[2], 'p:' .. n, cjson.encode(part))
redis.call('HINCRBY', KEYS[2], 'staged_bytes', -bytes)
redis.call('ZADD', KEYS[5], now, ARGV[1] .. ':' .. n)
if redis.call('ZCARD', KEYS[3]) == 0 then redis.call('ZREM', KEYS[4], ARGV[1]) end
return n
""",
)

# Lua, over KEYS[1] (the batch record): let go of the budget reservation a line's state holds (made as it was
# staged), and forget it in the state.
_RELEASE_LUA = """
local function release_staged(st)
  if (st.bm or 0) > 0 then redis.call('HINCRBY', KEYS[1], '$RESERVED_MICRO_USD', -st.bm) end
  if (st.bt or 0) > 0 then redis.call('HINCRBY', KEYS[1], '$RESERVED_TOKENS', -st.bt) end
  st.bm, st.bt = 0, 0
end
"""

# KEYS: record, venue. ARGV: part number, reason ('' for an answer), then pairs (ordinal, answer JSON or '').
# An answer goes to a line still 'sent' in that part (its budget reservation stays until its job has charged the
# answer's cost: ``COUNTED``); a reason sends such a line back ('resend'), its reservation let go. Returns the job ids
# to wake.
DELIVER = LuaScript(
    "venue_deliver",
    _RELEASE_LUA
    + """
local n, reason, woken = tonumber(ARGV[1]), ARGV[2], {}
local live = redis.call('EXISTS', KEYS[1]) == 1
for i = 3, #ARGV, 2 do
  local field = 'l:' .. ARGV[i]
  local raw = redis.call('HGET', KEYS[2], field)
  if raw then
    local st = cjson.decode(raw)
    if st.s == 'sent' and st.n == n then
      if reason == '' then
        st.s, st.c = 'answered', nil  -- a new answer: its usage is not in the account yet
        redis.call('HSET', KEYS[2], 'a:' .. ARGV[i], ARGV[i + 1])
      else
        -- A part refused for the queue limit is no round against its lines: they wait for room, not for sync.
        local round = reason == 'token_limit_exceeded' and 0 or 1
        st.s, st.r, st.w = 'resend', (st.r or 0) + round, reason
      end
      if reason ~= '' and live then release_staged(st) end
      redis.call('HSET', KEYS[2], field, cjson.encode(st))
      woken[#woken + 1] = st.j
    end
  end
end
return woken
""",
    F.lua_names(),
)

# KEYS: record, venue. ARGV: ordinal. The answer's cost went into the line's account (and the batch's spent): mark
# it counted, and let go of the line's reservation -- after the charge, so the budget is never under-counted.
COUNTED = LuaScript(
    "venue_counted",
    _RELEASE_LUA
    + """
local raw = redis.call('HGET', KEYS[2], 'l:' .. ARGV[1])
if not raw then return 0 end
local st = cjson.decode(raw)
if st.s ~= 'answered' then return 0 end
st.c = 1
if redis.call('EXISTS', KEYS[1]) == 1 then release_staged(st) end
redis.call('HSET', KEYS[2], 'l:' .. ARGV[1], cjson.encode(st))
return 1
""",
    F.lua_names(),
)

# KEYS: record, venue. ARGV: ordinal, why. An answered line whose answer cannot be used (a 5xx in the error file, an
# answer cut off well below its cap) goes on like a line its provider batch did not answer: a round counted, its
# answer and reservation let go. Returns the state JSON as saved ('' when the line has none).
ANSWER_FAILED = LuaScript(
    "venue_answer_failed",
    _RELEASE_LUA
    + """
local raw = redis.call('HGET', KEYS[2], 'l:' .. ARGV[1])
local st = raw and cjson.decode(raw) or {}
st.s, st.r, st.w, st.c = 'resend', (st.r or 0) + 1, ARGV[2], nil
if redis.call('EXISTS', KEYS[1]) == 1 then release_staged(st) end
local encoded = cjson.encode(st)
redis.call('HSET', KEYS[2], 'l:' .. ARGV[1], encoded)
redis.call('HDEL', KEYS[2], 'a:' .. ARGV[1])
return encoded
""",
    F.lua_names(),
)

# KEYS: record, venue. ARGV: ordinal. The line is recorded: its state and answer go (and any reservation it held).
FORGET = LuaScript(
    "venue_forget",
    _RELEASE_LUA
    + """
local raw = redis.call('HGET', KEYS[2], 'l:' .. ARGV[1])
if raw and redis.call('EXISTS', KEYS[1]) == 1 then release_staged(cjson.decode(raw)) end
redis.call('HDEL', KEYS[2], 'l:' .. ARGV[1], 'a:' .. ARGV[1])
return 1
""",
    F.lua_names(),
)

# KEYS: venue. ARGV: ordinal, state JSON. Sets a line's state unless it is 'sent' or 'answered' (which only the part
# keeper and the recording change). Returns 1 if set.
MOVE = LuaScript(
    "venue_move",
    """
local raw = redis.call('HGET', KEYS[1], 'l:' .. ARGV[1])
if raw then
  local s = cjson.decode(raw).s
  if s == 'sent' or s == 'answered' then return 0 end
end
redis.call('HSET', KEYS[1], 'l:' .. ARGV[1], ARGV[2])
return 1
""",
)

# KEYS: a fleet index (zset). ARGV: now ms, lease ms, most. Members due now, each pushed a lease ahead.
CLAIM_DUE = LuaScript(
    "venue_claim_due",
    """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), member) end
return due
""",
)

# KEYS: queue hash. ARGV: part member, tokens, configured limit (0: none), now ms, how long a learned limit holds
# (ms). 1 reserved (or held already), 0 it must wait (the limit is full). Each part's reservation is its own field,
# so releasing it twice, or after its batch was deleted, is harmless. A learned limit older than its hold is
# forgotten (the provider's tier may have grown): the next token_limit_exceeded teaches it again.
RESERVE = LuaScript(
    "venue_reserve",
    """
if redis.call('HEXISTS', KEYS[1], 'r:' .. ARGV[1]) == 1 then return 1 end
local tokens, configured = tonumber(ARGV[2]), tonumber(ARGV[3])
local learned = tonumber(redis.call('HGET', KEYS[1], 'limit') or '0')
if learned > 0 and tonumber(ARGV[4]) - tonumber(redis.call('HGET', KEYS[1], 'limit_at') or '0') > tonumber(ARGV[5]) then
  redis.call('HDEL', KEYS[1], 'limit', 'limit_at')
  learned = 0
end
local limit = configured
if learned > 0 and (limit == 0 or learned < limit) then limit = learned end
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
if limit > 0 and reserved > 0 and reserved + tokens > limit then return 0 end
redis.call('HSET', KEYS[1], 'r:' .. ARGV[1], tokens)
redis.call('HINCRBY', KEYS[1], 'reserved', tokens)
return 1
""",
)

# KEYS: queue hash. ARGV: part member. Releases its reservation, if it holds one.
RELEASE = LuaScript(
    "venue_release",
    """
local tokens = redis.call('HGET', KEYS[1], 'r:' .. ARGV[1])
if not tokens then return 0 end
redis.call('HDEL', KEYS[1], 'r:' .. ARGV[1])
local left = redis.call('HINCRBY', KEYS[1], 'reserved', -tonumber(tokens))
if left < 0 then redis.call('HSET', KEYS[1], 'reserved', 0) end
return 1
""",
)

# KEYS: creates zset. ARGV: now ms, cap, member. 0 if a creation may go now (and is counted), else ms to wait.
CREATE_SLOT = LuaScript(
    "venue_create_slot",
    """
local now, hour = tonumber(ARGV[1]), 3600000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - hour)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
  return math.max(oldest + hour - now, 1)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], hour)
return 0
""",
)


LEARNED_LIMIT_HOLD_MS = 6 * 3600 * 1000
"""How long a learned enqueued-token limit holds before it is forgotten and learned again."""


@dataclass
class Part:
    """One provider batch of a batch's lines, as the part keeper advances it (``state``):

    ``sealed`` (lines chosen, bodies in Redis) → ``uploaded`` (``input_file_id``) → ``creating`` (the create's intent:
    ``creating_ms``; a worker that dies now finds the batch by ``nonce`` in its metadata) → ``sent``
    (``provider_batch_id``; polled) → ``reading`` (terminal at the provider: its files are read) → ``done``.
    """

    number: int = 0
    nonce: str = ""
    endpoint: str = ""
    model: str = ""
    scope: str = ""
    lines: int = 0
    size: int = 0
    """The input file's bytes."""
    tokens: int = 0
    state: str = "sealed"
    reserved: bool = False
    upload_tried: bool = False
    """An upload was started: one that died may have made the file (found by its name before another)."""
    input_file_id: str | None = None
    provider_batch_id: str | None = None
    status: str | None = None
    """The provider's status of the batch (``validating``, ``in_progress``, ... ``completed``)."""
    counts: dict[str, int] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    error: str | None = None
    """Why the provider batch failed (its first error), when it did."""
    sealed_ms: int = 0
    creating_ms: int = 0
    created_ms: int = 0
    ended_ms: int = 0
    cancel_requested: bool = False
    create_attempts: int = 0
    answered: int = 0
    resent: int = 0
    missing: int = 0
    """Lines in neither file (the provider may have billed them: it does not say)."""
    files_deleted: bool = False

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Part:
        data = orjson.loads(raw)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class LineVenue:
    """A line's state on the venue (``state`` None: it never went to one)."""

    state: str | None = None
    part: int | None = None
    rounds: int = 0
    why: str | None = None
    answer: dict[str, Any] | None = None
    counted: bool = False
    """The answer's usage is in the line's account already (a try replayed it and ended before recording)."""


def part_member(batch_id: str, number: int) -> str:
    return f"{batch_id}:{number}"


def parse_member(member: bytes | str) -> tuple[str, int]:
    text = member.decode() if isinstance(member, bytes) else member
    batch_id, _, number = text.rpartition(":")
    return batch_id, int(number)


class ProviderBatchStore:
    """Every read and write of the venue's keys (see the module note)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self._redis = redis
        self._keys = keys
        self._stage = STAGE.bind(redis)
        self._seal = SEAL.bind(redis)
        self._deliver = DELIVER.bind(redis)
        self._move = MOVE.bind(redis)
        self._counted = COUNTED.bind(redis)
        self._answer_failed = ANSWER_FAILED.bind(redis)
        self._forget = FORGET.bind(redis)
        self._claim = CLAIM_DUE.bind(redis)
        self._reserve = RESERVE.bind(redis)
        self._release = RELEASE.bind(redis)
        self._create_slot = CREATE_SLOT.bind(redis)
        self._reschedule = RESCHEDULE.bind(redis)

    # --- a line ------------------------------------------------------------------------------------------------
    async def line(self, keys: BatchKeys, ordinal: int) -> LineVenue:
        raw, answer = await awaited(self._redis.hmget(keys.venue, [f"l:{ordinal}", f"a:{ordinal}"]))
        if raw is None:
            return LineVenue()
        st = orjson.loads(raw)
        return LineVenue(
            state=st.get("s"),
            part=st.get("n"),
            rounds=int(st.get("r") or 0),
            why=st.get("w"),
            answer=orjson.loads(answer) if answer else None,
            counted=bool(st.get("c")),
        )

    async def stage(
        self,
        keys: BatchKeys,
        ordinal: int,
        body: bytes,
        *,
        tokens: int,
        job_id: str,
        worst: BudgetCharge = NO_CHARGE,
        now: int | None = None,
    ) -> str:
        """Stage a line's request line for the next provider batch, its ``worst`` case at the batch price reserved
        against the batch's budget: 'staged', 'gone', 'budget_wait', 'budget_paused', or its state if it is not."""
        result = await self._stage(
            [keys.record, keys.venue, keys.staging, self._keys.venue_staging],
            [
                ordinal,
                body,
                tokens,
                job_id,
                now if now is not None else now_ms(),
                keys.batch_id,
                worst.micro_usd,
                worst.tokens,
                datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            ],
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    async def move_to_sync(self, keys: BatchKeys, ordinal: int, *, rounds: int, why: str | None) -> bool:
        """The line goes on synchronously (it is not staged again); False if it is in a provider batch."""
        state = orjson.dumps({"s": "sync", "r": rounds, "w": why})
        return bool(await self._move([keys.venue], [ordinal, state]))

    async def answer_failed(self, keys: BatchKeys, ordinal: int, *, why: str) -> LineVenue:
        """An answered line whose answer cannot be used (``ANSWER_FAILED``); only the line's own job calls this."""
        raw = await self._answer_failed([keys.record, keys.venue], [ordinal, why])
        st = orjson.loads(raw) if raw else {}
        return LineVenue(state="resend", part=st.get("n"), rounds=int(st.get("r") or 0), why=why)

    async def mark_counted(self, keys: BatchKeys, ordinal: int) -> None:
        """The answer's cost is charged: mark it so, and let go of the line's reservation (``COUNTED``)."""
        await self._counted([keys.record, keys.venue], [ordinal])

    async def forget(self, keys: BatchKeys, ordinal: int) -> None:
        """The line is recorded: its state and answer go (``FORGET``)."""
        await self._forget([keys.record, keys.venue], [ordinal])

    # --- parts -------------------------------------------------------------------------------------------------
    async def claim_staging(self, *, lease_ms: int, most: int = 20) -> list[str]:
        """Batches with staged lines whose time to look has come, each now held by this caller for ``lease_ms``."""
        due = await self._claim([self._keys.venue_staging], [now_ms(), lease_ms, most])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in due]

    async def look_again(self, batch_id: str, *, in_ms: int) -> None:
        await self._redis.zadd(self._keys.venue_staging, {batch_id: now_ms() + in_ms}, xx=True)

    async def seal(
        self, keys: BatchKeys, template: Part, *, max_lines: int, max_bytes: int, max_tokens: int, wait_ms: int
    ) -> int:
        """Make a part of the staged lines if enough are staged (or the oldest waited long enough): its number, or 0."""
        return int(
            await self._seal(
                [keys.record, keys.venue, keys.staging, self._keys.venue_staging, self._keys.venue_parts],
                [keys.batch_id, now_ms(), max_lines, max_bytes, max_tokens, wait_ms, template.to_json()],
            )
        )

    async def claim_parts(self, *, lease_ms: int, most: int = 10) -> list[tuple[str, int]]:
        """Parts whose time to advance or poll has come, each now held by this caller for ``lease_ms``."""
        due = await self._claim([self._keys.venue_parts], [now_ms(), lease_ms, most])
        return [parse_member(member) for member in due]

    async def schedule_part(self, batch_id: str, number: int, *, in_ms: int) -> None:
        """When to look at the part next (also: hold it that much longer while working on it)."""
        await self._redis.zadd(self._keys.venue_parts, {part_member(batch_id, number): now_ms() + in_ms})

    async def retire_part(self, batch_id: str, number: int) -> None:
        await self._redis.zrem(self._keys.venue_parts, part_member(batch_id, number))

    async def part(self, keys: BatchKeys, number: int) -> Part | None:
        raw = await awaited(self._redis.hget(keys.venue, f"p:{number}"))
        return Part.from_json(raw) if raw else None

    async def parts(self, keys: BatchKeys) -> list[Part]:
        """Every part the batch made, in order."""
        found: list[Part] = []
        async for _name, raw in self._redis.hscan_iter(keys.venue, match="p:*", count=500):
            found.append(Part.from_json(raw))
        return sorted(found, key=lambda part: part.number)

    async def save_part(self, keys: BatchKeys, part: Part) -> bool:
        """Write the part's record; False (nothing written) when the batch is gone."""
        if not await self._redis.exists(keys.record):
            return False
        await awaited(self._redis.hset(keys.venue, f"p:{part.number}", part.to_json().decode()))
        return True

    async def part_ordinals(self, keys: BatchKeys, number: int) -> list[int]:
        raw = await awaited(self._redis.hget(keys.venue, f"o:{number}"))
        text = raw.decode() if isinstance(raw, bytes) else raw
        return [int(x) for x in text.split(",")] if text else []

    async def bodies(self, keys: BatchKeys, ordinals: Sequence[int]) -> list[bytes | None]:
        return list(await awaited(self._redis.hmget(keys.venue, [f"b:{o}" for o in ordinals]))) if ordinals else []

    async def drop_bodies(self, keys: BatchKeys, ordinals: Sequence[int]) -> None:
        """The provider holds the part's input file now: its bodies leave Redis."""
        for start in range(0, len(ordinals), 1000):
            chunk = ordinals[start : start + 1000]
            if chunk:
                await awaited(self._redis.hdel(keys.venue, *[f"b:{o}" for o in chunk]))

    async def deliver(self, keys: BatchKeys, number: int, answers: Sequence[tuple[int, bytes]]) -> int:
        """Answers for lines of part ``number``; their jobs are woken. Returns how many lines took one."""
        args: list[str | int | bytes] = [number, ""]
        for ordinal, answer in answers:
            args += [ordinal, answer]
        woken = await self._deliver([keys.record, keys.venue], args)
        await self._wake(woken)
        return len(woken)

    async def resend(self, keys: BatchKeys, number: int, ordinals: Sequence[int], why: str) -> int:
        """Lines of part ``number`` it ended without: back to their jobs, to go on by ``choose_venue``."""
        args: list[str | int | bytes] = [number, why]
        for ordinal in ordinals:
            args += [ordinal, ""]
        woken = await self._deliver([keys.record, keys.venue], args)
        await self._wake(woken)
        return len(woken)

    async def _wake(self, job_ids: Sequence[bytes | str]) -> None:
        if job_ids:
            await self._reschedule([self._keys.queue], [now_ms(), *job_ids])

    async def wake_again(self, keys: BatchKeys, number: int) -> None:
        """Wake the jobs of a part's lines that hold an answer or must go on (a second time: a job that was handing
        itself back as they were first woken is due now too)."""
        jobs: list[bytes | str] = []
        for ordinal in await self.part_ordinals(keys, number):
            raw = await awaited(self._redis.hget(keys.venue, f"l:{ordinal}"))
            if raw:
                st = orjson.loads(raw)
                if st.get("n") == number and st.get("s") in ("answered", "resend"):
                    jobs.append(st["j"])
        for start in range(0, len(jobs), 1000):
            await self._wake(jobs[start : start + 1000])

    # --- the provider's limits ---------------------------------------------------------------------------------
    async def reserve(self, scope: str, member: str, tokens: int, *, configured: int | None) -> bool:
        """Reserve a part's input tokens against the scope's enqueued-token limit: False when it must wait."""
        args: list[str | int] = [member, tokens, configured or 0, now_ms(), LEARNED_LIMIT_HOLD_MS]
        return bool(await self._reserve([self._keys.venue_queue(scope)], args))

    async def release(self, scope: str, member: str) -> None:
        await self._release([self._keys.venue_queue(scope)], [member])

    async def queue_state(self, scope: str) -> tuple[int, int | None]:
        """(enqueued tokens reserved now, the limit learned) of one model's and key's Batch API queue."""
        reserved, limit = await awaited(self._redis.hmget(self._keys.venue_queue(scope), ["reserved", "limit"]))
        return int(reserved or 0), (int(limit) if limit else None)

    async def learn_limit(self, scope: str, limit: int) -> None:
        """A ``token_limit_exceeded`` failure says the queue holds less than was reserved with this part."""
        fields = {"limit": str(max(limit, 1)), "limit_at": str(now_ms())}
        await awaited(self._redis.hset(self._keys.venue_queue(scope), mapping=fields))

    async def create_slot(self, scope: str, *, cap: int, member: str) -> int:
        """0 when a provider batch may be created now (counted), else the ms until the hour's cap frees one."""
        return int(await self._create_slot([self._keys.venue_creates(scope)], [now_ms(), cap, member]))

    # --- what the metrics and the producer read -----------------------------------------------------------------
    async def in_flight(self, *, most: int = 2000) -> tuple[dict[str, int], int]:
        """The fleet's provider batches in flight, by state (``sealed`` ... ``reading``; a sent one by the provider's
        status), and the lines waiting inside them (at most ``most`` parts are read: a scrape stays cheap)."""
        members = await self._redis.zrange(self._keys.venue_parts, 0, most - 1)
        by_state: dict[str, int] = {}
        waiting = 0
        for member in members:
            batch_id, number = parse_member(member)
            part = await self.part(self._keys.batch(batch_id), number)
            if part is None:
                continue
            state = part.status if part.state == "sent" and part.status else part.state
            by_state[state] = by_state.get(state, 0) + 1
            if part.state in ("creating", "sent"):
                waiting += part.lines
        return by_state, waiting

    # --- what the producer reads -------------------------------------------------------------------------------
    async def line_states(self, keys: BatchKeys) -> dict[str, int]:
        """How many lines are in each state now (``status``)."""
        counts: dict[str, int] = {}
        async for _name, raw in self._redis.hscan_iter(keys.venue, match="l:*", count=1000):
            state = str(orjson.loads(raw).get("s"))
            counts[state] = counts.get(state, 0) + 1
        return counts

    async def at_provider(self, keys: BatchKeys, ordinals: Sequence[int]) -> set[int]:
        """Which of ``ordinals`` are staged for, in, or answered by a provider batch (``cancel`` leaves them to their
        jobs: an answer the provider billed is recorded, the rest end cancelled once their part is cancelled)."""
        if not ordinals:
            return set()
        raws = await awaited(self._redis.hmget(keys.venue, [f"l:{o}" for o in ordinals]))
        return {
            o
            for o, raw in zip(ordinals, raws, strict=True)
            if raw and orjson.loads(raw).get("s") in ("staged", "sent", "answered")
        }
