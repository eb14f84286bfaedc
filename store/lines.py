"""The line index of a batch: which lines it has, in input order, and where each one's final result is.

Two keys per batch, both compact and both O(1) per line to address:

- ``{p}batch:{id}:lines`` (list): entry *n* is line *n*'s fingerprint digest (32 raw bytes) followed by its
  custom_id (UTF-8). Written in input order at submit (:data:`INDEX_CHUNK`, also for the lines an ``--append`` adds);
  an entry is rewritten only when ``--replace-changed`` gives its line a new document (``store.feed.REPLACE_CHUNK``).
  ``collect``, ``cancel`` and a resubmit read it in chunks, the worker's job boundary one entry at a time. The
  ordinal *n* (0-based position among the input's valid lines) names the line everywhere else: in arq job ids,
  slots, accounts and result entries.
- ``{p}batch:{id}:slots`` (string): :data:`SLOT_BYTES` bytes per ordinal at offset ``n * SLOT_BYTES``: the status
  byte (:class:`SlotStatus`), the results-stream entry id of the line's latest final result (milliseconds in 6 bytes
  and sequence in 4, big-endian), and the line's *generation*: how often it was enqueued again (``retry``,
  ``--replace-changed``), which names its current arq job (``store.keys``; it wraps at 256, long after any job of
  an earlier generation is gone). ``GETRANGE``/``SETRANGE`` address it in O(1); it is
  preallocated with zeros (= pending) when the index starts, so a million lines take 12 MB, whatever happens.

The status byte is the record-once guard (``store.results``): a line is recorded only while its slot is pending.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from redis.asyncio import Redis

from store.batches import COMPLETE_LUA
from store.fields import F
from store.keys import BatchKeys
from store.redis_typing import awaited
from store.scripts import Arg, LuaScript

SLOT_BYTES = 12
SLOT_FORMAT = ">BHIIB"
"""status, entry milliseconds (high 2 bytes, low 4 bytes), entry sequence, generation; Lua packs the same 12 bytes."""
DIGEST_BYTES = 32
MAX_LINES = 512 * 1024 * 1024 // SLOT_BYTES - 1
"""Redis strings hold 512 MB: about 44 million lines per batch."""


class SlotStatus(IntEnum):
    PENDING = 0
    SUCCEEDED = 1
    FAILED = 2
    CANCELLED = 3


@dataclass(frozen=True)
class Slot:
    status: SlotStatus
    entry_id: str | None
    """The results-stream entry of the latest final result; None while pending."""
    generation: int = 0


def encode_entry(fingerprint: str, custom_id: str) -> bytes:
    return fingerprint_digest(fingerprint) + custom_id.encode()


def decode_entry(entry: bytes) -> tuple[str, str]:
    """(fingerprint, custom_id) of one index entry."""
    return "sha256:" + entry[:DIGEST_BYTES].hex(), entry[DIGEST_BYTES:].decode()


def fingerprint_digest(fingerprint: str) -> bytes:
    return bytes.fromhex(fingerprint.removeprefix("sha256:"))


def decode_slots(raw: bytes, count: int) -> list[Slot]:
    """The first ``count`` slots of ``raw`` (a GETRANGE of the slots string; missing bytes are pending)."""
    raw = raw.ljust(count * SLOT_BYTES, b"\0")
    return [decode_slot(raw[i * SLOT_BYTES : (i + 1) * SLOT_BYTES]) for i in range(count)]


def decode_slot(raw: bytes) -> Slot:
    status, ms_high, ms_low, seq, generation = struct.unpack(SLOT_FORMAT, raw.ljust(SLOT_BYTES, b"\0"))
    if status == SlotStatus.PENDING:
        return Slot(SlotStatus.PENDING, None, generation)
    return Slot(SlotStatus(status), f"{(ms_high << 32) | ms_low}-{seq}", generation)


def slot_range(first: int, count: int) -> tuple[int, int]:
    """GETRANGE bounds (inclusive) of ``count`` slots from ordinal ``first``."""
    return first * SLOT_BYTES, (first + count) * SLOT_BYTES - 1


# Lua side of the slot layout, shared by every script that reads or writes a slot (struct is built into Redis' Lua).
SLOT_LUA = """
local SLOT = $SLOT_BYTES
local function slot_status(slots_key, ord)
  local b = redis.call('GETRANGE', slots_key, ord * SLOT, ord * SLOT)
  if b == '' then return 0 end
  return string.byte(b)
end
local function slot_gen(slots_key, ord)
  local b = redis.call('GETRANGE', slots_key, ord * SLOT + SLOT - 1, ord * SLOT + SLOT - 1)
  if b == '' then return 0 end
  return string.byte(b)
end
local function set_slot(slots_key, ord, status, entry, gen)
  local ms, seq = 0, 0
  if entry then
    local dash = string.find(entry, '-', 1, true)
    ms, seq = tonumber(string.sub(entry, 1, dash - 1)), tonumber(string.sub(entry, dash + 1))
  end
  if gen == nil then gen = slot_gen(slots_key, ord) end
  local high = math.floor(ms / 4294967296)
  redis.call('SETRANGE', slots_key, ord * SLOT,
    struct.pack('>BI2I4I4B', status, high, ms - high * 4294967296, seq, gen % 256))
end
local function slot_entry(slots_key, ord)
  local raw = redis.call('GETRANGE', slots_key, ord * SLOT, ord * SLOT + SLOT - 1)
  if #raw < SLOT then return 0, nil end
  local status, high, low, seq = struct.unpack('>BI2I4I4B', raw)
  if status == 0 then return 0, nil end
  return status, string.format('%d-%d', high * 4294967296 + low, seq)
end
"""
SLOT_NAMES: dict[str, str | int] = {"SLOT_BYTES": SLOT_BYTES}

# KEYS: BatchKeys. ARGV[1] = ordinal of the first entry (= the index length the caller expects), then the entries.
# The last chunk of a batch cancelled while it was being indexed completes it.
# Returns {1, new length} when appended, {0, current length} when the index is not where the caller thought (another
# submit got there first: the caller re-reads and goes on from there), {-1, 0} when the batch is gone.
INDEX_CHUNK = LuaScript(
    "index_chunk",
    COMPLETE_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local start = tonumber(ARGV[1])
local indexed = tonumber(redis.call('HGET', KEYS[1], '$INDEXED') or '0')
if indexed ~= start then return {0, indexed} end
local lines = tonumber(redis.call('HGET', KEYS[1], '$LINES') or '0')
if redis.call('STRLEN', KEYS[3]) < lines * $SLOT_BYTES then
  redis.call('SETRANGE', KEYS[3], lines * $SLOT_BYTES - 1, '\\0')
end
local n = #ARGV - 1
for i = 2, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('HSET', KEYS[1], '$INDEXED', start + n)
complete_if_done()
return {1, start + n}
""",
    {**F.lua_names(), "SLOT_BYTES": SLOT_BYTES},
)


@dataclass(frozen=True)
class IndexedLine:
    ordinal: int
    custom_id: str
    fingerprint: str


class LineIndex:
    """Reads and appends a batch's line index and slots."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._index_chunk = INDEX_CHUNK.bind(redis)

    async def append(self, keys: BatchKeys, start: int, lines: Sequence[tuple[str, str]]) -> tuple[int, int]:
        """Append (fingerprint, custom_id) entries at ordinal ``start``. Returns the script's (code, length)."""
        args: list[Arg] = [start, *(encode_entry(fp, cid) for fp, cid in lines)]
        code, length = await self._index_chunk(keys, args)
        return int(code), int(length)

    async def read(self, keys: BatchKeys, first: int, count: int) -> list[IndexedLine]:
        """Up to ``count`` index entries from ordinal ``first`` (fewer at the end of the index)."""
        entries = await awaited(self._redis.lrange(keys.lines, first, first + count - 1))
        lines = []
        for n, entry in enumerate(entries):
            fingerprint, custom_id = decode_entry(entry)
            lines.append(IndexedLine(first + n, custom_id, fingerprint))
        return lines

    async def read_at(self, keys: BatchKeys, ordinals: Sequence[int]) -> list[IndexedLine]:
        """The index entries of ``ordinals`` (one range read when they are consecutive)."""
        if not ordinals:
            return []
        first = ordinals[0]
        if list(ordinals) == list(range(first, first + len(ordinals))):
            return await self.read(keys, first, len(ordinals))
        pipe = self._redis.pipeline(transaction=False)
        for ordinal in ordinals:
            pipe.lindex(keys.lines, ordinal)
        lines = []
        for ordinal, entry in zip(ordinals, await pipe.execute(), strict=True):
            if entry is None:
                raise IndexError(f"line {ordinal} is not in the index")
            fingerprint, custom_id = decode_entry(entry)
            lines.append(IndexedLine(ordinal, custom_id, fingerprint))
        return lines

    async def slots(self, keys: BatchKeys, first: int, count: int) -> list[Slot]:
        low, high = slot_range(first, count)
        raw: bytes = await self._redis.getrange(keys.slots, low, high)
        return decode_slots(raw, count)

    async def slot_entries(self, keys: BatchKeys, ordinals: Sequence[int]) -> list[str | None]:
        """The results-stream entry of each line's latest final result (None while pending), in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        for ordinal in ordinals:
            low, high = slot_range(ordinal, 1)
            pipe.getrange(keys.slots, low, high)
        raws: list[bytes] = await pipe.execute()
        return [decode_slot(raw).entry_id if len(raw) == SLOT_BYTES else None for raw in raws]
