"""Files uploaded to the provider for a batch (``--attach upload``): tracked *before* each upload is made, deleted when
the batch goes -- by ``producer delete``, or by the worker's uploads sweep once the batch's retention has passed.

Three keys (``store.keys``):

* the **uploads hash** ``{p}batch:{id}:uploads``: content (``sha256:<hex>``) → the provider's ``file_id``, or an
  **intent** ``pending:<nonce>:<ms>`` while its upload is under way (or was, when a process was killed). It is one of
  the batch's keys and expires with them. Jobs carry the ``file_id``; nothing but this module reads the hash.
* the **files set** ``{p}uploads:{id}:{created ms}``: every ``file_id`` the batch got and every intent not resolved
  yet. It does *not* expire with the batch: once the batch's keys are gone it is what says which files to delete.
  The batch's ``created_ms`` names the generation, so a batch id used again never inherits (or keeps) another's files.
* the **index** ``{p}uploads``: ``{id}:{created ms}`` of each files set, scored by when to look at it next -- the
  earliest the batch's retention can end (its keys' TTL once complete, ``ttl_ms`` from now while it runs, at most
  :data:`RECHECK_MAX_MS`), or at once when the batch is gone.

How an upload goes (``producer.submit.attachments``):

1. ``INTEND`` writes content → intent into the hash and the intent into the set, in one step, before the create is
   sent. The file is uploaded under :func:`upload_filename`, which carries the intent's nonce.
2. ``RESOLVE`` once the ``file_id`` is known: the hash maps the content to it, the set swaps the intent for it (the
   intent stays when another file may carry its nonce: an attempt whose answer was lost).
3. A process killed between 1 and 2 leaves the intent. The next submit that needs the content looks the nonce up in
   the provider's file list (``GET /v1/files``, newest first, back to the intent's time: :func:`find_intents`) and
   adopts the file if its size is right; ``delete`` and the sweep delete whatever carries the nonce.

Why a random nonce and not the batch id and content hash in the filename: only a nonce written to our Redis before
the upload can never match a file we did not create -- another deployment's, a user's own, an earlier batch of the
same id, or another attempt at the same content.

Deleting (``producer delete``, ``worker.uploads_sweep``): each ``file_id`` in the set is deleted at the provider and
each intent looked up and its files deleted; what is done is ``FORGET``-ed, and an empty set leaves the index. What
failed stays for the next sweep. The uploads keep their ``expires_after`` (30 days) as the backstop.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import AsyncIterable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import openai
from redis.asyncio import Redis

from store.fields import F
from store.keys import BatchKeys, Keys
from store.redis_typing import awaited
from store.scripts import LuaScript, RoundTrip

PENDING = "pending:"
"""How an intent's value starts (a ``file_id`` never does)."""
FILENAME_PREFIX = "extract-"
NONCE_HEX = 32
_FILENAME = re.compile(rf"{FILENAME_PREFIX}([0-9a-f]{{{NONCE_HEX}}})-")

UPLOAD_EXPIRES_S = 30 * 24 * 3600
"""Every upload asks the provider to expire it this long after its creation (the longest the Files API allows): the
backstop for a file nothing here deletes."""
RECHECK_MAX_MS = 24 * 3600 * 1000
"""A batch with files is looked at at least this often (a batch kept for ever, a retention changed)."""
INTENT_SETTLE_MS = 3600 * 1000
"""An intent older than this has no upload still under way: a lookup that finds no file for it is final."""
CLOCK_SKEW_S = 3600
"""How far the provider's clock may be behind Redis's: a lookup lists files back to the intent's time minus this."""
MAX_SET_ARGS = 1000
"""Members per SADD/SREM in one script call."""


@dataclass(frozen=True)
class Intent:
    """An upload under way (or interrupted): its nonce and when it was recorded (Redis time, ms)."""

    nonce: str
    at_ms: int

    @property
    def value(self) -> str:
        return f"{PENDING}{self.nonce}:{self.at_ms}"

    @classmethod
    def parse(cls, value: str) -> Intent | None:
        """The intent a hash value or set member holds; None for a ``file_id``."""
        if not value.startswith(PENDING):
            return None
        nonce, _, at_ms = value.removeprefix(PENDING).partition(":")
        return cls(nonce, int(at_ms)) if at_ms.isdigit() else None


def new_nonce() -> str:
    return secrets.token_hex(NONCE_HEX // 2)


def upload_filename(nonce: str, filename: str) -> str:
    """The name a file is uploaded under: the user's name, after a prefix that carries the intent's nonce."""
    return f"{FILENAME_PREFIX}{nonce}-{filename}"


def nonce_of(filename: str) -> str | None:
    """The nonce of a file we uploaded (:func:`upload_filename`); None for any other name."""
    found = _FILENAME.match(filename)
    return found.group(1) if found else None


class ProviderFile(Protocol):
    """What a lookup reads of a provider's file object (``openai.types.FileObject`` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def filename(self) -> str: ...
    @property
    def bytes(self) -> int: ...
    @property
    def created_at(self) -> int: ...


@dataclass
class Found:
    """What a lookup by nonce found."""

    files: dict[str, list[ProviderFile]] = field(default_factory=dict)
    """Nonce → the provider's files carrying it."""
    complete: bool = True
    """The listing reached back past every intent's time: a nonce with no file has none."""


async def find_intents(listing: AsyncIterable[ProviderFile], intents: Iterable[Intent], *, max_files: int) -> Found:
    """The files of ``intents`` in ``listing`` -- the provider's files, newest first (``GET /v1/files?order=desc``)
    -- read back to the oldest intent's time (less :data:`CLOCK_SKEW_S`), at most ``max_files`` of them."""
    wanted = {intent.nonce: intent for intent in intents}
    found = Found()
    if not wanted:
        return found
    cutoff_s = min(intent.at_ms for intent in wanted.values()) // 1000 - CLOCK_SKEW_S
    read = 0
    async for item in listing:
        if item.created_at < cutoff_s:
            return found
        nonce = nonce_of(item.filename)
        if nonce in wanted:
            found.files.setdefault(nonce, []).append(item)
        read += 1
        if read >= max_files:
            found.complete = False
            return found
    return found


@dataclass(frozen=True)
class BatchFiles:
    """One generation of a batch, as the files set and the index name it."""

    batch_id: str
    created_ms: int

    @property
    def member(self) -> str:
        """Its entry in the index."""
        return f"{self.batch_id}:{self.created_ms}"

    @classmethod
    def parse(cls, member: str) -> BatchFiles | None:
        batch_id, _, created_ms = member.rpartition(":")
        return cls(batch_id, int(created_ms)) if batch_id and created_ms.isdigit() else None


_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function next_check(record, now)
  local pttl = redis.call('PTTL', record)
  local ttl = tonumber(redis.call('HGET', record, '$TTL_MS') or '0')
  local wait = $RECHECK_MAX_MS
  if pttl > 0 then wait = pttl + 1000 elseif ttl > 0 then wait = ttl end
  if wait > $RECHECK_MAX_MS then wait = $RECHECK_MAX_MS end
  return now + wait
end
local function follow_ttl(record, uploads)
  local pttl = redis.call('PTTL', record)
  if pttl > 0 then redis.call('PEXPIRE', uploads, pttl) end
end
"""
_NAMES: dict[str, str | int] = {**F.lua_names(), "RECHECK_MAX_MS": RECHECK_MAX_MS, "PENDING": PENDING}

# KEYS: record, uploads hash, files set, index. ARGV: created ms, index member, then (content, nonce) pairs.
# Returns nil when this generation of the batch is gone; else what each content holds now: the intent written, or the
# file id an upload running elsewhere recorded first.
INTEND = LuaScript(
    "uploads_intend",
    _COMMON
    + """
if redis.call('HGET', KEYS[1], '$CREATED_MS') ~= ARGV[1] then return false end
local now = now_ms()
local out = {}
for i = 3, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[2], ARGV[i])
  if current and string.sub(current, 1, string.len('$PENDING')) ~= '$PENDING' then
    out[#out + 1] = current
  else
    local intent = '$PENDING' .. ARGV[i + 1] .. ':' .. now
    redis.call('HSET', KEYS[2], ARGV[i], intent)
    redis.call('SADD', KEYS[3], intent)
    out[#out + 1] = intent
  end
end
follow_ttl(KEYS[1], KEYS[2])
redis.call('ZADD', KEYS[4], 'NX', next_check(KEYS[1], now), ARGV[2])
return out
""",
    _NAMES,
)

# KEYS: record, uploads hash, files set, index. ARGV: created ms, index member, content, intent, keep the intent
# ('1'/'0'), the file id, then other files carrying the intent's nonce. Returns 1 (recorded for the content) or 0 (the
# batch is gone: the files stay in the set, due for deletion at once).
RESOLVE = LuaScript(
    "uploads_resolve",
    _COMMON
    + """
for i = 6, #ARGV do redis.call('SADD', KEYS[3], ARGV[i]) end
if ARGV[5] ~= '1' then redis.call('SREM', KEYS[3], ARGV[4]) end
local now = now_ms()
if redis.call('HGET', KEYS[1], '$CREATED_MS') ~= ARGV[1] then
  redis.call('ZADD', KEYS[4], 'LT', now, ARGV[2])
  return 0
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[6])
follow_ttl(KEYS[1], KEYS[2])
redis.call('ZADD', KEYS[4], 'NX', next_check(KEYS[1], now), ARGV[2])
return 1
""",
    _NAMES,
)

# KEYS: files set, index. ARGV: index member, then what to add to the set. The index entry is due at once (LT: an
# earlier score stays). For ``delete``: the hash's values, so the set holds them all before the hash goes.
TRACK = LuaScript(
    "uploads_track",
    _COMMON
    + """
for i = 2, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('ZADD', KEYS[2], 'LT', now_ms(), ARGV[1]) end
return 1
""",
    _NAMES,
)

# KEYS: files set, index. ARGV: index member, then what was deleted at the provider (or found gone). Returns 1 when
# the set is empty and has left the index.
FORGET = LuaScript(
    "uploads_forget",
    """
for i = 2, #ARGV do redis.call('SREM', KEYS[1], ARGV[i]) end
if redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
""",
)

# KEYS: index. ARGV: how many, lease ms. The due entries, each made due again only after the lease (so two sweeps do
# not take the same one, and one killed mid-way is taken up again).
CLAIM = LuaScript(
    "uploads_claim",
    _COMMON
    + """
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), member) end
return due
""",
    _NAMES,
)

# KEYS: record, index. ARGV: created ms, index member. Returns 1 when this generation of the batch is alive (and its
# entry is due again when its retention can end next), 0 when it is gone.
CHECK = LuaScript(
    "uploads_check",
    _COMMON
    + """
if redis.call('HGET', KEYS[1], '$CREATED_MS') ~= ARGV[1] then return 0 end
redis.call('ZADD', KEYS[2], 'XX', next_check(KEYS[1], now_ms()), ARGV[2])
return 1
""",
    _NAMES,
)

# KEYS: index. ARGV: index member, ms from now. Makes an entry due then (if it is still in the index).
DEFER = LuaScript(
    "uploads_defer",
    _COMMON
    + """
redis.call('ZADD', KEYS[1], 'XX', now_ms() + tonumber(ARGV[2]), ARGV[1])
return 1
""",
    _NAMES,
)


class UploadStore:
    """The uploads hash, the files sets and their index (see the module note)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._intend = INTEND.bind(redis)
        self._resolve = RESOLVE.bind(redis)
        self._track = TRACK.bind(redis)
        self._forget = FORGET.bind(redis)
        self._claim = CLAIM.bind(redis)
        self._check = CHECK.bind(redis)
        self._defer = DEFER.bind(redis)

    @classmethod
    def of(cls, redis: Redis, batch_keys: BatchKeys) -> UploadStore:
        return cls(redis, Keys(batch_keys.prefix))

    def _files_keys(self, batch: BatchFiles) -> list[str]:
        batch_keys = self._keys.batch(batch.batch_id)
        return [
            batch_keys.record,
            batch_keys.uploads,
            self._keys.batch_files(batch.batch_id, batch.created_ms),
            self._keys.uploads_index,
        ]

    async def now_ms(self) -> int:
        """Redis's clock: every intent's time is on it."""
        seconds, micros = await self._redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def batch(self, batch_id: str) -> BatchFiles | None:
        """The batch's current generation; None when it has no record."""
        raw = await awaited(self._redis.hget(self._keys.batch(batch_id).record, F.CREATED_MS))
        return BatchFiles(batch_id, int(raw)) if raw is not None else None

    async def read(self, batch_id: str, contents: Sequence[str]) -> dict[str, str | Intent]:
        """What the hash holds for these contents: a file id or an intent (absent ones left out)."""
        if not contents:
            return {}
        found = await awaited(self._redis.hmget(self._keys.batch(batch_id).uploads, list(contents)))
        out: dict[str, str | Intent] = {}
        for content, raw in zip(contents, found, strict=True):
            if raw is not None:
                value = raw.decode()
                out[content] = Intent.parse(value) or value
        return out

    async def intend(self, batch: BatchFiles, contents: Sequence[str]) -> dict[str, str | Intent] | None:
        """Record an intent for each content before it is uploaded; what each holds then (an intent of ours, or a
        file id recorded meanwhile by another upload). None when the batch is gone."""
        args: list[str | int] = [batch.created_ms, batch.member]
        for content in contents:
            args += [content, new_nonce()]
        held = await self._intend(self._files_keys(batch), args)
        if held is None:
            return None
        return {c: Intent.parse(v.decode()) or v.decode() for c, v in zip(contents, held, strict=True)}

    async def resolve(
        self, batch: BatchFiles, content: str, intent: Intent, file_ids: Sequence[str], *, keep_intent: bool = False
    ) -> bool:
        """Record ``file_ids[0]`` as the content's upload, and every one of ``file_ids`` in the files set (the rest
        carry the intent's nonce too: the caller deletes them). False when the batch is gone (the files then wait in
        the set for the sweep)."""
        args = [batch.created_ms, batch.member, content, intent.value, "1" if keep_intent else "0", *file_ids]
        return bool(await self._resolve(self._files_keys(batch), args))

    async def track_hash(self, batch: BatchFiles) -> None:
        """Put every value of the batch's uploads hash into its files set (``delete``, before the hash goes)."""
        files, index = self._keys.batch_files(batch.batch_id, batch.created_ms), self._keys.uploads_index
        chunk: list[str] = []
        async for _content, value in self._redis.hscan_iter(self._keys.batch(batch.batch_id).uploads, count=500):
            chunk.append(value.decode())
            if len(chunk) >= MAX_SET_ARGS:
                await self._track([files, index], [batch.member, *chunk])
                chunk = []
        await self._track([files, index], [batch.member, *chunk])

    async def members(self, batch: BatchFiles, *, cursor: int = 0, count: int = 500) -> tuple[int, list[str]]:
        """A part of the files set (``SSCAN``): the next cursor (0 at the end) and file ids and intents."""
        key = self._keys.batch_files(batch.batch_id, batch.created_ms)
        next_cursor, found = await awaited(self._redis.sscan(key, cursor, count=count))
        return int(next_cursor), [member.decode() for member in found]

    async def forget(self, batch: BatchFiles, values: Sequence[str]) -> bool:
        """Drop what was deleted at the provider (or found gone) from the files set; True when none is left."""
        keys = [self._keys.batch_files(batch.batch_id, batch.created_ms), self._keys.uploads_index]
        empty = False
        for start in range(0, max(len(values), 1), MAX_SET_ARGS):
            empty = bool(await self._forget(keys, [batch.member, *values[start : start + MAX_SET_ARGS]]))
        return empty

    async def claim(self, limit: int, *, lease_ms: int) -> list[BatchFiles]:
        """Up to ``limit`` due index entries, each leased for ``lease_ms``."""
        due = await self._claim([self._keys.uploads_index], [limit, lease_ms])
        return [batch for member in due if (batch := BatchFiles.parse(member.decode())) is not None]

    async def alive(self, batches: Sequence[BatchFiles]) -> list[bool]:
        """Whether each batch (that generation) still has its keys; the live ones are rescheduled (one round trip)."""
        trip = RoundTrip(self._redis)
        slots = [
            trip.script(
                self._check,
                [self._keys.batch(b.batch_id).record, self._keys.uploads_index],
                [b.created_ms, b.member],
                parse=bool,
            )
            for b in batches
        ]
        await trip.run()
        return [slot.value for slot in slots]

    async def defer(self, batch: BatchFiles, delay_ms: int) -> None:
        """Look at this batch's files again ``delay_ms`` from now (0: at the sweep's next run)."""
        await self._defer([self._keys.uploads_index], [batch.member, delay_ms])


class FilesApi(Protocol):
    """The provider's Files API as deleting needs it (:class:`ProviderFiles`; tests may pass their own)."""

    async def delete(self, file_id: str) -> bool:
        """Delete a file; False when the provider has no such file (deleted, expired). Raises on any other error."""
        ...

    async def find(self, intents: Sequence[Intent], *, max_files: int) -> Found:
        """The provider's files carrying these intents' nonces (:func:`find_intents` over its file list)."""
        ...


LIST_PAGE = 1000
"""Files one page of ``GET /v1/files`` asks for."""


@dataclass
class ProviderFiles:
    """:class:`FilesApi` through the ``openai`` SDK: the one place both the producer (``producer.submit.attachments.
    Uploader``, which adds uploads) and the worker's uploads sweep find and delete files at the provider."""

    client: openai.AsyncOpenAI

    async def find(self, intents: Sequence[Intent], *, max_files: int) -> Found:
        """The files carrying these intents' nonces (``GET /v1/files``, purpose ``user_data``, newest first)."""
        listing = self.client.files.list(purpose="user_data", order="desc", limit=LIST_PAGE)
        return await find_intents(listing, intents, max_files=max_files)

    async def delete(self, file_id: str) -> bool:
        """Delete a file; False when the provider no longer has it."""
        try:
            await self.client.files.delete(file_id)
        except openai.NotFoundError:
            return False
        return True


RETRY_MS = 5 * 60 * 1000
"""When a files set whose deletion failed in part (the provider refused, timed out, a lookup fell short) is tried
again."""


@dataclass
class Swept:
    """What one pass over (part of) a batch's files set did."""

    deleted: int = 0
    """Files deleted at the provider (a kept upload's, or one found by an intent's nonce)."""
    gone: int = 0
    """Files the provider no longer had (deleted before, or expired)."""
    failed: list[str] = field(default_factory=list)
    """File ids the provider did not delete (an error): still in the set."""
    open_intents: int = 0
    """Intents still in the set: their lookup fell short or failed, or an upload may still land (settling)."""
    cursor: int = 0
    """Where the pass stopped in the set (``SSCAN``); 0 when it went through to the end."""
    come_back_ms: int | None = None
    """When the set should be looked at again (None: it is empty and has left the index)."""

    def add(self, other: Swept) -> None:
        self.deleted += other.deleted
        self.gone += other.gone
        self.failed += other.failed
        self.open_intents += other.open_intents


async def delete_files(
    store: UploadStore,
    batch: BatchFiles,
    api: FilesApi,
    *,
    cursor: int = 0,
    max_members: int = 1000,
    lookup_max_files: int = 100_000,
    concurrency: int = 8,
) -> Swept:
    """Delete, at the provider, up to ``max_members`` of a gone batch's files set from ``cursor`` on: each file id,
    and each file an intent's nonce finds; forget what is done.

    An intent is forgotten once a complete lookup has been made after it settled (:data:`INTENT_SETTLE_MS`: no upload
    of it can land later) and everything found was deleted; until then it stays and ``come_back_ms`` says when to
    look again. Errors of single calls are counted, not raised; a Redis error is raised.
    """
    cursor, members = await _collect(store, batch, cursor, max_members)
    swept = Swept(cursor=cursor)
    gate = asyncio.Semaphore(concurrency)

    async def remove(file_id: str) -> bool | BaseException:
        async with gate:
            try:
                return await api.delete(file_id)
            except Exception as exc:  # one file's error is that file's: counted, kept for the next pass
                return exc

    file_ids = [m for m in members if Intent.parse(m) is None]
    intents = [intent for m in members if (intent := Intent.parse(m)) is not None]
    found = Found(complete=False)
    if intents:
        try:
            found = await api.find(intents, max_files=lookup_max_files)
        except Exception:  # a failed lookup leaves the intents for the next pass
            found = Found(complete=False)
    extra = [f.id for intent in intents for f in found.files.get(intent.nonce, [])]
    targets = list(dict.fromkeys([*file_ids, *extra]))
    outcomes = dict(zip(targets, await asyncio.gather(*(remove(f) for f in targets)), strict=True))
    for outcome in outcomes.values():
        if outcome is True:
            swept.deleted += 1
        elif outcome is False:
            swept.gone += 1
    swept.failed = [f for f, outcome in outcomes.items() if isinstance(outcome, BaseException)]
    now = await store.now_ms()
    settled: list[str] = []
    wait_ms: list[int] = []
    for intent in intents:
        failed = any(isinstance(outcomes[f.id], BaseException) for f in found.files.get(intent.nonce, []))
        wait = _intent_wait_ms(intent, now, looked_up=found.complete, deleted=not failed)
        if wait is None:
            settled.append(intent.value)
        else:
            wait_ms.append(wait)
    swept.open_intents = len(intents) - len(settled)
    done = [f for f in file_ids if not isinstance(outcomes[f], BaseException)] + settled
    empty = await store.forget(batch, done)
    if swept.failed:
        wait_ms.append(RETRY_MS)
    if cursor != 0:
        wait_ms.append(0)
    swept.come_back_ms = None if empty else min(wait_ms, default=0)
    return swept


async def _collect(store: UploadStore, batch: BatchFiles, cursor: int, limit: int) -> tuple[int, list[str]]:
    """Up to about ``limit`` members of the files set from ``cursor`` on, and the cursor after them."""
    members: dict[str, None] = {}
    while len(members) < limit:
        cursor, part = await store.members(batch, cursor=cursor, count=min(500, limit))
        members.update(dict.fromkeys(part))
        if cursor == 0:
            break
    return cursor, list(members)


def _intent_wait_ms(intent: Intent, now_ms: int, *, looked_up: bool, deleted: bool) -> int | None:
    """None when the intent can be forgotten (a complete lookup after it settled, its files deleted; or any file of it
    has expired by now), else when to look again: a lookup that fell short (or failed) in an hour, a failed delete
    after :data:`RETRY_MS`, an unsettled intent once it has settled."""
    if now_ms - intent.at_ms > (UPLOAD_EXPIRES_S + CLOCK_SKEW_S) * 1000:
        return None
    if not looked_up:
        return INTENT_SETTLE_MS
    if not deleted:
        return RETRY_MS
    settles_in = intent.at_ms + INTENT_SETTLE_MS - now_ms
    return None if settles_in < 0 else settles_in + 1000


def settled(intent: Intent, now_ms: int) -> bool:
    """No upload of this intent can still land."""
    return now_ms - intent.at_ms > INTENT_SETTLE_MS
