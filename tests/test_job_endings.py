"""Whatever ends a job, its line ends with exactly one result: every path of arq's and of ours.

Real Redis, the simulator over HTTP, a real arq worker in this event loop; faults planted where each path starts.
"""

from __future__ import annotations

import time

import orjson
from arq.constants import abort_jobs_ss, job_key_prefix, retry_key_prefix
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.results import ErrorType, ResultRecord, Status
from store.accounts import Accounts
from store.batches import BatchStore
from store.keys import Keys
from tests.helpers import results_by_id, sim_get
from worker import tasks
from worker.adapters import responses

DOCS = {"a": "Invoice 1 from ACME, total 10 USD.", "b": "Invoice 2 from Globex, total 20 USD."}


async def _one_result_each(redis: Redis, keys: Keys) -> dict[str, ResultRecord]:
    record = await BatchStore(redis, keys).get("b1")
    assert record.complete
    results = await results_by_id(redis, keys, "b1")
    assert sorted(results) == sorted(DOCS)
    assert await redis.xlen(keys.batch("b1").results) == len(DOCS)  # exactly one entry per line
    assert await redis.zcard(keys.queue) == 0
    assert not [key async for key in redis.scan_iter(match="arq:*")]
    return results


async def test_a_parsing_bug_ends_as_internal_error_after_its_budget(
    redis, keys, sim, submit_batch, run_worker, monkeypatch
) -> None:
    real = responses.parse_response

    def planted(response, **kwargs):
        if "Globex" in str(response):
            raise ValueError("planted parsing bug")
        return real(response, **kwargs)

    monkeypatch.setattr(responses, "parse_response", planted)
    await submit_batch(DOCS)
    await run_worker(max_internal_errors=3)
    results = await _one_result_each(redis, keys)
    assert results["a"].status is Status.SUCCEEDED
    failed = results["b"]
    assert failed.status is Status.FAILED
    assert failed.error is not None
    assert failed.error.type is ErrorType.INTERNAL_ERROR
    assert "planted parsing bug" in failed.error.message
    record = await BatchStore(redis, keys).get("b1")
    # Three calls were answered and billed, but no reply was read: they are counted as possibly billed.
    assert record.possibly_billed_calls == 3
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 4


async def test_redis_failing_past_its_retries_is_retried_then_succeeds(
    redis, keys, sim, submit_batch, run_worker, monkeypatch
) -> None:
    real, failures = Accounts.queue_add_call, {"left": 2}

    def flaky(self, *args, **kwargs):
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RedisConnectionError("Redis went away (planted)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Accounts, "queue_add_call", flaky)
    await submit_batch(DOCS)
    await run_worker(max_internal_errors=3)
    results = await _one_result_each(redis, keys)
    assert {r.status for r in results.values()} == {Status.SUCCEEDED}
    assert failures["left"] == 0
    # Two answered calls could not be accounted: made again, and counted as possibly billed, not lost silently.
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 4
    assert (await BatchStore(redis, keys).get("b1")).possibly_billed_calls == 2


async def test_an_exception_escaping_the_job_is_recorded_by_the_boundary(
    redis, keys, submit_batch, run_worker, monkeypatch
) -> None:
    real, calls = tasks._record, {"n": 0}

    async def broken(state, job, *args, **kwargs):
        calls["n"] += 1
        if job.custom_id == "b":
            raise RuntimeError("planted failure while recording")
        return await real(state, job, *args, **kwargs)

    monkeypatch.setattr(tasks, "_record", broken)
    await submit_batch(DOCS)
    await run_worker()
    results = await _one_result_each(redis, keys)
    assert results["a"].status is Status.SUCCEEDED
    assert results["b"].error is not None
    assert results["b"].error.type is ErrorType.INTERNAL_ERROR
    assert "RuntimeError: planted failure while recording" in results["b"].error.message


async def test_arqs_own_endings_are_recorded(redis, keys, submit_batch, run_worker) -> None:
    """'max retries exceeded' for line a, 'job expired' for line b: arq never calls our function for either."""
    await submit_batch(DOCS)
    await redis.set(retry_key_prefix + keys.job_id("b1", 0), tasks.ARQ_MAX_TRIES)
    await redis.delete(job_key_prefix + keys.job_id("b1", 1))
    await run_worker()
    results = await _one_result_each(redis, keys)
    for custom_id, words in (("a", "retries exceeded"), ("b", "job expired")):
        error = results[custom_id].error
        assert error is not None
        assert error.type is ErrorType.INTERNAL_ERROR
        assert words in error.message


async def test_an_unreadable_payload_is_recorded(redis, keys, submit_batch, run_worker) -> None:
    await submit_batch(DOCS)
    bogus: dict[str, object] = {
        "t": None,
        "f": "extract",
        "a": [{"not": "a line"}],
        "k": {},
        "et": int(time.time() * 1000),
    }
    await redis.set(job_key_prefix + keys.job_id("b1", 1), orjson.dumps(bogus))
    await run_worker()
    results = await _one_result_each(redis, keys)
    assert results["a"].status is Status.SUCCEEDED
    assert results["b"].error is not None
    assert "payload is not a line" in results["b"].error.message


async def test_an_abort_request_changes_nothing(redis, keys, submit_batch, run_worker) -> None:
    """Aborting is off: a job someone asked arq to abort still runs and records its line."""
    await submit_batch(DOCS)
    await redis.zadd(abort_jobs_ss, {keys.job_id("b1", 0): int(time.time() * 1000)})
    await run_worker()
    assert {r.status for r in (await _one_result_each(redis, keys)).values()} == {Status.SUCCEEDED}
