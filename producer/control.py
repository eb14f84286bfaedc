"""``retry`` (re-run the failed lines) and ``cancel`` (stop the rest) for a batch."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from arq.constants import in_progress_key_prefix, job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from producer.collect import input_order, recorded_results
from producer.status import read_status
from producer.submit import JOB_TTL_MS
from schemas.jobs import BatchSpec, ExtractionJob
from schemas.keys import Keys
from schemas.recording import RECORD_ONCE_LUA, record_once_call
from schemas.redis_typing import awaited
from schemas.results import ResultRecord, Status
from schemas.wire import TASK_NAME, serialize

# KEYS: recorded hash, batch hash, queue. ARGV[1] = now ms, ARGV[2] = TTL ms, ARGV[3] = job-key prefix, then per line:
# custom_id, the stream entry id it was recorded under, new job id, payload. A line is reopened only if it is still
# recorded under that (failed) entry, so a retry racing another retry or a worker does nothing twice.
_REOPEN = """
local reopened = 0
for i = 4, #ARGV, 4 do
  local cid, entry, jid, payload = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('HGET', KEYS[1], cid) == entry then
    redis.call('HDEL', KEYS[1], cid)
    redis.call('HINCRBY', KEYS[2], 'failed', -1)
    redis.call('HINCRBY', KEYS[2], 'done', -1)
    redis.call('HINCRBY', KEYS[2], 'retried', 1)
    redis.call('PSETEX', ARGV[3] .. jid, ARGV[2], payload)
    redis.call('ZADD', KEYS[3], ARGV[1], jid)
    reopened = reopened + 1
  end
end
return reopened
"""


async def retry_failed(redis: Redis, keys: Keys, batch_id: str) -> int:
    """Re-enqueue every line whose latest result is ``failed``. Returns how many were re-enqueued.

    The failed line is replaced in ``collect``'s output by the new result; the batch's token totals keep counting
    the failed attempt, which was billed.
    """
    await read_status(redis, keys, batch_id)  # raises BatchNotFoundError for an unknown batch
    latest: dict[str, tuple[str, bytes]] = {}
    start = "-"
    while True:
        entries = await redis.xrange(keys.results(batch_id), min=start, max="+", count=5000)
        for entry_id, fields in entries:
            latest[fields[b"id"].decode()] = (entry_id.decode(), fields[b"r"])
        if len(entries) < 5000:
            break
        start = "(" + entries[-1][0].decode()
    failed = [(cid, entry) for cid, (entry, raw) in latest.items() if orjson.loads(raw)["status"] == Status.FAILED]
    script = redis.register_script(_REOPEN)
    reopened = 0
    stamp = int(time.time() * 1000)
    for offset in range(0, len(failed), 1000):
        chunk = failed[offset : offset + 1000]
        lines = await awaited(redis.hmget(keys.batch_lines(batch_id), [cid for cid, _ in chunk]))
        now_ms = int(time.time() * 1000)
        args: list[str | int | bytes] = [now_ms, JOB_TTL_MS, job_key_prefix]
        for (cid, entry), line in zip(chunk, lines, strict=True):
            if line is None:
                continue
            job = ExtractionJob.model_validate_json(line)
            payload = serialize_job(TASK_NAME, (job.model_dump(),), {}, None, now_ms, serializer=serialize)
            # A fresh arq job id: arq keeps the finished job's result under the old one for a while.
            args += [cid, entry, f"{Keys.job_id(batch_id, cid)}:retry-{stamp}", payload]
        reopened += int(await script(keys=[keys.recorded(batch_id), keys.batch(batch_id), keys.queue], args=args))
    return reopened


async def cancel(redis: Redis, keys: Keys, batch_id: str) -> int:
    """Stop a batch: flag it (workers record ``cancelled`` instead of calling), and take its waiting jobs off the
    queue, recording them ``cancelled`` at once. Lines already running finish normally. Returns lines cancelled here.
    """
    await read_status(redis, keys, batch_id)
    batch_key = keys.batch(batch_id)
    await awaited(redis.hsetnx(batch_key, "cancelled_at", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")))
    spec = BatchSpec.model_validate_json(await awaited(redis.hget(batch_key, "spec")))  # type: ignore[arg-type]
    record = redis.register_script(RECORD_ONCE_LUA)
    recorded = await recorded_results(redis, keys, batch_id)
    cancelled = 0
    async for ids in input_order(redis, keys, batch_id):
        for custom_id in ids:
            if custom_id in recorded:
                continue
            job_id = Keys.job_id(batch_id, custom_id)
            if await awaited(redis.exists(in_progress_key_prefix + job_id)):
                continue  # running now: it finishes and records its own result
            if not await awaited(redis.zrem(keys.queue, job_id)):
                continue  # not waiting (a retry under another id, or just finished): the worker sees the flag
            await redis.delete(job_key_prefix + job_id)
            line = ResultRecord(
                custom_id=custom_id,
                batch_id=batch_id,
                status=Status.CANCELLED,
                api=spec.api,
                model=spec.model,
                schema_=spec.schema_ref,
                fingerprint="",
                finished_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            )
            script_keys, args = record_once_call(keys, line)
            cancelled += int(await record(keys=script_keys, args=args))
    return cancelled
