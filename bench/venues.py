"""The Batch API venue against synchronous calls, on the simulator: what it costs, that no line is lost or repeated
when provider batches go wrong, how soon a provider batch's lines are recorded, and a worker's memory with a
50,000-line provider batch.

    .venv/bin/python -m bench.venues [--lines 2000] [--parts cost,rough] [--big] [--big-lines 50000]
                                     [--workers 2] [--concurrency 32] [--poll-s 1] [--part-wait-s 0.5]
                                     [--part-lines 200]

Every part runs as a user runs it, each piece a separate process: a private ``redis-server`` (fresh per part), the
simulator at zero latency (its Batch API answering 2,000 lines/s), ``--workers`` ``worker run`` processes (each runs
the part keeper, with ``EXTRACT_BATCH_POLL_S`` and a short ``EXTRACT_BATCH_PART_WAIT_S``), ``producer submit
--no-cache`` (every line is answered by a call) and ``producer collect``.

- **cost**: the same ``--lines`` documents, once synchronously and once with ``--venue batch-api``; the ratio of the
  two batches' ``cost_usd`` (from each line's own usage at the price of the tier that served it; goal 0.50 ± 0.02),
  and of what the simulator's ledger billed at each venue (``GET /_sim/ledger?venues=1``), and the ratio of their
  wall times;
- **rough**: ``--lines`` documents through provider batches that go wrong, one fault after another as provider
  batches are created (``POST /_sim/batches``): expiry part-way with 500s, invalid answers and dropped lines, then
  no output file, then the enqueued-token limit, then a calm provider. Counted after ``producer collect``: result
  lines per custom_id (each exactly once), entries in the results stream (each line recorded once), and answers
  billed beyond the calls the result lines account for, against the lines the provider billed and left out of both
  files (``Part.missing``): only those may be billed twice;
- **latency** (of every provider batch that answered a line, in the parts run): from its end at the provider (its
  ``completed_at``/``expired_at``/``failed_at``, whole seconds: up to 1 s early) and from when a worker saw it end
  (``Part.ended_ms``) to its last line recorded (``finished_at``), against the poll interval (goal: within
  ``--poll-s`` + 5 s);
- **big** (``--big``): ``--big-lines`` lines as one provider batch (``EXTRACT_BATCH_PART_LINES``, ``--window`` and
  ``EXTRACT_BATCH_PART_BYTES`` raised to hold them; the wait for a part raised so it is sealed full), short
  documents so the input file stays under the provider's 200 MB; the workers' peak RSS (``VmHWM``; goal ≤ 300 MB).

Each part prints its table (and Redis ``used_memory_peak``, the workers' peak RSS) as soon as it is done. The default
(cost and rough, 2,000 lines each) took 111 s on a 2-core machine; ``--parts big`` alone (50,000 lines) 384 s. Most
of the rough part's time is waiting: once the workers learned the enqueued-token limit, provider batches of half the
size wait for room, and the keeper looks again every 15 s. Measured figures: ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from bench.scale import make_input, peak_rss
from schemas.pricing import ModelPrice, price_for
from store.batches import BatchNotFoundError, BatchStore
from store.keys import Keys
from store.provider_batches import Part, ProviderBatchStore
from tests.processes import REPO, RedisServer, start_worker, stop, wait_until, worker_env

PREFIX = "venues:"
KEYS = Keys(PREFIX)
API_KEY = "sk-venues-bench"
MODEL = "gpt-4o-mini"
CALM: dict[str, Any] = {
    "expire_after_lines": None,
    "server_error_share": 0.0,
    "invalid_answer_share": 0.0,
    "drop_lines": 0,
    "no_output_file": False,
    "enqueued_token_limit": {},
}
END_STAMPS = ("completed_at", "expired_at", "failed_at", "cancelled_at")
console = Console(width=150)


@dataclass
class Stack:
    """One private Redis, one simulator and the workers, for one part of the bench."""

    redis_url: str
    sim_url: str
    env: dict[str, str]
    workdir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def producer(self, *command: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "producer.cli", *command],
            env={**os.environ, **self.env},
            cwd=REPO,
            capture_output=True,
            check=False,
        )
        if done.returncode not in (0, 4):  # 4: complete with failed lines, reported below
            raise RuntimeError(f"producer {command[0]} exited with {done.returncode}: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode()

    def redis_peak(self) -> int:
        """Redis ``used_memory_peak`` (a fresh server per part: this part's peak)."""
        client = SyncRedis.from_url(self.redis_url)
        try:
            info: dict[str, Any] = client.info("memory")  # type: ignore[assignment]
            return int(info["used_memory_peak"])
        finally:
            client.close()

    def alive(self) -> None:
        for n, worker in enumerate(self.workers):
            if worker.poll() is not None:
                log = (self.workdir / f"worker-{n}.log").read_text()[-2000:]
                raise RuntimeError(f"worker {n} exited with {worker.returncode}: {log}")

    def sim(self, method: str, path: str, payload: object = None) -> Any:
        async def run() -> Any:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            async with (
                aiohttp.ClientSession() as session,
                session.request(method, self.sim_url + path, json=payload, headers=headers) as got,
            ):
                got.raise_for_status()
                return await got.json()

        return asyncio.run(run())


@contextmanager
def simulator() -> Iterator[str]:
    """``python -m simulator`` at zero latency on a free port; its base URL. Given a minute to stop: holding a
    185 MB provider batch's files, it takes longer than ``tests.processes.simulator_process`` waits."""
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--port", "0"], stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    try:
        if "listening on" not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield line.split("listening on", 1)[1].strip()
    finally:
        stop(proc, timeout_s=60)
        proc.stdout.close()


@contextmanager
def stack(args: argparse.Namespace, name: str, **settings: str) -> Iterator[Stack]:
    """A fresh private Redis, the zero-latency simulator and ``args.workers`` ``worker run`` processes."""
    with tempfile.TemporaryDirectory(prefix=f"bench-venues-{name}-") as tmp:
        workdir = Path(tmp)
        server = RedisServer(workdir, persist=False)
        server.start()
        try:
            with simulator() as sim_url:
                own = {
                    "EXTRACT_CONCURRENCY": str(args.concurrency),
                    "EXTRACT_BATCH_POLL_S": str(args.poll_s),
                    "EXTRACT_BATCH_PART_WAIT_S": str(args.part_wait_s),
                    "EXTRACT_BATCH_PART_LINES": str(args.part_lines),
                    "EXTRACT_LOG_LEVEL": "WARNING",
                    "PYTHONUNBUFFERED": "1",
                }
                env = worker_env(server.url, sim_url, API_KEY, PREFIX, **{**own, **settings})
                running = Stack(server.url, sim_url, env, workdir)
                logs = [workdir / f"worker-{n}.log" for n in range(args.workers)]
                running.workers = [start_worker(env, f"{name}-{n}", log=log) for n, log in enumerate(logs)]
                try:
                    yield running
                finally:
                    for worker in running.workers:
                        stop(worker)
        finally:
            server.stop()


# --- reading what happened ------------------------------------------------------------------------------------------
def _store_read(redis_url: str, batch_id: str) -> tuple[int, float | None, list[Part]]:
    """(lines done, the batch's cost_usd, its provider batches) of a batch."""

    async def run() -> tuple[int, float | None, list[Part]]:
        redis = Redis.from_url(redis_url)
        try:
            record = await BatchStore(redis, KEYS).get(batch_id)
            parts = await ProviderBatchStore(redis, KEYS).parts(KEYS.batch(batch_id))
            return record.done, record.cost_usd, parts
        except BatchNotFoundError:
            return 0, None, []
        finally:
            await redis.aclose()

    return asyncio.run(run())


def _recorded(redis_url: str, batch_id: str) -> int:
    """Entries in the batch's results stream: one per recording of a line."""
    client = SyncRedis.from_url(redis_url)
    try:
        return int(client.xlen(KEYS.batch(batch_id).results))  # type: ignore[arg-type]
    finally:
        client.close()


def _collect(running: Stack, batch_id: str) -> list[dict[str, Any]]:
    out = running.workdir / f"{batch_id}.jsonl"
    running.producer("collect", batch_id, "--out", str(out))
    return [orjson.loads(line) for line in out.read_bytes().splitlines()]


def _finished_s(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["finished_at"]).replace("Z", "+00:00")).timestamp()


def _usd(billed: dict[str, float], price: ModelPrice) -> float:
    """What billed tokens cost at ``price`` (cached input at its rate, reasoning is in output)."""
    cached = billed["cached_input_tokens"]
    fresh = billed["input_tokens"] - cached
    return (fresh * price.input + cached * price.cached_input + billed["output_tokens"] * price.output) / 1e6


def provider_ends(running: Stack, runs: list[Run]) -> dict[str, float]:
    """When each provider batch of ``runs`` ended at the provider (its ``*_at``, whole seconds), by its id."""
    ends: dict[str, float] = {}
    for run in runs:
        for part in run.parts:
            if part.provider_batch_id:
                batch = running.sim("GET", f"/v1/batches/{part.provider_batch_id}")
                ended = next((batch[stamp] for stamp in END_STAMPS if batch.get(stamp)), None)
                if ended is not None:
                    ends[part.provider_batch_id] = float(ended)
    return ends


@dataclass
class Run:
    """One batch, end to end."""

    batch_id: str
    lines: int
    wall_s: float
    cost_usd: float | None
    parts: list[Part]
    results: list[dict[str, Any]]
    recorded: int


def run_batch(running: Stack, path: Path, batch_id: str, lines: int, *extra: str, during: Any = None) -> Run:
    """Submit ``path`` as ``batch_id``, wait until every line is recorded (calling ``during()`` meanwhile), collect."""
    started = time.monotonic()
    running.producer(
        "submit", str(path), "--schema", "invoice", "--model", MODEL, "--batch-id", batch_id, "--no-cache", *extra
    )

    def done() -> bool:
        running.alive()
        if during is not None:
            during()
        return _store_read(running.redis_url, batch_id)[0] >= lines

    wait_until(done, 3 * 3600, f"{batch_id} did not complete", 0.2)
    wall = time.monotonic() - started
    _done, cost, parts = _store_read(running.redis_url, batch_id)
    results = _collect(running, batch_id)
    return Run(batch_id, lines, wall, cost, parts, results, _recorded(running.redis_url, batch_id))


def once_each(run: Run) -> tuple[int, int, int]:
    """(lines with no result line, lines with more than one, recordings beyond one per line)."""
    per_id = Counter(str(r["custom_id"]) for r in run.results)
    expected = {f"doc-{n:08d}" for n in range(run.lines)}
    lost = len(expected - set(per_id))
    repeated = sum(1 for n in per_id.values() if n > 1)
    return lost, repeated, run.recorded - run.lines


# --- the parts ------------------------------------------------------------------------------------------------------
Rows = list[tuple[str, str]]


@dataclass
class Measured:
    """What one part measured: its rows, its batches, and when their provider batches ended at the provider."""

    rows: Rows
    runs: list[Run]
    ends: dict[str, float]


def part_cost(args: argparse.Namespace, path: Path) -> Measured:
    with stack(args, "cost") as running:
        sync = run_batch(running, path, "sync", args.lines)
        batch = run_batch(running, path, "batch-api", args.lines, "--venue", "batch-api")
        ledger = running.sim("GET", "/_sim/ledger?venues=1")["venues"]
        rss = max(peak_rss(w.pid) for w in running.workers)
        ends = provider_ends(running, [batch])
        redis_peak = running.redis_peak()
    price = price_for(MODEL)
    assert price is not None
    by_ledger = _usd(ledger["batch"]["billed_at_sync_price"], price) / _usd(ledger["sync"]["billed"], price)
    assert sync.cost_usd is not None
    assert batch.cost_usd is not None
    venues = Counter(str(r["venue"]) for r in batch.results)
    rows = [
        ("lines (each batch)", f"{args.lines:,}"),
        ("cost_usd: sync / batch-api", f"${sync.cost_usd:.6f} / ${batch.cost_usd:.6f}"),
        ("cost ratio batch-api / sync (batch records; goal 0.50 ± 0.02)", f"{batch.cost_usd / sync.cost_usd:.4f}"),
        ("cost ratio batch-api / sync (simulator ledger, by venue)", f"{by_ledger:.4f}"),
        ("answers billed: sync venue / batch venue", f"{ledger['sync']['ok']:,} / {ledger['batch']['ok']:,}"),
        ("wall time: sync / batch-api", f"{sync.wall_s:.1f} s / {batch.wall_s:.1f} s"),
        ("  ratio batch-api / sync", f"{batch.wall_s / sync.wall_s:.2f}"),
        ("provider batches (parts) of the batch-api batch", f"{len(batch.parts)}"),
        ("result lines' venue (batch-api batch)", ", ".join(f"{k} {v:,}" for k, v in sorted(venues.items()))),
        ("sync, then batch-api: lost / repeated / recorded twice", f"{once_each(sync)} {once_each(batch)}"),
        ("peak RSS of a worker (VmHWM)", f"{rss / 1e6:,.0f} MB"),
        ("Redis used_memory_peak", f"{redis_peak / 1e6:,.0f} MB"),
    ]
    return Measured(rows, [batch], ends)


@dataclass(frozen=True)
class Step:
    """Line faults for the provider batches created from now on, until ``created`` more were created and ``failed``
    of the batch's provider batches have failed."""

    name: str
    faults: dict[str, Any]
    created: int = 0
    failed: int = 0


@dataclass
class Schedule:
    """Line faults set one after another as provider batches are created (a batch takes them at its creation; the
    enqueued-token limit applies when it is validated)."""

    running: Stack
    batch_id: str
    steps: list[Step]
    applied: list[tuple[str, int]] = field(default_factory=list)
    """(step, how many provider batches had been created when it was set)."""

    def __call__(self) -> None:
        index = len(self.applied) - 1
        if index + 1 >= len(self.steps):
            return
        parts = _store_read(self.running.redis_url, self.batch_id)[2]
        created = sum(1 for p in parts if p.provider_batch_id)
        failed = sum(1 for p in parts if p.status == "failed")
        if index >= 0:
            step = self.steps[index]
            if created - self.applied[index][1] < step.created or failed < step.failed:
                return
        self.running.sim("POST", "/_sim/batches", {**CALM, **self.steps[index + 1].faults})
        self.applied.append((self.steps[index + 1].name, created))


def part_rough(args: argparse.Namespace, path: Path) -> Measured:
    expire = args.part_lines * 3 // 4
    steps = [
        Step(
            f"expiry after {expire} lines, 10 % 500s, 5 % invalid answers, 3 lines dropped",
            {"expire_after_lines": expire, "server_error_share": 0.1, "invalid_answer_share": 0.05, "drop_lines": 3},
            created=max(args.lines // args.part_lines, 1),
        ),
        Step("no output file", {"no_output_file": True}, created=2),
        # Less than any part: the provider batches validated under it fail with token_limit_exceeded, and the workers
        # learn a limit from what their other provider batches in flight hold (or half the part).
        Step("enqueued-token limit 1,000", {"enqueued_token_limit": {MODEL: 1000}}, failed=1),
        Step("calm", {}),
    ]
    with stack(args, "rough") as running:
        before = running.sim("GET", "/_sim/ledger?venues=1")["venues"]
        schedule = Schedule(running, "rough", steps)
        schedule()  # the first faults, before the first provider batch
        rough = run_batch(running, path, "rough", args.lines, "--venue", "batch-api", during=schedule)
        after = running.sim("GET", "/_sim/ledger?venues=1")["venues"]
        rss = max(peak_rss(w.pid) for w in running.workers)
        ends = provider_ends(running, [rough])
        learned = _learned_limits(running.redis_url)
        redis_peak = running.redis_peak()
    billed = {v: after[v]["ok"] - before[v]["ok"] for v in ("sync", "batch")}
    calls = sum(int(r["attempts"]) for r in rough.results)
    missing = sum(p.missing for p in rough.parts)
    lost, repeated, twice = once_each(rough)
    statuses = Counter(p.status or p.state for p in rough.parts)
    errors = Counter((p.error or "").split(":", 1)[0] for p in rough.parts if p.error)
    venues = Counter(str(r["venue"]) for r in rough.results)
    outcome = Counter(str(r["status"]) for r in rough.results)
    rows = [
        ("lines", f"{rough.lines:,} in {rough.wall_s:.1f} s"),
        ("faults, as provider batches were created", "; ".join(f"{n} (from {c})" for n, c in schedule.applied)),
        ("provider batches by end", ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))),
        ("  failed ones' errors", ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "none"),
        ("enqueued-token limit the workers learned", ", ".join(f"{n:,}" for n in learned) or "none"),
        ("lines sent on (expired, 500, dropped, refused)", f"{sum(p.resent for p in rough.parts):,}"),
        ("result lines: status", ", ".join(f"{k} {v:,}" for k, v in sorted(outcome.items()))),
        ("result lines: venue", ", ".join(f"{k} {v:,}" for k, v in sorted(venues.items()))),
        ("result lines: repaired", f"{sum(1 for r in rough.results if r['repairs']):,}"),
        ("lines without a result line (lost)", f"{lost}"),
        ("lines with more than one result line", f"{repeated}"),
        ("recordings beyond one per line (results stream)", f"{twice}"),
        (
            "answers billed: batch venue / sync venue (repairs, lines gone sync)",
            f"{billed['batch']} / {billed['sync']}",
        ),
        ("calls the result lines account for (sum of attempts)", f"{calls:,}"),
        ("answers billed twice (billed - accounted for)", f"{billed['batch'] + billed['sync'] - calls:,}"),
        ("lines in neither file (sum of Part.missing): the only ones allowed twice", f"{missing:,}"),
        ("peak RSS of a worker (VmHWM)", f"{rss / 1e6:,.0f} MB"),
        ("Redis used_memory_peak", f"{redis_peak / 1e6:,.0f} MB"),
    ]
    return Measured(rows, [rough], ends)


def _learned_limits(redis_url: str) -> list[int]:
    """The enqueued-token limits the workers learned (``{p}venue:queue:{scope}`` ``limit``)."""
    client = SyncRedis.from_url(redis_url)
    try:
        found = [client.hget(key, "limit") for key in client.scan_iter(match=f"{PREFIX}venue:queue:*")]
        return [int(v) for v in found if v]  # type: ignore[arg-type]
    finally:
        client.close()


def part_big(args: argparse.Namespace, path: Path) -> Measured:
    settings = {
        "EXTRACT_BATCH_PART_LINES": str(args.big_lines),
        "EXTRACT_BATCH_PART_BYTES": "200000000",
        "EXTRACT_BATCH_PART_WAIT_S": "3600",  # sealed when full, not before
    }
    with stack(args, "big", **settings) as running:
        big = run_batch(running, path, "big", args.big_lines, "--venue", "batch-api", "--window", str(args.big_lines))
        rss = [peak_rss(w.pid) for w in running.workers]
        ends = provider_ends(running, [big])
        redis_peak = running.redis_peak()
    lost, repeated, twice = once_each(big)
    rows = [
        ("lines", f"{big.lines:,} in {big.wall_s:.1f} s ({big.lines / big.wall_s:,.0f} lines/s)"),
        (
            "provider batches: lines, input file, status",
            "; ".join(f"{p.lines:,} lines, {p.size / 1e6:,.1f} MB, {p.status}" for p in big.parts),
        ),
        ("lost / repeated / recorded twice", f"{lost} / {repeated} / {twice}"),
        ("peak RSS of each worker (VmHWM; goal ≤ 300 MB)", " / ".join(f"{r / 1e6:,.0f} MB" for r in rss)),
        ("Redis used_memory_peak", f"{redis_peak / 1e6:,.0f} MB"),
    ]
    return Measured(rows, [big], ends)


def latency_rows(args: argparse.Namespace, measured: Measured) -> Rows:
    """Per provider batch that answered lines: seconds from its end to its last line recorded."""
    from_provider: list[float] = []
    from_seen: list[float] = []
    for run in measured.runs:
        last: dict[str, float] = {}
        for record in run.results:
            pbid = record.get("provider_batch_id")
            if pbid:
                last[pbid] = max(last.get(pbid, 0.0), _finished_s(record))
        for part in run.parts:
            if part.provider_batch_id in last and part.provider_batch_id in measured.ends:
                recorded = last[part.provider_batch_id]
                from_provider.append(recorded - measured.ends[part.provider_batch_id])
                from_seen.append(recorded - part.ended_ms / 1000)
    if not from_provider:
        return []
    goal = args.poll_s + 5
    return [
        ("provider batches that answered lines", f"{len(from_provider)}"),
        (
            "provider's end → last line recorded: median / max",
            f"{statistics.median(from_provider):.1f} s / {max(from_provider):.1f} s (goal ≤ {goal:g} s)",
        ),
        (
            "a worker saw it end → last line recorded: median / max",
            f"{statistics.median(from_seen):.1f} s / {max(from_seen):.1f} s (poll every {args.poll_s:g} s)",
        ),
    ]


def show(args: argparse.Namespace, name: str, part: Measured) -> None:
    """One part's table, printed as soon as the part is done (a later part that fails loses nothing)."""
    sized = f"one part of {args.big_lines:,} lines" if name == "big" else f"parts of {args.part_lines:,} lines"
    wait = "until full" if name == "big" else f"{args.part_wait_s:g} s"
    title = (
        f"bench.venues {name}: {args.workers} workers x {args.concurrency}, poll {args.poll_s:g} s, part wait "
        f"{wait}, {sized}, zero-latency simulator, cache off"
    )
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for measure, value in part.rows + [(f"latency: {m}", v) for m, v in latency_rows(args, part)]:
        table.add_row(measure, value)
    console.print(table)


def main(args: argparse.Namespace) -> None:
    chosen = {p.strip() for p in args.parts.split(",") if p.strip()} | ({"big"} if args.big else set())
    unknown = chosen - {"cost", "rough", "big"}
    if unknown:
        raise SystemExit(f"--parts: unknown {', '.join(sorted(unknown))} (cost, rough, big)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-venues-") as tmp:
        path, big_path = Path(tmp) / "input.jsonl", Path(tmp) / "big.jsonl"
        if chosen & {"cost", "rough"}:
            make_input(path, args.lines, args.doc_bytes)
        if "cost" in chosen:
            show(args, "cost", part_cost(args, path))
        if "rough" in chosen:
            show(args, "rough", part_rough(args, path))
        if "big" in chosen:
            make_input(big_path, args.big_lines, args.big_doc_bytes)
            show(args, "big", part_big(args, big_path))
    console.print(f"bench.venues took {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2000, help="lines of the cost and rough parts")
    parser.add_argument("--parts", default="cost,rough", help="which parts: cost, rough, big (comma-separated)")
    parser.add_argument("--big", action="store_true", help="add the big part (one 50,000-line provider batch)")
    parser.add_argument("--big-lines", type=int, default=50_000)
    parser.add_argument("--doc-bytes", type=int, default=600)
    parser.add_argument("--big-doc-bytes", type=int, default=120)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--poll-s", type=float, default=1.0, help="EXTRACT_BATCH_POLL_S")
    parser.add_argument("--part-wait-s", type=float, default=0.5, help="EXTRACT_BATCH_PART_WAIT_S")
    parser.add_argument("--part-lines", type=int, default=200, help="EXTRACT_BATCH_PART_LINES (cost and rough)")
    main(parser.parse_args())
