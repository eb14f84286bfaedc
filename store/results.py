"""Recording each line's result exactly once, and reading the results back in input order or as they come.

Record-once (``RECORD``): one atomic script per result. While the line's slot (``store.lines``) is pending it
appends the stored result to the batch's stream, points the slot at that entry with the final status, deletes the
line's running account (adding the calls it saw sent and never answered to the batch's *possibly billed* totals),
takes its job off the queue with the job's text, moves the batch counters (done, the status count, tokens, cost, the
queue window) and, if that was the last line, completes the batch (retention TTL on every
key). A slot that is not pending means the line
was recorded already -- a job that ran twice -- and nothing changes. A batch that is gone (deleted or expired) is not
recreated.

Reading: the slot says which stream entry is a line's *latest* final result, so a ``retry``'s new result supersedes
the failed one without deleting history. ``READ_RANGE`` returns a range of ordinals in input order in one round
trip (what ``collect`` streams, chunk by chunk); ``READ_SINCE`` returns the stream entries after a given one that are
still their line's latest (what ``collect --follow`` writes). Lines from ``cancel_from`` on were cancelled before they
were ever enqueued: they have no entry, and the reader synthesizes their line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from redis.asyncio import Redis

from schemas.pricing import ModelPrice
from schemas.records import CallTotals, line_result
from schemas.results import ResultRecord, Status
from store.batches import COMPLETE_LUA, BatchRecord
from store.budget import BUDGET_LUA
from store.codec import ResultCodec
from store.fields import F
from store.keys import BatchKeys
from store.lines import SLOT_BYTES, SLOT_LUA, SLOT_NAMES, IndexedLine, LineIndex, SlotStatus
from store.queue import ARQ_NAMES, ENQUEUE_LUA
from store.scripts import Arg, Joined, LuaScript, RoundTrip, Slot, single

if TYPE_CHECKING:
    from store.sink.reader import SinkReader
from store.usage import USAGE_LUA, usage_args

STATUS_CODES = {
    Status.SUCCEEDED: SlotStatus.SUCCEEDED,
    Status.FAILED: SlotStatus.FAILED,
    Status.CANCELLED: SlotStatus.CANCELLED,
}

_NAMES: dict[str, str | int] = {**F.lua_names(), **SLOT_NAMES, **ARQ_NAMES, "USAGE": USAGE_LUA}

# The recording itself, shared with the cancel script (store.feed). Needs SLOT_LUA and ENQUEUE_LUA; KEYS are
# BatchKeys then the queue. args: ordinal, slot status, stored result, the line's arq job id ("" = none: its job
# does not hold a place in the window), cost ("" = none), then the usage counts from ARGV[usage_at] on. The job
# leaves the queue here, with its text: arq's own clean-up after the job returns finds nothing left to do.
RECORD_LUA = (
    BUDGET_LUA
    + """
local STATUS_FIELD = {'$SUCCEEDED', '$FAILED', '$CANCELLED'}
local USAGE = $USAGE
local function record(ord, status, stored, job_id, cost, usage_at)
  if slot_status(KEYS[3], ord) ~= 0 then return 0 end
  local entry = redis.call('XADD', KEYS[4], '*', 'o', ord, 'r', stored)
  set_slot(KEYS[3], ord, status, entry)
  local unseen_calls, unseen_tokens = 0, 0
  local account = redis.call('HGET', KEYS[5], ord)
  if account then
    local a = cjson.decode(account)
    unseen_calls, unseen_tokens = (a.o or 0) + (a.p or 0), (a.oe or 0) + (a.pt or 0)
    -- a budget reservation nobody settled (a call never seen to return) may have been billed: it counts as spent
    if (a.bm or 0) > 0 or (a.bt or 0) > 0 then budget_settle(a.bm or 0, a.bt or 0, a.bm or 0, a.bt or 0) end
    redis.call('HDEL', KEYS[5], ord)
  end
  local from_queue = 0
  if job_id ~= '' then
    from_queue = 1
    finish_job(KEYS[$NEXT_KEY], job_id)
  end
  local names = {'$DONE', STATUS_FIELD[status], '$QUEUED', '$POSSIBLY_BILLED_CALLS', '$POSSIBLY_BILLED_TOKENS',
    '$COST_USD'}
  for i, name in ipairs(USAGE) do names[6 + i] = name end
  local c = redis.call('HMGET', KEYS[1], unpack(names))
  local add = {1, 1, -from_queue, unseen_calls, unseen_tokens}
  local out = {}
  for i = 1, 5 do
    out[#out + 1] = names[i]
    out[#out + 1] = tonumber(c[i] or '0') + add[i]
  end
  if cost ~= '' then
    out[#out + 1] = names[6]
    out[#out + 1] = string.format('%.17g', tonumber(c[6] or '0') + tonumber(cost))
  end
  for i, name in ipairs(USAGE) do
    out[#out + 1] = name
    out[#out + 1] = tonumber(c[6 + i] or '0') + tonumber(ARGV[usage_at + i - 1])
  end
  redis.call('HSET', KEYS[1], unpack(out))
  return 1
end
"""
)

# KEYS: BatchKeys, queue. ARGV: ordinal, slot status, stored result, job id, cost, usage counts.
# Returns 1 recorded, 0 already recorded, -1 batch gone.
RECORD = LuaScript(
    "record_once",
    SLOT_LUA
    + ENQUEUE_LUA
    + COMPLETE_LUA
    + RECORD_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local done = record(tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], 6)
if done == 1 then complete_if_done() end
return done
""",
    _NAMES,
)

# KEYS: BatchKeys. ARGV: first ordinal, count. Returns {status, entry id or "", stored or ""} per ordinal (status 0 =
# pending). A final line with an entry id and no stored result has left for the results sink (``store.sink``).
READ_RANGE = LuaScript(
    "read_range",
    """
local SLOT = $SLOT_BYTES
local first, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local raw = redis.call('GETRANGE', KEYS[3], first * SLOT, (first + n) * SLOT - 1)
local out = {}
for i = 0, n - 1 do
  local status, entry = 0, ''
  if #raw >= (i + 1) * SLOT then
    local s, high, low, seq = struct.unpack('>BI2I4I4B', raw, i * SLOT + 1)
    if s ~= 0 then status, entry = s, string.format('%d-%d', high * 4294967296 + low, seq) end
  end
  local stored = ''
  if entry ~= '' then
    local found = redis.call('XRANGE', KEYS[4], entry, entry)
    if #found == 1 then stored = found[1][2][4] end
  end
  out[#out + 1] = status
  out[#out + 1] = entry
  out[#out + 1] = stored
end
return out
""",
    _NAMES,
)

# KEYS: BatchKeys. ARGV: the last entry id seen ("0-0" at first), count.
# Returns {last entry id read, the last entry written to the results sink ("0-0": none), then ordinal, status,
# stored for each entry still its line's latest}. Entries up to the second are in the sink's parts, not the stream.
READ_SINCE = LuaScript(
    "read_since",
    SLOT_LUA
    + """
local found = redis.call('XRANGE', KEYS[4], '(' .. ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
local out = {ARGV[1], redis.call('HGET', KEYS[$SINK_KEY], 'after') or '0-0'}
for _, e in ipairs(found) do
  out[1] = e[1]
  local ord = tonumber(e[2][2])
  local status, entry = slot_entry(KEYS[3], ord)
  if entry == e[1] then
    out[#out + 1] = ord
    out[#out + 1] = status
    out[#out + 1] = e[2][4]
  end
end
return out
""",
    _NAMES,
)


@dataclass(frozen=True)
class LineState:
    """What a job checks before it works: is there still a batch, is the line recorded, is the batch cancelled or
    paused (``store.pause``)."""

    batch_exists: bool
    recorded: bool
    cancelled: bool
    paused: str | None = None
    """Why the batch is paused, if it is."""


@dataclass(frozen=True)
class Since:
    """What ``READ_SINCE`` found: the last entry read, how far the results sink has taken the stream, the lines."""

    last: str
    sink_after: str
    lines: list[tuple[int, bytes]]


@dataclass(frozen=True)
class FinalLine:
    """A line of the batch as ``collect`` sees it: its final result line (JSON), or None while pending."""

    line: IndexedLine
    json: bytes | None


class ResultStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._record = RECORD.bind(redis)
        self._read_range = READ_RANGE.bind(redis)
        self._read_since = READ_SINCE.bind(redis)
        self._index = LineIndex(redis)

    def queue_line_state(self, trip: RoundTrip, keys: BatchKeys, ordinal: int) -> Slot[LineState]:
        """The line's slot status and the batch's existence, cancel flag and pause reason, as a step of ``trip``."""
        status: Slot[bytes | None] = trip.command("GETRANGE", keys.slots, ordinal * SLOT_BYTES, ordinal * SLOT_BYTES)
        flags: Slot[list[bytes | None]] = trip.command("HMGET", keys.record, F.LINES, F.CANCELLED_AT, F.PAUSED)
        return Joined([status, flags], _line_state)

    async def line_state(self, keys: BatchKeys, ordinal: int) -> LineState:
        return await single(self._redis, lambda trip: self.queue_line_state(trip, keys, ordinal))

    def queue_record(
        self,
        trip: RoundTrip,
        keys: BatchKeys,
        queue: str,
        ordinal: int,
        result: ResultRecord,
        codec: ResultCodec,
        *,
        job_id: str,
    ) -> Slot[int]:
        """Record a line's final result once and take its job (``job_id``) off the queue with its text, as a step of
        ``trip``: 1 recorded, 0 already recorded, -1 the batch is gone."""
        return trip.script(self._record, [*keys, queue], record_args(ordinal, result, codec, job_id=job_id), int)

    async def record(
        self, keys: BatchKeys, queue: str, ordinal: int, result: ResultRecord, codec: ResultCodec, *, job_id: str
    ) -> int:
        return await single(
            self._redis, lambda trip: self.queue_record(trip, keys, queue, ordinal, result, codec, job_id=job_id)
        )

    async def read_range(
        self, keys: BatchKeys, first: int, count: int
    ) -> list[tuple[SlotStatus, str | None, bytes | None]]:
        """(status, entry id, stored result) per ordinal: entry and stored None while pending; stored None for a
        final line whose result has left for the results sink (``store.sink``)."""
        flat = await self._read_range(keys, [first, count])
        out: list[tuple[SlotStatus, str | None, bytes | None]] = []
        for i in range(0, len(flat), 3):
            entry = flat[i + 1].decode() if isinstance(flat[i + 1], bytes) else str(flat[i + 1])
            out.append((SlotStatus(int(flat[i])), entry or None, flat[i + 2] or None))
        return out

    async def read_since(self, keys: BatchKeys, after: str, count: int) -> Since:
        """Entries after ``after`` that are still their line's latest final result, and how far the results sink
        has taken the stream (entries up to there are in its parts)."""
        flat = await self._read_since(keys, [after, count])
        last = flat[0].decode() if isinstance(flat[0], bytes) else str(flat[0])
        sink_after = flat[1].decode() if isinstance(flat[1], bytes) else str(flat[1])
        return Since(last, sink_after, [(int(flat[i]), flat[i + 2]) for i in range(2, len(flat), 3)])

    async def wait_for_more(self, keys: BatchKeys, after: str, *, block_ms: int) -> None:
        """Block until an entry after ``after`` is recorded, or ``block_ms`` passed (``collect --follow``)."""
        await self._redis.xread({keys.results: after}, count=1, block=block_ms)

    async def final_lines(
        self,
        batch: BatchRecord,
        keys: BatchKeys,
        *,
        price: ModelPrice | None,
        chunk: int = 1000,
        sink: SinkReader | None = None,
    ) -> AsyncIterator[list[FinalLine]]:
        """Every indexed line in input order, chunk by chunk, with its final result line (None while pending); a
        result that has left for the results sink is read back from its part through ``sink``."""
        codec = ResultCodec(batch.spec.json_schema)
        for first in range(0, batch.indexed, chunk):
            count = min(chunk, batch.indexed - first)  # both reads at once, on two connections of the pool
            lines, results = await asyncio.gather(
                self._index.read(keys, first, count), self.read_range(keys, first, count)
            )
            out = []
            for line, (_status, entry, stored) in zip(lines, results, strict=True):
                if stored is None and entry is not None and sink is not None:
                    out.append(FinalLine(line, await sink.line(line.ordinal, entry)))
                else:
                    out.append(FinalLine(line, final_json(batch, line, stored, codec, price)))
            yield out


def _line_state(status: bytes | None, flags: list[bytes | None]) -> LineState:
    lines, cancelled_at, paused = flags
    return LineState(
        batch_exists=lines is not None,
        recorded=bool(status) and status != b"\0",
        cancelled=cancelled_at is not None,
        paused=paused.decode() if paused is not None else None,
    )


def final_json(
    batch: BatchRecord, line: IndexedLine, stored: bytes | None, codec: ResultCodec, price: ModelPrice | None
) -> bytes | None:
    """A line's final result line (JSON): its recorded one, a synthesized one if it was never enqueued before a
    cancel, else None (pending)."""
    if stored is not None:
        return codec.decode(stored)
    if batch.cancel_from is not None and line.ordinal >= batch.cancel_from:
        return orjson.dumps(never_enqueued(batch, line, price).to_json_dict())
    return None


def never_enqueued(batch: BatchRecord, line: IndexedLine, price: ModelPrice | None) -> ResultRecord:
    """The result line of a line cancelled before it was ever enqueued: no call, no usage (the worker's record for
    a cancelled line with no tries, stamped with the time of the cancel)."""
    record = line_result(
        batch.spec,
        custom_id=line.custom_id,
        fingerprint=line.fingerprint,
        status=Status.CANCELLED,
        totals=CallTotals(),
        price=price,
    )
    return record.model_copy(update={"finished_at": batch.cancelled_at or record.finished_at})


def record_args(ordinal: int, result: ResultRecord, codec: ResultCodec, *, job_id: str) -> list[Arg]:
    """ARGV of ``RECORD`` (and of one line in the cancel script) for ``result``."""
    return [
        ordinal,
        int(STATUS_CODES[result.status]),
        codec.encode(orjson.dumps(result.to_json_dict())),
        job_id,
        "" if result.cost_usd is None else repr(result.cost_usd),
        *usage_args(result.usage),
    ]
