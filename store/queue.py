"""The one place that knows arq's storage layout: how a job is put on the queue, taken off it, and found.

arq keeps a job as ``arq:job:{id}`` (the serialized call, with a TTL) plus a member of the queue's sorted set scored
by its due time in ms; a running job also has ``arq:in-progress:{id}`` (its claim; ours is a renewed lease:
``store.workers``) and ``arq:retry:{id}`` (its try counter). arq's ``enqueue_job`` writes one job per WATCH/MULTI
round trip; the feed scripts (``store.feed``) write a chunk of them in one script with :data:`ENQUEUE_LUA`, exactly as
arq would. The worker side is arq itself, set up with ``keep_result=0`` so that a finished job leaves nothing behind
(its text included): our results stream is the record, and arq's copy of a result would hold the job's arguments for
as long as it was kept.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from schemas.jobs import ExtractionJob
from schemas.wire import TASK_NAME, serialize
from store.keys import Keys
from store.scripts import LuaScript

JOB_TTL_MS = 7 * 24 * 3600 * 1000
"""How long an enqueued job may wait before arq discards it. The feed window keeps waits short; this is a backstop."""

ARQ_NAMES: dict[str, str | int] = {
    "JOB_PREFIX": job_key_prefix,
    "IN_PROGRESS_PREFIX": in_progress_key_prefix,
    "RETRY_PREFIX": retry_key_prefix,
    "ABORT_SET": abort_jobs_ss,
    "JOB_TTL_MS": JOB_TTL_MS,
}

# Lua: put one job on the queue as arq's enqueue_job would (job key with TTL, queue member scored by due time);
# take a waiting one off it (not if it is running: a running job finishes and records its own result); and take a
# recorded line's job off it with everything arq keeps for it -- its text, its claim, its try counter, an abort
# request -- exactly as arq's own ``finish_job`` would once the job returns (which then has nothing left to do, so
# the worker skips it: ``worker.app.ExtractionWorker``). Off the queue, no worker can start the job again.
ENQUEUE_LUA = """
local function enqueue(queue_key, job_id, payload, now_ms)
  redis.call('PSETEX', '$JOB_PREFIX' .. job_id, $JOB_TTL_MS, payload)
  redis.call('ZADD', queue_key, now_ms, job_id)
end
local function remove_waiting(queue_key, job_id)
  if redis.call('EXISTS', '$IN_PROGRESS_PREFIX' .. job_id) == 1 then return false end
  if redis.call('ZREM', queue_key, job_id) == 0 then return false end
  redis.call('DEL', '$JOB_PREFIX' .. job_id, '$RETRY_PREFIX' .. job_id)
  return true
end
local function finish_job(queue_key, job_id)
  redis.call('ZREM', queue_key, job_id)
  redis.call('ZREM', '$ABORT_SET', job_id)
  redis.call('DEL', '$JOB_PREFIX' .. job_id, '$IN_PROGRESS_PREFIX' .. job_id, '$RETRY_PREFIX' .. job_id)
end
"""

# KEYS[1] = queue. ARGV = job ids. Takes every waiting one off the queue; returns how many.
REMOVE_WAITING = LuaScript(
    "remove_waiting",
    ENQUEUE_LUA
    + """
local removed = 0
for i = 1, #ARGV do
  if remove_waiting(KEYS[1], ARGV[i]) then removed = removed + 1 end
end
return removed
""",
    ARQ_NAMES,
)


# KEYS[1] = queue. ARGV: job id, now ms, lease ms, owner. Claims the job for this worker as arq's ``start_jobs`` does
# -- not if it is running elsewhere, gone from the queue, or not due yet -- but in one script instead of WATCH,
# EXISTS, ZSCORE and MULTI/EXEC (four round trips), and for one lease held by ``owner`` (arq writes '1' for its
# whole job timeout): the owner renews it while the job runs (``store.workers``). Returns the job's score (enqueue
# time, ms) or false.
CLAIM = LuaScript(
    "claim_job",
    """
local claim = '$IN_PROGRESS_PREFIX' .. ARGV[1]
if redis.call('EXISTS', claim) == 1 then return false end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return false end
redis.call('PSETEX', claim, ARGV[3], ARGV[4])
return score
""",
    ARQ_NAMES,
)


# KEYS[1] = queue. ARGV: now ms, then job ids. Makes each deferred waiting one due now (not one that is running);
# returns how many moved.
RESCHEDULE = LuaScript(
    "reschedule_jobs",
    """
local now, moved = tonumber(ARGV[1]), 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) > now and redis.call('EXISTS', '$IN_PROGRESS_PREFIX' .. ARGV[i]) == 0 then
    redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i])
    moved = moved + 1
  end
end
return moved
""",
    ARQ_NAMES,
)


class JobClaims:
    """Claims jobs for one worker (``worker.app.ExtractionWorker.start_jobs``), on arq's own connection pool."""

    def __init__(self, redis: Redis, owner: str) -> None:
        self._claim = CLAIM.bind(redis)
        self._owner = owner

    async def claim(self, queue: str, job_id: str, *, lease_ms: int) -> int | None:
        """The job's score if this worker now runs it (for one lease, renewed by ``store.workers``); None if it runs
        elsewhere, is gone or is not due."""
        score = await self._claim([queue], [job_id, now_ms(), lease_ms, self._owner])
        return None if score is None else int(float(score))


def job_payload(job: ExtractionJob, enqueue_ms: int) -> bytes:
    """The bytes arq stores under ``arq:job:{id}`` for one line (JSON, never pickle)."""
    return serialize_job(TASK_NAME, (job.model_dump(),), {}, None, enqueue_ms, serializer=serialize)


def now_ms() -> int:
    return int(time.time() * 1000)


async def batch_job_ids(redis: Redis, keys: Keys, batch_id: str, *, count: int = 1000) -> AsyncIterator[list[str]]:
    """The job ids of a batch in the queue (waiting, deferred or running), in chunks.

    The queue holds at most a window of each batch's lines, so this scan is bounded by the windows, not batch sizes.
    """
    cursor = 0
    while True:
        cursor, members = await redis.zscan(keys.queue, cursor, match=keys.job_pattern(batch_id), count=count)
        if members:
            yield [member.decode() for member, _score in members]
        if cursor == 0:
            return


async def due_jobs(redis: Redis, keys: Keys) -> int:
    """Jobs whose time has come (not deferred): what an autoscaler should scale on."""
    count: int = await redis.zcount(keys.queue, "-inf", now_ms())
    return count


def job_key(job_id: str) -> str:
    return job_key_prefix + job_id


def in_progress_key(job_id: str) -> str:
    return in_progress_key_prefix + job_id
