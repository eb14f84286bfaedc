"""The result cache and the coalescing leases, both keyed by a line's fingerprint (policy: ``worker.cache``).

The cache holds no answers. A succeeded answer is already in its batch's results -- in the results stream while it is
in Redis, in the results sink's parts once it has left (``store.sink``) -- so a cache entry is a *pointer* to the line
whose result holds it: (batch number, ordinal), 8 bytes. Every key carries the provider (a hash of the endpoint the
worker calls), so an answer from a local server is never served as OpenAI's.

Keys:

- ``{p}cache:{provider}:{ttl}:{g}:{n}``: a *bucket*, a hash from a fingerprint's digest (its first 12 bytes, raw:
  :func:`digest_field`) to the pointer (two big-endian uint32: the batch's number, the line's ordinal). Buckets are
  addressed by *linear hashing* on the digest's first 4 bytes: a generation starts with one bucket and splits one
  more (moving about half its entries) each time it holds more than :data:`LOAD` entries per bucket, so at any size
  -- a few documents or a hundred million -- buckets hold 40 entries on average (the ones not split yet this round up
  to 80) and stay listpacks, Redis' compact encoding (up to ``hash-max-listpack-entries``, 128 by default).
- ``{p}cache:{provider}:{ttl}:{g}``: a *generation*: its level and split pointer (which say a digest's bucket) and
  its entry count. A pointer goes into generation ``g = floor(now / cache_ttl_s)``; the generation and every bucket
  of it expire together at the end of the next one (``(g + 2) * cache_ttl_s``, ``PEXPIREAT``), so an answer is
  reusable for at least ``cache_ttl_s`` and at most twice that, and the cache holds at most the documents answered
  in two generations. Nothing else deletes a generation: no scan, no sweep.
- ``{p}cache:{provider}:gens``: the live generations, each with when it expires. A lookup checks every live one,
  newest first, whatever its own ``cache_ttl_s`` (so ``producer estimate``, and workers configured differently,
  see the same cache).
- ``{p}cache:batch-seq`` and ``{p}cache:batch-ids``: a batch gets its number (``F.CACHE_NUMBER`` in its record) when
  its first answer goes into the cache (``INCR``), and ``batch-ids`` maps the number back to the id.
  ``store.batches.delete`` removes the mapping; the first lookup that finds a batch gone (expired) drops it.
- ``{p}inflight:{provider}:{fp}``: the lease of the job calling the API for the fingerprint: a random token, set
  with NX and a short TTL that its owner keeps extending (``OWNER_ONLY``); identical jobs wait until it goes.

Memory per distinct document: a listpack entry is the 12-byte field and the 8-byte value, each with a 1-byte header
and a 1-byte back-length: 24 bytes; a bucket's key, its expiry and the allocator's rounding, spread over its 40
entries, bring it to about 29. ``python -m bench.cache_memory`` (a private Redis 7.0, default configuration) measured
29.0 / 30.2 / 30.3 bytes per document (``used_memory`` delta over N) at 100,000 / 1,000,000 / 4,000,000 documents,
and 28.8 to 29.1 (``MEMORY USAGE`` of every cache key) from 1,000 to 4,000,000; whole answers, as this cache stored
them before, took 494 bytes per document (invoice answers of 252 bytes compressed): ten million documents in two
generations take ~0.3 GB where they took ~5 GB. Plus ~60 bytes per batch in ``batch-ids``. A Redis configured with
``hash-max-listpack-entries`` below ~100 turns buckets into hash tables (~70 bytes an entry): keep the default.
Two documents whose digests share 12 bytes (96 bits) would share a pointer: the fingerprint check at every hit makes
that a miss for one of them, never a wrong answer.

Put (``PUT``): in the round trip that records the line, *after* the record and before the lease is let go
(``worker.tasks``), so a pointer names a recorded line and the jobs waiting on the lease find it. A cache hit writes
no pointer: the one it followed is good. An answer lives as long as the pointer and the batch that answered it
(``EXTRACT_BATCH_TTL_S`` after it completes, or until ``producer delete``), whichever ends first.

Lookup (``LOOKUP``, one script, one round trip with the line's other reads, as before): the digest's bucket in each
live generation; a pointer found is followed as far as Redis goes -- its number to the batch id (whose record must
still carry that number: an expired batch whose id was used again is another batch), the line's slot
(``store.lines``) to its latest result's entry, which must be ``succeeded``, and that entry in the results stream.
A pointer to a line that is gone, failed or cancelled is deleted there and the next generation is looked at; one to
a pending line is kept (the line was reopened and will be answered again, or its record was re-sent after a
``NOSCRIPT``: ``store.scripts``) and is a miss. The stored result found is decoded with the looking batch's codec
(the same fingerprint means the same strict schema, hence the same dictionary: ``store.codec``) and is the answer
only if it is ``succeeded`` with this very fingerprint (the line may since hold another document); else the pointer
is stale (:class:`Lookup` ``stale``: the worker deletes it). A result that has left for the sink comes back as
``in_sink``: the worker reads it from its part and checks it the same way (``worker.cache``). With no answer the
script takes the fingerprint's lease, when asked, as before.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from store.codec import ResultCodec
from store.fields import F
from store.keys import BatchKeys, Keys
from store.lines import SLOT_LUA, SLOT_NAMES, SlotStatus, fingerprint_digest
from store.redis_typing import awaited
from store.scripts import Arg, LuaScript, RoundTrip, Slot, single

FIELD_BYTES = 12
"""A pointer's field: the first 12 bytes of the fingerprint's digest (96 bits; its first 4 choose the bucket). Two
documents sharing them would share a pointer: the fingerprint check at every hit makes that a miss, never a wrong
answer."""
LOAD = 40
"""Entries per bucket, on average, before the generation splits one more bucket. A bucket not split yet this round
holds up to twice that: 80 on average, so with a Poisson spread of about 9, none reaches 128 (a listpack's limit)."""
MAX_LEVEL = 24
"""Buckets stop splitting at 2**25 (over a billion documents at ``LOAD``): past it they only grow."""

# KEYS[1] = lease. ARGV[1] = token, ARGV[2] = TTL in ms (extend) or "" (release). Only the owner may touch it.
OWNER_ONLY = LuaScript(
    "lease_owner_only",
    """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  return redis.call('DEL', KEYS[1])
end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
""",
)

# Which bucket of a generation holds a digest: linear hashing on its first 4 bytes (``level``: the generation has
# 2^level buckets plus ``split`` more, the ones below ``split`` already split in two).
BUCKET_LUA = """
local function bucket_of(field, level, split)
  local h = struct.unpack('>I4', field)
  local size = 2 ^ level
  local b = h % size
  if b < split then b = h % (size * 2) end
  return string.format('%d', b)
end
"""

# KEYS: the generations, the lease, the batch numbers (``batch-ids``). ARGV: lease token, lease TTL ms ("" = take no
# lease), now ms, the cache's key prefix (``Keys.cache_prefix``), the digest's field, the batch key prefix
# (``{p}batch:``). Returns {1, batch id, ordinal, entry, bucket, pointer, stored result}: a pointer led to a succeeded
# line whose result is in the stream; {3, batch id, ordinal, entry, bucket, pointer}: to one whose result has left
# for the sink; else {2} (the lease is now this token's) or {0} (another job holds it, or no lease was asked for).
LOOKUP = LuaScript(
    "cache_lookup",
    SLOT_LUA
    + BUCKET_LUA
    + """
local field = ARGV[5]
-- The answer a pointer leads to in Redis (nil: none; a stale pointer is deleted on the way).
local function follow(generation, bucket, pointer)
  local num, ord = struct.unpack('>I4I4', pointer)
  num = string.format('%d', num)
  local id = redis.call('HGET', KEYS[3], num)
  if id then
    local record = ARGV[6] .. id
    if redis.call('HGET', record, '$CACHE_NUMBER') == num then
      local status, entry = slot_entry(record .. ':slots', ord)
      if status == $SLOT_SUCCEEDED then
        local found = redis.call('XRANGE', record .. ':results', entry, entry)
        if #found == 1 then return {1, id, ord, entry, bucket, pointer, found[1][2][4]} end
        return {3, id, ord, entry, bucket, pointer}
      end
      -- pending: reopened (its next result decides), or its record not run yet (a trip re-sent after NOSCRIPT)
      if status == 0 then return nil end
    else
      redis.call('HDEL', KEYS[3], num)  -- that batch is gone (its id may name a newer one)
    end
  end
  redis.call('HDEL', bucket, field)  -- the line no longer holds a succeeded result: a stale pointer
  redis.call('HINCRBY', generation, 'n', -1)
  return nil
end
local now = tonumber(ARGV[3])
local gens = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #gens, 2 do
  local expires = tonumber(gens[i + 1])
  if expires > now then live[#live + 1] = {gens[i], expires} end
end
table.sort(live, function(a, b) return a[2] > b[2] end)
for _, gen in ipairs(live) do
  local generation = ARGV[4] .. gen[1]
  local meta = redis.call('HMGET', generation, 'l', 's')
  if meta[1] then
    local bucket = generation .. ':' .. bucket_of(field, tonumber(meta[1]), tonumber(meta[2]))
    local pointer = redis.call('HGET', bucket, field)
    if pointer then
      local found = follow(generation, bucket, pointer)
      if found then return found end
    end
  end
end
if ARGV[2] ~= '' and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
""",
    {**F.lua_names(), **SLOT_NAMES, "SLOT_SUCCEEDED": int(SlotStatus.SUCCEEDED)},
)

# KEYS: the generations, the generation written, the batch record, ``batch-seq``, ``batch-ids``. ARGV: the
# generation's name, when it expires (ms), the digest's field, the ordinal, the batch id, now (ms). Points the field
# at (the batch's number, the ordinal); gives the batch its number first if it has none. Returns 1, or 0 when the
# batch is gone.
PUT = LuaScript(
    "cache_put",
    BUCKET_LUA
    + """
local batch = redis.call('HMGET', KEYS[3], '$LINES', '$CACHE_NUMBER')
if not batch[1] then return 0 end
local num = batch[2]
if not num then
  num = redis.call('INCR', KEYS[4])
  redis.call('HSET', KEYS[3], '$CACHE_NUMBER', num)
  redis.call('HSET', KEYS[5], num, ARGV[5])
end
local expires = tonumber(ARGV[2])
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 1 then  -- a new generation: forget the expired ones
  local now, latest, gens = tonumber(ARGV[6]), expires, redis.call('HGETALL', KEYS[1])
  for i = 1, #gens, 2 do
    local e = tonumber(gens[i + 1])
    if e <= now then redis.call('HDEL', KEYS[1], gens[i]) elseif e > latest then latest = e end
  end
  redis.call('PEXPIREAT', KEYS[1], latest)
end
local function split_bucket(generation, level, split)
  -- bucket `split` gives the entries whose next bit is set to bucket `split + 2^level`
  local size = 2 ^ level
  local from = generation .. ':' .. string.format('%d', split)
  local target = split + size
  local to = generation .. ':' .. string.format('%d', target)
  local entries = redis.call('HGETALL', from)
  local moved, fields = {}, {}
  for i = 1, #entries, 2 do
    if struct.unpack('>I4', entries[i]) % (size * 2) == target then
      moved[#moved + 1] = entries[i]
      moved[#moved + 1] = entries[i + 1]
      fields[#fields + 1] = entries[i]
    end
  end
  if #fields > 0 then
    redis.call('HSET', to, unpack(moved))
    redis.call('PEXPIREAT', to, expires)
    redis.call('HDEL', from, unpack(fields))
  end
  split = split + 1
  if split == size then level, split = level + 1, 0 end
  redis.call('HSET', generation, 'l', level, 's', split)
end
local meta = redis.call('HMGET', KEYS[2], 'l', 's')
local level, split = tonumber(meta[1] or '0'), tonumber(meta[2] or '0')
local bucket = KEYS[2] .. ':' .. bucket_of(ARGV[3], level, split)
local added = redis.call('HSET', bucket, ARGV[3], struct.pack('>I4I4', tonumber(num), tonumber(ARGV[4])))
redis.call('PEXPIREAT', bucket, expires)
if added == 1 then
  local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
  if not meta[1] then  -- the generation's first pointer
    redis.call('HSET', KEYS[2], 'l', 0, 's', 0)
    redis.call('PEXPIREAT', KEYS[2], expires)
  end
  if n > $LOAD * (2 ^ level + split) and level < $MAX_LEVEL then split_bucket(KEYS[2], level, split) end
end
return 1
""",
    {**F.lua_names(), "LOAD": LOAD, "MAX_LEVEL": MAX_LEVEL},
)

# KEYS: a bucket, its generation. ARGV: the field, the pointer it held. Deletes the pointer if it is still that one.
FORGET = LuaScript(
    "cache_forget",
    """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HINCRBY', KEYS[2], 'n', -1) end
return 1
""",
)

# KEYS: the generations. ARGV: now ms, the cache's key prefix, then digest fields. Returns how many of them have a
# pointer in a live generation (not followed: see ``CacheStore.count_cached``).
COUNT = LuaScript(
    "cache_count",
    BUCKET_LUA
    + """
local now = tonumber(ARGV[1])
local gens = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #gens, 2 do
  if tonumber(gens[i + 1]) > now then
    local generation = ARGV[2] .. gens[i]
    local meta = redis.call('HMGET', generation, 'l', 's')
    if meta[1] then live[#live + 1] = {generation, tonumber(meta[1]), tonumber(meta[2])} end
  end
end
local found = 0
for i = 3, #ARGV do
  for _, g in ipairs(live) do
    if redis.call('HEXISTS', g[1] .. ':' .. bucket_of(ARGV[i], g[2], g[3]), ARGV[i]) == 1 then
      found = found + 1
      break
    end
  end
end
return found
""",
)


@dataclass(frozen=True)
class CachedAnswer:
    output: dict[str, Any]
    response_id: str | None


@dataclass(frozen=True)
class Source:
    """The line a pointer led to: where its result is, and the pointer itself (to delete it if it is stale)."""

    batch_id: str
    ordinal: int
    entry: str
    """The results-stream entry of the line's latest result (in the stream, or in the sink part holding it)."""
    bucket: str
    field: bytes
    pointer: bytes

    @property
    def generation(self) -> str:
        return self.bucket.rsplit(":", 1)[0]

    @property
    def batch_number(self) -> int:
        """The batch's number in the pointer (``F.CACHE_NUMBER``)."""
        return int.from_bytes(self.pointer[:4], "big")


@dataclass(frozen=True)
class Lookup:
    """What a line found: the cached ``answer``, or the lease ``token`` it now holds, or neither (someone else's).

    Two things the worker finishes (``worker.cache.ResultCache.resolve``): ``in_sink``, a pointer to a line whose
    result has left for the results sink (to read back and check), and ``stale``, a pointer to a line whose result
    turned out not to be this fingerprint's answer (to delete)."""

    answer: CachedAnswer | None = None
    token: str | None = None
    in_sink: Source | None = None
    stale: Source | None = None


def answer_from_line(line: bytes, fingerprint: str) -> CachedAnswer | None:
    """The answer a result line (JSON) holds for ``fingerprint``: only a ``succeeded`` line of this very fingerprint
    has one (the line a pointer names may since have been replaced by another document)."""
    try:
        data = orjson.loads(line)
        if data.get("status") != "succeeded" or data.get("fingerprint") != fingerprint:
            return None
        output = data["output"]
        response_id = data.get("response_id")
    except (ValueError, KeyError, AttributeError):
        return None
    if not isinstance(output, dict) or not (response_id is None or isinstance(response_id, str)):
        return None
    return CachedAnswer(output, response_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


DEFAULT_ENDPOINT = "https://api.openai.com/v1"


def provider_endpoint(base_url: str | None) -> str:
    """The provider's base URL as every key derived from it spells it (``OPENAI_BASE_URL``, else OpenAI's)."""
    return (base_url or DEFAULT_ENDPOINT).rstrip("/")


def provider_id(endpoint: str) -> str:
    """Names a provider's endpoint in keys without spelling its URL."""
    return hashlib.sha256(endpoint.encode()).hexdigest()[:16]


def digest_field(fingerprint: str) -> bytes:
    """A fingerprint's field in its bucket: :data:`FIELD_BYTES` raw bytes of its digest (of a hash of the string, for
    a fingerprint that is not ``sha256:`` and hex)."""
    try:
        digest = fingerprint_digest(fingerprint)
    except ValueError:
        digest = b""
    if len(digest) < FIELD_BYTES:
        digest = hashlib.sha256(fingerprint.encode()).digest()
    return digest[:FIELD_BYTES]


def generation_of(now: float, ttl_s: int) -> tuple[str, int]:
    """The generation a pointer written at ``now`` goes into, and when it expires (ms): the end of the next one."""
    number = math.floor(now / ttl_s)
    return f"{ttl_s}:{number}", (number + 2) * ttl_s * 1000


def _now_ms(now: float | None) -> int:
    return int((time.time() if now is None else now) * 1000)


class CacheStore:
    def __init__(self, redis: Redis, keys: Keys, endpoint: str) -> None:
        self._redis = redis
        self._keys = keys
        self._provider = provider_id(endpoint)
        self._owner_only = OWNER_ONLY.bind(redis)
        self._lookup = LOOKUP.bind(redis)
        self._put = PUT.bind(redis)
        self._forget = FORGET.bind(redis)
        self._count = COUNT.bind(redis)

    @property
    def keys(self) -> Keys:
        return self._keys

    @property
    def redis(self) -> Redis:
        return self._redis

    async def count_cached(self, fingerprints: Iterable[str], *, chunk: int = 1000, now: float | None = None) -> int:
        """How many of these fingerprints have a pointer in the cache (read only; ``chunk`` per round trip).

        Pointers are counted, not followed: one whose batch has gone since, or whose line now holds another document,
        still counts (a lookup would find it stale). An estimate, as ``producer estimate`` uses it."""
        found, pending = 0, []
        for fingerprint in fingerprints:
            pending.append(digest_field(fingerprint))
            if len(pending) >= chunk:
                found += await self._count_chunk(pending, now)
                pending = []
        if pending:
            found += await self._count_chunk(pending, now)
        return found

    async def _count_chunk(self, fields: list[bytes], now: float | None) -> int:
        prefix = self._keys.cache_prefix(self._provider)
        return int(await self._count([self._keys.cache_generations(self._provider)], [_now_ms(now), prefix, *fields]))

    def lease_key(self, fingerprint: str) -> str:
        return self._keys.inflight(self._provider, fingerprint)

    def queue_lookup(
        self,
        trip: RoundTrip,
        fingerprint: str,
        codec: ResultCodec,
        *,
        lease_ms: int | None,
        now: float | None = None,
    ) -> Slot[Lookup]:
        """As a step of ``trip``: the cached answer, else the fingerprint's lease (:class:`Lookup`); ``lease_ms``
        None takes no lease. ``codec``: the looking batch's (the same fingerprint, the same schema and dictionary)."""
        token = secrets.token_hex(16)
        field = digest_field(fingerprint)

        def parse(reply: list[Any]) -> Lookup:
            code = int(reply[0])
            if code in (1, 3):
                source = Source(_text(reply[1]), int(reply[2]), _text(reply[3]), _text(reply[4]), field, reply[5])
                if code == 3:
                    return Lookup(in_sink=source)
                answer = _answer_from_stored(reply[6], codec, fingerprint)
                return Lookup(answer=answer) if answer is not None else Lookup(stale=source)
            return Lookup(token=token if code == 2 else None)

        keys = [
            self._keys.cache_generations(self._provider),
            self.lease_key(fingerprint),
            self._keys.cache_batch_ids,
        ]
        args: list[Arg] = [
            token,
            "" if lease_ms is None else lease_ms,
            _now_ms(now),
            self._keys.cache_prefix(self._provider),
            field,
            f"{self._keys.prefix}batch:",
        ]
        return trip.script(self._lookup, keys, args, parse)

    async def lookup(self, fingerprint: str, codec: ResultCodec, *, now: float | None = None) -> Lookup:
        """The cached answer (or the pointer to finish following), taking no lease."""
        return await single(
            self._redis, lambda trip: self.queue_lookup(trip, fingerprint, codec, lease_ms=None, now=now)
        )

    def queue_put(
        self,
        trip: RoundTrip,
        fingerprint: str,
        batch: BatchKeys,
        ordinal: int,
        *,
        ttl_s: int,
        now: float | None = None,
    ) -> Slot[bool]:
        """As a step of ``trip``, after the line's record: point the fingerprint at line ``ordinal`` of ``batch``
        (whose result holds the answer) for ``ttl_s`` to ``2 * ttl_s``. False: the batch is gone."""
        now_ms = _now_ms(now)
        generation, expires_ms = generation_of(now_ms / 1000, ttl_s)
        keys = [
            self._keys.cache_generations(self._provider),
            self._keys.cache_generation(self._provider, generation),
            batch.record,
            self._keys.cache_batch_seq,
            self._keys.cache_batch_ids,
        ]
        args: list[Arg] = [generation, expires_ms, digest_field(fingerprint), ordinal, batch.batch_id, now_ms]
        return trip.script(self._put, keys, args, bool)

    async def put(
        self, fingerprint: str, batch: BatchKeys, ordinal: int, *, ttl_s: int, now: float | None = None
    ) -> bool:
        return await single(
            self._redis, lambda trip: self.queue_put(trip, fingerprint, batch, ordinal, ttl_s=ttl_s, now=now)
        )

    async def forget(self, source: Source) -> bool:
        """Delete a stale pointer, if it is still the one found (a newer one written meanwhile stays)."""
        return bool(await self._forget([source.bucket, source.generation], [source.field, source.pointer]))

    async def claim(self, fingerprint: str, *, lease_ms: int) -> str | None:
        """Take the fingerprint's lease: its token, or None when another job holds it."""
        token = secrets.token_hex(16)
        taken = await self._redis.set(self.lease_key(fingerprint), token, nx=True, px=lease_ms)
        return token if taken else None

    async def extend(self, fingerprint: str, token: str, *, lease_ms: int) -> bool:
        return bool(await self._owner_only([self.lease_key(fingerprint)], [token, str(lease_ms)]))

    def queue_release(self, trip: RoundTrip, fingerprint: str, token: str) -> Slot[bool]:
        return trip.script(self._owner_only, [self.lease_key(fingerprint)], [token, ""], bool)

    async def release(self, fingerprint: str, token: str) -> bool:
        return await single(self._redis, lambda trip: self.queue_release(trip, fingerprint, token))

    async def held(self, fingerprint: str) -> bool:
        return bool(await awaited(self._redis.exists(self.lease_key(fingerprint))))


def _answer_from_stored(stored: bytes, codec: ResultCodec, fingerprint: str) -> CachedAnswer | None:
    try:
        line = codec.decode(stored)
    except (ValueError, zlib.error):
        return None
    return answer_from_line(line, fingerprint)
