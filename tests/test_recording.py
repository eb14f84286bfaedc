"""Record-once, collect (ordered, atomic, incomplete) and --follow, against a real Redis and worker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from producer.batch.collect import collect, follow
from producer.batch.status import read_status
from schemas.jobs import ExtractionJob
from schemas.results import ResultRecord, Status, Usage
from store.codec import ResultCodec
from store.results import ResultStore
from tests.helpers import results_by_id, sim_get
from worker.runtime import Runtime
from worker.state import WorkerState
from worker.tasks import run_job

DOCS = {f"d{n}": f"Invoice {n} from Vendor {n}, total {n}0 USD." for n in range(1, 7)}


def _record(custom_id: str, total: int) -> ResultRecord:
    return ResultRecord(
        custom_id=custom_id,
        batch_id="b1",
        status=Status.SUCCEEDED,
        output={"x": 1},
        api="responses",
        model="gpt-4o-mini",
        schema_="invoice",
        fingerprint="sha256:00",
        usage=Usage(input_tokens=total, output_tokens=0, total_tokens=total),
        finished_at="2026-11-22T00:00:00Z",
    )


async def test_a_line_is_recorded_once_however_often_its_job_finishes(redis, keys, submit_batch) -> None:
    spec = await submit_batch(DOCS)
    results, codec = ResultStore(redis), ResultCodec(spec.json_schema)
    job_id = keys.job_id("b1", 0)
    assert await results.record(keys.batch("b1"), keys.queue, 0, _record("d1", 10), codec, job_id=job_id) == 1
    # a second run of the same job
    assert await results.record(keys.batch("b1"), keys.queue, 0, _record("d1", 99), codec, job_id=job_id) == 0
    assert await redis.xlen(keys.batch("b1").results) == 1
    status = await read_status(redis, keys, "b1")
    assert (status.done, status.succeeded, status.usage.total_tokens, status.queued) == (1, 1, 10, len(DOCS) - 1)


async def test_a_rerun_job_does_not_call_the_api_again(redis, keys, settings, submit_batch, run_worker, sim) -> None:
    """arq is at-least-once: a job that runs again after its line was recorded does nothing."""
    await submit_batch(DOCS)
    await run_worker()
    before = (await sim_get(sim, "/_sim/ledger"))["requests"]["total"]

    runtime = await Runtime.start(settings.model_copy(update={"metrics_port": None}))
    try:
        state = WorkerState.build(settings, redis, runtime)
        job = ExtractionJob(batch_id="b1", ordinal=0, custom_id="d1", text=DOCS["d1"], fingerprint="sha256:00", line=1)
        assert await run_job(state, job, 1, keys.job_id("b1", 0)) == "already-recorded"
    finally:
        await runtime.stop()
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == before
    assert await redis.xlen(keys.batch("b1").results) == len(DOCS)


async def test_collect_writes_input_order_atomically_and_reports_missing(redis, keys, submit_batch, tmp_path) -> None:
    spec = await submit_batch(DOCS)
    results, codec = ResultStore(redis), ResultCodec(spec.json_schema)
    for ordinal, custom_id in ((2, "d3"), (0, "d1")):
        await results.record(
            keys.batch("b1"), keys.queue, ordinal, _record(custom_id, 1), codec, job_id=keys.job_id("b1", ordinal)
        )
    out = tmp_path / "out.jsonl"
    out.write_text("old contents\n")
    written, missing = await collect(redis, keys, "b1", out)
    assert (written, missing) == (2, 4)
    assert [orjson.loads(line)["custom_id"] for line in out.read_bytes().splitlines()] == ["d1", "d3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]  # no temp file left behind


async def test_follow_streams_results_as_they_finish(redis, keys, submit_batch, run_worker, tmp_path: Path) -> None:
    await submit_batch(DOCS)
    out = tmp_path / "follow.jsonl"
    seen: list[int] = []
    follower = asyncio.create_task(follow(redis, keys, "b1", out, block_ms=100, on_line=seen.append))
    await asyncio.sleep(0.2)
    assert not follower.done()  # nothing recorded yet: it waits
    await run_worker()
    written = await asyncio.wait_for(follower, timeout=10)
    assert written == len(DOCS)
    assert seen[-1] == len(DOCS)
    lines = [ResultRecord.model_validate_json(line) for line in out.read_bytes().splitlines()]
    assert sorted(r.custom_id for r in lines) == sorted(DOCS)
    assert set((await results_by_id(redis, keys, "b1")).keys()) == set(DOCS)
