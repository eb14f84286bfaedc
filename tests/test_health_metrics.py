"""The worker's /metrics, /healthz and /readyz against a real batch."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from schemas.results import Status
from schemas.settings import Settings
from simulator import SimulatorConfig
from store.keys import Keys
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.helpers import results_by_id, sim_post
from tests.processes import free_port
from worker.app import build_worker
from worker.health import HealthServer, Heartbeat
from worker.metrics import WorkerMetrics
from worker.runtime import Runtime


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def _health_port(ctx: dict) -> int:  # type: ignore[type-arg]
    """The ephemeral port the worker's health server bound, once its start-up has run."""
    for _ in range(500):
        state = ctx.get("state")
        if state is not None and state.health is not None and state.health.port is not None:
            return int(state.health.port)
        await asyncio.sleep(0.02)
    raise TimeoutError("the worker's health server did not start")


def _samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return found


@pytest.mark.parametrize("sim_config", [SimulatorConfig(require_api_key=API_KEY, latency_ms=300)], indirect=True)
async def test_metrics_during_a_batch_match_the_result_file(sim, redis, keys, settings, submit_batch) -> None:
    unique = {f"d{n}": f"{INVOICE_TEXTS[n % 5]} Ref {n}." for n in range(10)}
    docs = {**unique, **{f"dup{n}": unique[f"d{n}"] for n in range(4)}}  # 4 duplicates: cache hits
    await sim_post(sim, "/_sim/faults", [{"match": "Globex", "fault": "http_500", "times": 1}])
    await submit_batch(docs)
    worker = build_worker(settings.model_copy(update={"concurrency": 4}), handle_signals=False)
    running = asyncio.create_task(worker.main())
    try:
        port = await _health_port(worker.ctx)
        seen_in_flight = seen_due = 0.0
        while not running.done():  # scrape mid-batch
            status, text = await _get(port, "/metrics")
            assert status == 200
            mid = _samples(text)
            seen_in_flight = max(seen_in_flight, mid["extract_jobs_in_flight"][()])
            seen_due = max(seen_due, mid["extract_queue_due_jobs"][()])
            await asyncio.sleep(0.05)
        assert seen_in_flight > 0
        assert seen_due > 0
        await running
        status, text = await _get(port, "/metrics")
        final = _samples(text)
    finally:
        await worker.close()

    results = list((await results_by_id(redis, keys, "b1")).values())
    finished = final["extract_jobs_finished_total"]
    assert finished[(("status", "succeeded"),)] == sum(r.status is Status.SUCCEEDED for r in results) == len(docs)
    assert final["extract_cache_hits_total"][()] == sum(r.cache_hit for r in results) == 4
    calls = final["extract_api_calls_total"]
    assert sum(calls.values()) == sum(r.attempts for r in results)
    assert calls[(("api", "responses"), ("model", "gpt-4o-mini"), ("status", "500"))] == 1
    tokens = final["extract_tokens_total"]
    input_tokens = sum(r.usage.input_tokens for r in results)
    assert (
        tokens.get((("kind", "input"), ("model", "gpt-4o-mini")), 0)
        + tokens.get((("kind", "cached"), ("model", "gpt-4o-mini")), 0)
        == input_tokens
    )
    assert tokens[(("kind", "output"), ("model", "gpt-4o-mini"))] == sum(r.usage.output_tokens for r in results)
    assert final["extract_api_call_seconds_count"][(("api", "responses"), ("model", "gpt-4o-mini"))] == sum(
        r.attempts for r in results
    )
    assert final["extract_admission_wait_seconds_count"][(("model", "gpt-4o-mini"),)] == sum(
        r.attempts for r in results
    )
    assert final["extract_jobs_in_flight"][()] == 0


async def test_healthz_fails_when_the_heartbeat_stops(redis: Redis) -> None:
    heartbeat = Heartbeat()
    heartbeat.start()
    server = HealthServer(
        redis=redis,
        keys=Keys("test:"),
        metrics=WorkerMetrics(),
        heartbeat=heartbeat,
        worker_interval_s=1,
        port=0,
        host="127.0.0.1",
    )
    await server.start()
    assert server.port is not None
    try:
        assert (await _get(server.port, "/healthz"))[0] == 200
        await heartbeat.stop()  # the loop beat no longer moves: as if the event loop were stuck
        await asyncio.sleep(3.2)
        status, body = await _get(server.port, "/healthz")
        assert status == 503
        assert "loop_beat_age_s" in body
        heartbeat.start()
        await asyncio.sleep(0.05)
        heartbeat.worker_beat -= 60  # arq's poll loop silent for a minute
        assert (await _get(server.port, "/healthz"))[0] == 503
    finally:
        await heartbeat.stop()
        await server.stop()


async def test_readyz_follows_redis(redis: Redis) -> None:
    unreachable = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.2)
    servers = [
        HealthServer(
            redis=client,
            keys=Keys("test:"),
            metrics=WorkerMetrics(),
            heartbeat=Heartbeat(),
            worker_interval_s=1,
            port=0,
            host="127.0.0.1",
        )
        for client in (redis, unreachable)
    ]
    for server in servers:
        await server.start()
    try:
        assert (await _get(servers[0].port or 0, "/readyz"))[0] == 200
        assert (await _get(servers[1].port or 0, "/readyz"))[0] == 503
        assert (await _get(servers[1].port or 0, "/metrics"))[0] == 200  # metrics still served without Redis
    finally:
        for server in servers:
            await server.stop()
        await unreachable.aclose()


async def test_the_health_server_binds_the_configured_address(settings) -> None:
    runtime = await Runtime.start(Settings(**{**settings.model_dump(), "metrics_host": "127.0.0.1", "metrics_port": 0}))
    try:
        assert runtime.health is not None
        assert runtime.health.address == "127.0.0.1"
        assert runtime.health.port
    finally:
        await runtime.stop()
