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
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


async def submit(
    redis: Redis,
    keys: Keys,
    spec: BatchSpec,
    lines: list[InputLine],
    *,
    chunk_size: int = 1000,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Record the batch and enqueue its lines. Returns the number of jobs enqueued."""
    batch_key = keys.batch(spec.batch_id)
    created = await awaited(redis.hsetnx(batch_key, "spec", spec.model_dump_json()))
    if not created:
        raise BatchExistsError(f"batch {spec.batch_id!r} already exists; choose another --batch-id")
    pipe = redis.pipeline(transaction=True)
    pipe.hset(
        batch_key,
        mapping={
            "total": len(lines),
            "created_at": spec.created_at,
            "done": 0,
            "succeeded": 0,
            "failed": 0,
            "cancelled": 0,
        },
    )
    pipe.zadd(keys.batches, {spec.batch_id: time.time()})
    await pipe.execute()

    fingerprint = Fingerprinter(spec)
    enqueued = 0
    for start in range(0, len(lines), chunk_size):
        chunk = lines[start : start + chunk_size]
        now_ms = int(time.time() * 1000)
        pipe = redis.pipeline(transaction=False)
        pipe.rpush(keys.batch_order(spec.batch_id), *(line.custom_id for line in chunk))
        queue_entries: dict[str, int] = {}
        for line in chunk:
            job_id = Keys.job_id(spec.batch_id, line.custom_id)
            job = ExtractionJob(
                batch_id=spec.batch_id,
                custom_id=line.custom_id,
                text=line.text,
                fingerprint=fingerprint(line.text),
                line=line.line,
            )
            payload = serialize_job(TASK_NAME, (job.model_dump(),), {}, None, now_ms, serializer=serialize)
            pipe.psetex(job_key_prefix + job_id, JOB_TTL_MS, payload)
            queue_entries[job_id] = now_ms
        pipe.zadd(keys.queue, queue_entries)
        await pipe.execute()
        enqueued += len(chunk)
        if on_progress is not None:
            on_progress(enqueued)
    return enqueued
