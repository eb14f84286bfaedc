"""A shadow batch is part of its main batch for ``cancel``, ``budget`` and ``estimate`` (issue 19, item 5).

Before: cancelling the main batch left its shadow running (every shadow line ran afterwards), a cancel during feeding
dropped the shadow without a word, the shadow had no share of the budget, and ``estimate`` left out its cost.
"""

from __future__ import annotations

import asyncio
import os
import sys
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from producer.batch.control import ShadowCancelled, cancel
from producer.cli import main as producer
from producer.input.readers import InputLine, MemorySource
from producer.submit.estimate import Estimate, History, estimate
from producer.submit.shadow import SampledSource, ShadowOutcome, budget_shares, shadow_spec, submit_shadow
from producer.submit.submit import submit
from schemas.settings import ProducerSettings, Settings
from store.batches import BatchNotFoundError, BatchStore
from store.budget import BudgetStore, Lifted, Shares
from store.keys import Keys
from store.queue import batch_job_ids
from tests.conftest import API_KEY, INVOICE_TEXTS, REPO
from tests.helpers import running_worker, until
from tests.processes import invoice_spec

LINES = 60


def _text(n: int) -> str:
    return INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" Ref {n}."


def _lines(count: int = LINES) -> MemorySource:
    return MemorySource(tuple(InputLine(n + 1, f"doc-{n:03d}", _text(n)) for n in range(count)))


def _input(tmp_path: Path, count: int = LINES) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps({"custom_id": f"doc-{n:03d}", "text": _text(n)}) for n in range(count)))
    return path


def _submit_args(path: Path, *extra: str) -> list[str]:
    return ["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "main", *extra]


def _cli(args: list[str], sim: Any) -> Any:
    return CliRunner().invoke(producer, args, env={"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": sim.base_url})


async def _acli(args: list[str], sim: Any) -> Any:
    return await asyncio.to_thread(_cli, args, sim)


async def _jobs_of(redis: Redis, keys: Keys, batch_id: str) -> int:
    return sum([len(ids) async for ids in batch_job_ids(redis, keys, batch_id)])


# ------------------------------------------------------------------------------------------------------- cancel
async def test_cancelling_the_main_batch_cancels_its_shadow_and_says_so(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    """``producer cancel MAIN`` takes the shadow's waiting lines off the queue too: none of them runs afterwards."""
    submitted = await _acli(_submit_args(_input(tmp_path), "--shadow-api", "chat", "--shadow-sample", "0.3"), sim)
    assert submitted.exit_code == 0, submitted.output
    store = BatchStore(redis, keys)
    shadow_lines = (await store.get("main-shadow")).lines
    assert shadow_lines > 0
    cancelled = await _acli(["cancel", "main"], sim)
    assert cancelled.exit_code == 0, cancelled.output
    assert f"cancelled main: {LINES} waiting line(s) and 0 never-enqueued" in cancelled.stderr
    assert f"its shadow batch main-shadow too: {shadow_lines} waiting line(s) and 0 never-enqueued" in cancelled.stderr
    await run_worker()
    main, shadow = await store.get("main"), await store.get("main-shadow")
    assert (main.succeeded, main.cancelled, main.complete) == (0, LINES, True)
    assert (shadow.succeeded, shadow.cancelled, shadow.complete) == (0, shadow_lines, True)
    assert shadow.cancelled_at is not None


async def test_a_cancel_while_the_main_batch_is_fed_means_no_shadow_and_both_commands_say_so(
    redis: Redis, keys: Keys, cli_env: Any, flushed_redis: str, sim: Any, tmp_path: Path
) -> None:
    """The submit is feeding the main batch (its window is full, no worker runs) when ``cancel`` comes: the shadow
    is never made, and the cancel, the submit and a rerun of the submit each say so."""
    path = _input(tmp_path)
    args = _submit_args(path, "--shadow-api", "chat", "--shadow-sample", "0.3", "--window", "5")
    env = {**os.environ, "REDIS_URL": flushed_redis, "EXTRACT_KEY_PREFIX": "test:", "OPENAI_API_KEY": API_KEY}
    env["OPENAI_BASE_URL"] = sim.base_url
    feeding = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "producer.cli", *args, env=env, cwd=REPO, stdout=PIPE, stderr=PIPE
    )
    try:
        store = BatchStore(redis, keys)

        async def window_full() -> bool:
            try:
                return (await store.get("main")).fed == 5
            except BatchNotFoundError:
                return False

        await until(window_full, 30, "the submit did not fill the window")
        cancelled = await _acli(["cancel", "main"], sim)
        assert cancelled.exit_code == 0, cancelled.output
        assert "its shadow batch main-shadow was not recorded yet: it will not be made" in cancelled.stderr
        async with asyncio.timeout(60):
            _out, err = await feeding.communicate()
    finally:
        if feeding.returncode is None:
            feeding.kill()
            await feeding.wait()
    stderr = err.decode()
    assert feeding.returncode == 0, stderr
    assert f"batch main was cancelled: {LINES - 5} line(s) were never enqueued" in stderr
    assert "shadow batch main-shadow was not made: batch main was cancelled" in stderr
    with pytest.raises(BatchNotFoundError):
        await store.get("main-shadow")
    assert await _jobs_of(redis, keys, "main-shadow") == 0
    again = await _acli(args, sim)
    assert again.exit_code == 0, again.output
    assert "shadow batch main-shadow was not made: batch main was cancelled" in again.stderr
    with pytest.raises(BatchNotFoundError):
        await store.get("main-shadow")


async def test_a_cancel_between_the_main_feed_and_the_shadow_record_keeps_the_shadow_from_being_made(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    """The one moment ``cancel`` cannot see a shadow (every main line enqueued, the shadow not recorded yet): the
    shadow's creation checks its main batch in the same step, so it is refused rather than run uncancelled."""
    spec = invoice_spec("main").model_copy(update={"shadow": "main-shadow"})
    await submit(redis, keys, spec, _lines(), window=LINES, ttl_s=0)
    result = await cancel(redis, keys, "main", price=None)
    assert result.waiting == LINES
    assert result.shadow == ShadowCancelled("main-shadow", None)
    outcome = await submit_shadow(
        redis, keys, spec, _lines(), api="chat", model=None, sample=0.3, window=LINES, ttl_s=0
    )
    assert outcome == ShadowOutcome("main-shadow", lines=outcome.lines, made=False, main_cancelled=True)
    assert outcome.lines > 0
    with pytest.raises(BatchNotFoundError):
        await BatchStore(redis, keys).get("main-shadow")
    assert await _jobs_of(redis, keys, "main-shadow") == 0


# ------------------------------------------------------------------------------------------------------- budget
async def test_a_submit_budget_is_split_between_the_batch_and_its_shadow_by_their_estimates(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, tmp_path: Path
) -> None:
    """``--budget-usd``/``--budget-tokens`` cover both: each batch holds its part, in proportion to its estimate
    (dollars by estimated cost, tokens by estimated tokens), and ``status`` shows both parts."""
    path = _input(tmp_path)
    extra = ("--shadow-model", "gpt-4o", "--shadow-sample", "0.3", "--budget-usd", "1", "--budget-tokens", "100000")
    submitted = await _acli(_submit_args(path, *extra), sim)
    assert submitted.exit_code == 0, submitted.output
    store = BatchStore(redis, keys)
    main, shadow = await store.get("main"), await store.get("main-shadow")
    assert main.budget is not None
    assert shadow.budget is not None
    assert main.budget.budget_tokens is not None
    assert shadow.budget.budget_tokens is not None
    assert main.budget.budget_usd is not None
    assert shadow.budget.budget_usd is not None
    assert main.budget.budget_tokens + shadow.budget.budget_tokens == 100_000
    assert main.budget.budget_usd + shadow.budget.budget_usd == pytest.approx(1.0)
    # In proportion to the two estimates (nothing has run, so they are what the submit saw).
    settings = ProducerSettings.from_flags()
    mine = await estimate(redis, keys, main.spec, _lines(), settings)
    theirs = await estimate(redis, keys, shadow.spec, SampledSource(_lines(), main.spec, 0.3), settings)
    assert theirs.lines == shadow.lines
    tokens = (theirs.input_tokens + theirs.output_tokens) / (
        mine.input_tokens + mine.output_tokens + theirs.input_tokens + theirs.output_tokens
    )
    cost_m, cost_s = mine.cost_usd["default"], theirs.cost_usd["default"]
    assert cost_m is not None
    assert cost_s is not None
    assert shadow.budget.budget_tokens == pytest.approx(100_000 * tokens, abs=1)
    assert shadow.budget.budget_usd == pytest.approx(cost_s / (cost_m + cost_s), abs=1e-6)
    assert shadow.budget.budget_usd > main.budget.budget_usd  # gpt-4o costs far more a line than gpt-4o-mini
    assert shadow.budget.budget_tokens < main.budget.budget_tokens  # but it runs fewer lines
    # ``status`` of the main batch shows the whole and both parts.
    status = await _acli(["status", "main", "--json"], sim)
    assert status.exit_code == 0, status.output
    shown = orjson.loads(status.stdout)
    assert shown["budget_split"]["group_usd"] == pytest.approx(1.0)
    assert shown["budget_split"]["group_tokens"] == 100_000
    assert shown["shadow_budget"]["budget_tokens"] == shadow.budget.budget_tokens
    table = await _acli(["status", "main"], sim)
    assert "main-shadow" in table.stdout
    # A rerun of the same submit changes nothing.
    again = await _acli(_submit_args(path, *extra), sim)
    assert again.exit_code == 0, again.output
    assert (await store.get("main-shadow")).budget == shadow.budget


async def test_producer_budget_resplits_and_resumes_both_batches_paused_by_their_budget(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, settings: Settings, tmp_path: Path
) -> None:
    """A token budget too small for one call pauses both batches; ``producer budget MAIN`` gives both their part of
    the new one and resumes both, and every line of both then succeeds."""
    extra = ("--shadow-api", "chat", "--shadow-sample", "0.3", "--budget-tokens", "20")
    submitted = await _acli(_submit_args(_input(tmp_path), *extra), sim)
    assert submitted.exit_code == 0, submitted.output
    store = BatchStore(redis, keys)

    async def both(check: Any) -> bool:
        return all([check(await store.get(b)) for b in ("main", "main-shadow")])

    # A line handing itself back (paused) while ``resume`` wakes the waiting ones can miss the wake-up and wait for
    # its next recheck (a race in ``resume`` itself, not in the split): rechecks come often here.
    async with running_worker(settings, pause_recheck_s=1):
        await until(lambda: both(lambda r: (r.paused or "").startswith("token budget reached")), 60, "no pause")
        refused = await _acli(["budget", "main-shadow", "--tokens", "5000000"], sim)
        assert refused.exit_code == 2
        assert "main-shadow is the shadow of main: its budget is a part of main's" in refused.stderr
        raised = await _acli(["budget", "main", "--tokens", "5000000"], sim)
        assert raised.exit_code == 0, raised.output
        main, shadow = await store.get("main"), await store.get("main-shadow")
        assert main.budget is not None
        assert shadow.budget is not None
        assert main.budget.budget_tokens is not None
        assert shadow.budget.budget_tokens is not None
        assert main.budget.budget_tokens + shadow.budget.budget_tokens == 5_000_000
        assert 0 < shadow.budget.budget_tokens < main.budget.budget_tokens
        assert f"main {main.budget.budget_tokens:,} tokens" in raised.stderr
        assert f"main-shadow {shadow.budget.budget_tokens:,} tokens" in raised.stderr
        assert "resumed main (it was paused: token budget reached" in raised.stderr
        assert "resumed main-shadow (it was paused: token budget reached" in raised.stderr
        await until(lambda: both(lambda r: r.complete), 60, "the batches did not complete")
    main, shadow = await store.get("main"), await store.get("main-shadow")
    assert (main.succeeded, shadow.succeeded) == (main.lines, shadow.lines)


async def test_a_split_never_leaves_a_part_at_zero_and_a_shadow_recorded_later_takes_its_part(
    redis: Redis, keys: Keys, settings: Settings
) -> None:
    """A part of 0 would mean "no budget": the shadow's is at least 1 and the main's the rest (both 1 of a whole of
    1); 0 removes both; the shares are recorded once; a shadow recorded after the split takes its part then."""
    spec = invoice_spec("m").model_copy(update={"shadow": "m-shadow"})
    await submit(redis, keys, spec, _lines(10), window=10, ttl_s=0)
    await submit(redis, keys, shadow_spec(spec, api="chat", model=None), _lines(3), window=10, ttl_s=0)
    store, budgets = BatchStore(redis, keys), BudgetStore(redis)
    main_keys, shadow_keys = keys.batch("m"), keys.batch("m-shadow")

    async def parts() -> list[tuple[float | None, int | None] | None]:
        records = [await store.get("m"), await store.get("m-shadow")]
        return [(r.budget.budget_usd, r.budget.budget_tokens) if r.budget else None for r in records]

    done = await budgets.split(main_keys, shadow_keys, usd=1.0, tokens=1000, shares=Shares(0.0, 1.0))
    assert done == Lifted(split=True, main=None, shadow=None)
    assert await parts() == [(0.999999, 1), (0.000001, 999)]
    await budgets.split(main_keys, shadow_keys, usd=None, tokens=1, shares=Shares(0.5, 0.5))  # recorded: kept
    assert await parts() == [(0.999999, 1), (0.000001, 1)]
    await budgets.split(main_keys, shadow_keys, usd=0, tokens=0, shares=Shares(0.5, 0.5))
    assert await parts() == [None, None]
    again = await budgets.split(main_keys, shadow_keys, usd=5.0, tokens=5, shares=Shares(0.5, 0.5), only_if_new=True)
    assert again == Lifted(split=False, main=None, shadow=None)
    assert await parts() == [None, None]
    # Split before the shadow is recorded: it takes its part as it is created.
    later = invoice_spec("n").model_copy(update={"shadow": "n-shadow", "budget_usd": 0.5, "budget_tokens": 800})
    await submit(redis, keys, later, _lines(10), window=10, ttl_s=0)
    await budgets.split(keys.batch("n"), keys.batch("n-shadow"), usd=0.5, tokens=800, shares=Shares(0.25, 0.5))
    await submit(redis, keys, shadow_spec(later, api="chat", model=None), _lines(3), window=10, ttl_s=0)
    n, n_shadow = await store.get("n"), await store.get("n-shadow")
    assert n.budget is not None
    assert n_shadow.budget is not None
    assert (n.budget.budget_usd, n.budget.budget_tokens) == (0.375, 400)
    assert (n_shadow.budget.budget_usd, n_shadow.budget.budget_tokens) == (0.125, 400)


def _estimate(lines: int, tokens: int, usd: float | None, cached: int = 0) -> Estimate:
    return Estimate(
        lines=lines,
        cached_lines=cached,
        raw_input_tokens=tokens,
        input_tokens=tokens,
        cached_input_tokens=0,
        output_tokens=0,
        output_basis="",
        history=History(),
        cost_usd={"default": usd},
    )


def test_shares_weigh_dollars_by_cost_and_tokens_by_tokens_with_fallbacks() -> None:
    assert budget_shares(_estimate(90, 900, 0.9), _estimate(10, 100, 0.9), tier="default") == Shares(0.5, 0.1)
    # No price: dollars by tokens. Nothing to call (all cached): by the lines.
    assert budget_shares(_estimate(90, 900, None), _estimate(10, 100, 1.0), tier="default") == Shares(0.1, 0.1)
    assert budget_shares(_estimate(8, 0, 0.0, cached=8), _estimate(2, 0, 0.0, cached=2), tier="default") == Shares(
        0.2, 0.2
    )


# ----------------------------------------------------------------------------------------------------- estimate
async def test_the_estimate_of_a_shadowed_submit_has_the_shadow_as_its_own_row_and_in_the_total(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, tmp_path: Path
) -> None:
    path = _input(tmp_path)
    args = ["--schema", "invoice", "--model", "gpt-4o-mini", "--shadow-model", "gpt-4o", "--shadow-sample", "0.3"]
    estimated = await _acli(["estimate", str(path), *args, "--json"], sim)
    assert estimated.exit_code == 0, estimated.output
    data = orjson.loads(estimated.stdout)
    main_spec = invoice_spec("x")
    sampled = SampledSource(_lines(), main_spec, 0.3).count
    assert data["lines"] == LINES
    assert data["shadow"]["lines"] == sampled
    assert data["shadow"]["model"] == "gpt-4o"
    assert data["total"]["lines"] == LINES + sampled
    for name in ("input_tokens", "output_tokens"):
        assert data["total"][name] == data[name] + data["shadow"][name]
    assert data["total"]["cost_usd"]["default"] == pytest.approx(
        data["cost_usd"]["default"] + data["shadow"]["cost_usd"]["default"]
    )
    table = await _acli(["estimate", str(path), *args], sim)
    assert table.exit_code == 0, table.output
    dry = await _acli(["submit", str(path), *args, "--dry-run"], sim)
    assert dry.exit_code == 0, dry.output
    for shown in (table.stdout, dry.stdout):
        assert "shadow batch" in shown
        assert "total cost, default tier" in shown
