"""Pausing a batch on an error that every one of its lines would meet, and resuming it.

A call that fails for a reason no retry fixes and that no line escapes -- a bad API key, no access, an unknown
model, a schema or parameter the model refuses, no quota left (``worker.classify`` says which) -- is counted in the
batch record (``BATCH_WIDE_FAILURES``) by ``NOTE_BATCH_WIDE``. Once the count reaches the batch's limit the same step
sets ``PAUSED`` (the reason) and ``PAUSED_AT``, exactly once: the caller that paused it is told so (it logs the reason
at ERROR, once per batch). While ``PAUSED`` is set, workers start no call for the batch's lines: each hands its job
back to the queue for later (``worker.tasks``), so a batch with a wrong key costs a few calls, not one per line.

``resume`` (``RESUME``) clears the pause and the count, then makes the batch's waiting jobs due now
(``store.queue.RESCHEDULE``), chunk by chunk, so the lines go on at once rather than at their next recheck. A job
that is handing itself back at that very moment (it read the batch paused, and arq puts it back deferred a moment
after the wake) would be missed and wait for its next recheck (5 minutes by default), so the wake is done twice,
:data:`RESUME_SETTLE_S` apart: a hand-back takes a round trip or two, never that long.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from redis.asyncio import Redis

from store.fields import F
from store.keys import BatchKeys, Keys
from store.queue import RESCHEDULE, batch_job_ids, now_ms
from store.scripts import LuaScript

# KEYS: batch record. ARGV: the reason, the limit, now (ISO-8601). Returns {failures so far, 1 if this call paused
# the batch}; {-1, 0} when the batch is gone.
NOTE_BATCH_WIDE = LuaScript(
    "pause_note_batch_wide",
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local failures = redis.call('HINCRBY', KEYS[1], '$BATCH_WIDE_FAILURES', 1)
if failures >= tonumber(ARGV[2]) and redis.call('HSETNX', KEYS[1], '$PAUSED', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], '$PAUSED_AT', ARGV[3])
  return {failures, 1}
end
return {failures, 0}
""",
    F.lua_names(),
)

# KEYS: batch record. Returns the reason it was paused for ("" if it was not), and clears the pause and the count.
RESUME = LuaScript(
    "pause_resume",
    """
local reason = redis.call('HGET', KEYS[1], '$PAUSED') or ''
redis.call('HDEL', KEYS[1], '$PAUSED', '$PAUSED_AT', '$BATCH_WIDE_FAILURES')
return reason
""",
    F.lua_names(),
)


RESUME_SETTLE_S = 2.0
"""The second wake of ``resume`` comes this long after the first (see the module note)."""


@dataclass(frozen=True)
class Noted:
    failures: int
    """Batch-wide failures since the batch last resumed (-1: the batch is gone)."""
    paused_now: bool
    """This failure paused the batch (only one caller is ever told so)."""


@dataclass(frozen=True)
class Resumed:
    reason: str | None
    """Why it had been paused; None if it was not paused."""
    rescheduled: int
    """Waiting jobs made due now."""


class PauseStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._keys = keys
        self._redis = redis
        self._note = NOTE_BATCH_WIDE.bind(redis)
        self._resume = RESUME.bind(redis)
        self._reschedule = RESCHEDULE.bind(redis)

    async def note_batch_wide(self, keys: BatchKeys, reason: str, *, pause_after: int, now_iso: str) -> Noted:
        failures, paused = await self._note([keys.record], [reason[:500], pause_after, now_iso])
        return Noted(int(failures), bool(paused))

    async def resume(self, batch_id: str, *, settle_s: float = RESUME_SETTLE_S) -> Resumed:
        reason = await self._resume([self._keys.batch(batch_id).record], [])
        text = reason.decode() if isinstance(reason, bytes) else str(reason)
        rescheduled = await self._wake(batch_id)
        if settle_s > 0:
            await asyncio.sleep(settle_s)  # the lines that were handing themselves back as we woke the others
            rescheduled += await self._wake(batch_id)
        return Resumed(text or None, rescheduled)

    async def _wake(self, batch_id: str) -> int:
        woken = 0
        async for job_ids in batch_job_ids(self._redis, self._keys, batch_id):
            woken += int(await self._reschedule([self._keys.queue], [now_ms(), *job_ids]))
        return woken
