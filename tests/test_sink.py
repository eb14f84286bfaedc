"""The results sink: result lines leave Redis as parts (local folder or a real S3 server), nothing lost or doubled.

Workers run in burst mode here, so each test drives the sink writer itself (``SinkWriter.write_batch``) at the point
it wants to look; the process-level test at the end runs real worker processes and kills one mid-run.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from producer.batch.collect import collect, final_results, follow
from producer.batch.control import cancel
from schemas.jobs import ResultsSink
from schemas.registry import resolve_schema, validator_for
from schemas.settings import Settings
from store.feed import FeedStore
from store.keys import Keys
from store.objects import ObjectStore, open_location
from store.sink.formats import decode_part
from store.sink.parts import MANIFEST
from store.sink.state import SinkStore
from tests.helpers import sim_post
from tests.s3_server import S3Server
from tests.test_end_to_end import INVOICES
from worker.sink_writer import SinkWriter

MANY = {f"doc-{n:03d}": f"Invoice {n} from Vendor {n % 7}, total {n}.00 USD." for n in range(40)}


def writer(redis: Redis, keys: Keys, settings: Settings, **overrides: Any) -> SinkWriter:
    return SinkWriter(redis, keys, Settings(**{**settings.model_dump(), **overrides}))


async def sink_rows(url: str, batch_id: str = "b1") -> tuple[dict[str, Any], list[tuple[int, dict[str, Any]]]]:
    """The manifest and every row of the parts it lists, read straight from the store (what a data team sees)."""
    store = ObjectStore(open_location(url).child(batch_id))
    manifest = orjson.loads(await store.get(MANIFEST))
    rows = []
    for part in manifest["parts"]:
        data = await store.get(part["name"])
        decoded = decode_part(data, manifest["format"])
        assert len(decoded) == part["rows"]
        rows += [(ordinal, orjson.loads(raw)) for ordinal, raw in decoded]
    return manifest, rows


def assert_exactly_once(rows: list[tuple[int, dict[str, Any]]], texts: dict[str, str]) -> None:
    counts = Counter(row["custom_id"] for _o, row in rows)
    assert counts == Counter(list(texts)), "every input line exactly once in the parts"
    ids = list(texts)
    for ordinal, row in rows:
        assert ids[ordinal] == row["custom_id"]


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "parquet"])
async def test_results_leave_redis_as_parts_and_collect_reads_them_back(
    fmt, redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    url = str(tmp_path / "sink")
    (tmp_path / "sink").mkdir()
    await submit_batch(INVOICES, results=ResultsSink(url=url, format=fmt))
    await run_worker()
    assert await redis.xlen(keys.batch("b1").results) == len(INVOICES)  # all still in Redis: nobody wrote yet

    assert await writer(redis, keys, settings, sink_part_lines=2).write_batch("b1") == 3  # 2 + 2 + 1
    assert await redis.xlen(keys.batch("b1").results) == 0  # every written result left Redis
    manifest, rows = await sink_rows(url)
    assert manifest["complete"] is True
    assert manifest["lines"] == len(INVOICES)
    assert manifest["format"] == fmt
    assert [
        p["name"].endswith({"jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "parquet": ".parquet"}[fmt])
        for p in manifest["parts"]
    ] == [True] * 3
    assert_exactly_once(rows, INVOICES)
    validator = validator_for(resolve_schema("invoice"))
    for _o, row in rows:
        assert row["status"] == "succeeded"
        validator.validate(row["output"])

    out = tmp_path / "results.jsonl"
    assert await collect(redis, keys, "b1", out) == (len(INVOICES), 0)
    collected = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["custom_id"] for r in collected] == list(INVOICES)  # input order, assembled from the parts
    assert sorted(collected, key=lambda r: r["custom_id"]) == sorted(
        (r for _o, r in rows), key=lambda r: r["custom_id"]
    )
    assert len(await final_results(redis, keys, "b1")) == len(INVOICES)  # report and compare read the same way

    followed = tmp_path / "followed.jsonl"
    assert await follow(redis, keys, "b1", followed) == len(INVOICES)
    assert sorted(orjson.loads(x)["custom_id"] for x in followed.read_bytes().splitlines()) == sorted(INVOICES)


async def test_a_part_waits_to_fill_unless_its_oldest_line_waited_long_enough(
    redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    url = str(tmp_path)
    await submit_batch(INVOICES, results=ResultsSink(url=url))
    await run_worker()
    # The batch is done: the last part is written even though it is short.
    await redis.hset(keys.batch("b1").record, "done", 0)  # pretend lines are still running
    assert await writer(redis, keys, settings, sink_part_lines=100, sink_flush_after_s=3600).write_batch("b1") == 0
    assert await redis.xlen(keys.batch("b1").results) == len(INVOICES)
    assert await writer(redis, keys, settings, sink_part_lines=100, sink_flush_after_s=0).write_batch("b1") == 1
    assert await redis.xlen(keys.batch("b1").results) == 0


async def test_collect_mixes_lines_in_parts_and_lines_still_in_redis(
    redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    await submit_batch(MANY, results=ResultsSink(url=str(tmp_path), format="parquet"))
    await run_worker()
    sink = SinkStore(redis, keys)
    # Write one part of 10 by hand-driving the writer on a batch that looks unfinished.
    await redis.hset(keys.batch("b1").record, "done", 0)
    await writer(redis, keys, settings, sink_part_lines=10, sink_flush_after_s=3600).write_batch("b1")
    state = await sink.state(keys.batch("b1"))
    assert state.rows >= 10
    assert await redis.xlen(keys.batch("b1").results) == len(MANY) - state.rows
    await redis.hset(keys.batch("b1").record, "done", len(MANY))
    out = tmp_path / "r.jsonl"
    assert await collect(redis, keys, "b1", out) == (len(MANY), 0)
    assert [orjson.loads(x)["custom_id"] for x in out.read_bytes().splitlines()] == list(MANY)


async def test_a_retried_line_is_in_the_parts_once_with_its_new_result(
    sim, redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    url = str(tmp_path)
    await sim_post(sim, "/_sim/faults", [{"match": "Globex", "fault": "http_400", "times": 1}])
    await submit_batch(INVOICES, results=ResultsSink(url=url, format="parquet"))
    await run_worker()
    await writer(redis, keys, settings).write_batch("b1")
    _manifest, rows = await sink_rows(url)
    assert {row["custom_id"]: row["status"] for _o, row in rows}["inv-2"] == "failed"

    # retry: the failed line is enqueued again (its written result becomes stale), then answered.
    from schemas.jobs import ExtractionJob
    from store.lines import LineIndex
    from store.queue import job_payload

    (held,) = await LineIndex(redis).read(keys.batch("b1"), 1, 1)
    job = ExtractionJob(
        batch_id="b1", ordinal=1, custom_id="inv-2", text=INVOICES["inv-2"], fingerprint=held.fingerprint, line=2
    )
    assert (await FeedStore(redis, keys).reopen("b1", 100, [(1, job_payload(job, 1))])).count == 1
    state = await SinkStore(redis, keys).state(keys.batch("b1"))
    assert list(state.stale.values()) == [1]
    await run_worker()
    await writer(redis, keys, settings).write_batch("b1")
    manifest, rows = await sink_rows(url)
    assert manifest["complete"] is True
    assert_exactly_once(rows, INVOICES)
    assert {row["custom_id"]: row["status"] for _o, row in rows}["inv-2"] == "succeeded"
    listed = {p.name for p in (tmp_path / "b1").iterdir()}
    assert listed == {MANIFEST, *(p["name"] for p in manifest["parts"])}  # the stale part's old object is gone


async def test_a_cancel_writes_the_never_enqueued_lines_as_cancelled(
    redis, keys, settings, submit_batch, tmp_path: Path
) -> None:
    url = str(tmp_path)
    await submit_batch(MANY, results=ResultsSink(url=url, format="jsonl.gz"))
    await cancel(redis, keys, "b1", price=None)
    await writer(redis, keys, settings, sink_part_lines=16).write_batch("b1")
    manifest, rows = await sink_rows(url)
    assert manifest["complete"] is True
    assert_exactly_once(rows, MANY)
    assert {row["status"] for _o, row in rows} == {"cancelled"}


async def test_a_writer_that_lost_its_claim_commits_nothing_and_its_upload_is_removed(
    redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    url = str(tmp_path)
    await submit_batch(INVOICES, results=ResultsSink(url=url))
    await run_worker()
    sink, late = SinkStore(redis, keys), writer(redis, keys, settings, sink_part_lines=2)
    batch_keys = keys.batch("b1")
    read = await sink.read_next(batch_keys, 2)  # the late writer read ...
    await writer(redis, keys, settings, sink_part_lines=3).write_batch("b1")  # ... another wrote everything
    assert read is not None
    assert await late.write_batch("b1") == 0  # nothing left for it
    # Its stale read commits nothing even when it uploads afterwards.
    from store.sink.parts import PartRecord, next_entry

    store = ObjectStore(open_location(url).child("b1"))
    await store.put("part-000001-orphan.jsonl", b"{}\n")
    assert read.first is not None
    assert read.last is not None
    assert (
        await sink.commit(
            batch_keys,
            read,
            PartRecord(1, "part-000001-orphan.jsonl", read.first, read.last, 2, 3),
            next_entry(read.last),
        )
        == 0
    )
    await sink.reschedule("b1", after_s=0)
    await redis.hdel(batch_keys.sink, "done")
    await writer(redis, keys, settings).write_batch("b1")  # finishing again removes what no part names
    _manifest, rows = await sink_rows(url)
    assert "part-000001-orphan.jsonl" not in await store.list()
    assert_exactly_once(rows, INVOICES)


# --- a real S3 server, with faults ---------------------------------------------------------------------------

S3_URL = "s3://bucket/results"


async def finished_into_s3(submit_batch: Any, run_worker: Any, texts: dict[str, str]) -> None:
    """Batch ``b1`` of ``texts`` with its sink in the S3 server as Parquet, every line answered (no part written)."""
    await submit_batch(texts, results=ResultsSink(url=S3_URL, format="parquet"))
    await run_worker()


async def test_s3_sink_survives_failed_and_dropped_uploads(
    s3: S3Server, redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    await finished_into_s3(submit_batch, run_worker, MANY)
    w = writer(redis, keys, settings, sink_part_lines=15)
    s3.arm("fail", "PUT", 100)  # every upload fails (after the SDK's own retries)
    assert await w.write_batch("b1") == 0
    assert await redis.xlen(keys.batch("b1").results) == len(MANY)  # nothing trimmed that was not written
    state = await SinkStore(redis, keys).state(keys.batch("b1"))
    assert state.error is not None
    assert "put" in state.error
    assert "testing-secret" not in state.error  # no credential in what status shows
    s3.disarm()
    s3.arm("drop", "PUT", 1)  # the connection is lost mid-part once: the SDK retries it
    s3.arm("slow", "PUT", 1, delay_s=0.5)
    assert await w.write_batch("b1") == 3
    manifest, rows = await sink_rows(S3_URL)
    assert manifest["complete"] is True
    assert_exactly_once(rows, MANY)
    assert await redis.xlen(keys.batch("b1").results) == 0
    out = tmp_path / "r.jsonl"
    assert await collect(redis, keys, "b1", out) == (len(MANY), 0)


async def test_collect_says_which_part_it_cannot_read(
    s3: S3Server, redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    await finished_into_s3(submit_batch, run_worker, INVOICES)
    await writer(redis, keys, settings).write_batch("b1")
    s3.arm("fail", "GET", 100, path_contains="part-")
    from store.objects import ObjectStoreError

    with pytest.raises(ObjectStoreError, match="part-"):
        await collect(redis, keys, "b1", tmp_path / "r.jsonl")
    assert not (tmp_path / "r.jsonl").exists()  # nothing half-written


async def test_an_unreadable_part_is_a_clean_error(
    s3: S3Server, redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    await finished_into_s3(submit_batch, run_worker, INVOICES)
    await writer(redis, keys, settings).write_batch("b1")
    manifest = orjson.loads(s3.client().get_object(Bucket="bucket", Key="results/b1/_manifest.json")["Body"].read())
    s3.client().put_object(Bucket="bucket", Key=f"results/b1/{manifest['parts'][0]['name']}", Body=b"not parquet")
    from store.sink.formats import PartFormatError

    with pytest.raises(PartFormatError):
        await collect(redis, keys, "b1", tmp_path / "r.jsonl")


# --- real worker processes: a writer killed mid-part -----------------------------------------------------------


def test_a_worker_killed_while_writing_parts_loses_and_doubles_nothing(
    s3: S3Server, flushed_redis: str, tmp_path: Path
) -> None:
    """Two worker processes write one batch's parts to the S3 server while uploads are slow; one is SIGKILLed in
    the middle. The other takes the batch up when the dead one's claim lapses: every line is in the parts once."""
    import signal

    from redis import Redis as SyncRedis

    from producer.input.readers import InputLine, MemorySource
    from producer.submit.submit import submit
    from tests.conftest import API_KEY
    from tests.processes import invoice_spec, simulator_process, start_worker, stop, wait_until, worker_env

    count, url, prefix = 600, "s3://bucket/killed", "test:"
    keys = Keys(prefix)
    texts = {f"doc-{n:04d}": f"Invoice {n} from Vendor {n % 11}, total {n}.00 USD." for n in range(count)}
    spec = invoice_spec("kill", results=ResultsSink(url=url, format="parquet"))

    async def submit_all() -> None:
        redis = Redis.from_url(flushed_redis)
        lines = tuple(InputLine(n + 1, cid, text) for n, (cid, text) in enumerate(texts.items()))
        await submit(redis, keys, spec, MemorySource(lines), window=10_000, ttl_s=0)
        await redis.aclose()

    def rows_written() -> int:
        client = SyncRedis.from_url(flushed_redis)
        try:
            return int(client.hget(keys.batch("kill").sink, "rows") or 0)  # type: ignore[arg-type]
        finally:
            client.close()

    def sink_done() -> bool:
        client = SyncRedis.from_url(flushed_redis)
        try:
            return bool(client.hexists(keys.batch("kill").sink, "done"))
        finally:
            client.close()

    asyncio_run(submit_all())
    s3.arm("slow", "PUT", 30, path_contains="part-", delay_s=0.4)  # uploads in flight when the kill comes
    with simulator_process("--require-api-key", API_KEY, "--latency-ms", "20") as sim_url:
        env = worker_env(
            flushed_redis,
            sim_url,
            API_KEY,
            prefix,
            **s3.env,
            EXTRACT_CONCURRENCY="8",
            EXTRACT_SINK_PART_LINES="40",
            EXTRACT_SINK_FLUSH_AFTER_S="0.5",
            EXTRACT_SINK_TICK_S="0.2",
            EXTRACT_SINK_LEASE_S="4",
        )
        victim = start_worker(env, "victim", log=tmp_path / "victim.log")
        survivor = start_worker(env, "survivor", log=tmp_path / "survivor.log")
        try:
            wait_until(lambda: rows_written() >= 120, 90, "parts were not being written")
            stop(victim, signal.SIGKILL)
            wait_until(sink_done, 120, "the sink was not completed after the kill")
        finally:
            stop(survivor)
            stop(victim, signal.SIGKILL)
    manifest, rows = asyncio_run(sink_rows(url, "kill"))
    assert manifest["complete"] is True
    assert_exactly_once(rows, texts)
    assert "testing-secret" not in (tmp_path / "survivor.log").read_text()


def asyncio_run(coroutine: Any) -> Any:
    import asyncio

    return asyncio.run(coroutine)


async def test_collect_of_a_complete_sink_reads_the_parts_in_order_and_equals_the_line_by_line_path(
    redis, keys, settings, submit_batch, run_worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished batch is collected straight from its parts through a reorder buffer (no per-line Redis read);
    the file is byte for byte what the line-by-line path (through the slots) writes."""
    import producer.batch.collect as collecting
    from store.sink.reader import ReorderOverflowError, SinkReader

    await submit_batch(MANY, results=ResultsSink(url=str(tmp_path), format="parquet"))
    await run_worker()
    await writer(redis, keys, settings, sink_part_lines=7).write_batch("b1")
    fast, slow = tmp_path / "fast.jsonl", tmp_path / "slow.jsonl"
    assert await collect(redis, keys, "b1", fast) == (len(MANY), 0)

    async def overflow(*_args: Any, **_kwargs: Any) -> int:
        raise ReorderOverflowError("forced")

    monkeypatch.setattr(collecting, "_collect_from_parts", overflow)
    assert await collect(redis, keys, "b1", slow) == (len(MANY), 0)
    assert fast.read_bytes() == slow.read_bytes()
    assert [orjson.loads(x)["custom_id"] for x in fast.read_bytes().splitlines()] == list(MANY)

    reader = SinkReader(redis, keys, keys.batch("b1"), ResultsSink(url=str(tmp_path), format="parquet"))
    with pytest.raises(ReorderOverflowError):  # a buffer of none: the first part does not hold exactly line 0 alone
        [rows async for rows in reader.rows_in_input_order(len(MANY), max_buffered=-1)]
