"""The sink's record in Redis: which results have left for the sink, in which parts, and which rows there are stale.

Per batch with a results sink, ``{p}batch:{id}:sink`` (a hash, one of the batch's keys: it expires and is deleted
with them) holds ``after`` (the last results-stream entry written to a part), ``n`` (the number the next part gets),
``rows`` (rows written), ``p:{n}`` (each committed part, :class:`store.sink.parts.PartRecord` as JSON), ``s:{entry}``
(a row written to a part and superseded since: its ordinal), ``err``/``err_at`` (the writer's last failure) and
``done`` (the manifest says complete). ``{p}sink:due`` schedules the writers: batches by when one looks next, claimed
with a lease (``CLAIM_DUE``), so one writer works on a batch at a time and a dead writer's batch is taken up when its
lease lapses.

The protocol that makes the sink lose and duplicate nothing (``worker.sink_writer`` runs it):

1. ``READ_NEXT`` reads the stream entries after ``after`` and keeps those still their line's latest.
2. The writer uploads them as a part named by its content (``store.sink.parts``), so the upload is idempotent.
3. ``COMMIT`` records the part and moves ``after`` -- only if ``after`` and ``n`` are still what step 1 read (a
   writer that lost its claim commits nothing) -- then trims the written entries from the stream. A row that a
   ``retry`` superseded between steps 1 and 3 is marked stale here; one superseded later is marked by the retry
   itself (``SUPERSEDE_LUA``, in ``store.feed``'s scripts). Until step 3 the results are still in Redis, so a crash
   anywhere before it loses nothing; after it they are in a durable part.
4. Stale rows are taken out of their parts: the part is rewritten under its new name and ``REPLACE_PART`` swaps the
   record (again only if it is still the one read), then the old object is deleted.

Readers (``collect``, ``--follow``, the cache) find a line's latest result from its slot: the entry id is in the
stream, or in the part whose range holds it (``READ_RANGE`` in ``store.results`` says which).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from redis.asyncio import Redis

from store.keys import BatchKeys, Keys
from store.lines import SLOT_LUA, SLOT_NAMES
from store.provider_batches import CLAIM_DUE
from store.redis_typing import awaited
from store.scripts import LuaScript
from store.sink.parts import PartRecord

# Lua: compare two stream entry ids (ms-seq) numerically: true when a <= b.
ENTRY_LE_LUA = """
local function entry_parts(e)
  local dash = string.find(e, '-', 1, true)
  return tonumber(string.sub(e, 1, dash - 1)), tonumber(string.sub(e, dash + 1))
end
local function entry_le(a, b)
  local am, as = entry_parts(a)
  local bm, bs = entry_parts(b)
  return am < bm or (am == bm and as <= bs)
end
"""

# For the scripts that reopen a final line (``store.feed``): before its slot goes back to pending, a result already
# written to a part becomes a stale row there (the writer takes it out). Needs SLOT_LUA.
SUPERSEDE_LUA = (
    ENTRY_LE_LUA
    + """
local function sink_supersede(ord)
  local status, entry = slot_entry(KEYS[3], ord)
  if not entry then return end
  local after = redis.call('HGET', KEYS[$SINK_KEY], 'after')
  if after and entry_le(entry, after) then
    redis.call('HSET', KEYS[$SINK_KEY], 's:' .. entry, ord)
    redis.call('HDEL', KEYS[$SINK_KEY], 'done')
  end
end
"""
)

# KEYS: BatchKeys. ARGV: most entries to read. Returns {after, n, scanned, first scanned, last scanned, then
# ordinal, entry id, stored result for each entry still its line's latest}; {} when the batch is gone.
READ_NEXT = LuaScript(
    "sink_read_next",
    SLOT_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local s = redis.call('HMGET', KEYS[$SINK_KEY], 'after', 'n')
local after, n = s[1] or '0-0', s[2] or '1'
local found = redis.call('XRANGE', KEYS[4], '(' .. after, '+', 'COUNT', tonumber(ARGV[1]))
local out = {after, n, #found, '', ''}
if #found > 0 then out[4], out[5] = found[1][1], found[#found][1] end
for _, e in ipairs(found) do
  local ord = tonumber(e[2][2])
  local status, entry = slot_entry(KEYS[3], ord)
  if entry == e[1] then
    out[#out + 1] = ord
    out[#out + 1] = e[1]
    out[#out + 1] = e[2][4]
  end
end
return out
""",
    SLOT_NAMES,
)

# KEYS: BatchKeys. ARGV: the ``after`` and ``n`` read, the part record (JSON), its last entry, its first-after-last
# entry (for XTRIM MINID), rows, then ordinal/entry pairs of its rows. 1 committed, 0 someone else moved on, -1 gone.
COMMIT = LuaScript(
    "sink_commit",
    SLOT_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local s = redis.call('HMGET', KEYS[$SINK_KEY], 'after', 'n')
if (s[1] or '0-0') ~= ARGV[1] or tonumber(s[2] or '1') ~= tonumber(ARGV[2]) then return 0 end
local n = tonumber(ARGV[2])
redis.call('HSET', KEYS[$SINK_KEY], 'p:' .. n, ARGV[3], 'after', ARGV[4], 'n', n + 1)
redis.call('HINCRBY', KEYS[$SINK_KEY], 'rows', tonumber(ARGV[6]))
redis.call('HDEL', KEYS[$SINK_KEY], 'err', 'err_at')
for i = 7, #ARGV, 2 do
  local status, entry = slot_entry(KEYS[3], tonumber(ARGV[i]))
  if entry ~= ARGV[i + 1] then redis.call('HSET', KEYS[$SINK_KEY], 's:' .. ARGV[i + 1], ARGV[i]) end
end
redis.call('XTRIM', KEYS[4], 'MINID', ARGV[5])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[$SINK_KEY], ttl) end
return 1
""",
    SLOT_NAMES,
)

# KEYS: BatchKeys. ARGV: part number, the name it had, the new record (JSON), then the stale entries it no longer
# holds. 1 swapped, 0 the part is no longer the one read.
REPLACE_PART = LuaScript(
    "sink_replace_part",
    """
local current = redis.call('HGET', KEYS[$SINK_KEY], 'p:' .. ARGV[1])
if not current or cjson.decode(current).name ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[$SINK_KEY], 'p:' .. ARGV[1], ARGV[3])
local removed = #ARGV - 3
for i = 4, #ARGV do redis.call('HDEL', KEYS[$SINK_KEY], 's:' .. ARGV[i]) end
redis.call('HINCRBY', KEYS[$SINK_KEY], 'rows', -removed)
return 1
""",
)


# KEYS: BatchKeys. ARGV: the cancel cursor and ``n`` read, the part record (JSON) of the synthesized lines of a
# cancel (lines never enqueued: no stream entry), the new cursor, rows. 1 committed, 0 someone else moved on.
COMMIT_CANCELLED = LuaScript(
    "sink_commit_cancelled",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local s = redis.call('HMGET', KEYS[$SINK_KEY], 'c', 'n')
if tonumber(s[1] or '-1') ~= tonumber(ARGV[1]) or tonumber(s[2] or '1') ~= tonumber(ARGV[2]) then return 0 end
local n = tonumber(ARGV[2])
redis.call('HSET', KEYS[$SINK_KEY], 'p:' .. n, ARGV[3], 'c', ARGV[4], 'n', n + 1)
redis.call('HINCRBY', KEYS[$SINK_KEY], 'rows', tonumber(ARGV[5]))
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[$SINK_KEY], ttl) end
return 1
""",
)


@dataclass(frozen=True)
class SinkState:
    """The sink's record of one batch."""

    after: str = "0-0"
    next_part: int = 1
    rows: int = 0
    parts: list[PartRecord] = field(default_factory=list)
    stale: dict[str, int] = field(default_factory=dict)
    """Entry id → ordinal of each written row superseded since."""
    error: str | None = None
    error_at: float | None = None
    done: bool = False
    cancel_cursor: int | None = None
    """The first ordinal of a cancel's never-enqueued lines not written yet (None: none written yet)."""


@dataclass(frozen=True)
class NextRows:
    """What ``READ_NEXT`` found: the range scanned and the rows in it that are still their line's latest."""

    after: str
    next_part: int
    scanned: int
    first: str | None
    last: str | None
    rows: list[tuple[int, str, bytes]]
    """(ordinal, entry id, stored result) per row."""


# KEYS: BatchKeys. ARGV: field/value pairs. Sets them on the sink record of a batch that still exists, with the
# batch's retention TTL if it has one (a record made after the batch completed must not outlive it).
SET_FIELDS = LuaScript(
    "sink_set_fields",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[$SINK_KEY], unpack(ARGV))
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[$SINK_KEY], ttl) end
return 1
""",
)


SET_FIELD_NX = LuaScript(
    "sink_set_field_nx",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[$SINK_KEY], ARGV[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then redis.call('PEXPIRE', KEYS[$SINK_KEY], ttl) end
return 1
""",
)


class SinkStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._read_next = READ_NEXT.bind(redis)
        self._commit = COMMIT.bind(redis)
        self._replace = REPLACE_PART.bind(redis)
        self._claim = CLAIM_DUE.bind(redis)
        self._set_fields = SET_FIELDS.bind(redis)
        self._set_fields_nx = SET_FIELD_NX.bind(redis)
        self._commit_cancelled = COMMIT_CANCELLED.bind(redis)

    async def schedule(self, batch_id: str, *, at: float | None = None) -> None:
        """Have a writer look at the batch at ``at`` (now by default), unless it is due sooner already."""
        when = int((time.time() if at is None else at) * 1000)
        await awaited(self._redis.zadd(self._keys.sink_due, {batch_id: when}, lt=True))
        await awaited(self._redis.zadd(self._keys.sink_due, {batch_id: when}, nx=True))

    async def reschedule(self, batch_id: str, *, after_s: float) -> None:
        when = int((time.time() + after_s) * 1000)
        await awaited(self._redis.zadd(self._keys.sink_due, {batch_id: when}, xx=True))

    async def unschedule(self, batch_id: str) -> None:
        await awaited(self._redis.zrem(self._keys.sink_due, batch_id))

    async def claim_due(self, *, lease_s: float, limit: int) -> list[str]:
        """Batches due now, each leased to the caller for ``lease_s`` (pushed back by that much)."""
        now = int(time.time() * 1000)
        due = await self._claim([self._keys.sink_due], [now, int(lease_s * 1000), limit])
        return [d.decode() if isinstance(d, bytes) else str(d) for d in due]

    async def state(self, keys: BatchKeys) -> SinkState:
        raw: dict[bytes, bytes] = await awaited(self._redis.hgetall(keys.sink))
        parts, stale = [], {}
        for name, value in raw.items():
            if name.startswith(b"p:"):
                parts.append(PartRecord.from_json(value))
            elif name.startswith(b"s:"):
                stale[name[2:].decode()] = int(value)
        parts.sort(key=lambda p: p.n)
        err_at = raw.get(b"err_at")
        return SinkState(
            after=raw.get(b"after", b"0-0").decode(),
            next_part=int(raw.get(b"n", b"1")),
            rows=int(raw.get(b"rows", b"0")),
            parts=parts,
            stale=stale,
            error=raw[b"err"].decode() if b"err" in raw else None,
            error_at=float(err_at) if err_at else None,
            done=b"done" in raw,
            cancel_cursor=int(raw[b"c"]) if b"c" in raw else None,
        )

    async def waiting(self, keys: BatchKeys) -> int:
        """Results recorded and not written to a part yet (still in the batch's stream)."""
        return int(await awaited(self._redis.xlen(keys.results)))

    async def read_next(self, keys: BatchKeys, count: int) -> NextRows | None:
        """The next rows to write (None: the batch is gone)."""
        flat = await self._read_next(keys, [count])
        if not flat:
            return None

        def text(value: bytes | str | int) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        rows = [(int(flat[i]), text(flat[i + 1]), bytes(flat[i + 2])) for i in range(5, len(flat), 3)]
        return NextRows(
            after=text(flat[0]),
            next_part=int(flat[1]),
            scanned=int(flat[2]),
            first=text(flat[3]) or None,
            last=text(flat[4]) or None,
            rows=rows,
        )

    async def commit(self, keys: BatchKeys, read: NextRows, part: PartRecord, trim_before: str) -> int:
        """Record ``part`` (which holds ``read``'s rows) and trim its entries: 1, or 0 if another writer moved on,
        -1 if the batch is gone."""
        pairs: list[str | int] = []
        for ordinal, entry, _stored in read.rows:
            pairs += [ordinal, entry]
        args: list[str | int] = [read.after, read.next_part, part.to_json().decode(), part.last, trim_before]
        return int(await self._commit(keys, [*args, part.rows, *pairs]))

    async def commit_cancelled(
        self, keys: BatchKeys, *, cursor: int, next_part: int, part: PartRecord, new_cursor: int
    ) -> int:
        """Record a part of a cancel's synthesized lines, from ordinal ``cursor`` up to ``new_cursor``."""
        args: list[str | int] = [cursor, next_part, part.to_json().decode(), new_cursor, part.rows]
        return int(await self._commit_cancelled(keys, args))

    async def start_cancelled(self, keys: BatchKeys, first: int) -> None:
        """Set the cancel cursor to the first never-enqueued ordinal, once."""
        await self._set_fields_nx(keys, ["c", first])

    async def replace_part(self, keys: BatchKeys, old: PartRecord, new: PartRecord, removed: list[str]) -> bool:
        return bool(await self._replace(keys, [old.n, old.name, new.to_json().decode(), *removed]))

    async def note_error(self, keys: BatchKeys, message: str) -> None:
        """The writer's last failure, for ``status`` (cleared by the next commit)."""
        await self._set(keys, {"err": message[:500], "err_at": f"{time.time():.3f}"})

    async def mark_done(self, keys: BatchKeys) -> None:
        await self._set(keys, {"done": "1"})

    async def _set(self, keys: BatchKeys, fields: dict[str, str]) -> None:
        await self._set_fields(keys, [x for pair in fields.items() for x in pair])
