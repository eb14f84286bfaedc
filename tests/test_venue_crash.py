"""Exactly once with a provider batch in the middle, with real processes: a worker killed (SIGKILL) right after it
asked the provider to create a batch -- the batch exists, the worker never heard its id -- is replaced by another,
which finds that batch by the nonce in its metadata and re-attaches: one provider batch for the lines, each line
billed and recorded once."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import submit
from store.keys import Keys
from store.provider_batches import ProviderBatchStore
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.processes import invoice_spec, simulator_process, start_worker, stop, wait_until, worker_env

KEYS = Keys("test:")
BATCH = "killed"
VENUE_ENV = {
    "EXTRACT_BATCH_POLL_S": "1",
    "EXTRACT_BATCH_PART_WAIT_S": "0.2",
    "EXTRACT_REQUEST_TIMEOUT_S": "2",  # a part's lease is one call's timeout and 10 s: taken over within 12 s
}


def _submit(redis_url: str, count: int) -> None:
    lines = tuple(InputLine(n + 1, f"doc-{n}", INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" #{n}") for n in range(count))
    spec = invoice_spec(BATCH).model_copy(update={"venue": "batch-api", "use_cache": False})

    async def run() -> None:
        redis = Redis.from_url(redis_url)
        await submit(redis, KEYS, spec, MemorySource(lines), window=10_000, ttl_s=0)
        await redis.aclose()

    asyncio.run(run())


def _sim(sim_url: str, method: str, path: str, payload: object = None) -> object:
    async def run() -> object:
        async with aiohttp.ClientSession() as session, session.request(method, sim_url + path, json=payload) as got:
            got.raise_for_status()
            return await got.json()

    return asyncio.run(run())


def _part_state(redis_url: str) -> str | None:
    async def run() -> str | None:
        redis = Redis.from_url(redis_url)
        try:
            parts = await ProviderBatchStore(redis, KEYS).parts(KEYS.batch(BATCH))
            return parts[0].state if parts else None
        finally:
            await redis.aclose()

    return asyncio.run(run())


def _done(redis_url: str) -> int:
    client = SyncRedis.from_url(redis_url)
    try:
        return int(client.hget(KEYS.batch(BATCH).record, "done") or 0)  # type: ignore[arg-type]
    finally:
        client.close()


def test_a_worker_killed_after_the_create_is_replaced_without_a_second_provider_batch(
    flushed_redis: str, tmp_path: Path
) -> None:
    with simulator_process("--require-api-key", API_KEY) as sim_url:
        _sim(sim_url, "POST", "/_sim/batches", {"create_answer_delay_s": 30})
        env = worker_env(flushed_redis, sim_url, API_KEY, "test:", **VENUE_ENV)
        _submit(flushed_redis, 12)
        first = start_worker(env, "first", log=tmp_path / "first.log")
        try:

            def created() -> bool:
                requests = _sim(sim_url, "GET", "/_sim/requests")
                assert isinstance(requests, list)
                return any(r.get("endpoint") == "batches.create" for r in requests)

            wait_until(created, 60, "the first worker asked for a provider batch")
            assert _part_state(flushed_redis) == "creating"  # the intent, recorded before the create
        finally:
            stop(first, signal.SIGKILL)
        _sim(sim_url, "POST", "/_sim/batches", {"create_answer_delay_s": 0})
        second = start_worker(env, "second", log=tmp_path / "second.log")
        try:
            started = time.monotonic()
            wait_until(lambda: _done(flushed_redis) == 12, 90, "every line recorded by the second worker")
            recovery_s = time.monotonic() - started
        finally:
            stop(second)
        requests = _sim(sim_url, "GET", "/_sim/requests")
        assert isinstance(requests, list)
        creates = [r for r in requests if r.get("endpoint") == "batches.create"]
        assert len(creates) == 1, creates  # re-attached by the nonce, never created twice
        ledger = _sim(sim_url, "GET", "/_sim/ledger?venues=1")
        assert isinstance(ledger, dict)
        assert ledger["venues"]["batch"]["ok"] == 12  # each line billed once
        assert ledger["venues"]["sync"]["ok"] == 0
        assert "re-attached to provider batch" in (tmp_path / "second.log").read_text()
        assert recovery_s < 90
