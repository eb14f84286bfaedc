"""Budgets that hold across the fleet (``store.budget``): reserved before a call, settled after, a pause at the limit,
``producer budget`` to go on; and what a call's reservation and cost are at each service tier."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer.cli import main as producer
from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import submit
from schemas.pricing import ModelPrice
from schemas.settings import Settings
from store.accounts import Accounts, BudgetCharge
from store.batches import BatchStore
from store.budget import BudgetStore
from store.keys import Keys
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.processes import invoice_spec, simulator_process, start_worker, stop, wait_until, worker_env
from worker.calls import worst_case

KEYS = Keys("test:")
PRICE = Settings().price_for("gpt-4o-mini")


def _lines(count: int) -> MemorySource:
    return MemorySource(
        tuple(
            InputLine(n + 1, f"doc-{n:03d}", INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" Ref {n}.") for n in range(count)
        )
    )


# ------------------------------------------------------------------------------------------------------ the store
async def test_a_call_past_the_budget_is_refused_and_pauses_the_batch(redis: Redis) -> None:
    spec = invoice_spec("b").model_copy(update={"budget_usd": 0.001})  # 1,000 micro-dollars
    await submit(redis, KEYS, spec, _lines(3), window=10, ttl_s=0)
    batch, accounts = KEYS.batch("b"), Accounts(redis)
    assert await accounts.begin_call(batch, 0, estimate=100, worst=BudgetCharge(600, 700)) > 0
    # 600 reserved + 600 > 1,000, but only because of the call in flight: wait, no pause.
    assert await accounts.begin_call(batch, 1, estimate=100, worst=BudgetCharge(600, 700)) == -3
    assert (await BatchStore(redis, KEYS).get("b")).paused is None
    # A call that cannot fit even with nothing in flight pauses the batch.
    refused = await accounts.begin_call(batch, 2, estimate=100, worst=BudgetCharge(1200, 1300))
    assert refused == -2
    record = await BatchStore(redis, KEYS).get("b")
    assert record.paused == (
        "budget reached: $0.0000 spent, and the next call may cost $0.0012, over the budget of $0.0010 "
        "(raise it: producer budget BATCH --usd X)"
    )
    assert record.budget is not None
    assert (record.budget.reserved_usd, record.budget.spent_usd) == (0.0006, 0.0)
    # The first call returns having cost less than it reserved: the difference is free again.
    from store.scripts import single

    added = await single(
        redis,
        lambda trip: accounts.queue_add_call(
            trip,
            batch,
            0,
            usage=None,
            response_id="r",
            latency_ms=5,
            repair=False,
            reserved=BudgetCharge(600, 700),
            cost=BudgetCharge(250, 300),
        ),
    )
    assert added is not None
    record = await BatchStore(redis, KEYS).get("b")
    assert record.budget is not None
    assert (record.budget.reserved_usd, record.budget.spent_usd, record.budget.spent_tokens) == (0.0, 0.00025, 300)
    # Raising the budget lifts a budget pause (and only a budget pause).
    assert await BudgetStore(redis).set(batch, usd=0.01, tokens=None) == refused_reason(record.paused)
    assert (await BatchStore(redis, KEYS).get("b")).paused is None


def refused_reason(paused: str | None) -> str | None:
    return paused


async def test_a_token_budget_holds_too_and_an_unsettled_reservation_counts_as_spent(redis: Redis) -> None:
    spec = invoice_spec("t").model_copy(update={"budget_tokens": 1000})
    await submit(redis, KEYS, spec, _lines(2), window=10, ttl_s=0)
    batch, accounts = KEYS.batch("t"), Accounts(redis)
    assert await accounts.begin_call(batch, 0, estimate=100, worst=BudgetCharge(0, 900)) > 0
    assert await accounts.begin_call(batch, 1, estimate=100, worst=BudgetCharge(0, 200)) == -3
    assert await accounts.begin_call(batch, 1, estimate=100, worst=BudgetCharge(0, 1200)) == -2
    paused = (await BatchStore(redis, KEYS).get("t")).paused
    assert paused is not None
    assert paused.startswith("token budget reached: 0 tokens billed, and the next call may take 1200")


def test_the_worst_case_is_the_input_estimate_and_the_output_cap_at_the_tier_price() -> None:
    price = ModelPrice(input=2.0, cached_input=1.0, output=8.0)
    assert worst_case(price, 1000, 500) == BudgetCharge(2000 + 4000, 1500)  # tokens x USD/1M = micro-dollars
    assert worst_case(None, 1000, 500) == BudgetCharge(0, 1500)


# ------------------------------------------------------------------------------------------- the fleet, end to end
def _env(redis_url: str, sim_url: str, **extra: str) -> dict[str, str]:
    own = {
        "EXTRACT_CONCURRENCY": "8",
        "EXTRACT_BACKOFF_BASE_S": "0.05",
        "EXTRACT_BACKOFF_CAP_S": "0.5",
        "EXTRACT_PAUSE_RECHECK_S": "1",
    }
    return worker_env(redis_url, sim_url, API_KEY, KEYS.prefix, **{**own, **extra})


def _sim_bill(sim_url: str) -> float:
    """What the simulator billed (its ledger), at the model's default-tier price."""

    async def run() -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(f"{sim_url}/_sim/ledger") as response:
            ledger: dict[str, Any] = await response.json()
        return ledger

    billed = asyncio.run(run())["billed"]
    assert PRICE is not None
    cached = int(billed.get("cached_input_tokens", 0))
    uncached = int(billed["input_tokens"]) - cached
    total: float = (
        uncached * PRICE.input + cached * PRICE.cached_input + int(billed["output_tokens"]) * PRICE.output
    ) / 1e6
    return total


def _record(redis_url: str, batch_id: str) -> Any:
    async def run() -> Any:
        redis = Redis.from_url(redis_url)
        try:
            return await BatchStore(redis, KEYS).get(batch_id)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def test_a_budget_reached_mid_batch_by_four_workers_pauses_within_the_bound_and_budget_resumes_it(
    flushed_redis: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, max_output = 200, 400
    budget = 0.01  # about a third of the batch at gpt-4o-mini prices
    with simulator_process("--require-api-key", API_KEY, "--latency-ms", "150") as sim_url:
        spec = invoice_spec("spend", max_output_tokens=max_output).model_copy(
            update={"budget_usd": budget, "use_cache": False}
        )

        async def put() -> None:
            redis = Redis.from_url(flushed_redis)
            await submit(redis, KEYS, spec, _lines(count), window=1000, ttl_s=0)
            await redis.aclose()

        asyncio.run(put())
        env = _env(flushed_redis, sim_url)
        workers = [start_worker(env, f"spender-{n}", log=tmp_path / f"w{n}.log") for n in range(4)]
        try:
            wait_until(lambda: _record(flushed_redis, "spend").paused is not None, 60, "the budget did not pause it")
            paused = _record(flushed_redis, "spend")
            assert paused.paused.startswith("budget reached")
            wait_until(lambda: _record(flushed_redis, "spend").budget.reserved_usd == 0, 30, "calls stayed in flight")
            time.sleep(1.0)  # noqa: TID251 - let any straggler show up in the bill
            record = _record(flushed_redis, "spend")
            assert 0 < record.done < count  # it stopped part way, with lines left pending
            billed = _sim_bill(sim_url)
            spent = record.budget.spent_usd
            # Every call reserved its worst case (input estimate, output cap) before it went out, so the bill can
            # pass the budget only by what in-flight calls' input exceeded their estimate: a few per cent at most.
            assert spent == pytest.approx(billed, rel=1e-3, abs=1e-6)
            assert billed <= budget * 1.02, (billed, budget)
            # It stopped when the next call's worst case no longer fitted what was left: close to the limit.
            worst_call = worst_case(PRICE, 2000, max_output).micro_usd / 1e6
            assert billed >= budget - worst_call, (billed, budget, worst_call)
            print(f"\nbudget ${budget}: billed ${billed:.6f} ({billed / budget:.1%}), {record.done} of {count} lines")
            monkeypatch.setenv("REDIS_URL", flushed_redis)
            monkeypatch.setenv("EXTRACT_KEY_PREFIX", KEYS.prefix)
            raised = CliRunner().invoke(producer, ["budget", "spend", "--usd", "1"])
            assert raised.exit_code == 0, raised.output
            assert "resumed spend (it was paused: budget reached" in raised.stderr
            wait_until(lambda: _record(flushed_redis, "spend").done == count, 90, "the batch did not finish")
            record = _record(flushed_redis, "spend")
            assert record.succeeded == count
            assert record.paused is None
        finally:
            for worker in workers:
                stop(worker)
    client = SyncRedis.from_url(flushed_redis)
    client.close()
