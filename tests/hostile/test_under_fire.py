"""A crowded Redis, a killed worker, a batch near its budget: the state a batch is in is read right, its lines are
taken up again within a lease, and its budget never deadlocks.

Real processes: the simulator, `worker run` and `producer` commands; Redis is the test database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
from arq.constants import in_progress_key_prefix
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import submit
from schemas.jobs import BatchSpec
from store.budget import BudgetStore
from store.fields import F
from store.keys import Keys
from tests.conftest import API_KEY, INVOICE_TEXTS, REPO
from tests.processes import invoice_spec, simulator_process, start_worker, stop, wait_until, worker_env

KEYS = Keys("test:")
LEASE_S = 10.0
"""The default ``EXTRACT_JOB_LEASE_S``: the tests run with it, not with a shortened one."""


def _crowd(redis_url: str, count: int) -> None:
    """``count`` keys that are none of ours, as another application (or a big result cache) would leave them."""
    client = SyncRedis.from_url(redis_url)
    try:
        for start in range(0, count, 5_000):
            client.mset({f"other-app:{n}": b"x" for n in range(start, min(start + 5_000, count))})
    finally:
        client.close()


def _producer(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "producer.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def _cli_env(redis_url: str, sim_url: str) -> dict[str, str]:
    return {**os.environ, **worker_env(redis_url, sim_url, API_KEY, KEYS.prefix)}


def _input(path: Path, count: int, tag: str = "") -> Path:
    rows = [
        {"custom_id": f"doc-{n}", "text": INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" {tag}{n}"} for n in range(count)
    ]
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def test_run_never_reports_a_healthy_batch_incomplete_in_a_crowded_redis(flushed_redis: str, tmp_path: Path) -> None:
    """`run` read the record, then scanned the keyspace for workers, then looked at the feeder: a feed that finished
    during the scan looked abandoned ("submit incomplete", exit 3) in every run against ~4,600 unrelated keys."""
    _crowd(flushed_redis, 20_000)
    with simulator_process("--require-api-key", API_KEY) as sim_url:
        env = _cli_env(flushed_redis, sim_url)
        worker = start_worker(worker_env(flushed_redis, sim_url, API_KEY, KEYS.prefix), "w", log=tmp_path / "w.log")
        try:
            for attempt in range(8):
                out = tmp_path / f"out-{attempt}.jsonl"
                ran = _producer(
                    env,
                    "run",
                    str(_input(tmp_path / f"in-{attempt}.jsonl", 3, f"run {attempt} ")),
                    "--schema",
                    "invoice",
                    "--model",
                    "gpt-4o-mini",
                    "--batch-id",
                    f"crowded-{attempt}",
                    "--out",
                    str(out),
                )
                assert ran.returncode == 0, ran.stderr.decode()[-2000:]
                assert b"incomplete" not in ran.stderr
                assert len(out.read_bytes().splitlines()) == 3
        finally:
            stop(worker)


class _Monitor:
    """Every command Redis runs for one database (``MONITOR``), collected in a thread."""

    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._db = int(urlparse(redis_url).path.lstrip("/") or 0)
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = SyncRedis.from_url(self._url)
        with client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self._ready.set()
            while not self._stop.is_set():
                command = monitor.next_command()
                if command.get("db") == self._db:
                    self.commands.append(str(command.get("command", "")))
        client.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[_Monitor]:
        self._thread.start()
        self._ready.wait(5)
        try:
            yield self
        finally:
            self._stop.set()
            poke = SyncRedis.from_url(self._url)
            poke.ping()  # wakes the monitor so that it sees the stop
            poke.close()
            self._thread.join(5)


def test_wait_status_list_and_the_worker_never_scan_the_keyspace(flushed_redis: str, tmp_path: Path) -> None:
    """One waiting client scanned the whole keyspace every 0.5 s (1.67 s of Redis CPU in 5 s with a million keys)."""
    _crowd(flushed_redis, 5_000)
    with simulator_process("--require-api-key", API_KEY, "--latency-ms", "200") as sim_url:
        env = _cli_env(flushed_redis, sim_url)
        with _Monitor(flushed_redis).running() as monitor:
            worker = start_worker(worker_env(flushed_redis, sim_url, API_KEY, KEYS.prefix), "w", log=tmp_path / "w.log")
            try:
                submitted = _producer(
                    env,
                    "submit",
                    str(_input(tmp_path / "in.jsonl", 12)),
                    "--schema",
                    "invoice",
                    "--model",
                    "gpt-4o-mini",
                    "--batch-id",
                    "watched",
                )
                assert submitted.returncode == 0, submitted.stderr.decode()[-2000:]
                for command in (["wait", "watched"], ["status", "watched"], ["status", "watched", "--json"], ["list"]):
                    ran = _producer(env, *command)
                    assert ran.returncode == 0, (command, ran.stderr.decode()[-2000:])
            finally:
                stop(worker)
    scans = [c for c in monitor.commands if c.split(" ", 1)[0].strip('"').upper() in {"SCAN", "KEYS"}]
    assert monitor.commands, "the monitor saw nothing"
    assert scans == []


def _spec(batch_id: str, *, budget_tokens: int | None = None) -> BatchSpec:
    return invoice_spec(batch_id, max_output_tokens=200, budget_tokens=budget_tokens)


def _submit(redis_url: str, spec: BatchSpec, count: int) -> None:
    async def run() -> None:
        redis = Redis.from_url(redis_url)
        lines = tuple(
            InputLine(n + 1, f"doc-{n:03d}", INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" Ref {n}.") for n in range(count)
        )
        try:
            await submit(redis, KEYS, spec, MemorySource(lines), window=10_000, ttl_s=0)
        finally:
            await redis.aclose()

    asyncio.run(run())


def _record(redis_url: str, batch_id: str) -> dict[str, str]:
    client = SyncRedis.from_url(redis_url)
    try:
        raw: Any = client.hgetall(KEYS.batch(batch_id).record)
        return {k.decode(): v.decode() for k, v in raw.items() if k != F.SPEC.encode()}
    finally:
        client.close()


def _claims_of(redis_url: str, owner_prefix: str) -> dict[str, int]:
    """The claims held by workers whose name starts with ``owner_prefix``: job id -> ms left."""
    client = SyncRedis.from_url(redis_url)
    try:
        held = {}
        for key in client.scan_iter(match=in_progress_key_prefix + "*"):  # the test may scan; the service does not
            value: Any = client.get(key)
            if value is not None and value.decode().startswith(owner_prefix):
                left: Any = client.pttl(key)
                held[key.decode().removeprefix(in_progress_key_prefix)] = int(left)
        return held
    finally:
        client.close()


def _env(redis_url: str, sim_url: str, **extra: str) -> dict[str, str]:
    return worker_env(redis_url, sim_url, API_KEY, KEYS.prefix, EXTRACT_CONCURRENCY="8", **extra)


def test_a_sigkilled_workers_lines_are_taken_up_within_a_lease_not_the_job_timeout(
    flushed_redis: str, tmp_path: Path
) -> None:
    """With the default job timeout of 300 s, a SIGKILLed worker's lines waited for arq's claim to expire (315 s)."""
    count = 24
    _submit(flushed_redis, _spec("lease"), count)
    with simulator_process("--require-api-key", API_KEY, "--latency-ms", "3000") as sim_url:
        victim = start_worker(_env(flushed_redis, sim_url), "victim", log=tmp_path / "victim.log")
        wait_until(lambda: len(_claims_of(flushed_redis, "victim#")) == 8, 30, "the victim did not take 8 jobs")
        held = _claims_of(flushed_redis, "victim#")
        assert all(0 < left <= LEASE_S * 1000 for left in held.values()), held  # a lease, not the job timeout
        survivor = start_worker(_env(flushed_redis, sim_url), "survivor", log=tmp_path / "survivor.log")
        try:
            stop(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_until(lambda: not _claims_of(flushed_redis, "victim#"), LEASE_S + 5, "the victim's claims stayed")
            wait_until(lambda: int(_record(flushed_redis, "lease")["done"]) >= count, 60, "the batch did not finish")
            recovered_s = time.monotonic() - killed_at
        finally:
            stop(survivor)
    record = _record(flushed_redis, "lease")
    assert int(record["succeeded"]) == count
    print(
        f"\nSIGKILL with job timeout 300 s: the batch finished {recovered_s:.1f}s after the kill (lease {LEASE_S:g}s)"
    )


def test_a_worker_killed_near_the_budget_leaves_no_reservation_behind(flushed_redis: str, tmp_path: Path) -> None:
    """The dead calls' reservations stayed in their lines' accounts for ever: every line waited ("the budget is held
    by calls in flight"), the batch said `running`, never `paused`, and with few waits allowed the lines failed as
    `retries_exhausted` without ever being sent."""
    count = 30
    _submit(flushed_redis, _spec("budget", budget_tokens=10**9), count)
    with simulator_process("--require-api-key", API_KEY, "--latency-ms", "6000") as sim_url:
        victim = start_worker(_env(flushed_redis, sim_url), "victim", log=tmp_path / "victim.log")
        wait_until(lambda: int(_record(flushed_redis, "budget").get(F.RESERVED_TOKENS, 0)) > 0, 30, "no call went out")
        wait_until(lambda: len(_claims_of(flushed_redis, "victim#")) == 8, 30, "the victim did not take 8 jobs")
        time.sleep(0.5)  # noqa: TID251 - let the eight calls be counted as sent
        stop(victim, signal.SIGKILL)
        before = _record(flushed_redis, "budget")
        cut_off = _calls_in_flight(flushed_redis, "budget")
        reserved, spent = int(before[F.RESERVED_TOKENS]), int(before.get(F.SPENT_TOKENS, 0))
        assert reserved > 0
        assert int(before["done"]) == 0
        # A budget that the dead calls' reservations fill exactly: one more call fits only if they had not been sent.
        asyncio.run(_set_budget(flushed_redis, "budget", spent + reserved))
        survivor = start_worker(
            _env(flushed_redis, sim_url, EXTRACT_MAX_DEFERRALS="3", EXTRACT_PAUSE_RECHECK_S="1"),
            "survivor",
            log=tmp_path / "survivor.log",
        )
        try:
            wait_until(lambda: "paused" in _record(flushed_redis, "budget"), LEASE_S + 30, "the batch never paused")
            paused = _record(flushed_redis, "budget")
            assert "budget reached" in paused["paused"]
            assert int(paused.get(F.RESERVED_TOKENS, 0)) == 0  # nothing held by calls that cannot answer
            assert int(paused[F.SPENT_TOKENS]) == spent + reserved  # the dead calls count as possibly spent
            assert int(paused["failed"]) == 0  # no line gave up waiting
            assert int(paused.get(F.POSSIBLY_BILLED_CALLS, 0)) == 0  # moved to the batch when the lines are recorded
            # Raising the budget resumes the batch, and it completes.
            asyncio.run(_set_budget(flushed_redis, "budget", 10**9))
            wait_until(lambda: int(_record(flushed_redis, "budget")["done"]) >= count, 90, "the batch did not finish")
        finally:
            stop(survivor)
    done = _record(flushed_redis, "budget")
    assert int(done["succeeded"]) == count
    assert int(done[F.POSSIBLY_BILLED_CALLS]) == cut_off > 0  # the calls the kill cut off, each maybe billed


def _calls_in_flight(redis_url: str, batch_id: str) -> int:
    """Calls counted as sent and not returned, over the batch's running lines (``store.accounts``)."""
    client = SyncRedis.from_url(redis_url)
    try:
        accounts: Any = client.hgetall(KEYS.batch(batch_id).accounts)
        return sum(int(orjson.loads(raw).get("o", 0)) for raw in accounts.values())
    finally:
        client.close()


async def _set_budget(redis_url: str, batch_id: str, tokens: int) -> None:
    redis = Redis.from_url(redis_url)
    try:
        await BudgetStore(redis).set(KEYS.batch(batch_id), usd=None, tokens=tokens)
    finally:
        await redis.aclose()
