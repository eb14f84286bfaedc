"""Kill a worker with SIGKILL a third of the way through a batch and see what it cost.

    .venv/bin/python -m bench.crash_recovery [--lines 200] [--workers 2] [--concurrency 8] [--job-timeout 300]
                                             [--lease 10]

Runs the simulator (400 ms latency), N `worker run` processes and a batch against Redis database 14 (flushed first;
nothing else is touched). At a third of the batch it SIGKILLs one worker and reports: how long until the batch was
complete again (a killed worker's jobs run again once their lease lapses, ``EXTRACT_JOB_LEASE_S``, whatever the job
timeout; before leases they waited for arq's claim: job timeout + 15 s), how many lines
the collected file holds (must equal the input, each once), how many answers the provider was paid for twice
(must not exceed the jobs that were running in the killed worker), and how many jobs were running at the kill.
"""

from __future__ import annotations

import argparse
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson
from redis import Redis as SyncRedis
from rich.console import Console
from rich.table import Table

from tests.processes import simulator_process, start_worker, stop, wait_until
from tests.test_crash_safety import BATCH, KEYS, _collect, _env, _ledger, _submit

API_KEY = "sk-crash-demo-not-a-real-key"


def main(args: argparse.Namespace) -> None:
    sync = SyncRedis.from_url(args.redis)
    sync.flushdb()

    def done() -> int:
        return int(sync.hget(KEYS.batch(BATCH).record, "done") or 0)  # type: ignore[arg-type]

    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator_process("--require-api-key", API_KEY, "--latency-ms", str(args.latency_ms)) as sim_url,
    ):
        _submit(args.redis, args.lines)
        env = _env(
            args.redis,
            sim_url,
            OPENAI_API_KEY=API_KEY,
            EXTRACT_CONCURRENCY=str(args.concurrency),
            EXTRACT_JOB_TIMEOUT_S=str(args.job_timeout),
            EXTRACT_REQUEST_TIMEOUT_S=str(min(args.job_timeout - 1, 120)),
            EXTRACT_JOB_LEASE_S=str(args.lease),
        )
        workers = [start_worker(env, f"w{n}", log=Path(tmp) / f"w{n}.log") for n in range(args.workers)]
        try:
            started = time.monotonic()
            wait_until(lambda: done() >= args.lines // 3, 120, "a third of the batch was not done")
            # Kill it while it holds jobs (calls return in waves, so a worker is sometimes between two of them).
            wait_until(lambda: len(_claimed_by(sync, "w0#")) >= args.concurrency // 2, 60, "the victim held no jobs")
            victim_jobs = _claimed_by(sync, "w0#")
            in_flight = sum(1 for _ in sync.scan_iter(match="arq:in-progress:*"))
            killed_at = time.monotonic()
            stop(workers[0], signal.SIGKILL)
            done_at_kill = done()
            wait_until(lambda: not _claimed_by(sync, "w0#"), 400, "the killed worker's claims stayed")
            lapsed_s = time.monotonic() - killed_at
            wait_until(lambda: not any(sync.zscore(KEYS.queue, job) for job in victim_jobs), 400, "killed jobs stayed")
            resumed_s = time.monotonic() - killed_at
            wait_until(lambda: done() >= args.lines, 300, "the batch did not complete after the kill")
            recovery_s = time.monotonic() - killed_at
            total_s = time.monotonic() - started
        finally:  # a failed run must not leave workers behind, taking the next run's jobs
            for proc in workers:
                stop(proc)
        ledger = _ledger(sim_url)
        records = _collect(args.redis, Path(tmp) / "out.jsonl")
    sync.flushdb()
    sync.close()

    per_line = Counter(r.custom_id for r in records)
    paid_twice = sum(n - 1 for n in ledger["ok_per_input"].values() if n > 1)
    table = Table(title=f"SIGKILL of 1 of {args.workers} workers at a third of {args.lines} lines")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in (
        ("lines done when killed", done_at_kill),
        ("jobs running (all workers) at the kill", in_flight),
        ("jobs running in the killed worker", len(victim_jobs)),
        ("kill → every killed job free to take (lease lapsed)", f"{lapsed_s:.1f} s"),
        ("kill → every killed job recorded by another (in queue order)", f"{resumed_s:.1f} s"),
        ("recovery: kill → batch complete", f"{recovery_s:.1f} s"),
        ("bound for the killed jobs", f"{args.lease:g} s lease + a poll (job timeout {args.job_timeout} s)"),
        ("whole batch", f"{total_s:.1f} s"),
        ("result lines collected / input lines", f"{len(records)} / {args.lines}"),
        ("lines appearing more than once", sum(1 for n in per_line.values() if n > 1)),
        ("answers paid twice (simulator ledger)", paid_twice),
        ("provider requests", ledger["requests"]["total"]),
    ):
        table.add_row(name, str(value))
    Console(width=120).print(table)
    figures = {
        "lapsed_s": round(lapsed_s, 1),
        "resumed_s": round(resumed_s, 1),
        "recovery_s": round(recovery_s, 1),
        "paid_twice": paid_twice,
    }
    print(orjson.dumps({**figures, "in_flight": in_flight, "killed_jobs": len(victim_jobs)}).decode())


def _claimed_by(sync: SyncRedis, owner_prefix: str) -> set[str]:
    """The jobs whose claim (lease) a worker holds: its name starts the claim's value (``store.queue.CLAIM``)."""
    held = set()
    for key in sync.scan_iter(match="arq:in-progress:*"):
        value = sync.get(key)
        if isinstance(value, bytes) and value.decode().startswith(owner_prefix):
            held.add(key.decode().removeprefix("arq:in-progress:"))
    return held


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency-ms", type=int, default=400)
    parser.add_argument("--job-timeout", type=int, default=300)
    parser.add_argument("--lease", type=float, default=10.0)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    main(parser.parse_args())
