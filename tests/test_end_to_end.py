"""The whole path through a real arq worker, a real Redis and the simulator over HTTP."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from producer.batch.collect import collect
from schemas.registry import resolve_schema, validator_for
from schemas.results import ErrorType, ResultRecord, Status
from tests.conftest import API_KEY
from tests.helpers import redis_contents, results_by_id, sim_get, sim_post, total_usage
from tests.openapi_spec import validate_component

INVOICES = {
    "inv-1": "Invoice INV-001 from ACME Corp, dated 2026-03-01. 3 x Widget at 10.00 = 30.00. Total due 30.00 USD.",
    "inv-2": "Invoice 7781 by Globex. Consulting, 2 hours at 150 EUR. Subtotal 300, VAT 57, total 357 EUR.",
    "inv-3": "Rechnung 2026-17 von Initech GmbH: 1 Lizenz 499,00 EUR. Gesamtbetrag 499,00 EUR.",
    "inv-4": "Bill from Umbrella Ltd, no. U-55, 10 boxes of gloves, 4.50 each, total 45.00 GBP, due 2026-04-30.",
    "inv-5": "Stark Industries invoice SI-9 for one arc reactor service visit, 1200 USD, payable in 30 days.",
}

REQUEST_COMPONENT = {"responses": "CreateResponse", "chat": "CreateChatCompletionRequest"}


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_both_apis_end_to_end(api, sim, redis, keys, submit_batch, run_worker, tmp_path: Path) -> None:
    """Every line ends succeeded with schema-valid output, and the file's usage equals what the provider billed."""
    await submit_batch(INVOICES, api=api)
    await run_worker()

    out = tmp_path / "results.jsonl"
    written, missing = await collect(redis, keys, "b1", out)
    assert (written, missing) == (len(INVOICES), 0)

    validator = validator_for(resolve_schema("invoice"))
    records = [ResultRecord.model_validate(orjson.loads(line)) for line in out.read_bytes().splitlines()]
    assert [r.custom_id for r in records] == list(INVOICES)  # input order
    for record in records:
        assert record.status is Status.SUCCEEDED, record.error
        assert record.output is not None
        validator.validate(record.output)
        assert record.api == api
        assert record.fingerprint.startswith("sha256:")
        assert record.attempts == 1
        assert record.repairs == 0
        assert record.cache_hit is False
        assert record.usage.total_tokens == record.usage.input_tokens + record.usage.output_tokens > 0
        assert record.cost_usd is not None
        assert record.cost_usd > 0
        assert record.response_id

    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["total"] == len(INVOICES)
    assert total_usage(records).model_dump() == ledger["billed"]

    for entry in await sim_get(sim, "/_sim/requests"):
        validate_component(REQUEST_COMPONENT[api], entry["body"])
        body = entry["body"]
        assert body["prompt_cache_key"].startswith("extract-")
        if api == "responses":
            assert body["store"] is False
            # The stable part first, the document last: the prompt-cache-friendly order.
            assert [m["role"] for m in body["input"]] == ["developer", "user"]
        else:
            assert [m["role"] for m in body["messages"]] == ["developer", "user"]


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_repair_turns_an_invalid_output_into_success(api, sim, redis, keys, submit_batch, run_worker) -> None:
    """One schema-violating answer is repaired by re-asking; both calls are billed and counted."""
    await sim_post(sim, "/_sim/faults", [{"match": "Globex", "fault": "invalid_output", "times": 1}])
    await submit_batch(INVOICES, api=api)
    await run_worker()

    results = await results_by_id(redis, keys, "b1")
    repaired = results["inv-2"]
    assert repaired.status is Status.SUCCEEDED
    assert repaired.repairs == 1
    assert repaired.attempts == 2
    validator_for(resolve_schema("invoice")).validate(repaired.output)

    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["total"] == len(INVOICES) + 1
    assert total_usage(list(results.values())).model_dump() == ledger["billed"]
    repair_call = [e for e in await sim_get(sim, "/_sim/requests") if "Globex" in orjson.dumps(e["body"]).decode()][-1]
    messages = repair_call["body"]["input" if api == "responses" else "messages"]
    assert [m["role"] for m in messages] == ["developer", "user", "assistant", "user"]
    assert "did not validate" in messages[-1]["content"]


async def test_repair_budget_exhausted_is_a_schema_validation_failure(sim, redis, keys, submit_batch, run_worker):
    await sim_post(sim, "/_sim/faults", [{"match": "Globex", "fault": "invalid_output", "times": 5}])
    await submit_batch(INVOICES)
    await run_worker()
    failed = (await results_by_id(redis, keys, "b1"))["inv-2"]
    assert failed.status is Status.FAILED
    assert failed.output is None
    assert failed.error is not None
    assert failed.error.type is ErrorType.SCHEMA_VALIDATION
    assert failed.repairs == 1
    assert failed.attempts == 2
    assert failed.usage.total_tokens > 0


@pytest.mark.parametrize("api", ["responses", "chat"])
@pytest.mark.parametrize(("fault", "error_type"), [("refusal", ErrorType.REFUSAL), ("truncation", ErrorType.TRUNCATED)])
async def test_refusal_and_truncation_are_typed_failures(
    api, fault, error_type, sim, redis, keys, submit_batch, run_worker
) -> None:
    times = None if fault == "truncation" else 1  # a cut-off below the cap is retried: it must keep coming back
    await sim_post(sim, "/_sim/faults", [{"match": "Initech", "fault": fault, "times": times}])
    await submit_batch(INVOICES, api=api)
    await run_worker()

    results = await results_by_id(redis, keys, "b1")
    failed = results["inv-3"]
    assert failed.status is Status.FAILED
    assert failed.output is None
    assert failed.error is not None
    assert failed.error.type is error_type
    assert failed.attempts == (3 if fault == "truncation" else 1)  # worker.policy.Limits.max_cut_offs
    assert failed.usage.total_tokens > 0
    assert sum(r.status is Status.SUCCEEDED for r in results.values()) == len(INVOICES) - 1
    ledger = await sim_get(sim, "/_sim/ledger")
    assert total_usage(list(results.values())).model_dump() == ledger["billed"]


async def test_transient_server_error_is_retried(sim, redis, keys, submit_batch, run_worker) -> None:
    await sim_post(sim, "/_sim/faults", [{"match": "Umbrella", "fault": "http_500", "times": 2}])
    await submit_batch(INVOICES)
    await run_worker()
    record = (await results_by_id(redis, keys, "b1"))["inv-4"]
    assert record.status is Status.SUCCEEDED
    assert record.attempts == 3


async def test_transient_errors_past_max_tries_end_as_retries_exhausted(
    sim, redis, keys, submit_batch, run_worker
) -> None:
    await sim_post(sim, "/_sim/faults", [{"match": "Umbrella", "fault": "http_503", "times": 10}])
    await submit_batch(INVOICES)
    await run_worker(max_tries=2)
    record = (await results_by_id(redis, keys, "b1"))["inv-4"]
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type is ErrorType.RETRIES_EXHAUSTED
    assert record.error.status_code == 503
    assert record.attempts == 2


async def test_wrong_api_key_is_a_typed_failure_without_retry(sim, redis, keys, submit_batch, run_worker) -> None:
    """With pausing off; with it on (the default) the batch pauses instead: tests/test_pause.py."""
    await submit_batch({"only": INVOICES["inv-1"]})
    await run_worker(openai_api_key="sk-wrong-key-123456", pause_after_failures=0)
    record = (await results_by_id(redis, keys, "b1"))["only"]
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type is ErrorType.AUTHENTICATION
    assert record.error.status_code == 401
    assert record.attempts == 1
    assert "sk-wrong-key-123456" not in record.model_dump_json()


async def test_api_key_never_appears_in_logs_results_or_redis(
    sim, redis, keys, submit_batch, run_worker, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    await sim_post(
        sim,
        "/_sim/faults",
        [
            {"match": "Globex", "fault": "http_500", "times": 1},
            {"match": "ACME", "fault": "invalid_output", "times": 1},
        ],
    )
    await submit_batch(INVOICES)
    await run_worker()
    out = tmp_path / "r.jsonl"
    await collect(redis, keys, "b1", out)

    assert caplog.records, "expected the worker to log"
    assert API_KEY not in caplog.text
    assert API_KEY not in out.read_text()
    assert API_KEY.encode() not in await redis_contents(redis)
    assert API_KEY not in orjson.dumps(await sim_get(sim, "/_sim/requests")).decode()
