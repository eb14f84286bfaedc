"""Submit a batch: record it once, then enqueue one arq job per line in pipelined chunks.

Jobs are written the way arq's ``enqueue_job`` writes them (job key with a TTL + queue zset entry), but many per
round trip: 100,000 lines take seconds instead of 100,000 WATCH/MULTI round trips.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from arq.constants import job_key_prefix
from arq.jobs import serialize_job
from redis.asyncio import Redis

from producer.readers import InputLine
from schemas.jobs import ApiKind, BatchSpec, ExtractionJob, Fingerprinter, GenerationParams
from schemas.keys import Keys
from schemas.redis_typing import awaited
from schemas.registry import ExtractionSchema
from schemas.wire import TASK_NAME, serialize

JOB_TTL_MS = 7 * 24 * 3600 * 1000
"""How long an enqueued job may wait before arq discards it: long enough for a very large batch to drain."""


class BatchExistsError(RuntimeError):
    pass


@dataclass(frozen=True)
class SubmitOptions:
    batch_id: str
    api: ApiKind
    model: str
    schema: ExtractionSchema
    instructions: str
    params: GenerationParams
    budget_tokens: int | None = None
    use_cache: bool = True


def build_spec(options: SubmitOptions) -> BatchSpec:
    return BatchSpec(
        batch_id=options.batch_id,
        api=options.api,
        model=options.model,
        schema_ref=options.schema.ref,
        schema_name=options.schema.name,
        json_schema=options.schema.json_schema,
        source_schema=options.schema.source_schema,
        instructions=options.instructions,
        params=options.params,
        budget_tokens=options.budget_tokens,
        use_cache=options.use_cache,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


# Per chunk, atomically. KEYS: ids set, order list, batch hash, queue zset, recorded hash, lines hash.
# ARGV[1] = now (queue score, ms), ARGV[2] = job TTL ms, ARGV[3] = arq job-key prefix, then per line:
# custom_id, arq job id, arq job payload, line JSON. Returns {new lines, jobs enqueued}.
# A line is enqueued unless it already has a result or a live job: a repeated submit adds nothing, and a submit
# that died half-way is completed by running it again.
_SUBMIT_CHUNK = """
local added, enqueued = 0, 0
for i = 4, #ARGV, 4 do
  local cid, jid, payload, line = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if redis.call('SADD', KEYS[1], cid) == 1 then
    redis.call('RPUSH', KEYS[2], cid)
    redis.call('HSET', KEYS[6], cid, line)
    added = added + 1
  end
  if redis.call('HEXISTS', KEYS[5], cid) == 0 and redis.call('EXISTS', ARGV[3] .. jid) == 0 then
    redis.call('PSETEX', ARGV[3] .. jid, ARGV[2], payload)
    redis.call('ZADD', KEYS[4], ARGV[1], jid)
    enqueued = enqueued + 1
  end
end
redis.call('HINCRBY', KEYS[3], 'total', added)
return {added, enqueued}
"""


@dataclass(frozen=True)
class SubmitResult:
    new_lines: int
    """Lines this batch had not seen before."""
    enqueued: int
    """Jobs put on the queue (new lines, plus known lines that had neither a result nor a live job)."""


async def submit(
    redis: Redis,
    keys: Keys,
    spec: BatchSpec,
    lines: list[InputLine],
    *,
    chunk_size: int = 1000,
    on_progress: Callable[[int], None] | None = None,
) -> SubmitResult:
    """Record the batch (or check it matches the existing one) and enqueue its lines; safe to run again."""
    batch_key = keys.batch(spec.batch_id)
    created = await awaited(redis.hsetnx(batch_key, "spec", spec.model_dump_json()))
    if created:
        pipe = redis.pipeline(transaction=True)
        pipe.hset(
            batch_key,
            mapping={"created_at": spec.created_at, "total": 0, "done": 0, "succeeded": 0, "failed": 0, "cancelled": 0},
        )
        pipe.zadd(keys.batches, {spec.batch_id: time.time()})
        await pipe.execute()
    else:
        stored: bytes | None = await awaited(redis.hget(batch_key, "spec"))  # type: ignore[arg-type]
        existing = BatchSpec.model_validate_json(stored or b"{}")
        if not existing.same_work_as(spec):
            raise BatchExistsError(
                f"batch {spec.batch_id!r} already exists with other parameters (api, model, schema, instructions or "
                "generation settings); resubmit with the same ones to resume it, or choose another --batch-id"
            )
        spec = existing
    if await awaited(redis.hget(batch_key, "cancelled_at")) is not None:
        raise BatchExistsError(f"batch {spec.batch_id!r} was cancelled; submit under another --batch-id")

    script = redis.register_script(_SUBMIT_CHUNK)
    script_keys = [
        keys.batch_ids(spec.batch_id),
        keys.batch_order(spec.batch_id),
        batch_key,
        keys.queue,
        keys.recorded(spec.batch_id),
        keys.batch_lines(spec.batch_id),
    ]
    fingerprint = Fingerprinter(spec)
    added = enqueued = done = 0
    for start in range(0, len(lines), chunk_size):
        now_ms = int(time.time() * 1000)
        args: list[str | int | bytes] = [now_ms, JOB_TTL_MS, job_key_prefix]
        for line in lines[start : start + chunk_size]:
            job = ExtractionJob(
                batch_id=spec.batch_id,
                custom_id=line.custom_id,
                text=line.text,
                fingerprint=fingerprint(line.text),
                line=line.line,
            )
            job_id = Keys.job_id(spec.batch_id, line.custom_id)
            payload = serialize_job(TASK_NAME, (job.model_dump(),), {}, None, now_ms, serializer=serialize)
            args += [line.custom_id, job_id, payload, job.model_dump_json()]
        chunk_added, chunk_enqueued = await script(keys=script_keys, args=args)
        added, enqueued = added + int(chunk_added), enqueued + int(chunk_enqueued)
        done += min(chunk_size, len(lines) - start)
        if on_progress is not None:
            on_progress(done)
    return SubmitResult(new_lines=added, enqueued=enqueued)
