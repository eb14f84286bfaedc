"""Keys, caches and code that cannot cross over: prefixes, batch ids, custom ids, providers, schema modules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import pytest

from producer.batch.control import cancel
from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import submit
from schemas.jobs import BatchSpec
from schemas.results import Status
from schemas.settings import Settings
from simulator import SimulatorConfig, running_simulator
from store.accounts import Accounts
from store.batches import BatchStore
from store.keys import Keys
from tests.conftest import API_KEY
from tests.helpers import results_by_id, sim_get, sim_post
from tests.processes import invoice_spec
from worker.app import build_worker

TEXT = "Invoice 42 from Hooli, 3 servers at 1000 USD, total 3000 USD."


def _one(custom_id: str, text: str = TEXT) -> MemorySource:
    return MemorySource((InputLine(1, custom_id, text),))


async def _run(settings: Settings, **overrides) -> None:
    worker = build_worker(Settings(**{**settings.model_dump(), **overrides}), handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()


async def test_two_prefixes_with_the_same_batch_id_are_independent(redis, settings, sim) -> None:
    for prefix in ("team-a:", "team-b:"):
        await submit(redis, Keys(prefix), invoice_spec("cc"), _one("line"), window=10, ttl_s=0)
    for prefix in ("team-a:", "team-b:"):
        await _run(settings, key_prefix=prefix)
    for prefix in ("team-a:", "team-b:"):
        results = await results_by_id(redis, Keys(prefix), "cc")
        assert results["line"].status is Status.SUCCEEDED
        assert (await BatchStore(redis, Keys(prefix)).get("cc")).complete


async def test_ids_that_once_collided_now_name_different_lines(redis, keys, settings, sim) -> None:
    """Batch 'cc' line 'p:q' and batch 'cc.p' line 'q' (':' is not allowed in batch ids any more)."""
    await submit(redis, keys, invoice_spec("cc"), _one("p:q"), window=10, ttl_s=0)
    await submit(redis, keys, invoice_spec("cc.p"), _one("q", TEXT + " Second copy."), window=10, ttl_s=0)
    await submit(redis, keys, invoice_spec("results"), _one("cc", TEXT + " Third."), window=10, ttl_s=0)
    await _run(settings)
    for batch_id, custom_id in (("cc", "p:q"), ("cc.p", "q"), ("results", "cc")):
        results = await results_by_id(redis, keys, batch_id)
        assert list(results) == [custom_id]
        assert results[custom_id].status is Status.SUCCEEDED


async def test_a_custom_id_with_control_characters_never_splits_a_log_line(redis, keys, settings, sim, caplog) -> None:
    await sim_post(sim, "/_sim/faults", [{"match": "Hooli", "fault": "http_500", "times": 1}])
    evil = "evil\nWARNING forged line\r\x1b[31m"
    await submit(redis, keys, invoice_spec("logs"), _one(evil), window=10, ttl_s=0)
    with caplog.at_level(logging.INFO):
        await _run(settings)
    assert (await results_by_id(redis, keys, "logs"))[evil].status is Status.SUCCEEDED
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("worker")]
    assert any("retrying" in message and repr(evil) in message for message in ours)
    assert not any("\n" in message or "\r" in message or "\x1b" in message for message in ours)


async def test_two_providers_never_share_answers(redis, keys, settings) -> None:
    """The same document through two simulators on different ports is paid once on each; then from each cache."""
    async with (
        running_simulator(SimulatorConfig(require_api_key=API_KEY), port=0) as one,
        running_simulator(SimulatorConfig(require_api_key=API_KEY), port=0) as two,
    ):
        for n, sim in enumerate((one, two, one, two)):
            await submit(redis, keys, invoice_spec(f"p{n}"), _one("doc"), window=10, ttl_s=0)
            await _run(settings, openai_base_url=sim.base_url)
        for sim in (one, two):
            assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 1
        hits = [(await results_by_id(redis, keys, f"p{n}"))["doc"].cache_hit for n in range(4)]
        assert hits == [False, False, True, True]


async def test_a_batch_record_naming_a_module_off_the_allowlist_imports_nothing(
    redis, keys, settings, sim, tmp_path: Path, monkeypatch
) -> None:
    planted = tmp_path / "planted_worker_mod.py"
    planted.write_text(
        "import pathlib\n"
        "pathlib.Path(__file__).with_suffix('.ran').touch()\n"
        "from pydantic import BaseModel\n"
        "class Thing(BaseModel):\n"
        "    vendor: str\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    base = invoice_spec("planted")
    spec = BatchSpec.model_validate({**base.model_dump(), "schema_ref": "planted_worker_mod:Thing"})
    await submit(redis, keys, spec, _one("x"), window=10, ttl_s=0)
    await _run(settings)
    assert not (tmp_path / "planted_worker_mod.ran").exists()
    assert "planted_worker_mod" not in sys.modules
    result = (await results_by_id(redis, keys, "planted"))["x"]
    assert result.status is Status.SUCCEEDED  # validated with the recorded JSON Schema


@pytest.mark.parametrize("sim_config", [SimulatorConfig(require_api_key=API_KEY)], indirect=True)
async def test_cancel_keeps_the_usage_earlier_tries_were_billed(redis, keys, settings, sim) -> None:
    """The first answer is billed and fails validation; the repair call gets a 500, so the line waits for its next
    try. Cancelled then, its cancelled line carries the billed usage, as the worker's own record would."""
    await sim_post(
        sim,
        "/_sim/faults",
        [
            {"match": "Hooli", "fault": "invalid_output", "times": 1},
            {"match": "did not validate", "fault": "http_500", "times": 1},
        ],
    )
    spec = invoice_spec("billed")
    await submit(redis, keys, spec, _one("doc"), window=10, ttl_s=0)
    worker = build_worker(
        Settings(**{**settings.model_dump(), "burst": False, "backoff_base_s": 60, "backoff_cap_s": 60}),
        handle_signals=False,
    )
    task = asyncio.create_task(worker.main())
    accounts, batch_keys = Accounts(redis), keys.batch("billed")
    try:
        for _ in range(200):
            account = await accounts.get(batch_keys, 0)
            if account.totals.retries == 1:
                break
            await asyncio.sleep(0.05)
        assert account.totals.retries == 1
        assert account.totals.usage.total_tokens > 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()
    result = await cancel(redis, keys, "billed", price=settings.price_for(spec.model))
    assert result.waiting == 1
    line = (await results_by_id(redis, keys, "billed"))["doc"]
    assert line.status is Status.CANCELLED
    ledger = await sim_get(sim, "/_sim/ledger")
    assert line.usage.model_dump() == ledger["billed"]
    assert line.attempts == 2
    assert line.fingerprint.startswith("sha256:")
    assert line.cost_usd is not None
    assert line.cost_usd > 0
    assert line.error is None
