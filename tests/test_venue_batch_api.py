"""The Batch API venue end to end: lines of a ``--venue batch-api`` batch go through provider batches of the
simulator (over real HTTP), with a real arq worker and its part keeper, and come back on the same road as a
synchronous answer: validated (repaired when invalid), priced at the batch price from their own usage, one result
line each with its venue and provider batch. Each way a provider batch can let a line down is played: expiry,
500s, lines in neither file, no output file, the enqueued-token limit, cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from producer.cli import main as producer
from store.batches import BatchStore
from store.keys import Keys
from store.provider_batches import ProviderBatchStore
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.helpers import results_by_id, sim_get, sim_post

VENUE = {"batch_poll_s": 1, "batch_part_wait_s": 0.2, "batch_part_lines": 20}


def _cli(args: list[str], sim: Any) -> Any:
    return CliRunner().invoke(producer, args, env={"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": sim.base_url})


async def _acli(args: list[str], sim: Any) -> Any:
    return await asyncio.to_thread(_cli, args, sim)


def _input(tmp_path: Path, count: int, name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    lines = [
        orjson.dumps({"custom_id": f"doc-{n:03d}", "text": INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" Ref {n}."})
        for n in range(count)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


async def _submit(sim: Any, path: Path, batch_id: str, *extra: str) -> None:
    args = ["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", batch_id, "--no-cache"]
    done = await _acli([*args, *extra], sim)
    assert done.exit_code == 0, done.output


async def _drain(run_worker: Any, **overrides: Any) -> None:
    await asyncio.wait_for(run_worker(**{**VENUE, **overrides}), timeout=180)


async def _ledger_venues(sim: Any) -> dict[str, Any]:
    ledger: dict[str, Any] = await sim_get(sim, "/_sim/ledger?venues=1")
    venues: dict[str, Any] = ledger["venues"]
    return venues


async def _until(check: Any, what: str, timeout_s: float = 60) -> None:
    """Poll ``check`` (an async predicate) until it holds."""
    async with asyncio.timeout(timeout_s):
        while not await check():  # noqa: ASYNC110 - polling another process's state, nothing to wait on
            await asyncio.sleep(0.1)


async def test_a_batch_through_the_batch_api_costs_half_and_records_every_line_once(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    path = _input(tmp_path, 45)
    await _submit(sim, path, "ba", "--venue", "batch-api")
    await _submit(sim, path, "sy")  # the same documents, synchronously, for the price
    await _drain(run_worker)
    batch_api, sync = await results_by_id(redis, keys, "ba"), await results_by_id(redis, keys, "sy")
    assert len(batch_api) == len(sync) == 45
    assert all(r.status.value == "succeeded" for r in batch_api.values())
    assert {r.venue for r in batch_api.values()} == {"batch-api"}
    assert all((r.provider_batch_id or "").startswith("batch_") for r in batch_api.values())
    assert {r.venue for r in sync.values()} == {"sync"}
    # Three parts of at most 20 lines; each line's answer the synchronous endpoint's, at half its price.
    parts = await ProviderBatchStore(redis, keys).parts(keys.batch("ba"))
    assert [p.lines for p in parts] == [20, 20, 5]
    assert {p.state for p in parts} == {"done"}
    for cid, result in batch_api.items():
        assert result.output == sync[cid].output
        assert result.usage == sync[cid].usage
        full = sync[cid].cost_usd
        assert full is not None
        assert result.cost_usd == pytest.approx(full / 2, abs=1e-8)  # both rounded to 8 places
    ba, sy = await BatchStore(redis, keys).get("ba"), await BatchStore(redis, keys).get("sy")
    assert ba.cost_usd is not None
    assert sy.cost_usd is not None
    assert ba.cost_usd == pytest.approx(sy.cost_usd / 2, rel=1e-3)
    venues = await _ledger_venues(sim)
    assert venues["batch"]["ok"] == 45  # every line billed once at the provider
    status = await _acli(["status", "ba", "--json"], sim)
    data = orjson.loads(status.stdout)
    assert data["venue"]["venue"] == "batch-api"
    assert [p["status"] for p in data["venue"]["provider_batches"]] == ["completed"] * 3


async def test_expired_failed_and_missing_lines_go_on_and_none_is_paid_twice(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    await sim_post(sim, "/_sim/batches", {"expire_after_lines": 8, "server_error_share": 0.1, "drop_lines": 2})
    path = _input(tmp_path, 30)
    await _submit(sim, path, "rough", "--venue", "batch-api")

    async def calm_down() -> None:  # after the first parts, the provider behaves
        await _until(lambda: ProviderBatchStore(redis, keys).parts(keys.batch("rough")), "a part")
        await asyncio.sleep(3)
        await sim_post(sim, "/_sim/batches", {"expire_after_lines": None, "server_error_share": 0, "drop_lines": 0})

    await asyncio.gather(_drain(run_worker), calm_down())
    results = await results_by_id(redis, keys, "rough")
    assert len(results) == 30
    assert all(r.status.value == "succeeded" for r in results.values()), [
        (r.custom_id, r.error) for r in results.values() if r.error
    ]
    parts = await ProviderBatchStore(redis, keys).parts(keys.batch("rough"))
    assert len(parts) > 2  # the lines the first parts left went into later ones
    assert "expired" in {p.status for p in parts}
    # Every answer the provider billed and returned was kept: the only lines billed twice are those it billed and
    # left out of both files (the simulator's dropped lines), which nobody can recover.
    billed = (await _ledger_venues(sim))["batch"]["ok"]
    assert all(r.venue == "batch-api" for r in results.values())
    assert sum(p.missing for p in parts) > 0
    assert billed == len(results) + sum(p.missing for p in parts)


async def test_an_invalid_answer_in_an_output_file_is_repaired_synchronously(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    await sim_post(sim, "/_sim/batches", {"invalid_answer_share": 0.3})
    await _submit(sim, _input(tmp_path, 20), "fixme", "--venue", "batch-api")
    await _drain(run_worker)
    results = await results_by_id(redis, keys, "fixme")
    assert all(r.status.value == "succeeded" for r in results.values())
    repaired = [r for r in results.values() if r.repairs]
    assert repaired  # some answers came invalid and were repaired by a synchronous call
    assert all(r.venue == "batch-api" and r.provider_batch_id for r in repaired)
    assert all(r.invalid_fields for r in repaired)


async def test_no_output_file_and_the_queue_limit_lose_no_line(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    await sim_post(sim, "/_sim/batches", {"no_output_file": True, "enqueued_token_limit": {"gpt-4o-mini": 6000}})
    await _submit(sim, _input(tmp_path, 40), "tight", "--venue", "batch-api")

    async def recover() -> None:
        async def sent() -> bool:
            return any(p.status for p in await ProviderBatchStore(redis, keys).parts(keys.batch("tight")))

        await _until(sent, "a provider batch")
        await sim_post(sim, "/_sim/batches", {"no_output_file": False})

    await asyncio.gather(_drain(run_worker), recover())
    results = await results_by_id(redis, keys, "tight")
    assert len(results) == 40
    assert all(r.status.value == "succeeded" for r in results.values())
    parts = await ProviderBatchStore(redis, keys).parts(keys.batch("tight"))
    statuses = [p.status for p in parts]
    assert "failed" in statuses  # token_limit_exceeded taught the limit ...
    assert any((p.error or "").startswith("token_limit_exceeded") for p in parts)
    assert all(r.venue == "batch-api" for r in results.values())  # ... and the lines waited, not went sync


async def test_auto_takes_the_batch_api_with_room_and_goes_synchronously_without(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    path = _input(tmp_path, 6)
    await _submit(sim, path, "roomy", "--venue", "auto", "--deadline", "3d")
    await _submit(sim, path, "rushed", "--venue", "auto", "--deadline", "2h")
    refused = await _acli(
        [
            "submit",
            str(path),
            "--schema",
            "invoice",
            "--model",
            "gpt-4o-mini",
            "--venue",
            "batch-api",
            "--deadline",
            "2h",
        ],
        sim,
    )
    assert refused.exit_code == 2
    assert "the Batch API may take its whole 24 h window" in refused.stderr
    await _drain(run_worker)
    assert {r.venue for r in (await results_by_id(redis, keys, "roomy")).values()} == {"batch-api"}
    assert {r.venue for r in (await results_by_id(redis, keys, "rushed")).values()} == {"sync"}


async def test_cancel_keeps_what_the_provider_answered_and_cancels_the_rest(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    await sim_post(sim, "/_sim/batches", {"batch_lines_per_s": 5})
    await _submit(sim, _input(tmp_path, 20), "stop", "--venue", "batch-api")

    async def cancel_midway() -> None:
        store = ProviderBatchStore(redis, keys)

        async def answering() -> bool:
            return any(p.counts.get("completed", 0) >= 3 for p in await store.parts(keys.batch("stop")))

        await _until(answering, "three answers")
        cancelled = await _acli(["cancel", "stop"], sim)
        assert cancelled.exit_code == 0, cancelled.output
        assert "in provider batches" in cancelled.stderr

    await asyncio.gather(_drain(run_worker), cancel_midway())
    results = await results_by_id(redis, keys, "stop")
    assert len(results) == 20
    statuses = [r.status.value for r in results.values()]
    assert "succeeded" in statuses  # answered before the cancel: billed, so kept
    assert "cancelled" in statuses
    billed = (await _ledger_venues(sim))["batch"]["ok"]
    assert billed == statuses.count("succeeded")
    parts = await ProviderBatchStore(redis, keys).parts(keys.batch("stop"))
    assert {p.status for p in parts} <= {"cancelled", "not_sent", "completed"}


async def test_provider_batches_that_keep_failing_validation_send_their_lines_on_synchronously(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    await sim_post(sim, "/_sim/batches", {"fail_validation": "invalid_json_line"})
    await _submit(sim, _input(tmp_path, 8), "refused", "--venue", "batch-api")
    await _drain(run_worker)
    results = await results_by_id(redis, keys, "refused")
    assert len(results) == 8
    assert all(r.status.value == "succeeded" for r in results.values())
    assert {r.venue for r in results.values()} == {"sync"}  # after three provider batches, synchronously
    parts = await ProviderBatchStore(redis, keys).parts(keys.batch("refused"))
    assert [p.status for p in parts] == ["failed"] * 3
    assert all((p.error or "").startswith("invalid_json_line") for p in parts)
    venues = await _ledger_venues(sim)
    assert (venues["batch"]["ok"], venues["sync"]["ok"]) == (0, 8)


async def test_a_budget_is_reserved_at_the_batch_price_as_lines_are_staged(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    budget = 0.0005
    path = _input(tmp_path, 40)
    await _submit(
        sim, path, "thrifty", "--venue", "batch-api", "--max-output-tokens", "200", "--budget-usd", str(budget)
    )
    worker = asyncio.create_task(run_worker(**VENUE, pause_recheck_s=1))
    store = BatchStore(redis, keys)

    async def paused_and_settled() -> bool:
        record = await store.get("thrifty")
        states = await ProviderBatchStore(redis, keys).line_states(keys.batch("thrifty"))
        return record.paused is not None and not states.get("sent") and not states.get("answered")

    try:
        await _until(paused_and_settled, "the batch paused on its budget", timeout_s=120)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    record = await store.get("thrifty")
    assert record.paused is not None
    assert "budget reached" in record.paused
    assert record.budget is not None
    assert record.budget.spent_usd <= budget  # what was staged fit the budget at the batch price, reserved
    results = await results_by_id(redis, keys, "thrifty")
    assert 0 < len(results) < 40  # some lines answered, the rest wait for `producer budget`
    assert all(r.status.value == "succeeded" and r.venue == "batch-api" for r in results.values())
    # The budget counts whole micro-dollars, each call's cost rounded: at most half a micro-dollar apart per line.
    spent = sum(r.cost_usd or 0 for r in results.values())
    assert spent == pytest.approx(record.budget.spent_usd, abs=0.5e-6 * len(results) + 1e-9)


async def test_finished_parts_leave_no_file_unless_kept_and_delete_removes_kept_ones(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    await _submit(sim, _input(tmp_path, 5, "a.jsonl"), "tidy", "--venue", "batch-api")
    await _drain(run_worker)
    assert (await sim_get(sim, "/_sim/files"))["count"] == 0  # input, output (and error) files deleted when done
    await _submit(sim, _input(tmp_path, 5, "b.jsonl"), "kept", "--venue", "batch-api")
    await _drain(run_worker, batch_keep_files=True)
    kept = (await sim_get(sim, "/_sim/files"))["files"]
    assert {f["purpose"] for f in kept} == {"batch", "batch_output"}
    deleted = await _acli(["delete", "kept"], sim)
    assert deleted.exit_code == 0, deleted.output
    assert (await sim_get(sim, "/_sim/files"))["count"] == 0


async def test_the_estimate_prices_the_batch_api_at_half(cli_env: Any, sim: Any, tmp_path: Path) -> None:
    path = _input(tmp_path, 10)
    args = ["estimate", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--json"]
    done = await _acli([*args, "--venue", "auto", "--deadline", "2d"], sim)
    assert done.exit_code == 0, done.output
    estimate = orjson.loads(done.stdout)
    assert estimate["cost_usd"]["batch"] == pytest.approx(estimate["cost_usd"]["default"] / 2)
    assert (estimate["venue"], estimate["venue_now"]) == ("auto", "batch-api")
    table = await _acli([*args[:-1], "--venue", "auto", "--deadline", "3h"], sim)
    flat = " ".join(table.stdout.replace("│", " ").split())  # the table wraps long cells
    assert "would go sync if it started now" in flat
    assert "cost, Batch API (--venue batch-api)" in flat


async def test_a_key_the_provider_refuses_pauses_the_batch_instead_of_retrying_forever(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    await _submit(sim, _input(tmp_path, 4), "badkey", "--venue", "batch-api")
    worker = asyncio.create_task(run_worker(**VENUE, openai_api_key="sk-wrong"))
    store = BatchStore(redis, keys)

    async def paused() -> bool:
        return (await store.get("badkey")).paused is not None

    try:
        await _until(paused, "the batch paused on the refused key")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    record = await store.get("badkey")
    assert record.paused is not None
    assert "HTTP 401" in record.paused
    assert record.done == 0  # nothing recorded: the lines wait for `producer resume`
    parts = await ProviderBatchStore(redis, keys).parts(keys.batch("badkey"))
    assert [p.provider_batch_id for p in parts] == [None]  # no provider batch was made
