"""A million lines through one Redis: memory and throughput at scale, against a 100,000-line batch in the same run.

    .venv/bin/python -m bench.scale [--lines 1000000] [--baseline-lines 100000] [--doc-bytes 2000] [--workers 2]
                                    [--concurrency 32] [--window 10000] [--workdir DIR]

Each batch runs end to end as a user runs it, every piece a separate process: a private ``redis-server`` (started
fresh per batch, so ``used_memory_peak`` is that batch's), the zero-latency simulator, ``worker run`` processes, and
``producer submit --no-cache`` (every line is called), ``producer collect``. It prints, per batch: Redis
``used_memory_peak``, Redis bytes per finished line (against the collected result line's size), peak RSS of the
feeding ``submit``, of ``collect`` and of each worker, lines/s end to end (the ratio to the smaller batch is the
point), and the time ``collect`` takes. Two probes complete the picture: Redis bytes per *queued* line (a full
window, no workers), and the time ``producer cancel`` takes on the large batch while its window is full.
The defaults took 65 minutes on a 2-core machine with nothing else running (54 of them the million lines);
``--lines 100000 --baseline-lines 20000 --skip-probes`` takes about 8.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from redis import Redis
from rich.console import Console
from rich.table import Table

from store.batches import BatchNotFoundError, BatchStore
from store.keys import Keys
from tests.processes import REPO, RedisServer, simulator_process, stop, wait_until

PREFIX = "scale:"
API_KEY = "sk-scale-bench"
WORDS = (
    "invoice",
    "total",
    "amount",
    "due",
    "vendor",
    "customer",
    "widget",
    "service",
    "consulting",
    "hours",
    "rate",
    "tax",
    "subtotal",
    "shipping",
    "payment",
    "terms",
    "days",
    "account",
    "bank",
    "transfer",
    "reference",
    "order",
    "delivery",
    "address",
    "street",
    "city",
    "postal",
    "country",
    "quantity",
    "unit",
    "price",
    "description",
    "item",
    "line",
    "discount",
    "net",
    "gross",
    "currency",
    "euro",
    "dollar",
    "pound",
    "date",
    "issued",
)


def make_input(path: Path, count: int, doc_bytes: int) -> None:
    """``count`` distinct documents of about ``doc_bytes`` bytes each (seeded, so runs compare)."""
    rng = random.Random(7)
    with path.open("wb") as handle:
        for n in range(count):
            words = [f"Invoice {n} from Vendor {n % 997} Ltd."]
            size = len(words[0])
            while size < doc_bytes:
                word = rng.choice(WORDS)
                words.append(word)
                size += len(word) + 1
            handle.write(orjson.dumps({"custom_id": f"doc-{n:08d}", "text": " ".join(words)}) + b"\n")


@dataclass
class Outcome:
    lines: int
    wall_s: float
    redis_peak: int
    redis_per_finished_line: float
    result_line_bytes: float
    submit_rss: int
    collect_rss: int
    collect_s: float
    worker_rss: list[int]
    sink_s: float = 0.0
    """After the last line was final, how long until the sink held every line (its manifest complete)."""
    sink_bytes: int = 0
    collect_bytes: int = 0

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.wall_s


def env_for(redis_url: str, sim_url: str, args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": sim_url + "/v1",
        "OPENAI_API_KEY": API_KEY,
        "EXTRACT_KEY_PREFIX": PREFIX,
        "EXTRACT_METRICS_PORT": "0",
        "EXTRACT_CONCURRENCY": str(args.concurrency),
        "EXTRACT_QUEUE_WINDOW": str(args.window),
        "EXTRACT_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }


def producer(env: dict[str, str], *command: str) -> tuple[int, float, int]:
    """Run ``producer COMMAND``; (exit code, seconds, peak RSS in bytes from the kernel's own account)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", *command],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            errors.seek(0)
            sys.stderr.write(f"producer {command[0]} said: {errors.read()[-2000:].decode(errors='replace')}\n")
    return proc.returncode, time.monotonic() - started, usage.ru_maxrss * 1024


def submit_args(path: Path, batch_id: str, sink: str | None = None, sink_format: str = "parquet") -> list[str]:
    args = ["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", batch_id, "--no-cache"]
    if sink is not None:
        args += ["--results", sink, "--results-format", sink_format]
    return args


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def memory(redis_url: str) -> dict[str, int]:
    client = Redis.from_url(redis_url)
    try:
        info: dict[str, int] = client.info("memory")  # type: ignore[assignment]
        return {"used": int(info["used_memory"]), "peak": int(info["used_memory_peak"])}
    finally:
        client.close()


def batch_done(redis_url: str, batch_id: str) -> tuple[int, int]:
    async def read() -> tuple[int, int]:
        from redis.asyncio import Redis as AsyncRedis

        redis = AsyncRedis.from_url(redis_url)
        try:
            record = await BatchStore(redis, Keys(PREFIX)).get(batch_id)
            return record.done, record.lines
        except BatchNotFoundError:
            return 0, 1
        finally:
            await redis.aclose()

    return asyncio.run(read())


def complete(redis_url: str, batch_id: str) -> bool:
    done, lines = batch_done(redis_url, batch_id)
    return done >= lines


def sink_complete(redis_url: str, batch_id: str) -> bool:
    client = Redis.from_url(redis_url)
    try:
        return bool(client.hexists(Keys(PREFIX).batch(batch_id).sink, "done"))
    finally:
        client.close()


@contextmanager
def fresh_redis(workdir: Path) -> Iterator[str]:
    server = RedisServer(workdir, persist=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def run_batch(path: Path, count: int, args: argparse.Namespace, workdir: Path) -> Outcome:
    batch_id = f"scale-{count}"
    sink = None
    if not args.no_sink:
        sink = args.results or str(workdir / "sink")
        if not sink.startswith("s3://"):
            Path(sink).mkdir(exist_ok=True)
    with fresh_redis(workdir) as redis_url, simulator_process() as sim_url:
        env = env_for(redis_url, sim_url, args)
        base = memory(redis_url)["used"]
        logs = [workdir / f"worker-{count}-{n}.log" for n in range(args.workers)]
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "worker.cli", "run", "--name", f"scale-{n}"],
                env=env,
                cwd=REPO,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            for n, log in enumerate(logs)
        ]

        feeder = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", *submit_args(path, batch_id, sink, args.results_format)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=(workdir / f"submit-{count}.log").open("wb"),
        )
        fed: dict[str, int] = {}

        def done_or_dead() -> bool:
            for worker, log in zip(workers, logs, strict=True):
                if worker.poll() is not None:
                    raise RuntimeError(f"a worker exited with {worker.returncode}: {log.read_text()[-2000:]}")
            if "rss" not in fed:
                pid, status, usage = os.wait4(feeder.pid, os.WNOHANG)
                if pid:
                    feeder.returncode = os.waitstatus_to_exitcode(status)
                    if feeder.returncode != 0:
                        raise RuntimeError(f"producer submit exited with {feeder.returncode}")
                    fed["rss"] = usage.ru_maxrss * 1024
            return "rss" in fed and complete(redis_url, batch_id)

        try:
            started = time.monotonic()
            wait_until(done_or_dead, 4 * 3600, f"{batch_id} did not complete", 1.0)
            submit_rss = fed["rss"]
            wall = time.monotonic() - started
            sink_s = 0.0
            if sink is not None:  # the writers finish the last parts
                wait_until(lambda: sink_complete(redis_url, batch_id), 3600, f"{batch_id}: sink not complete", 0.5)
                sink_s = time.monotonic() - started - wall
            worker_rss = [peak_rss(w.pid) for w in workers]
        finally:
            for worker in workers:
                stop(worker, signal.SIGTERM)
            stop(feeder)
        after = memory(redis_url)
        out = workdir / f"{batch_id}.jsonl"
        code, collect_s, collect_rss = producer(env, "collect", batch_id, "--out", str(out))
        if code != 0:
            raise RuntimeError(f"producer collect exited with {code}")
        collect_bytes = out.stat().st_size
        result_bytes = collect_bytes / count
        out.unlink()
        sink_bytes = 0
        if sink is not None and not sink.startswith("s3://"):
            sink_bytes = sum(f.stat().st_size for f in (Path(sink) / batch_id).iterdir())
    return Outcome(
        lines=count,
        wall_s=wall,
        redis_peak=after["peak"],
        redis_per_finished_line=(after["used"] - base) / count,
        result_line_bytes=result_bytes,
        submit_rss=submit_rss,
        collect_rss=collect_rss,
        collect_s=collect_s,
        worker_rss=worker_rss,
        sink_s=sink_s,
        sink_bytes=sink_bytes,
        collect_bytes=collect_bytes,
    )


def probe_queued(path: Path, args: argparse.Namespace, workdir: Path) -> float:
    """Redis bytes per queued line: a batch of exactly one window, no workers, everything enqueued."""
    small = workdir / "window.jsonl"
    with path.open("rb") as source, small.open("wb") as target:
        for _ in range(args.window):
            target.write(source.readline())
    with fresh_redis(workdir) as redis_url:
        env = env_for(redis_url, "http://127.0.0.1:9", args)
        base = memory(redis_url)["used"]
        code, _s, _rss = producer(env, *submit_args(small, "queued"))
        if code != 0:
            raise RuntimeError(f"producer submit exited with {code}")
        used = memory(redis_url)["used"]
    small.unlink()
    window: int = args.window
    return (used - base) / window


def probe_cancel(path: Path, count: int, args: argparse.Namespace, workdir: Path) -> tuple[float, int]:
    """Seconds ``producer cancel`` takes on a ``count``-line batch whose window is full (no workers)."""
    with fresh_redis(workdir) as redis_url:
        env = env_for(redis_url, "http://127.0.0.1:9", args)
        feeder = subprocess.Popen(
            [sys.executable, "-m", "producer.cli", *submit_args(path, "cancelled")],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: _fed(redis_url) >= args.window, 3600, "the window did not fill", 1.0)
            code, seconds, _rss = producer(env, "cancel", "cancelled")
            if code != 0:
                raise RuntimeError(f"producer cancel exited with {code}")
            feeder.wait(timeout=60)  # a cancelled batch ends its feeder
        finally:
            stop(feeder)
        done, lines = batch_done(redis_url, "cancelled")
    return seconds, done if done == lines else -done


def _fed(redis_url: str) -> int:
    async def read() -> int:
        from redis.asyncio import Redis as AsyncRedis

        redis = AsyncRedis.from_url(redis_url)
        try:
            return (await BatchStore(redis, Keys(PREFIX)).get("cancelled")).fed
        except BatchNotFoundError:
            return 0
        finally:
            await redis.aclose()

    return asyncio.run(read())


def mb(size: float) -> str:
    return f"{size / 1_000_000:,.0f} MB"


def main(args: argparse.Namespace) -> None:
    console = Console(width=150)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        large, small = workdir / "large.jsonl", workdir / "small.jsonl"
        started = time.monotonic()
        make_input(large, args.lines, args.doc_bytes)
        make_input(small, args.baseline_lines, args.doc_bytes)
        console.print(
            f"inputs: {args.lines:,} and {args.baseline_lines:,} lines of ~{args.doc_bytes:,} bytes "
            f"({large.stat().st_size / 1e6:,.0f} MB) in {time.monotonic() - started:.0f}s"
        )
        per_queued = probe_queued(large, args, workdir) if not args.skip_probes else 0.0
        console.print(f"Redis per queued line: {per_queued:,.0f} bytes (a full window of {args.window:,}, no workers)")
        baseline = run_batch(small, args.baseline_lines, args, workdir)
        console.print(f"{args.baseline_lines:,} lines: {baseline.wall_s:.0f}s")
        outcome = run_batch(large, args.lines, args, workdir)
        console.print(f"{args.lines:,} lines: {outcome.wall_s:.0f}s")
        cancel_s, cancelled = probe_cancel(large, args.lines, args, workdir) if not args.skip_probes else (0.0, 0)

    where = "results in Redis until collect" if args.no_sink else f"results to the sink as {args.results_format}"
    table = Table(
        title=f"bench.scale: {args.workers} workers x {args.concurrency}, window {args.window:,}, cache off, {where}"
    )
    for column in ("", f"{args.baseline_lines:,} lines", f"{args.lines:,} lines"):
        table.add_column(column, justify="left" if not column else "right")
    rows = [
        ("Redis used_memory_peak", mb(baseline.redis_peak), mb(outcome.redis_peak)),
        (
            "Redis bytes per finished line",
            f"{baseline.redis_per_finished_line:,.0f}",
            f"{outcome.redis_per_finished_line:,.0f}",
        ),
        ("result line (JSON) bytes", f"{baseline.result_line_bytes:,.0f}", f"{outcome.result_line_bytes:,.0f}"),
        (
            "  ratio: Redis / result line",
            f"{baseline.redis_per_finished_line / baseline.result_line_bytes:.2f}",
            f"{outcome.redis_per_finished_line / outcome.result_line_bytes:.2f}",
        ),
        ("lines/s end to end", f"{baseline.lines_per_s:,.0f}", f"{outcome.lines_per_s:,.0f}"),
        ("  ratio to the smaller batch", "1.00", f"{outcome.lines_per_s / baseline.lines_per_s:.2f}"),
        ("peak RSS: producer submit (feeder)", mb(baseline.submit_rss), mb(outcome.submit_rss)),
        ("peak RSS: producer collect", mb(baseline.collect_rss), mb(outcome.collect_rss)),
        (
            "peak RSS: workers",
            " / ".join(mb(r) for r in baseline.worker_rss),
            " / ".join(mb(r) for r in outcome.worker_rss),
        ),
        ("collect time", f"{baseline.collect_s:.1f}s", f"{outcome.collect_s:.1f}s"),
        (
            "collect MB/s (JSONL written)",
            f"{baseline.collect_bytes / 1e6 / baseline.collect_s:,.1f}",
            f"{outcome.collect_bytes / 1e6 / outcome.collect_s:,.1f}",
        ),
    ]
    if not args.no_sink:
        rows += [
            ("sink: last parts written after the last line", f"{baseline.sink_s:.1f}s", f"{outcome.sink_s:.1f}s"),
            (
                "sink: bytes on disk per line",
                f"{baseline.sink_bytes / baseline.lines:,.0f}",
                f"{outcome.sink_bytes / outcome.lines:,.0f}",
            ),
        ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if not args.skip_probes:
        console.print(f"Redis per queued line (document in its arq job, index entry, slot): {per_queued:,.0f} bytes")
        state = "all lines cancelled" if cancelled > 0 else f"only {-cancelled:,} lines done"
        console.print(f"producer cancel on the {args.lines:,}-line batch with a full window: {cancel_s:.1f}s ({state})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--baseline-lines", type=int, default=100_000)
    parser.add_argument("--doc-bytes", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--workdir", default=None, help="where the inputs are written (default: the temp dir)")
    parser.add_argument("--results", default=None, help="the results sink (default: a folder in the workdir)")
    parser.add_argument("--results-format", default="parquet", choices=["jsonl", "jsonl.gz", "parquet"])
    parser.add_argument("--no-sink", action="store_true", help="results stay in Redis until collect (the old way)")
    parser.add_argument("--skip-probes", action="store_true", help="skip the queued-line and cancel probes")
    main(parser.parse_args())
