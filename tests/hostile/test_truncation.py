"""A cut-off answer: retried when it stopped well below the cap in force, failed at once when it reached the cap.

Issue 19, item 9. The simulator's ``truncation`` fault cuts the answer mid-JSON and bills only what it wrote (about
half the answer: tens of tokens, far below any cap), with ``status: incomplete`` / ``finish_reason: length`` like a
cap hit; a cap hit is the simulator's own doing when the answer (reasoning included) is longer than the request's
``max_output_tokens``. Neither is written by the worker.
"""

from __future__ import annotations

import pytest

from schemas.models import FAMILIES, max_output_tokens
from schemas.results import ErrorType, Status, Usage
from simulator import FaultKind, SimulatorConfig
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.helpers import results_by_id, sim_get, sim_post, total_usage
from worker.extraction import CUT_OFF_SHARE, OutputCap, cap_in_force, output_written, well_below_cap

INVOICES = {f"inv-{n}": text for n, text in enumerate(INVOICE_TEXTS, start=1)}
"""inv-3 is the Initech one."""


def _docs(count: int) -> dict[str, str]:
    return {f"doc-{n:03d}": INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" Reference R-{n}." for n in range(count)}


@pytest.mark.parametrize(
    "sim_config",
    [
        SimulatorConfig(
            require_api_key=API_KEY,
            fault_rates={FaultKind.TRUNCATION: 0.05},
            fault_seed=19,
            max_faults_per_input=1,
        )
    ],
    indirect=True,
)
async def test_transient_truncations_with_no_max_output_tokens_end_with_every_line_valid(
    sim, redis, keys, submit_batch, run_worker
) -> None:
    """300 lines, 5 % of first calls cut off mid-answer, no --max-output-tokens: every line ends valid, each cut-off
    line after one retry that its result line counts, and the usage covers the cut-off calls too."""
    docs = _docs(300)
    await submit_batch(docs)
    await run_worker(concurrency=32)

    results = await results_by_id(redis, keys, "b1")
    fired = (await sim_get(sim, "/_sim/faults?full=1"))["rate_fired"].get("truncation", 0)
    assert fired > 0
    failed = {cid: r.error.type for cid, r in results.items() if r.error is not None}
    assert failed == {}
    assert len(results) == len(docs)
    assert all(r.status is Status.SUCCEEDED for r in results.values())
    retried = [r for r in results.values() if r.retries]
    assert len(retried) == fired
    assert all((r.attempts, r.retries) == (2, 1) for r in retried)
    ledger = await sim_get(sim, "/_sim/ledger")
    assert total_usage(list(results.values())).model_dump() == ledger["billed"]


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_a_cut_off_below_the_cap_we_sent_is_retried(api, sim, redis, keys, submit_batch, run_worker) -> None:
    """With --max-output-tokens 2000 sent, an answer cut off at tens of tokens is retried and succeeds."""
    await sim_post(sim, "/_sim/faults", [{"match": "Initech", "fault": "truncation", "times": 1}])
    await submit_batch(INVOICES, api=api, max_output_tokens=2000)
    await run_worker()

    record = (await results_by_id(redis, keys, "b1"))["inv-3"]
    assert record.status is Status.SUCCEEDED
    assert (record.attempts, record.retries) == (2, 1)


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_a_cut_off_that_keeps_coming_back_fails_as_truncated_after_bounded_retries(
    api, sim, redis, keys, submit_batch, run_worker
) -> None:
    """Cut off below the cap on every call: three billed tries, then ``truncated`` (not ``retries_exhausted``), with
    a message saying how often and where it stopped; the other lines are untouched."""
    await sim_post(sim, "/_sim/faults", [{"match": "Initech", "fault": "truncation", "times": None}])
    await submit_batch(INVOICES, api=api)
    await run_worker()

    results = await results_by_id(redis, keys, "b1")
    record = results["inv-3"]
    assert record.status is Status.FAILED
    assert record.error is not None
    assert record.error.type is ErrorType.TRUNCATED
    assert "cut off 3 times" in record.error.message
    assert "16384" in record.error.message  # gpt-4o-mini's own output limit: none was sent
    assert record.attempts == 3
    assert record.retries == 3
    assert record.usage.output_tokens > 0
    assert sum(r.status is Status.SUCCEEDED for r in results.values()) == len(INVOICES) - 1
    ledger = await sim_get(sim, "/_sim/ledger")
    assert total_usage(list(results.values())).model_dump() == ledger["billed"]


async def test_the_retry_budget_bounds_cut_offs_too(sim, redis, keys, submit_batch, run_worker) -> None:
    """max_tries below the cut-off budget wins: two tries, then ``truncated``."""
    await sim_post(sim, "/_sim/faults", [{"match": "Initech", "fault": "truncation", "times": None}])
    await submit_batch(INVOICES)
    await run_worker(max_tries=2)

    record = (await results_by_id(redis, keys, "b1"))["inv-3"]
    assert record.error is not None
    assert record.error.type is ErrorType.TRUNCATED
    assert record.attempts == 2


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_an_answer_that_reaches_the_cap_we_sent_fails_at_once(
    api, sim, redis, keys, submit_batch, run_worker
) -> None:
    """--max-output-tokens 12: the simulator stops every answer there. One call each, ``truncated``, raise it."""
    await submit_batch(INVOICES, api=api, max_output_tokens=12)
    await run_worker()

    results = await results_by_id(redis, keys, "b1")
    assert len(results) == len(INVOICES)
    for record in results.values():
        assert record.error is not None
        assert record.error.type is ErrorType.TRUNCATED
        assert record.attempts == 1
        assert record.retries == 0
        assert "(12)" in record.error.message
        assert "raise --max-output-tokens" in record.error.message
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == len(INVOICES)


async def test_reasoning_that_uses_up_the_cap_fails_at_once(sim, redis, keys, submit_batch, run_worker) -> None:
    """gpt-5-mini at its default effort, --max-output-tokens 50: the reasoning alone reaches the cap (reasoning tokens
    count toward it), nothing visible comes back, and the line fails at once saying so."""
    await submit_batch({"only": INVOICE_TEXTS[0]}, model="gpt-5-mini", max_output_tokens=50)
    await run_worker()

    record = (await results_by_id(redis, keys, "b1"))["only"]
    assert record.error is not None
    assert record.error.type is ErrorType.TRUNCATED
    assert record.attempts == 1
    assert record.usage.reasoning_tokens == 50
    assert "reasoning" in record.error.message


async def test_a_reasoning_model_cut_off_below_its_own_cap_is_retried(
    sim, redis, keys, submit_batch, run_worker
) -> None:
    """gpt-5-mini with no max: cut off after its reasoning and part of the answer (a few hundred tokens of its
    128,000): retried, and the usage counts both calls, reasoning included (it matches the provider's bill)."""
    await sim_post(sim, "/_sim/faults", [{"match": "Initech", "fault": "truncation", "times": 1}])
    await submit_batch(INVOICES, model="gpt-5-mini")
    await run_worker()

    results = await results_by_id(redis, keys, "b1")
    record = results["inv-3"]
    assert record.status is Status.SUCCEEDED
    assert (record.attempts, record.retries) == (2, 1)
    assert record.usage.reasoning_tokens > 0
    ledger = await sim_get(sim, "/_sim/ledger")
    assert total_usage(list(results.values())).model_dump() == ledger["billed"]


def test_the_cap_in_force_is_the_smallest_known_one() -> None:
    """What we sent, the model's own limit, or the room the input left in the context window: the smallest."""
    assert cap_in_force("gpt-4o-mini", 2000, input_tokens=300, context_window=128_000) == OutputCap(2000, "sent")
    assert cap_in_force("gpt-4o-mini", None, input_tokens=300, context_window=128_000) == OutputCap(16_384, "model")
    assert cap_in_force("gpt-4o-mini", 50_000, input_tokens=300, context_window=None) == OutputCap(16_384, "model")
    assert cap_in_force("gpt-4o", None, input_tokens=120_000, context_window=128_000) == OutputCap(8_000, "context")
    assert cap_in_force("my-finetune", None, input_tokens=300, context_window=None) is None
    assert cap_in_force("my-finetune", None, input_tokens=300, context_window=0) is None  # 0: the check is off


def test_well_below_means_under_eight_tenths_of_the_cap_reasoning_included() -> None:
    cap = OutputCap(1000, "sent")
    assert CUT_OFF_SHARE == 0.8
    assert well_below_cap(Usage(output_tokens=799), cap)
    assert not well_below_cap(Usage(output_tokens=800), cap)
    assert not well_below_cap(Usage(output_tokens=1000, reasoning_tokens=1000), cap)  # reasoning used it all
    assert well_below_cap(Usage(output_tokens=700, reasoning_tokens=600), cap)  # OpenAI: reasoning inside output
    # a server that reports reasoning apart (fewer output than reasoning tokens): the two are added
    assert output_written(Usage(output_tokens=300, reasoning_tokens=600)) == 900
    assert not well_below_cap(Usage(output_tokens=300, reasoning_tokens=600), cap)
    assert not well_below_cap(Usage(), cap)  # no usage reported: cannot be placed, not retried
    assert not well_below_cap(Usage(output_tokens=10), None)  # no cap known: not retried


def test_every_family_but_one_has_its_own_output_cap() -> None:
    assert max_output_tokens("gpt-4o-mini") == 16_384
    assert max_output_tokens("GPT-4o-2024-05-13") == 4_096  # the first snapshot wrote less
    assert max_output_tokens("gpt-4o-2024-08-06") == 16_384
    assert max_output_tokens("gpt-5-mini-2025-08-07") == 128_000
    assert max_output_tokens("gpt-5-pro") == 272_000
    assert max_output_tokens("o1-mini") == 65_536
    assert max_output_tokens("my-finetune") is None
    assert [name for name in FAMILIES if max_output_tokens(name) is None] == ["gpt-5-search-api"]
