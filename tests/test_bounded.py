"""Redis holds work in flight, not history: the window, the feeder, text that goes, retention, delete, big batches.

Real Redis, the simulator over HTTP, real arq workers (in-process, and as processes where a kill matters).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from arq.constants import job_key_prefix
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer.batch import collect as collect_module
from producer.batch.collect import collect, follow
from producer.batch.control import cancel, delete, retry_failed
from producer.batch.status import list_batches
from producer.input.readers import InputLine, MemorySource
from producer.submit import feeder as feeder_module
from producer.submit.submit import submit
from schemas.results import ResultRecord, Status
from schemas.settings import Settings
from store.batches import BatchStore
from store.codec import ResultCodec
from store.fields import F
from store.keys import Keys
from tests.conftest import API_KEY, REPO
from tests.helpers import redis_contents, results_by_id, running_worker, sim_get, sim_post, until
from tests.processes import invoice_spec, simulator_process, start_worker, stop, wait_until

MARKER = "Zanzibar quartz {n} marmalade lighthouse, payable within thirty days to the account below"
"""Makes every document longer than any phrase the simulator copies into an answer (at most 12 words), so a whole
document found anywhere in Redis means its text stayed."""


def _lines(count: int, *, marker: bool = True) -> MemorySource:
    body = " " + MARKER if marker else ""
    return MemorySource(
        tuple(
            InputLine(
                n + 1, f"doc-{n:05d}", f"Invoice {n} from Vendor {n % 7} Ltd, total {n}.00 EUR.{body.format(n=n)}"
            )
            for n in range(count)
        )
    )


async def test_the_queue_never_holds_more_than_the_window(redis, keys, settings, sim) -> None:
    """300 lines through a window of 40: the feeder tops the queue up as lines finish, never past the window."""
    spec = invoice_spec("windowed").model_copy(update={"use_cache": False})
    window, peak = 40, {"queue": 0, "queued": 0}
    store = BatchStore(redis, keys)

    async def sample() -> None:
        while True:
            peak["queue"] = max(peak["queue"], await redis.zcard(keys.queue))
            with contextlib.suppress(LookupError):
                peak["queued"] = max(peak["queued"], (await store.get("windowed")).queued)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample())
    async with running_worker(settings, concurrency=16):
        result = await submit(redis, keys, spec, _lines(300), window=window, ttl_s=0, chunk=10)
        await until(lambda: _complete(store, "windowed"), 60, "the batch did not complete")
    sampler.cancel()
    assert (result.enqueued, result.fed) == (300, 300)
    assert 0 < peak["queue"] <= window
    assert 0 < peak["queued"] <= window
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 300
    results = await results_by_id(redis, keys, "windowed")
    assert len(results) == 300
    assert all(r.status is Status.SUCCEEDED for r in results.values())


async def _complete(store: BatchStore, batch_id: str) -> bool:
    return (await store.get(batch_id)).complete


async def test_no_text_is_left_in_redis_once_lines_are_recorded(redis, keys, settings, sim) -> None:
    spec = invoice_spec("textless").model_copy(update={"use_cache": False})
    async with running_worker(settings):
        await submit(redis, keys, spec, _lines(60), window=25, ttl_s=0, chunk=10)
        await until(lambda: _complete(BatchStore(redis, keys), "textless"), 60, "the batch did not complete")
    documents = [line.text.encode() for line in _lines(60).lines()]
    contents = await redis_contents(redis)
    assert not any(document in contents for document in documents)
    assert not [key async for key in redis.scan_iter(match=job_key_prefix + "*")]  # no arq job (or result) left
    codec = ResultCodec(spec.json_schema)
    stored = [codec.decode(fields[b"r"]) for _, fields in await redis.xrange(keys.batch("textless").results)]
    assert len(stored) == 60
    assert not any(document in result for document in documents for result in stored)


async def test_a_waiting_line_keeps_its_text_in_redis_once(redis, keys) -> None:
    text = "only " + MARKER.format(n="w")
    await submit(redis, keys, invoice_spec("waiting"), MemorySource((InputLine(1, "w", text),)), window=5, ttl_s=0)
    assert (await redis_contents(redis)).count(text.encode()) == 1  # the arq job, and nothing else


async def test_a_finished_batch_expires_and_leaves_no_key(redis, keys, settings, sim) -> None:
    spec = invoice_spec("short-lived")
    other = invoice_spec("kept")
    await submit(redis, keys, spec, _lines(5), window=100, ttl_s=1)
    await submit(redis, keys, other, _lines(3), window=100, ttl_s=0)
    async with running_worker(settings):
        await until(lambda: _complete(BatchStore(redis, keys), "short-lived"), 30, "the batch did not complete")
        await until(lambda: _complete(BatchStore(redis, keys), "kept"), 30, "the other batch did not complete")
    for key in keys.batch("short-lived"):
        assert await redis.pttl(key) <= 1000  # expiring, or gone already
    await asyncio.sleep(1.2)
    assert [key async for key in redis.scan_iter(match="*short-lived*")] == []
    listed = [o.record.batch_id for o in await list_batches(redis, keys)]
    assert listed == ["kept"]  # the index forgets the expired batch when it is read
    assert await redis.zrange(keys.batches, 0, -1) == [b"kept"]
    for key in keys.batch("kept"):
        assert await redis.pttl(key) in (-1, -2)  # kept (0 = no retention), or never created (the feeder key)


async def test_delete_removes_every_key_of_a_batch_and_nothing_of_another(redis, keys, settings, sim) -> None:
    await submit(redis, keys, invoice_spec("doomed"), _lines(30), window=100, ttl_s=0)
    await submit(redis, keys, invoice_spec("bystander"), _lines(12), window=100, ttl_s=0)
    before = {key async for key in redis.scan_iter()}
    assert (await delete(redis, keys, "doomed")).waiting == 30  # all of its jobs were waiting
    after = {key async for key in redis.scan_iter()}
    gone = before - after
    assert all(b"doomed" in key for key in gone)
    assert not [key for key in after if b"doomed" in key]
    assert await redis.zrange(keys.batches, 0, -1) == [b"bystander"]
    async with running_worker(settings):
        await until(lambda: _complete(BatchStore(redis, keys), "bystander"), 30, "the other batch did not complete")
    results = await results_by_id(redis, keys, "bystander")
    assert len(results) == 12
    assert all(r.status is Status.SUCCEEDED for r in results.values())
    assert not [key async for key in redis.scan_iter() if b"doomed" in key]


async def test_a_job_running_when_its_batch_is_deleted_recreates_nothing(redis, keys, settings, sim) -> None:
    await sim_post(
        sim,
        "/_sim/faults",
        {"slow_response_ms": 800, "rules": [{"match": "Invoice 0 ", "fault": "slow_response", "times": 1}]},
    )
    await submit(redis, keys, invoice_spec("doomed"), _lines(1), window=100, ttl_s=0)
    async with running_worker(settings):
        await asyncio.sleep(0.4)  # the call is out
        await delete(redis, keys, "doomed")
        await asyncio.sleep(1.2)  # the call returns; the job finds no batch
    left = [key async for key in redis.scan_iter()]
    assert [key for key in left if b"doomed" in key or key.startswith(b"arq:")] == []
    assert {key.split(b":")[1] for key in left} <= {b"rl", b"cache"}  # only what batches share


async def test_cancel_ends_a_batch_that_is_still_being_fed(redis, keys) -> None:
    """2,500 lines, a window of 1,200, no worker: cancel takes the waiting ones off (in several chunks), closes the
    feed, and the batch is complete at once with one cancelled line per input line."""
    store = BatchStore(redis, keys)
    feeding = asyncio.create_task(
        submit(redis, keys, invoice_spec("big"), _lines(2500, marker=False), window=1200, ttl_s=0, chunk=400)
    )
    await until(lambda: _fed(store, "big", 1200), 30, "the window did not fill")
    result = await cancel(redis, keys, "big", price=Settings().price_for("gpt-4o-mini"))
    fed = await asyncio.wait_for(feeding, 10)
    assert fed.cancelled
    assert (result.waiting, result.never_enqueued) == (1200, 1300)
    record = await store.get("big")
    assert record.complete
    assert (record.done, record.cancelled, record.queued) == (2500, 2500, 0)
    assert await redis.zcard(keys.queue) == 0
    lines = [orjson.loads(line) for line in await _collected(redis, keys, "big")]
    assert [line["custom_id"] for line in lines] == [f"doc-{n:05d}" for n in range(2500)]
    assert {line["status"] for line in lines} == {"cancelled"}
    assert {line["cost_usd"] for line in lines} == {0.0}
    assert all(line["fingerprint"].startswith("sha256:") for line in lines)


async def _fed(store: BatchStore, batch_id: str, at_least: int) -> bool:
    with contextlib.suppress(LookupError):
        return (await store.get(batch_id)).fed >= at_least
    return False


async def _collected(redis: Redis, keys: Keys, batch_id: str) -> list[bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        written, missing = await collect(redis, keys, batch_id, out, price=Settings().price_for("gpt-4o-mini"))
        assert missing == 0
        lines = await asyncio.to_thread(out.read_bytes)
    assert len(lines.splitlines()) == written
    return lines.splitlines()


async def test_collect_follow_and_retry_across_chunk_boundaries(
    redis, keys, settings, sim, monkeypatch, tmp_path
) -> None:
    """Read chunks of 7 and slot scans of 11 over 50 lines: every line once, in order, the retried ones replaced."""
    monkeypatch.setattr(collect_module, "READ_CHUNK", 7)
    monkeypatch.setattr(feeder_module, "SLOT_SCAN", 11)
    await sim_post(
        sim, "/_sim/faults", [{"match": f"Invoice {n} ", "fault": "refusal", "times": 1} for n in range(0, 50, 3)]
    )
    spec = invoice_spec("chunky").model_copy(update={"use_cache": False})
    source = _lines(50, marker=False)
    await submit(redis, keys, spec, source, window=100, ttl_s=0, chunk=9)
    async with running_worker(settings):
        await until(lambda: _complete(BatchStore(redis, keys), "chunky"), 30, "the batch did not complete")
        failed = [line for line in await _collected(redis, keys, "chunky") if orjson.loads(line)["status"] == "failed"]
        assert len(failed) == 17
        retried = await retry_failed(redis, keys, "chunky", source, window=100, chunk=4)
        assert retried.enqueued == 17
        await until(lambda: _complete(BatchStore(redis, keys), "chunky"), 30, "the retried lines did not finish")
    lines = [ResultRecord.model_validate_json(line) for line in await _collected(redis, keys, "chunky")]
    assert [r.custom_id for r in lines] == [f"doc-{n:05d}" for n in range(50)]
    assert all(r.status is Status.SUCCEEDED for r in lines)
    out = tmp_path / "follow.jsonl"
    assert await follow(redis, keys, "chunky", out) == 50
    followed = [ResultRecord.model_validate_json(line) for line in out.read_bytes().splitlines()]
    assert sorted(r.custom_id for r in followed) == [r.custom_id for r in lines]
    assert all(r.status is Status.SUCCEEDED for r in followed)  # the superseded failures are not written


async def test_follow_takes_lines_appended_while_it_follows(redis, keys, settings, sim, tmp_path) -> None:
    """`collect --follow` started on 8 lines, then `submit --append` makes 20: all 20 written once each."""
    spec = invoice_spec("growing").model_copy(update={"use_cache": False})
    await submit(redis, keys, spec, _lines(8, marker=False), window=100, ttl_s=0)
    out = tmp_path / "follow.jsonl"
    following = asyncio.create_task(follow(redis, keys, "growing", out, block_ms=50))
    await asyncio.sleep(0.2)  # follow has read the batch (8 lines) and waits for results
    grown = await submit(redis, keys, spec, _lines(20, marker=False), window=100, ttl_s=0, append=True)
    assert grown.appended == 12
    async with running_worker(settings):
        assert await asyncio.wait_for(following, 60) == 20
    written = [ResultRecord.model_validate_json(line) for line in out.read_bytes().splitlines()]
    assert sorted(r.custom_id for r in written) == [f"doc-{n:05d}" for n in range(20)]


def _fed_sync(redis_url: str, batch_id: str) -> int:
    client = SyncRedis.from_url(redis_url)
    try:
        return int(client.hget(Keys("kill:").batch(batch_id).record, F.FED) or 0)  # type: ignore[arg-type]
    finally:
        client.close()


def test_a_feeder_killed_half_way_resumes_where_it_was(flushed_redis: str, tmp_path: Path) -> None:
    """`producer submit` SIGKILLed while it feeds, then run again: every line once, no line enqueued or paid twice."""
    count = 120
    source = tmp_path / "in.jsonl"
    source.write_bytes(
        b"".join(
            orjson.dumps({"custom_id": f"d{n}", "text": f"Invoice {n} from Vendor {n} Ltd, total {n}.00 EUR."}) + b"\n"
            for n in range(count)
        )
    )
    with simulator_process("--require-api-key", API_KEY, "--latency-ms", "150") as sim_url:
        env = {
            **os.environ,
            "REDIS_URL": flushed_redis,
            "OPENAI_BASE_URL": sim_url + "/v1",
            "OPENAI_API_KEY": API_KEY,
            "EXTRACT_KEY_PREFIX": "kill:",
            "EXTRACT_METRICS_PORT": "0",
            "EXTRACT_CONCURRENCY": "8",
            "EXTRACT_QUEUE_WINDOW": "16",
            "EXTRACT_SUBMIT_CHUNK_SIZE": "4",
            "EXTRACT_NO_CACHE": "true",
        }
        args = [
            sys.executable,
            "-m",
            "producer.cli",
            "submit",
            str(source),
            "--schema",
            "invoice",
            "--model",
            "gpt-4o-mini",
            "--batch-id",
            "fed",
        ]
        worker = start_worker(env, "w1", log=tmp_path / "worker.log")
        try:
            first = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: _fed_sync(flushed_redis, "fed") >= count // 3, 60, "the feeder did not get a third in")
            stop(first, signal.SIGKILL)
            killed_at = _fed_sync(flushed_redis, "fed")
            assert killed_at < count
            second = subprocess.run(args, env=env, cwd=REPO, capture_output=True, timeout=120, check=False)
            assert second.returncode == 0, second.stderr.decode()
            assert f"{killed_at} enqueued before; going on from there" in second.stderr.decode()
            out = tmp_path / "out.jsonl"
            wait_until(lambda: _collect_cli(env, out) == 0, 60, "the batch did not complete")
        finally:
            stop(worker)
        ledger = _ledger_sync(sim_url)
    records = [ResultRecord.model_validate_json(line) for line in out.read_bytes().splitlines()]
    assert [r.custom_id for r in records] == [f"d{n}" for n in range(count)]
    assert all(r.status is Status.SUCCEEDED for r in records)
    assert ledger["requests"]["total"] == count  # no line enqueued (and paid) twice
    assert sorted(ledger["ok_per_input"].values()) == [1] * count


def _collect_cli(env: dict[str, str], out: Path) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "producer.cli", "collect", "fed", "--out", str(out)],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode


def _ledger_sync(sim_url: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{sim_url}/_sim/ledger") as response:
            ledger: dict[str, Any] = await response.json()
            return ledger

    return asyncio.run(read())
