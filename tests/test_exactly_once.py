"""Nothing paid twice: cache, coalescing, idempotent submit, retry and cancel (real Redis, simulator, arq worker)."""

from __future__ import annotations

import pytest

from producer.batch.control import cancel, retry_failed
from producer.batch.status import read_status
from schemas.results import ErrorType, Status
from store.cache import CacheStore
from store.feed import FeedStore
from tests.conftest import INVOICE_TEXTS, memory_source
from tests.helpers import results_by_id, sim_get, sim_post, total_usage

DOCS = {f"d{n}": text for n, text in enumerate(INVOICE_TEXTS)}


async def test_duplicate_documents_make_one_call_per_fingerprint(sim, redis, keys, submit_batch, run_worker) -> None:
    """Three copies of each of five documents: five API calls, fifteen results, the copies as cache hits."""
    docs = {f"{cid}-copy{k}": text for cid, text in DOCS.items() for k in range(3)}
    await submit_batch(docs)
    await run_worker(concurrency=16)

    results = await results_by_id(redis, keys, "b1")
    assert set(results) == set(docs)
    assert all(r.status is Status.SUCCEEDED for r in results.values())
    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["total"] == len(DOCS)
    assert sorted(ledger["ok_per_input"].values()) == [1] * len(DOCS)
    hits = [r for r in results.values() if r.cache_hit]
    assert len(hits) == 2 * len(DOCS)
    assert all(r.usage.total_tokens == 0 and r.attempts == 0 for r in hits)
    for cid, text in DOCS.items():  # every copy carries the same answer
        assert len({str(results[f"{cid}-copy{k}"].output) for k in range(3)}) == 1, text
    assert total_usage(list(results.values())).model_dump() == ledger["billed"]


async def test_the_same_batch_submitted_twice_costs_nothing_more(sim, redis, keys, submit_batch, run_worker) -> None:
    await submit_batch(DOCS)
    await run_worker()
    calls = (await sim_get(sim, "/_sim/ledger"))["requests"]["total"]
    await submit_batch(DOCS)  # same batch id, same lines
    await run_worker()
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == calls
    assert await redis.xlen(keys.batch("b1").results) == len(DOCS)
    status = await read_status(redis, keys, "b1")
    assert (status.lines, status.done) == (len(DOCS), len(DOCS))


async def test_a_second_batch_over_the_same_documents_is_all_cache_hits(
    sim, redis, keys, submit_batch, run_worker
) -> None:
    await submit_batch(DOCS, batch_id="first")
    await run_worker()
    calls = (await sim_get(sim, "/_sim/ledger"))["requests"]["total"]
    await submit_batch(DOCS, batch_id="second")
    await run_worker()
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == calls
    first, second = await results_by_id(redis, keys, "first"), await results_by_id(redis, keys, "second")
    assert all(r.cache_hit and r.usage.total_tokens == 0 and r.cost_usd == 0 for r in second.values())
    assert {cid: r.output for cid, r in second.items()} == {cid: r.output for cid, r in first.items()}
    assert (await read_status(redis, keys, "second")).usage.total_tokens == 0


async def test_no_cache_batches_call_again(sim, redis, keys, submit_batch, run_worker) -> None:
    await submit_batch(DOCS, batch_id="first")
    await run_worker()
    await submit_batch(DOCS, batch_id="fresh", use_cache=False)
    await run_worker()
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 2 * len(DOCS)
    assert not any(r.cache_hit for r in (await results_by_id(redis, keys, "fresh")).values())


async def test_a_dead_owners_lease_lapses_and_another_job_takes_over(
    sim, redis, keys, settings, submit_batch, run_worker
) -> None:
    """An identical job's lease left behind by a killed worker delays the line by at most the lease, not forever."""
    spec = await submit_batch({"only": INVOICE_TEXTS[0]})
    from schemas.jobs import Fingerprinter

    lease = CacheStore(redis, keys, settings.openai_base_url or "").lease_key(Fingerprinter(spec)(INVOICE_TEXTS[0]))
    await redis.set(lease, "dead-owner", px=1500)
    await run_worker(admission_max_sleep_s=0.5)
    record = (await results_by_id(redis, keys, "b1"))["only"]
    assert record.status is Status.SUCCEEDED
    assert not record.cache_hit
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 1


async def test_retry_reruns_only_the_failed_lines(sim, redis, keys, submit_batch, run_worker) -> None:
    await sim_post(sim, "/_sim/faults", [{"match": "Initech", "fault": "refusal", "times": 1}])
    await submit_batch(DOCS)
    await run_worker()
    assert (await results_by_id(redis, keys, "b1"))["d2"].error.type is ErrorType.REFUSAL  # type: ignore[union-attr]
    calls = (await sim_get(sim, "/_sim/ledger"))["requests"]["total"]

    assert (await retry_failed(redis, keys, "b1", memory_source(DOCS), window=100)).enqueued == 1
    # already re-enqueued: nothing twice
    assert (await retry_failed(redis, keys, "b1", memory_source(DOCS), window=100)).enqueued == 0
    await run_worker()

    results = await results_by_id(redis, keys, "b1")  # the latest result per line
    assert all(r.status is Status.SUCCEEDED for r in results.values())
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == calls + 1
    status = await read_status(redis, keys, "b1")
    assert (status.done, status.succeeded, status.failed) == (len(DOCS), len(DOCS), 0)


async def test_cancel_ends_waiting_lines_as_cancelled_without_calls(sim, redis, keys, submit_batch, run_worker) -> None:
    await submit_batch(DOCS)
    assert (await cancel(redis, keys, "b1", price=None)).waiting == len(DOCS)
    await run_worker()
    results = await results_by_id(redis, keys, "b1")
    assert {r.status for r in results.values()} == {Status.CANCELLED}
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 0
    status = await read_status(redis, keys, "b1")
    assert (status.done, status.cancelled) == (len(DOCS), len(DOCS))


async def test_a_job_of_a_cancelled_batch_that_starts_anyway_records_cancelled(
    sim, redis, keys, submit_batch, run_worker
) -> None:
    """The flag is what workers check: a job that was already picked up ends cancelled without a call."""
    await submit_batch(DOCS)
    await FeedStore(redis, keys).begin_cancel(keys.batch("b1"), "2026-11-22T00:00:00Z")
    await run_worker()
    assert {r.status for r in (await results_by_id(redis, keys, "b1")).values()} == {Status.CANCELLED}
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 0


@pytest.mark.parametrize("ttl", [0])
async def test_a_zero_ttl_disables_the_cache(ttl, sim, redis, keys, submit_batch, run_worker) -> None:
    docs = {"a": INVOICE_TEXTS[0], "b": INVOICE_TEXTS[0]}
    await submit_batch(docs)
    await run_worker(cache_ttl_s=ttl)
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 2
