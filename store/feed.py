"""Feeding a batch into the queue a window at a time, re-opening failed lines (``retry``) and cancelling.

A batch never has more than a *window* of its lines in the queue (waiting, deferred or running): the ``queued``
counter of the batch record counts them; each recording takes one off. The producer process that submitted the
batch is its *feeder*: it keeps the next lines' jobs ready from the input file and, whenever the window has room,
enqueues a chunk with ``FEED_CHUNK``, which checks the feed cursor (``fed``) it was built for and moves it in the same
step. A killed feeder started again re-reads the cursor and goes on from exactly there; two feeders of one batch
never enqueue a line twice (the one whose cursor is stale is refused and re-reads). The feeder refreshes a
heartbeat key while it works, so ``status`` can tell "being fed" from "submit interrupted".

``retry`` re-opens failed lines the same way (``REOPEN_CHUNK``: only lines whose slot still says failed, under a
fresh arq id), within the same window. ``cancel`` first closes the feed (``CANCEL_BEGIN``: the never-enqueued lines
from the cursor on end cancelled, counted at once, with no record: readers synthesize them), then takes the waiting
jobs off the queue and records them cancelled in one step per chunk (``CANCEL_WAITING``), keeping the usage their
earlier tries were billed; a job that is running finishes and records its own result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from schemas.results import ResultRecord, Status
from store.batches import COMPLETE_LUA
from store.codec import ResultCodec
from store.fields import F
from store.keys import JOB_ID_LUA, BatchKeys, Keys
from store.lines import SLOT_LUA, SLOT_NAMES
from store.queue import ARQ_NAMES, ENQUEUE_LUA, now_ms
from store.redis_typing import awaited
from store.results import RECORD_LUA, STATUS_CODES, record_args
from store.scripts import Arg, LuaScript
from store.sink.state import SUPERSEDE_LUA
from store.usage import USAGE_FIELDS, USAGE_LUA

FEEDER_HEARTBEAT_MS = 15_000
"""A feeder that has not refreshed its heartbeat for this long is taken to be gone."""

_NAMES: dict[str, str | int] = {**F.lua_names(), **SLOT_NAMES, **ARQ_NAMES, "USAGE": USAGE_LUA}


class FeedCode:
    """What ``FEED_CHUNK``, ``REOPEN_CHUNK`` and ``REPLACE_CHUNK`` answer first (``NOT_INDEXED``: ``FEED_CHUNK``
    only)."""

    DONE = 1
    MOVED = 0
    """The cursor is not where the caller thought: another feeder moved it; re-read and go on from there."""
    FULL = 2
    """The window has no room for the whole chunk: wait for lines to finish."""
    GONE = -1
    CANCELLED = -2
    NOT_INDEXED = -3
    """The lines are not in the index yet."""


# KEYS: BatchKeys, queue. ARGV: expected cursor, window, now ms, then job id / payload pairs for the lines from
# the cursor on. Returns {code, fed, queued}.
FEED_CHUNK = LuaScript(
    "feed_chunk",
    ENQUEUE_LUA
    + """
local c = redis.call('HMGET', KEYS[1], '$LINES', '$INDEXED', '$FED', '$QUEUED', '$CANCELLED_AT')
if not c[1] then return {-1, 0, 0} end
local indexed, fed, queued = tonumber(c[2]), tonumber(c[3]), tonumber(c[4])
if c[5] then return {-2, fed, queued} end
if fed ~= tonumber(ARGV[1]) then return {0, fed, queued} end
local n = (#ARGV - 3) / 2
if fed + n > indexed then return {-3, fed, queued} end
if queued + n > tonumber(ARGV[2]) then return {2, fed, queued} end
for i = 4, #ARGV, 2 do enqueue(KEYS[$NEXT_KEY], ARGV[i], ARGV[i + 1], ARGV[3]) end
redis.call('HSET', KEYS[1], '$FED', fed + n, '$QUEUED', queued + n)
return {1, fed + n, queued + n}
""",
    _NAMES,
)

# KEYS: BatchKeys, queue. ARGV: window, now ms, the batch's job-id base, then ordinal / payload pairs.
# Re-enqueues each line whose slot still says failed, as its next generation. Returns {code, reopened, queued}.
REOPEN_CHUNK = LuaScript(
    "reopen_chunk",
    SLOT_LUA
    + SUPERSEDE_LUA
    + JOB_ID_LUA
    + ENQUEUE_LUA
    + COMPLETE_LUA
    + """
local c = redis.call('HMGET', KEYS[1], '$LINES', '$QUEUED', '$CANCELLED_AT', '$FAILED', '$DONE', '$RETRIED')
if not c[1] then return {-1, 0, 0} end
local queued = tonumber(c[2])
if c[3] then return {-2, 0, queued} end
if queued + (#ARGV - 3) / 2 > tonumber(ARGV[1]) then return {2, 0, queued} end
local n = 0
for i = 4, #ARGV, 2 do
  local ord = tonumber(ARGV[i])
  if slot_status(KEYS[3], ord) == $FAILED_CODE then
    local gen = (slot_gen(KEYS[3], ord) + 1) % 256
    sink_supersede(ord)
    set_slot(KEYS[3], ord, 0, nil, gen)
    enqueue(KEYS[$NEXT_KEY], job_id(ARGV[3], ord, gen), ARGV[i + 1], ARGV[2])
    n = n + 1
  end
end
if n > 0 then
  redis.call('HSET', KEYS[1], '$FAILED', tonumber(c[4]) - n, '$DONE', tonumber(c[5]) - n,
    '$RETRIED', tonumber(c[6]) + n, '$QUEUED', queued + n)
  reopen_batch()
end
return {1, n, queued + n}
""",
    {**_NAMES, "FAILED_CODE": int(STATUS_CODES[Status.FAILED])},
)

# KEYS: BatchKeys, queue. ARGV: window, now ms, job-id base, then ordinal / new index entry / payload triples.
# ``--replace-changed``: each line gets its new document. A final line is reopened (its old result stays in the
# stream, superseded) and enqueued as its next generation; a waiting one has its job swapped; one never enqueued
# just gets the new entry (the feeder enqueues it); a running one is left alone and reported.
# Returns {code, replaced, queued, then the ordinals that were running}.
REPLACE_CHUNK = LuaScript(
    "replace_chunk",
    SLOT_LUA
    + SUPERSEDE_LUA
    + JOB_ID_LUA
    + ENQUEUE_LUA
    + COMPLETE_LUA
    + """
local STATUS_FIELD = {'$SUCCEEDED', '$FAILED', '$CANCELLED'}
local c = redis.call('HMGET', KEYS[1], '$LINES', '$QUEUED', '$CANCELLED_AT', '$FED', '$REPLACED')
if not c[1] then return {-1, 0, 0} end
local queued, fed = tonumber(c[2]), tonumber(c[4])
if c[3] then return {-2, 0, queued} end
local reopening = 0
for i = 4, #ARGV, 3 do
  if slot_status(KEYS[3], tonumber(ARGV[i])) ~= 0 then reopening = reopening + 1 end
end
if queued + reopening > tonumber(ARGV[1]) then return {2, 0, queued} end
local replaced, reopened, busy, counts = 0, 0, {}, {}
for i = 4, #ARGV, 3 do
  local ord = tonumber(ARGV[i])
  local status, gen = slot_status(KEYS[3], ord), slot_gen(KEYS[3], ord)
  local swap = false
  if status ~= 0 then
    counts[status] = (counts[status] or 0) + 1
    reopened = reopened + 1
    swap = true
  elseif ord < fed then
    if remove_waiting(KEYS[$NEXT_KEY], job_id(ARGV[3], ord, gen)) then swap = true else busy[#busy + 1] = ord end
  end
  if swap or (status == 0 and ord >= fed) then
    redis.call('LSET', KEYS[2], ord, ARGV[i + 1])
    replaced = replaced + 1
  end
  if swap then
    if status ~= 0 then sink_supersede(ord) end
    set_slot(KEYS[3], ord, 0, nil, (gen + 1) % 256)
    enqueue(KEYS[$NEXT_KEY], job_id(ARGV[3], ord, (gen + 1) % 256), ARGV[i + 2], ARGV[2])
  end
end
if reopened > 0 then
  local d = redis.call('HMGET', KEYS[1], '$DONE', '$SUCCEEDED', '$FAILED', '$CANCELLED')
  redis.call('HSET', KEYS[1], '$DONE', tonumber(d[1]) - reopened,
    '$SUCCEEDED', tonumber(d[2]) - (counts[1] or 0), '$FAILED', tonumber(d[3]) - (counts[2] or 0),
    '$CANCELLED', tonumber(d[4]) - (counts[3] or 0), '$QUEUED', queued + reopened)
  reopen_batch()
end
redis.call('HSET', KEYS[1], '$REPLACED', tonumber(c[5] or '0') + replaced)
return {1, replaced, queued + reopened, unpack(busy)}
""",
    _NAMES,
)

# KEYS: BatchKeys. ARGV: the line count the caller read, the new one (``--append``: more lines at the end).
# Returns {1, lines} when extended, {0, lines} when the count was not what the caller read, {-1, 0} gone,
# {-2, lines} cancelled.
EXTEND_LINES = LuaScript(
    "extend_lines",
    COMPLETE_LUA
    + """
local c = redis.call('HMGET', KEYS[1], '$LINES', '$CANCELLED_AT')
if not c[1] then return {-1, 0} end
if c[2] then return {-2, tonumber(c[1])} end
if tonumber(c[1]) ~= tonumber(ARGV[1]) then return {0, tonumber(c[1])} end
redis.call('HSET', KEYS[1], '$LINES', tonumber(ARGV[2]))
redis.call('SETRANGE', KEYS[3], tonumber(ARGV[2]) * $SLOT_BYTES - 1, '\\0')
reopen_batch()
return {1, tonumber(ARGV[2])}
""",
    _NAMES,
)

# KEYS: BatchKeys. ARGV: the time of the cancel. Closes the feed: lines from the cursor on end cancelled.
# Returns {1 newly cancelled / 0 already, cancel_from, lines never enqueued}; {-1, 0, 0} when the batch is gone.
CANCEL_BEGIN = LuaScript(
    "cancel_begin",
    COMPLETE_LUA
    + """
local c = redis.call('HMGET', KEYS[1], '$LINES', '$FED', '$CANCELLED_AT', '$DONE', '$CANCELLED', '$CANCEL_FROM')
if not c[1] then return {-1, 0, 0} end
if c[3] then return {0, tonumber(c[6]), 0} end
local lines, fed = tonumber(c[1]), tonumber(c[2])
local unfed = lines - fed
redis.call('HSET', KEYS[1], '$CANCELLED_AT', ARGV[1], '$CANCEL_FROM', fed,
  '$DONE', tonumber(c[4]) + unfed, '$CANCELLED', tonumber(c[5]) + unfed)
complete_if_done()
return {1, fed, unfed}
""",
    _NAMES,
)

_PER_CANCEL = 5 + len(USAGE_FIELDS)
# KEYS: BatchKeys, queue. ARGV: per line: job id, ordinal, the account version the record was built from, the
# stored cancelled record, its cost, its usage counts. Takes each waiting job off the queue and records the line
# cancelled in the same step. Returns {cancelled, then the ordinals whose account changed since (build again)}.
CANCEL_WAITING = LuaScript(
    "cancel_waiting",
    SLOT_LUA
    + ENQUEUE_LUA
    + COMPLETE_LUA
    + RECORD_LUA
    + """
local cancelled, stale = 0, {}
for i = 1, #ARGV, $PER do
  local ord = tonumber(ARGV[i + 1])
  local raw = redis.call('HGET', KEYS[5], ord)
  local version = raw and (cjson.decode(raw).v or 0) or 0
  if version ~= tonumber(ARGV[i + 2]) then
    stale[#stale + 1] = ord
  elseif slot_status(KEYS[3], ord) == 0 and remove_waiting(KEYS[$NEXT_KEY], ARGV[i]) then
    cancelled = cancelled + record(ord, $CANCELLED_CODE, ARGV[i + 3], ARGV[i], ARGV[i + 4], i + 5)
  end
end
if cancelled > 0 then complete_if_done() end
return {cancelled, unpack(stale)}
""",
    {**_NAMES, "PER": _PER_CANCEL, "CANCELLED_CODE": int(STATUS_CODES[Status.CANCELLED])},
)


@dataclass(frozen=True)
class CancelItem:
    """One waiting line for ``CANCEL_WAITING``: its job, and the cancelled record built from its account."""

    job_id: str
    ordinal: int
    account_version: int
    record: ResultRecord
    codec: ResultCodec

    def args(self) -> list[Arg]:
        _ordinal, _status, stored, _job_id, *rest = record_args(self.ordinal, self.record, self.codec, job_id="")
        values: list[Arg] = [self.job_id, self.ordinal, self.account_version, stored, *rest]
        assert len(values) == _PER_CANCEL
        return values


@dataclass(frozen=True)
class FeedState:
    lines: int
    indexed: int
    fed: int
    queued: int
    cancelled: bool


@dataclass(frozen=True)
class FeedAnswer:
    code: int
    count: int
    """FEED_CHUNK: the cursor after the call; REOPEN_CHUNK: lines re-opened; REPLACE_CHUNK: lines replaced."""
    queued: int


class FeedStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._feed = FEED_CHUNK.bind(redis)
        self._reopen = REOPEN_CHUNK.bind(redis)
        self._replace = REPLACE_CHUNK.bind(redis)
        self._extend = EXTEND_LINES.bind(redis)
        self._cancel_begin = CANCEL_BEGIN.bind(redis)
        self._cancel_waiting = CANCEL_WAITING.bind(redis)

    async def state(self, batch_keys: BatchKeys) -> FeedState | None:
        """The feed's position; None when the batch is gone."""
        raw = await awaited(self._redis.hmget(batch_keys.record, [F.LINES, F.INDEXED, F.FED, F.QUEUED, F.CANCELLED_AT]))
        if raw[0] is None:
            return None
        lines, indexed, fed, queued = (int(value or 0) for value in raw[:4])
        return FeedState(lines, indexed, fed, queued, cancelled=raw[4] is not None)

    async def feed(
        self, batch_keys: BatchKeys, start: int, window: int, jobs: Sequence[tuple[str, bytes]]
    ) -> FeedAnswer:
        """Enqueue ``jobs`` (job id, payload) for the lines from ordinal ``start`` if the cursor is still there and
        the window has room for all of them."""
        args: list[Arg] = [start, window, now_ms()]
        for job_id, payload in jobs:
            args += [job_id, payload]
        code, fed, queued = await self._feed([*batch_keys, self._keys.queue], args)
        return FeedAnswer(int(code), int(fed), int(queued))

    async def reopen(self, batch_id: str, window: int, jobs: Sequence[tuple[int, bytes]]) -> FeedAnswer:
        """Re-enqueue (ordinal, payload) of lines whose latest result is still ``failed``, as their next generation."""
        args: list[Arg] = [window, now_ms(), self._keys.job_base(batch_id)]
        for ordinal, payload in jobs:
            args += [ordinal, payload]
        code, reopened, queued = await self._reopen([*self._keys.batch(batch_id), self._keys.queue], args)
        return FeedAnswer(int(code), int(reopened), int(queued))

    async def replace(
        self, batch_id: str, window: int, lines: Sequence[tuple[int, bytes, bytes]]
    ) -> tuple[FeedAnswer, list[int]]:
        """Give lines (ordinal, new index entry, payload) their new document. Returns the answer (count: lines
        replaced) and the ordinals left alone because they were running."""
        args: list[Arg] = [window, now_ms(), self._keys.job_base(batch_id)]
        for ordinal, entry, payload in lines:
            args += [ordinal, entry, payload]
        code, replaced, queued, *busy = await self._replace([*self._keys.batch(batch_id), self._keys.queue], args)
        return FeedAnswer(int(code), int(replaced), int(queued)), [int(o) for o in busy]

    async def extend(self, batch_keys: BatchKeys, expected_lines: int, lines: int) -> tuple[int, int]:
        """``--append``: the batch grows to ``lines`` lines if it still has ``expected_lines``. (code, lines)."""
        code, now_lines = await self._extend(batch_keys, [expected_lines, lines])
        return int(code), int(now_lines)

    async def begin_cancel(self, batch_keys: BatchKeys, at: str) -> tuple[int, int, int]:
        """(1 if this call cancelled the batch / 0 if it was already / -1 gone, cancel_from, lines never enqueued)."""
        newly, cancel_from, unfed = await self._cancel_begin(batch_keys, [at])
        return int(newly), int(cancel_from or 0), int(unfed)

    async def cancel_waiting(self, batch_keys: BatchKeys, items: Sequence[CancelItem]) -> tuple[int, list[int]]:
        """Take waiting jobs off the queue and record their lines cancelled, each with the record built from its
        account at ``account_version``. Returns (lines cancelled, ordinals whose account moved since: build again)."""
        args: list[Arg] = []
        for item in items:
            args += item.args()
        answer = await self._cancel_waiting([*batch_keys, self._keys.queue], args)
        return int(answer[0]), [int(o) for o in answer[1:]]

    async def heartbeat(self, batch_keys: BatchKeys, owner: str) -> None:
        await self._redis.set(batch_keys.feeder, owner, px=FEEDER_HEARTBEAT_MS)

    async def release(self, batch_keys: BatchKeys, owner: str) -> None:
        if await awaited(self._redis.get(batch_keys.feeder)) == owner.encode():
            await self._redis.delete(batch_keys.feeder)
