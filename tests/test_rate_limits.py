"""The worker against a provider that enforces limits and fails: admission, retries, outages and fault mixes."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import orjson
import pytest

from schemas.results import ErrorType, Status
from simulator import FaultKind, SimulatorConfig, running_simulator
from store.batches import BatchStore
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.helpers import results_by_id, sim_get, sim_post, total_usage
from worker.adapters.http import error_from_reply
from worker.admission import AdmissionController
from worker.app import build_worker
from worker.classify import Settle, classify_call_error


def _docs(count: int) -> dict[str, str]:
    return {f"doc-{n:03d}": INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" Reference R-{n}." for n in range(count)}


@pytest.mark.parametrize(
    "sim_config",
    [SimulatorConfig(require_api_key=API_KEY, rpm=600, tpm=300_000, latency_ms=50, latency_jitter_ms=25)],
    indirect=True,
)
async def test_admission_keeps_a_limited_provider_free_of_429s(sim, redis, keys, submit_batch, run_worker) -> None:
    """40 lines through a 10 requests/s, 5,000 tokens/s provider: all succeed and the provider never says 429."""
    docs = _docs(40)
    await submit_batch(docs, max_output_tokens=200)
    await run_worker(rpm=600, tpm=300_000, concurrency=16)

    results = await results_by_id(redis, keys, "b1")
    assert len(results) == len(docs)
    assert all(r.status is Status.SUCCEEDED for r in results.values())
    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["by_status"].get("429", 0) == 0
    assert ledger["requests"]["by_status"]["200"] == len(docs)


@pytest.mark.parametrize(
    "sim_config",
    [SimulatorConfig(require_api_key=API_KEY, rpm=600, tpm=300_000, latency_ms=20)],
    indirect=True,
)
async def test_with_no_limits_configured_the_providers_are_learned(sim, redis, keys, submit_batch, run_worker) -> None:
    """No limits told: slow start, then the limits from the replies' headers; the provider hardly ever says 429."""
    docs = _docs(40)
    await submit_batch(docs, max_output_tokens=200)
    await run_worker(concurrency=16)

    results = await results_by_id(redis, keys, "b1")
    assert [r.error for r in results.values() if r.status is not Status.SUCCEEDED] == []
    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["by_status"].get("429", 0) <= 2
    assert total_usage(list(results.values())).model_dump() == ledger["billed"]  # 429s are not billed


async def test_429s_do_not_use_up_the_error_budget(sim, redis, keys, submit_batch, run_worker) -> None:
    """Five 429s in a row on a line whose error budget is one try: the provider pacing us is not the job failing."""
    await sim_post(sim, "/_sim/faults", [{"match": "Globex", "fault": "http_429", "times": 5}])
    await submit_batch({"paced": INVOICE_TEXTS[1]})
    await run_worker(max_tries=1)
    record = (await results_by_id(redis, keys, "b1"))["paced"]
    assert record.status is Status.SUCCEEDED
    assert record.attempts == 6


async def test_client_errors_are_not_retried(sim, redis, keys, submit_batch, run_worker) -> None:
    await sim_post(sim, "/_sim/faults", [{"match": "Initech", "fault": "http_400", "times": 5}])
    await submit_batch({"bad": INVOICE_TEXTS[2]})
    await run_worker()
    record = (await results_by_id(redis, keys, "b1"))["bad"]
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type is ErrorType.INVALID_REQUEST
    assert record.error.status_code == 400
    assert record.attempts == 1
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 1


def test_insufficient_quota_is_a_stop_not_a_rate_limit() -> None:
    """A 429 whose code is insufficient_quota maps to a permanent budget_exceeded failure (the simulator has no
    quota, so reading the error reply is the unit under test)."""
    body = {
        "error": {
            "message": "You exceeded your current quota",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
            "param": None,
        }
    }
    error = error_from_reply(429, orjson.dumps(body), {"retry-after": "1"}, latency_ms=1, secrets=())
    assert (error.status_code, error.code) == (429, "insufficient_quota")  # the facts ...
    verdict = classify_call_error(error)  # ... and what they mean, decided in one place
    assert verdict.final is not None
    assert verdict.final.error_type is ErrorType.BUDGET_EXCEEDED
    assert verdict.settle is Settle.UNAVAILABLE
    assert verdict.cooldown_s is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_an_outage_of_a_few_seconds_ends_with_every_job_succeeded(
    redis, keys, settings, submit_batch, run_worker
) -> None:
    """The provider is unreachable for ~3 s (connection refused), then back: no line fails."""
    port = _free_port()
    docs = _docs(12)
    await submit_batch(docs)
    worker = asyncio.create_task(
        run_worker(openai_base_url=f"http://127.0.0.1:{port}/v1", backoff_base_s=0.25, backoff_cap_s=1.0)
    )
    await asyncio.sleep(3.0)  # outage: nothing listens on the port
    assert not worker.done()
    async with running_simulator(SimulatorConfig(require_api_key=API_KEY), port=port) as sim:
        await asyncio.wait_for(worker, timeout=60)
        ledger = await sim_get(sim, "/_sim/ledger")
    results = await results_by_id(redis, keys, "b1")
    assert len(results) == len(docs)
    assert all(r.status is Status.SUCCEEDED for r in results.values())
    assert max(r.attempts for r in results.values()) > 1  # they did fail during the outage
    assert ledger["requests"]["by_status"]["200"] == len(docs)


@pytest.mark.parametrize(
    "sim_config",
    [
        SimulatorConfig(
            require_api_key=API_KEY,
            fault_rates={
                FaultKind.HTTP_500: 0.02,
                FaultKind.HTTP_503: 0.02,
                FaultKind.DROPPED_CONNECTION: 0.02,
                FaultKind.INVALID_OUTPUT: 0.02,
                FaultKind.TRUNCATION: 0.02,
            },
            fault_seed=7,
            max_faults_per_input=1,
        )
    ],
    indirect=True,
)
async def test_a_fault_mix_ends_with_exactly_one_final_result_per_line(
    sim, redis, keys, submit_batch, run_worker
) -> None:
    """2 % each of 500, 503, dropped connection, invalid output and truncation over 200 lines."""
    docs = _docs(200)
    await submit_batch(docs)
    await run_worker(concurrency=32)

    assert await redis.xlen(keys.batch("b1").results) == len(docs)  # one entry per line, no duplicates
    results = await results_by_id(redis, keys, "b1")
    assert set(results) == set(docs)
    faults = await sim_get(sim, "/_sim/faults?full=1")
    fired = faults["rate_fired"]
    assert sum(fired.values()) > 0
    failed = [r for r in results.values() if r.status is Status.FAILED]
    # Everything recovered: a truncation well below the cap is retried like a 5xx (tests/hostile/test_truncation.py).
    assert failed == []
    assert sum(r.repairs for r in results.values()) == fired.get("invalid_output", 0)
    ledger = await sim_get(sim, "/_sim/ledger")
    assert total_usage(list(results.values())).model_dump() == ledger["billed"]


@pytest.mark.parametrize(
    "sim_config",
    [SimulatorConfig(require_api_key=API_KEY, rpm=600, tpm=300_000, latency_ms=30, limit_headers="none")],
    indirect=True,
)
async def test_a_provider_that_sends_no_limits_is_found_by_slow_start(
    sim, redis, keys, submit_batch, run_worker
) -> None:
    """A local-server-like provider: no x-ratelimit headers, limits enforced anyway. Slow start and the shared
    cool-down keep its 429s bounded; every line succeeds."""
    docs = _docs(50)
    await submit_batch(docs, max_output_tokens=200)
    await run_worker(concurrency=16)
    results = await results_by_id(redis, keys, "b1")
    assert all(r.status is Status.SUCCEEDED for r in results.values())
    statuses = (await sim_get(sim, "/_sim/ledger"))["requests"]["by_status"]
    assert statuses.get("429", 0) <= 0.05 * sum(statuses.values())


@pytest.mark.parametrize(
    "sim_config",
    [SimulatorConfig(require_api_key=API_KEY, rpm=6_000, tpm=30_000, latency_ms=10)],
    indirect=True,
)
async def test_a_request_too_large_for_the_limit_fails_at_once(sim, redis, keys, submit_batch, run_worker) -> None:
    await submit_batch({"huge": "Invoice from ACME. " + "line item widget 10.00 " * 6000, "ok": INVOICE_TEXTS[0]})
    await run_worker()
    results = await results_by_id(redis, keys, "b1")
    assert results["ok"].status is Status.SUCCEEDED
    huge = results["huge"]
    assert huge.error is not None
    assert huge.error.type is ErrorType.INPUT_TOO_LARGE
    assert "Limit 30000" in huge.error.message
    assert huge.attempts == 1  # at once: no retries for 600 s


@pytest.mark.parametrize(
    "sim_config",
    [SimulatorConfig(require_api_key=API_KEY, tpm=300_000, latency_ms=30, charge_output="actual")],
    indirect=True,
)
async def test_the_output_charge_converges_on_what_the_provider_charges(
    sim, redis, keys, settings, submit_batch, run_worker
) -> None:
    """A provider that charges the output actually produced: calls without a maximum stop reserving 1,024."""
    await submit_batch(_docs(60))
    await run_worker(concurrency=8)
    results = await results_by_id(redis, keys, "b1")
    assert all(r.status is Status.SUCCEEDED for r in results.values())
    controller = AdmissionController(redis, keys, settings, API_KEY, endpoint=settings.openai_base_url or "")
    levels = await controller.levels("gpt-4o-mini")
    actual = sum(r.usage.output_tokens for r in results.values()) / len(results)
    assert levels["lt"] == 300_000  # learned
    assert levels["oc"] < 0.5 * settings.default_output_reserve  # far below the 1,024 it started from
    assert levels["oc"] > 0.3 * actual


@pytest.mark.parametrize(
    "sim_config", [SimulatorConfig(require_api_key=API_KEY, rpm=3_000, tpm=600_000, latency_ms=40)], indirect=True
)
async def test_a_tier_change_mid_run_is_followed(sim, redis, keys, settings, submit_batch) -> None:
    """The account's limit drops mid-run: the next replies teach every worker the new limit."""
    await submit_batch(_docs(60), max_output_tokens=100)
    worker = build_worker(settings.model_copy(update={"burst": False, "concurrency": 8}), handle_signals=False)
    running = asyncio.create_task(worker.main())
    try:
        store = BatchStore(redis, keys)
        await _until(lambda: _done_at_least(store, 20))
        await sim_post(sim, "/_sim/limits", {"rpm": 1_200, "tpm": 240_000})
        await _until(lambda: _done_at_least(store, 60))
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await worker.close()
    controller = AdmissionController(redis, keys, settings, API_KEY, endpoint=settings.openai_base_url or "")
    levels = await controller.levels("gpt-4o-mini")
    assert (levels["lr"], levels["lt"]) == (1_200, 240_000)
    statuses = (await sim_get(sim, "/_sim/ledger"))["requests"]["by_status"]
    assert statuses.get("429", 0) <= 0.05 * sum(statuses.values())


async def _done_at_least(store: BatchStore, count: int) -> bool:
    return (await store.get("b1")).done >= count


async def _until(check, timeout_s: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.05)
