"""A batch pauses on an error every line would meet, waits, and resumes: a bad key costs a few calls, not one per line.
And what ``wait`` tells meanwhile: exit codes, progress lines without a terminal, a warning when no worker lives.

Real Redis, the simulator over HTTP (it refuses a wrong API key with OpenAI's 401), real arq workers in this loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from typing import Any

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis
from rich.console import Console

from producer.batch import progress as progress_module
from producer.batch.control import resume
from producer.batch.progress import RecentTries, WaitTimeoutError, wait_for_batch
from producer.batch.status import BatchPausedError, batch_state
from producer.cli import main
from producer.errors import EXIT_FAILED_LINES, EXIT_PAUSED
from schemas.results import ErrorType, Status
from store.batches import BatchStore
from store.keys import Keys
from store.pause import PauseStore
from store.queue import RESCHEDULE, now_ms
from tests.conftest import INVOICE_TEXTS
from tests.helpers import results_by_id, running_worker, sim_get, sim_post, until
from worker.adapters.errors import ApiCallError
from worker.classify import classify_call_error

DOCS = {f"d{n}": f"{text} (copy {n})" for n, text in enumerate(INVOICE_TEXTS * 4)}  # 20 distinct lines


async def test_a_bad_key_pauses_the_batch_after_a_few_calls_and_resume_finishes_it(
    redis, keys, settings, sim, submit_batch, caplog
) -> None:
    await submit_batch(DOCS)
    store = BatchStore(redis, keys)

    async def paused() -> bool:
        return (await store.get("b1")).paused is not None

    async with running_worker(settings, openai_api_key="sk-wrong", concurrency=1, pause_after_failures=3):
        await until(paused, 30, "the batch did not pause")
        await asyncio.sleep(0.5)  # would it go on calling?
    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["by_status"] == {"401": 3}  # three calls, not twenty
    record = await store.get("b1")
    assert record.paused is not None
    assert "401" in record.paused
    assert "sk-wrong" not in record.paused
    assert (record.done, record.failed) == (0, 0)  # no line was failed for it: they all wait
    assert batch_state(record, feeder_alive=False) == "paused"
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "paused" in r.getMessage()]
    assert len(errors) == 1  # said once, at ERROR, with what to do
    assert "producer resume b1" in errors[0].getMessage()
    with pytest.raises(BatchPausedError, match="producer resume b1"):
        await wait_for_batch(redis, keys, "b1")

    resumed = await resume(redis, keys, "b1")  # the key is fixed: the right one from now on
    assert resumed.reason == record.paused
    assert resumed.rescheduled >= 1
    scores = [score for _member, score in await redis.zrange(keys.queue, 0, -1, withscores=True)]
    assert len(scores) == len(DOCS)
    assert max(scores) <= now_ms()  # every waiting line is due now, not at its next recheck in five minutes
    async with running_worker(settings):
        await until(lambda: _complete(store), 30, "the resumed batch did not finish")
    results = await results_by_id(redis, keys, "b1")
    assert sorted(results) == sorted(DOCS)
    assert {r.status for r in results.values()} == {Status.SUCCEEDED}
    assert (await store.get("b1")).paused is None


async def _complete(store: BatchStore) -> bool:
    return (await store.get("b1")).complete


async def test_with_pausing_off_each_line_fails_on_its_own(
    redis, keys, settings, sim, submit_batch, run_worker
) -> None:
    await submit_batch(dict(list(DOCS.items())[:4]))
    await run_worker(openai_api_key="sk-wrong", pause_after_failures=0)
    results = await results_by_id(redis, keys, "b1")
    assert {r.error.type for r in results.values() if r.error is not None} == {ErrorType.AUTHENTICATION}
    assert len(results) == 4
    assert (await BatchStore(redis, keys).get("b1")).paused is None


def test_batch_wide_failures_are_told_from_a_lines_own() -> None:
    def verdict(status: int, code: str | None = None) -> bool:
        final = classify_call_error(ApiCallError(f"HTTP {status}", status_code=status, code=code)).final
        assert final is not None
        return final.batch_wide

    assert verdict(401, "invalid_api_key")
    assert verdict(403)
    assert verdict(404, "model_not_found")
    assert verdict(429, "insufficient_quota")
    assert verdict(400, "invalid_json_schema")
    assert verdict(400, "unsupported_parameter")
    assert not verdict(400, "context_length_exceeded")  # this document is too long, not every one
    assert not verdict(400)


async def test_the_pause_is_set_once_and_resume_wakes_only_waiting_jobs(redis: Redis, keys: Keys, submit_batch) -> None:
    await submit_batch(dict(list(DOCS.items())[:3]))
    pauses = PauseStore(redis, keys)
    batch_keys = keys.batch("b1")
    noted = [
        await pauses.note_batch_wide(batch_keys, "HTTP 401: bad key", pause_after=2, now_iso="t") for _ in range(3)
    ]
    assert [(n.failures, n.paused_now) for n in noted] == [(1, False), (2, True), (3, False)]
    assert (await BatchStore(redis, keys).get("b1")).paused == "HTTP 401: bad key"
    job_ids = [member.decode() for member in await redis.zrange(keys.queue, 0, -1)]
    later = now_ms() + 300_000
    await redis.zadd(keys.queue, dict.fromkeys(job_ids, later))  # the lines deferred by the pause
    await redis.set("arq:in-progress:" + job_ids[0], b"1")  # one of them is running somewhere
    resumed = await pauses.resume("b1")
    assert (resumed.reason, resumed.rescheduled) == ("HTTP 401: bad key", 2)
    scores = dict(await redis.zrange(keys.queue, 0, -1, withscores=True))
    assert scores[job_ids[0].encode()] == later  # a running job is left alone
    assert all(scores[j.encode()] <= now_ms() for j in job_ids[1:])
    assert (await pauses.resume("b1")).reason is None  # resuming a batch that is not paused says so
    assert (await BatchStore(redis, keys).get("b1")).paused is None
    await redis.delete("arq:in-progress:" + job_ids[0])
    assert await RESCHEDULE.bind(redis)([keys.queue], [now_ms()]) == 0


async def test_wait_and_collect_exit_4_when_lines_failed_and_5_when_paused(
    settings, sim, submit_batch, run_worker, redis, keys, tmp_path, monkeypatch
) -> None:
    await submit_batch(dict(list(DOCS.items())[:2]), batch_id="failing")
    await run_worker(openai_api_key="sk-wrong", pause_after_failures=0)
    await submit_batch(dict(list(DOCS.items())[:2]), batch_id="stopped")
    await PauseStore(redis, keys).note_batch_wide(keys.batch("stopped"), "HTTP 401: no", pause_after=1, now_iso="t")
    for name, value in {"REDIS_URL": settings.redis_url, "EXTRACT_KEY_PREFIX": settings.key_prefix}.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    async def cli(*args: str) -> Any:
        return await asyncio.to_thread(runner.invoke, main, list(args))  # the CLI runs its own event loop

    waited = await cli("wait", "failing")
    assert waited.exit_code == EXIT_FAILED_LINES, waited.output
    assert "2 failed and 0 cancelled of 2 lines" in waited.output
    collected = await cli("collect", "failing", "--out", str(tmp_path / "out.jsonl"))
    assert collected.exit_code == EXIT_FAILED_LINES
    assert len((tmp_path / "out.jsonl").read_bytes().splitlines()) == 2
    paused = await cli("wait", "stopped")
    assert paused.exit_code == EXIT_PAUSED
    assert "producer resume stopped" in paused.output
    status = await cli("status", "stopped")
    assert status.exit_code == 0
    assert "HTTP 401: no" in status.output
    resumed = await cli("resume", "stopped")
    assert resumed.exit_code == 0
    assert "it was paused: HTTP 401: no" in resumed.output
    assert "Exit codes:" in (await cli("wait", "--help")).output


async def test_wait_without_a_terminal_prints_progress_lines_and_warns_when_no_worker_lives(
    redis, keys, submit_batch, monkeypatch
) -> None:
    await submit_batch(dict(list(DOCS.items())[:3]))
    monkeypatch.setattr(progress_module, "NO_WORKER_WARNING_S", 0.3)
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    with pytest.raises(WaitTimeoutError):
        await wait_for_batch(redis, keys, "b1", timeout_s=1.0, poll_s=0.05, report_every_s=0.2, console=console)
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if line.startswith("b1: 0/3 done")]
    assert len(progress) >= 3  # a steady line, not silence until the end
    assert "0 ok / 0 failed / 0 cancelled" in progress[0]
    assert "workers 0" in progress[0]
    assert any("no worker has been alive" in line for line in lines)


async def test_the_batch_counts_retried_tries_and_wait_shows_the_last_minute(
    redis, keys, sim, submit_batch, run_worker
) -> None:
    await sim_post(
        sim,
        "/_sim/faults",
        [{"match": "copy 0)", "fault": "http_503", "times": 2}, {"match": "copy 1)", "fault": "http_429", "times": 1}],
    )
    await submit_batch(dict(list(DOCS.items())[:3]))
    await run_worker()
    record = await BatchStore(redis, keys).get("b1")
    assert (record.tries_failed, record.rate_limited, record.succeeded) == (2, 1, 3)
    recent = RecentTries()
    earlier = dataclasses.replace(record, tries_failed=0, rate_limited=0)
    assert recent.update(0.0, earlier) == ", last minute: 0 retries, 0 429s"
    assert recent.update(30.0, record) == ", last minute: 2 retries, 1 429s"
    assert recent.update(95.0, record) == ", last minute: 0 retries, 0 429s"  # older than a minute: forgotten
