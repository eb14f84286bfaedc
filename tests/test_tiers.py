"""Service tiers, reasoning models, provider request ids and the estimate before a run (issue: spend under control)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from producer.cli import main as producer
from schemas.pricing import cost_usd
from schemas.settings import Settings
from simulator import SimulatorConfig
from store.batches import BatchStore
from store.keys import Keys
from tests.conftest import API_KEY, REPO, Submit
from tests.helpers import results_by_id, sim_get
from tests.openapi_spec import validate_component
from tests.processes import invoice_spec
from worker.adapters.chat import ChatAdapter
from worker.adapters.responses import ResponsesAdapter
from worker.prompt import first_request

COMPONENT = {"responses": "CreateResponse", "chat": "CreateChatCompletionRequest"}
TEXTS = {f"inv-{n}": f"INVOICE X-{n}\nFrom: ACME\n{n} x Widget at 2.00\nTotal due {2 * n}.00 USD" for n in range(1, 9)}


# --------------------------------------------------------------------------------------------------------- bodies
@pytest.mark.parametrize("api", ["responses", "chat"])
def test_each_api_gets_its_own_effort_tier_and_max_token_fields(api: str) -> None:
    spec = invoice_spec("x", max_output_tokens=500).model_copy(update={"api": api, "model": "gpt-5-mini"})
    spec = spec.model_copy(update={"params": spec.params.model_copy(update={"reasoning_effort": "minimal"})})
    spec = spec.model_copy(update={"service_tier": "flex"})
    adapter = ResponsesAdapter(None) if api == "responses" else ChatAdapter(None)  # type: ignore[arg-type]
    body = adapter.build_body(first_request(spec, "a document", store=False))
    validate_component(COMPONENT[api], body)
    assert body["service_tier"] == "flex"
    if api == "responses":
        assert body["reasoning"] == {"effort": "minimal"}
        assert body["max_output_tokens"] == 500
        assert "reasoning_effort" not in body
    else:
        assert body["reasoning_effort"] == "minimal"
        assert body["max_completion_tokens"] == 500
        assert "max_tokens" not in body
        assert "reasoning" not in body
    # Nothing is sent that the batch did not ask for: no tier, no effort.
    plain = adapter.build_body(first_request(invoice_spec("y").model_copy(update={"api": api}), "d", store=False))
    assert "service_tier" not in plain
    assert "reasoning" not in plain
    assert "reasoning_effort" not in plain


# ------------------------------------------------------------------------------------------------------- preflight
def _submit(*args: str) -> Any:
    return CliRunner().invoke(
        producer, ["submit", str(REPO / "examples" / "invoices.jsonl"), "--schema", "invoice", *args]
    )


def test_temperature_with_a_reasoning_model_is_refused_at_submit(cli_env: Any) -> None:
    result = _submit("--model", "gpt-5-mini", "--temperature", "0")
    assert result.exit_code == 2
    assert "gpt-5-mini does not accept temperature" in result.stderr
    assert "--reasoning-effort none" in result.stderr  # the way out, on models that have one
    assert not list(cli_env.scan_iter("test:batch:*"))  # nothing written


def test_bad_effort_and_tier_combinations_are_refused_and_good_ones_pass(cli_env: Any) -> None:
    refused = _submit("--model", "gpt-4o", "--reasoning-effort", "low")
    assert refused.exit_code == 2
    assert "gpt-4o is not a reasoning model" in refused.stderr
    refused = _submit("--model", "gpt-4o", "--service-tier", "flex")
    assert refused.exit_code == 2
    assert "flex processing is not offered for gpt-4o" in refused.stderr
    refused = _submit("--model", "gpt-5-mini", "--flex-fallback-after", "30")
    assert refused.exit_code == 2
    assert "--flex-fallback-after is for --service-tier flex" in refused.stderr
    refused = _submit("--model", "my-finetune", "--budget-usd", "5")
    assert refused.exit_code == 2
    assert "--budget-usd needs a price for my-finetune" in refused.stderr
    # gpt-5.1 takes temperature with effort none; this one goes through (to the estimate, which writes nothing).
    ok = CliRunner().invoke(
        producer,
        [
            *("estimate", str(REPO / "examples" / "invoices.jsonl"), "--schema", "invoice", "--model", "gpt-5.1"),
            *("--temperature", "0", "--reasoning-effort", "none", "--json"),
        ],
    )
    assert ok.exit_code == 0, ok.output


# --------------------------------------------------------------------------------------------------- end to end
FLEX_STORM = SimulatorConfig(require_api_key=API_KEY, flex_unavailable_rate=0.5)
FLEX_NEVER = SimulatorConfig(require_api_key=API_KEY, flex_unavailable_rate=1.0)


@pytest.mark.parametrize("sim_config", [FLEX_STORM], indirect=True)
async def test_flex_lines_survive_a_capacity_storm_and_are_priced_at_the_flex_rate(
    redis: Redis, keys: Keys, settings: Settings, submit_batch: Submit, run_worker: Any, sim: Any
) -> None:
    spec = await submit_batch(TEXTS, model="gpt-5-mini", batch_id="flex")
    flexible = spec.model_copy(update={"service_tier": "flex"})
    await redis.hset(keys.batch("flex").record, "spec", flexible.model_dump_json())  # type: ignore[misc]
    await run_worker()
    results = await results_by_id(redis, keys, "flex")
    assert {r.status.value for r in results.values()} == {"succeeded"}
    ledger = await sim_get(sim, "/_sim/ledger?tiers=1")
    assert ledger["tiers"]["resource_unavailable_429"] > 0  # the storm happened, and every line got through
    flex, default = settings.price_for("gpt-5-mini", "flex"), settings.price_for("gpt-5-mini")
    assert flex is not None
    assert default is not None
    assert flex.input == default.input / 2
    for result in results.values():
        assert result.service_tier == "flex"
        assert result.cost_usd == pytest.approx(cost_usd(result.usage, flex), abs=1e-8)
        assert result.usage.reasoning_tokens > 0  # a reasoning model: its reasoning is billed as output
        assert result.request_id is not None
        assert result.request_id.startswith("req_")


@pytest.mark.parametrize("sim_config", [FLEX_NEVER], indirect=True)
async def test_a_flex_line_refused_long_enough_falls_back_to_auto_and_says_so(
    redis: Redis, keys: Keys, settings: Settings, submit_batch: Submit, run_worker: Any, sim: Any
) -> None:
    spec = await submit_batch(dict(list(TEXTS.items())[:3]), model="gpt-5-mini", batch_id="fallback")
    flexible = spec.model_copy(update={"service_tier": "flex", "flex_fallback_after_s": 0.3})
    await redis.hset(keys.batch("fallback").record, "spec", flexible.model_dump_json())  # type: ignore[misc]
    await run_worker(backoff_base_s=0.2, backoff_cap_s=0.2)
    results = await results_by_id(redis, keys, "fallback")
    default = settings.price_for("gpt-5-mini")
    for result in results.values():
        assert result.status.value == "succeeded"
        assert result.service_tier == "default"
        assert result.service_tier_fallback is True
        assert result.cost_usd == pytest.approx(cost_usd(result.usage, default), abs=1e-8)
    sent = [r["body"].get("service_tier") for r in await sim_get(sim, "/_sim/requests") if r["status"] == 200]
    assert set(sent) == {"auto"}


async def test_every_result_line_has_the_providers_request_id(
    redis: Redis, keys: Keys, submit_batch: Submit, run_worker: Any, sim: Any, tmp_path: Path
) -> None:
    await submit_batch(TEXTS, batch_id="ids")
    await run_worker()
    results = await results_by_id(redis, keys, "ids")
    logged = {r["request_id"] for r in await sim_get(sim, "/_sim/requests") if r["status"] == 200}
    assert {r.request_id for r in results.values()} <= logged
    assert all(r.request_id for r in results.values())


# ------------------------------------------------------------------------------------------------------- estimate
async def test_the_estimate_is_within_ten_percent_of_what_the_simulator_bills(
    redis: Redis, keys: Keys, settings: Settings, run_worker: Any, sim: Any, cli_env: Any, monkeypatch: Any
) -> None:
    """A run of the invoice examples is the history; the estimate of a second run is compared with its bill."""
    monkeypatch.setenv("OPENAI_BASE_URL", sim.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    examples = REPO / "examples"
    invoices = str(examples / "invoices.jsonl")
    args = ["--schema", "invoice", "--model", "gpt-4o-mini", "--no-cache"]
    args += ["--instructions-file", str(examples / "instructions" / "invoice.md")]
    first = await asyncio.to_thread(CliRunner().invoke, producer, ["submit", invoices, *args, "--batch-id", "h"])
    assert first.exit_code == 0, first.output
    await run_worker()
    estimated = await asyncio.to_thread(CliRunner().invoke, producer, ["estimate", invoices, *args, "--json"])
    assert estimated.exit_code == 0, estimated.output
    estimate = orjson.loads(estimated.stdout)
    assert estimate["history"]["batches"] == 1
    assert estimate["cached_lines"] == 0
    before = (await sim_get(sim, "/_sim/ledger"))["billed"]
    second = await asyncio.to_thread(CliRunner().invoke, producer, ["submit", invoices, *args, "--batch-id", "e"])
    assert second.exit_code == 0, second.output
    await run_worker()
    after = (await sim_get(sim, "/_sim/ledger"))["billed"]
    price = settings.price_for("gpt-4o-mini")
    assert price is not None
    cached = after["cached_input_tokens"] - before["cached_input_tokens"]
    uncached = after["input_tokens"] - before["input_tokens"] - cached
    output = after["output_tokens"] - before["output_tokens"]
    billed = (uncached * price.input + cached * price.cached_input + output * price.output) / 1e6
    predicted = estimate["cost_usd"]["default"]
    print(f"\nestimate ${predicted:.6f} vs billed ${billed:.6f} ({predicted / billed - 1:+.1%})")
    assert predicted == pytest.approx(billed, rel=0.10)


# ------------------------------------------------------------------------------------------------- exact counting
@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_count_tokens_exact_sizes_each_call_by_the_providers_counter(
    api: str, redis: Redis, keys: Keys, submit_batch: Submit, run_worker: Any, sim: Any
) -> None:
    spec = await submit_batch(dict(list(TEXTS.items())[:4]), api=api, batch_id=f"exact-{api}", use_cache=False)
    exact = spec.model_copy(update={"count_tokens": "exact"})
    await redis.hset(keys.batch(spec.batch_id).record, "spec", exact.model_dump_json())  # type: ignore[misc]
    await run_worker()
    results = await results_by_id(redis, keys, spec.batch_id)
    assert {r.status.value for r in results.values()} == {"succeeded"}
    requests = await sim_get(sim, "/_sim/requests")
    counted = [r for r in requests if r["endpoint"] == "responses.input_tokens"]
    generated = [r for r in requests if r["endpoint"] != "responses.input_tokens" and r["status"] == 200]
    assert len(counted) == len(generated) >= 4  # one count before every call, repairs included
    record = await BatchStore(redis, keys).get(spec.batch_id)
    if api == "responses":  # the counter answers for exactly the body the call sends: reserved = charged
        assert record.calibration_raw_input == record.calibration_input
    else:  # a chat batch is counted as its Responses twin: close, not equal (another message framing)
        assert record.calibration_raw_input == pytest.approx(record.calibration_input, rel=0.1)
