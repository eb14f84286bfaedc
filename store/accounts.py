"""A running line's account of API calls, kept in Redis so it survives retries and worker restarts.

One hash per batch, ``{p}batch:{id}:accounts``: field = the line's ordinal, value = a small JSON object that the
scripts below update atomically (``n`` calls, ``r`` repairs, ``l`` latency ms, ``u`` usage in ``USAGE_FIELDS``
order, ``id`` the last response id, ``e`` transient errors, ``f`` first error ms, ``v`` a version bumped by every
change). Every call is counted the moment it returns, billed or not, so the line's result covers every billed call
of every try. Recording the line deletes its field (``store.results``), so the hash holds only lines in flight and
vanishes when none is. Nothing is written for a batch that no longer exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from schemas.records import CallTotals
from schemas.results import Usage
from store.keys import BatchKeys
from store.redis_typing import awaited
from store.scripts import LuaScript
from store.usage import USAGE_FIELDS, usage_args, usage_from

_N = len(USAGE_FIELDS)

# KEYS: batch record, accounts. ARGV: ordinal, latency ms, repair (1/0), response id ("" = none), then the usage.
# Returns the account's new version, or -1 when the batch is gone.
ADD_CALL = LuaScript(
    "account_add_call",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local a = raw and cjson.decode(raw) or {}
a.n = (a.n or 0) + 1
a.l = (a.l or 0) + tonumber(ARGV[2])
if ARGV[3] == '1' then a.r = (a.r or 0) + 1 end
if ARGV[4] ~= '' then a.id = ARGV[4] end
local u = a.u or {}
for i = 1, $N do u[i] = (u[i] or 0) + tonumber(ARGV[4 + i]) end
a.u = u
a.v = (a.v or 0) + 1
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(a))
return a.v
""",
    {"N": _N},
)

# KEYS: batch record, accounts. ARGV: ordinal, now ms, 1 to count the error against the budget (0 for a 429).
# Returns {errors counted, first error ms}; {-1, 0} when the batch is gone.
NOTE_ERROR = LuaScript(
    "account_note_error",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
local a = raw and cjson.decode(raw) or {}
a.e = (a.e or 0) + tonumber(ARGV[3])
a.f = a.f or tonumber(ARGV[2])
a.v = (a.v or 0) + 1
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(a))
return {a.e, a.f}
""",
)


@dataclass(frozen=True)
class Account:
    totals: CallTotals
    errors: int
    first_error_ms: int | None
    version: int


def decode_account(raw: bytes | None) -> Account:
    if raw is None:
        return Account(CallTotals(), 0, None, 0)
    data = orjson.loads(raw)
    usage = data.get("u") or []
    return Account(
        totals=CallTotals(
            usage=usage_from(usage) if usage else Usage(),
            attempts=int(data.get("n", 0)),
            repairs=int(data.get("r", 0)),
            latency_ms=int(data.get("l", 0)),
            last_response_id=data.get("id"),
        ),
        errors=int(data.get("e", 0)),
        first_error_ms=int(data["f"]) if data.get("f") is not None else None,
        version=int(data.get("v", 0)),
    )


class Accounts:
    """The accounts of one Redis connection's lines; cheap to share across jobs."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._add_call = ADD_CALL.bind(redis)
        self._note_error = NOTE_ERROR.bind(redis)

    async def add_call(
        self,
        keys: BatchKeys,
        ordinal: int,
        *,
        usage: Usage | None,
        response_id: str | None,
        latency_ms: int,
        repair: bool,
    ) -> int:
        """Count one API call (``usage`` None: it failed without a reply). Returns the new version (-1: batch gone)."""
        counts = usage_args(usage) if usage is not None else [0] * _N
        args = [ordinal, latency_ms, "1" if repair else "0", response_id or "", *counts]
        return int(await self._add_call([keys.record, keys.accounts], args))

    async def note_error(self, keys: BatchKeys, ordinal: int, now_ms: int, *, count: bool) -> tuple[int, int]:
        """Note a try that ended in a transient error. Returns (errors counted so far, first error ms)."""
        errors, first = await self._note_error([keys.record, keys.accounts], [ordinal, now_ms, 1 if count else 0])
        return int(errors), int(first)

    async def get(self, keys: BatchKeys, ordinal: int) -> Account:
        raw: bytes | None = await awaited(self._redis.hget(keys.accounts, str(ordinal)))  # type: ignore[arg-type]
        return decode_account(raw)

    async def get_many(self, keys: BatchKeys, ordinals: Sequence[int]) -> list[Account]:
        if not ordinals:
            return []
        raw = await awaited(self._redis.hmget(keys.accounts, [str(o) for o in ordinals]))
        return [decode_account(value) for value in raw]
