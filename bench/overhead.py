"""What one worker process costs per line, against a bare arq no-op worker in the same Redis and run.

    .venv/bin/python -m bench.overhead [--lines 20000] [--concurrency 32 128 512] [--doc-bytes 500]
                                       [--sample-lines 1000] [--rss-lines 4000] [--rss-concurrency 1000]

Every piece is its own process: a private ``redis-server``, the simulator (zero latency, no limits), one worker.
For each concurrency and each variant, the lines are queued first, then one worker process starts; the clock and
its CPU are read from the moment it is ready (its health key appears) to the moment the last line is recorded, so
start-up (imports, the tokenizer) is not counted. Variants:

- ``bare arq``: ``bench.arq_noop`` (a job that does nothing; same JSON serializers, same ``max_jobs``);
- ``ours, cache off``: ``producer submit --no-cache`` (every line is called; no cache lookup, lease or write);
- ``ours, cache miss``: the cache on, every document distinct (lookup, lease, call, cache write);
- ``ours, cache hit``: the same documents again under another batch id (every line answered from the cache).

Redis commands per line are ``INFO commandstats`` deltas (commands run inside Lua scripts count too, as Redis counts
them; the bench's own polling is subtracted). A second figure, *sent*, counts only the commands the worker sent over
its connections, from ``MONITOR`` on a sample run of ``--sample-lines`` lines at the first concurrency (MONITOR
slows Redis, so it has a run of its own). Last, the worker's peak RSS with about ``--rss-concurrency`` lines in
flight (the simulator holding each reply for 3 s).

``--profile FILE`` (needs ``py-spy`` on PATH: ``.venv/bin/pip install py-spy``) samples the worker of the cache-miss
run at the first concurrency into FILE (collapsed stacks) and prints the share of samples spent in each library.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rich.console import Console
from rich.table import Table

from bench.arq_noop import NOOP
from bench.scale import make_input, peak_rss
from schemas.wire import serialize
from store.fields import F
from store.keys import Keys
from tests.processes import REPO, RedisServer, simulator_with_pid, start_worker, stop, wait_until

PREFIX = "overhead:"
API_KEY = "sk-overhead-bench"
ARQ_QUEUE = "overhead:arq"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
VARIANTS = ("bare arq", "ours, cache off", "ours, cache miss", "ours, cache hit")


@dataclass(frozen=True)
class Run:
    variant: str
    concurrency: int
    lines: int
    seconds: float
    cpu_s: float
    commands: int
    simulator_cpu_s: float
    redis_cpu_s: float

    @property
    def lines_per_s(self) -> float:
        return self.lines / self.seconds

    @property
    def cpu_ms_per_line(self) -> float:
        return 1000 * self.cpu_s / self.lines

    @property
    def commands_per_line(self) -> float:
        return self.commands / self.lines

    @property
    def peers_ms_per_line(self) -> tuple[float, float]:
        """CPU ms per line of the simulator and of Redis: the same 2 cores, so it caps the worker's rate too."""
        return 1000 * self.simulator_cpu_s / self.lines, 1000 * self.redis_cpu_s / self.lines


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (its children are not counted: it has none)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def redis_cpu_seconds(redis: Redis) -> float:
    info: dict[str, float] = redis.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def commands_run(redis: Redis) -> int:
    stats: dict[str, dict[str, int]] = redis.info("commandstats")  # type: ignore[assignment]
    skip = {"cmdstat_info", "cmdstat_config", "cmdstat_monitor"}
    return sum(int(entry["calls"]) for name, entry in stats.items() if name not in skip)


class Bench:
    def __init__(self, args: argparse.Namespace, redis_url: str, sim: tuple[str, int], workdir: Path) -> None:
        sim_url, self.sim_pid = sim
        self.args = args
        self.redis_url = redis_url
        self.sim_url = sim_url
        self.workdir = workdir
        self.redis = Redis.from_url(redis_url)
        self.keys = Keys(PREFIX)
        self.input = workdir / "docs.jsonl"
        make_input(self.input, max(args.lines, args.sample_lines, args.rss_lines), args.doc_bytes)
        self.polls = 0

    def env(self, concurrency: int, lines: int) -> dict[str, str]:
        return {
            "REDIS_URL": self.redis_url,
            "OPENAI_BASE_URL": self.sim_url + "/v1",
            "OPENAI_API_KEY": API_KEY,
            "EXTRACT_KEY_PREFIX": PREFIX,
            "EXTRACT_METRICS_PORT": "0",
            "EXTRACT_CONCURRENCY": str(concurrency),
            "EXTRACT_QUEUE_WINDOW": str(lines),  # every line queued before the worker starts
            "EXTRACT_LOG_LEVEL": "WARNING",
        }

    def fresh(self) -> None:
        self.redis.flushall()

    # -- queueing ----------------------------------------------------------------------------------------------------

    def input_of(self, lines: int) -> Path:
        path = self.workdir / f"docs-{lines}.jsonl"
        if not path.exists():
            with self.input.open("rb") as source, path.open("wb") as target:
                for _ in range(lines):
                    target.write(source.readline())
        return path

    def submit(self, batch_id: str, lines: int, concurrency: int, *, cache: bool) -> None:
        command = [sys.executable, "-m", "producer.cli", "submit", str(self.input_of(lines)), "--schema", "invoice"]
        command += ["--model", "gpt-4o-mini", "--batch-id", batch_id] + ([] if cache else ["--no-cache"])
        done = subprocess.run(
            command, env={**os.environ, **self.env(concurrency, lines)}, cwd=REPO, capture_output=True, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"submit failed: {done.stderr.decode()[-500:]}")

    def enqueue_noops(self, lines: int) -> None:
        async def enqueue() -> None:
            from arq.connections import RedisSettings, create_pool

            pool = await create_pool(RedisSettings.from_dsn(self.redis_url), job_serializer=serialize)
            try:
                payload = {"text": "x" * self.args.doc_bytes}
                for start in range(0, lines, 500):
                    chunk = range(start, min(start + 500, lines))
                    await asyncio.gather(
                        *(pool.enqueue_job(NOOP, payload, _job_id=f"n{n}", _queue_name=ARQ_QUEUE) for n in chunk)
                    )
            finally:
                await pool.aclose()

        asyncio.run(enqueue())

    # -- one measured run --------------------------------------------------------------------------------------------

    def measure(
        self, variant: str, concurrency: int, lines: int, *, monitor: Path | None = None, profile: Path | None = None
    ) -> Run:
        batch_id = {"ours, cache off": "off", "ours, cache hit": "hit"}.get(variant, "miss")
        if variant == "bare arq":
            self.enqueue_noops(lines)
        else:
            self.submit(batch_id, lines, concurrency, cache=variant != "ours, cache off")
        self.redis.config_resetstat()
        watcher = (
            subprocess.Popen(
                ["redis-cli", "-u", self.redis_url, "monitor"], stdout=monitor.open("wb"), stderr=subprocess.DEVNULL
            )
            if monitor is not None
            else None
        )
        self.polls = 0
        worker, ready_key = self.start(variant, concurrency, lines)
        sampler: subprocess.Popen[bytes] | None = None
        try:
            wait_until(lambda: self.poll(self.redis.exists(ready_key)), 60, "the worker did not start", poll_s=0.01)
            started, cpu0 = time.monotonic(), cpu_seconds(worker.pid)
            sim0, redis0 = cpu_seconds(self.sim_pid), redis_cpu_seconds(self.redis)
            sampler = sample(worker.pid, profile) if profile is not None else None
            wait_until(lambda: self.finished(variant, batch_id, lines), 3600, "the lines were not done", poll_s=0.05)
            seconds, cpu = time.monotonic() - started, cpu_seconds(worker.pid) - cpu0
            sim_cpu, redis_cpu = cpu_seconds(self.sim_pid) - sim0, redis_cpu_seconds(self.redis) - redis0
            commands = commands_run(self.redis) - self.polls
        finally:
            if sampler is not None:
                stop(sampler, signal.SIGINT)
            stop(worker)
            if watcher is not None:
                stop(watcher)
        return Run(variant, concurrency, lines, seconds, cpu, commands, sim_cpu, redis_cpu)

    def start(self, variant: str, concurrency: int, lines: int) -> tuple[subprocess.Popen[bytes], str]:
        if variant == "bare arq":
            command = [sys.executable, "-m", "bench.arq_noop", self.redis_url, ARQ_QUEUE, str(concurrency)]
            proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return proc, ARQ_QUEUE + ":health-check"
        name = f"overhead-{concurrency}"
        return start_worker(self.env(concurrency, lines), name), self.keys.health(name)

    def poll(self, value: object) -> bool:
        self.polls += 1
        return bool(value)

    def finished(self, variant: str, batch_id: str, lines: int) -> bool:
        if variant == "bare arq":
            return self.poll(self.redis.zcard(ARQ_QUEUE) == 0)
        return self.poll(self.done(batch_id) >= lines)

    def done(self, batch_id: str) -> int:
        value = self.redis.hget(self.keys.batch(batch_id).record, F.DONE)
        return int(value) if isinstance(value, bytes | str) else 0

    # -- the probes --------------------------------------------------------------------------------------------------

    def sent_per_line(self, variant: str, concurrency: int, lines: int) -> float:
        """Commands the worker process sent (MONITOR lines not run by a script), per line."""
        log = self.workdir / "monitor.log"
        run = self.measure(variant, concurrency, lines, monitor=log)
        own = re.compile(r"\[\d+ lua\]")
        skip = ('"info"', '"config"', '"monitor"')
        sent = 0
        with log.open("rb") as handle:
            for raw in handle:
                text = raw.decode(errors="replace")
                if own.search(text) or any(word in text.lower() for word in skip):
                    continue
                sent += 1
        return (sent - self.polls) / run.lines

    def rss(self, concurrency: int, lines: int) -> tuple[int, int]:
        """(peak RSS in bytes, most lines seen in flight) of our worker with a slow provider."""
        self.fresh()
        self.submit("rss", lines, concurrency, cache=False)
        worker, ready_key = self.start("ours, cache off", concurrency, lines)
        in_flight = 0
        try:
            wait_until(lambda: self.redis.exists(ready_key), 60, "the worker did not start", poll_s=0.01)
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                running = sum(1 for _ in self.redis.scan_iter(match="arq:in-progress:*", count=2000))
                in_flight = max(in_flight, running)
                if self.done("rss") >= lines:
                    break
                time.sleep(0.2)  # noqa: TID251 - a synchronous probe, no event loop here
            return peak_rss(worker.pid), in_flight
        finally:
            stop(worker)


def sample(pid: int, out: Path) -> subprocess.Popen[bytes]:
    command = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_shares(path: Path) -> tuple[dict[str, float], float]:
    """From py-spy's collapsed stacks ("frame;frame;... count", each frame "function (package/module.py:line)"):
    the share of samples whose innermost frame is in each top-level package (where the CPU goes), biggest first,
    and the share of samples with the ``openai`` SDK anywhere on the stack."""
    own: dict[str, int] = {}
    samples = sdk = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples += int(count)
        innermost = stack.rsplit(";", 1)[-1]
        where = innermost[innermost.rfind("(") + 1 :]
        package = where.split("/", 1)[0] if "/" in where else where.split(":", 1)[0]
        own[package] = own.get(package, 0) + int(count)
        if "(openai/" in stack:
            sdk += int(count)
    if not samples:
        return {}, 0.0
    ranked = sorted(own.items(), key=lambda item: -item[1])
    return {name: value / samples for name, value in ranked}, sdk / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--doc-bytes", type=int, default=500)
    parser.add_argument("--sample-lines", type=int, default=1000)
    parser.add_argument("--rss-lines", type=int, default=4000)
    parser.add_argument("--rss-concurrency", type=int, default=1000)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy samples of the cache-miss worker")
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp, running(Path(tmp)) as (redis_url, sim):
        bench = Bench(args, redis_url, sim, Path(tmp))
        runs: list[Run] = []
        for concurrency in args.concurrency:
            bench.fresh()
            for variant in VARIANTS:  # the hit run finds the answers the miss run cached
                profiled = variant == "ours, cache miss" and concurrency == args.concurrency[0]
                run = bench.measure(variant, concurrency, args.lines, profile=args.profile if profiled else None)
                console.print(
                    f"{variant} c={concurrency}: {run.lines_per_s:,.0f} lines/s, "
                    f"{run.cpu_ms_per_line:.2f} ms CPU/line, {run.commands_per_line:.1f} cmds/line, "
                    "simulator {:.2f} + Redis {:.2f} ms CPU/line".format(*run.peers_ms_per_line)
                )
                runs.append(run)
        console.print(table(runs))
        if args.profile is not None and args.profile.exists():
            shares, sdk = profile_shares(args.profile)
            console.print(
                f"profile of the cache-miss worker at concurrency {args.concurrency[0]} ({args.profile}), samples by "
                "the package of the innermost frame: "
                + ", ".join(f"{name} {share:.1%}" for name, share in list(shares.items())[:12])
                + f"; the openai SDK anywhere on the stack: {sdk:.1%}"
            )
        first = args.concurrency[0]
        sent: dict[str, float] = {}
        bench.fresh()
        for variant in VARIANTS:
            sent[variant] = bench.sent_per_line(variant, first, args.sample_lines)
        console.print(
            f"commands sent per line (MONITOR, {args.sample_lines} lines at concurrency {first}): "
            + ", ".join(f"{variant} {value:.1f}" for variant, value in sent.items())
        )
    with (
        tempfile.TemporaryDirectory(prefix="overhead-rss-") as tmp,
        running(Path(tmp), "--latency-ms", "3000") as (redis_url, sim),
    ):
        bench = Bench(args, redis_url, sim, Path(tmp))
        rss, in_flight = bench.rss(args.rss_concurrency, args.rss_lines)
        console.print(
            f"worker peak RSS: {rss / 2**20:,.0f} MB with up to {in_flight:,} lines in flight "
            f"(concurrency {args.rss_concurrency}, the simulator answering after 3 s)"
        )


def table(runs: list[Run]) -> Table:
    out = Table(title="one worker process, per line (the simulator at zero latency, no limits)")
    columns = ("concurrency", "variant", "lines/s", "× bare arq", "CPU ms/line", "Redis cmds/line", "sim + Redis CPU")
    for column in columns:
        out.add_column(column, justify="left" if column == "variant" else "right")
    baseline = {run.concurrency: run for run in runs if run.variant == "bare arq"}
    for run in runs:
        ratio = run.lines_per_s / baseline[run.concurrency].lines_per_s
        out.add_row(
            str(run.concurrency),
            run.variant,
            f"{run.lines_per_s:,.0f}",
            f"{ratio:.2f}",
            f"{run.cpu_ms_per_line:.2f}",
            f"{run.commands_per_line:.1f}",
            "{:.2f} + {:.2f} ms".format(*run.peers_ms_per_line),
        )
    return out


@contextmanager
def running(workdir: Path, *sim_args: str) -> Iterator[tuple[str, tuple[str, int]]]:
    server = RedisServer(workdir, persist=False)
    server.start()
    try:
        with simulator_with_pid(*sim_args) as sim:
            yield server.url, sim
    finally:
        server.stop()


if __name__ == "__main__":
    main()
