"""Admission against providers that charge and report limits their own way: utilization, 429s, overhead.

    .venv/bin/python -m bench.ratelimit [--jobs 1500] [--processes 1,2,4] [--quick] [--only ROWS]

One simulator per provider behaviour (RPM 6,000, TPM 2,000,000, latency 200 ± 100 ms), every worker a separate
`worker run --burst` process sharing one limit scope through Redis. The rows are every combination of

- how the provider charges output when a request sends no maximum (`--charge-output max`: the limiter counts the
  default maximum, as OpenAI does; `actual`: it counts the output actually produced, as other servers do),
- whether the batch sends `--max-output-tokens 400`,
- what the worker is told: the provider's limits (configured), nothing (learned from the headers), or limits twice
  the provider's (configured higher: the provider's headers must win),
- 1, 2 and 4 worker processes,

plus a provider that sends no limit headers at all (a local server: only slow start and the shared cool-down can
find its limit), and a naive client for contrast (a semaphore of 64, the SDK's retries, no admission).

Columns: utilization of the binding limit in the steady state (the provider's own per-second account of what it
charged, dropping warm-up and drain), the share of requests answered 429, requests per job, and the wall time
against the ideal (the time the provider's limits need for what it charged). Then the admission overhead: the time
one acquire + settle takes at the highest rate this machine sustains, p50 and p95, and the Redis commands per call
(`INFO commandstats`). Uses Redis database 14 and flushes only it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import submit
from schemas.settings import Settings
from store.batches import BatchStore
from store.keys import Keys
from tests.processes import invoice_spec, simulator_process
from worker.adapters.http import HttpSender
from worker.adapters.responses import ResponsesAdapter
from worker.admission import AdmissionController
from worker.prompt import first_request

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-bench-not-a-real-key"
PREFIX = "bench:"
console = Console(stderr=True)


@dataclass(frozen=True)
class Row:
    charge: str
    max_output: bool
    limits: str
    """configured, learned, higher (configured at twice the provider's), or none (no headers either)."""
    processes: int

    @property
    def name(self) -> str:
        return (
            f"charge {self.charge}, {'max 400' if self.max_output else 'no max'}, limits {self.limits}, "
            f"{self.processes} proc"
        )


@dataclass(frozen=True)
class Outcome:
    name: str
    jobs: int
    wall_s: float
    ideal_s: float
    utilization: float
    binding: str
    requests: int
    rejected: int

    @property
    def share_429(self) -> float:
        return self.rejected / self.requests if self.requests else 0.0


def documents(count: int) -> list[InputLine]:
    vendors = ("ACME Corp", "Globex", "Initech GmbH", "Umbrella Ltd", "Stark Industries", "Hooli")
    return [
        InputLine(
            n + 1,
            f"doc-{n}",
            f"INVOICE {1000 + n} from {vendors[n % len(vendors)]}. {n % 9 + 1} x Widget at 12.50 EUR. "
            f"Shipping 4.90 EUR. Subtotal {(n % 9 + 1) * 12.5 + 4.9:.2f} EUR, VAT 19 %. Due 2026-12-{n % 28 + 1:02d}.",
        )
        for n in range(count)
    ]


def simulator(args: argparse.Namespace, *, charge: str, headers: str) -> contextlib.AbstractContextManager[str]:
    flags = ["--charge-output", charge]
    if headers == "none":
        flags.append("--no-limit-headers")
    return simulator_process(
        "--require-api-key",
        API_KEY,
        "--rpm",
        str(args.rpm),
        "--tpm",
        str(args.tpm),
        "--latency-ms",
        str(args.latency_ms),
        "--latency-jitter-ms",
        str(args.jitter_ms),
        *flags,
    )


async def sim_json(url: str, method: str = "GET") -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        response.raise_for_status()
        return await response.json()


async def fresh_start(sim_url: str, redis: Redis) -> None:
    """Empty our Redis database and the simulator's ledger; let the provider's buckets refill."""
    await redis.flushdb()
    await sim_json(f"{sim_url}/_sim/reset", "POST")
    await asyncio.sleep(1.5)


def steady_state(ledger: dict[str, Any], args: argparse.Namespace, name: str, wall_s: float) -> Outcome:
    series = ledger["series"]
    window = [row for row in series if args.warmup_s <= row["t"] < len(series) - args.tail_s] or series
    seconds = len(window)
    rpm = sum(row["admitted"] for row in window) * 60 / seconds
    tpm = sum(row["admitted_tokens"] for row in window) * 60 / seconds
    rpm_share, tpm_share = rpm / args.rpm, tpm / args.tpm
    limits = ledger["rate_limit"]
    ideal = max(limits["admitted_requests"] / (args.rpm / 60), limits["admitted_tokens"] / (args.tpm / 60))
    return Outcome(
        name=name,
        jobs=args.jobs,
        wall_s=wall_s,
        ideal_s=ideal,
        utilization=max(rpm_share, tpm_share),
        binding="tokens" if tpm_share >= rpm_share else "requests",
        requests=ledger["requests"]["total"],
        rejected=int(ledger["requests"]["by_status"].get("429", 0)),
    )


async def run_ours(args: argparse.Namespace, sim_url: str, redis: Redis, row: Row) -> Outcome:
    await fresh_start(sim_url, redis)
    batch = invoice_spec(f"run-{row.processes}", 400 if row.max_output else None)
    source = MemorySource(tuple(documents(args.jobs)))
    await submit(redis, Keys(PREFIX), batch, source, window=args.jobs, ttl_s=0)
    env = {
        **os.environ,
        "REDIS_URL": args.redis,
        "EXTRACT_KEY_PREFIX": PREFIX,
        "OPENAI_BASE_URL": sim_url + "/v1",
        "OPENAI_API_KEY": API_KEY,
        "EXTRACT_LOG_LEVEL": "WARNING",
        "EXTRACT_METRICS_PORT": "0",
        "EXTRACT_CACHE_TTL_S": "0",
    }
    if row.limits in ("configured", "higher"):
        factor = 2 if row.limits == "higher" else 1
        env |= {"EXTRACT_RPM": str(args.rpm * factor), "EXTRACT_TPM": str(args.tpm * factor)}
    started = time.monotonic()
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "worker.cli", "run", "--burst", "--concurrency", str(args.concurrency), "--name", f"bench-{n}"),
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for n in range(row.processes)
    ]
    codes = await asyncio.gather(*(w.wait() for w in workers))
    wall = time.monotonic() - started
    if any(codes):
        raise RuntimeError(f"a worker exited with {codes}")
    done = (await BatchStore(redis, Keys(PREFIX)).get(batch.batch_id)).succeeded
    if done != args.jobs:
        raise RuntimeError(f"{row.name}: only {done} of {args.jobs} lines succeeded")
    return steady_state(await sim_json(f"{sim_url}/_sim/ledger?series=1"), args, row.name, wall)


async def run_naive(args: argparse.Namespace, sim_url: str, redis: Redis) -> Outcome:
    """What most scripts do: a semaphore, the SDK's own retries, and try again after a rate-limit error."""
    await fresh_start(sim_url, redis)
    batch = invoice_spec("naive", 400)
    client = openai.AsyncOpenAI(
        api_key=API_KEY, base_url=sim_url + "/v1", http_client=openai.DefaultAioHttpClient(), timeout=60
    )
    adapter = ResponsesAdapter(HttpSender(client, connections=args.naive_concurrency))
    gate = asyncio.Semaphore(args.naive_concurrency)

    async def one(line: InputLine) -> None:
        body = adapter.build_body(first_request(batch, line.text, store=False))
        async with gate:
            while True:
                try:
                    await client.responses.create(**body)
                    return
                except openai.RateLimitError:
                    await asyncio.sleep(1.0)

    started = time.monotonic()
    try:
        await asyncio.gather(*(one(line) for line in documents(args.jobs)))
    finally:
        await client.close()
    wall = time.monotonic() - started
    name = f"naive baseline (semaphore {args.naive_concurrency}, charge max, max 400)"
    return steady_state(await sim_json(f"{sim_url}/_sim/ledger?series=1"), args, name, wall)


@dataclass(frozen=True)
class Overhead:
    p50_ms: float
    p95_ms: float
    calls_per_s: float
    """Back to back, as many callers as fit: the highest rate one process takes admissions at."""
    loaded_p50_ms: float
    commands_per_call: float


async def admission_overhead(args: argparse.Namespace, redis: Redis) -> Overhead:
    """acquire + settle with limits that never make a call wait: one caller back to back (the time admission adds
    to a call), then 32 at once (the highest rate one process sustains), and the Redis commands per call."""
    await redis.flushdb()
    settings = Settings(rpm=10**9, tpm=10**12, admission_max_sleep_s=60)
    controller = AdmissionController(redis, Keys(PREFIX), settings, API_KEY, endpoint="http://bench")
    headers = {
        "x-ratelimit-limit-requests": "1000000000",
        "x-ratelimit-remaining-requests": "999999999",
        "x-ratelimit-reset-requests": "1ms",
        "x-ratelimit-limit-tokens": "1000000000000",
        "x-ratelimit-remaining-tokens": "999999990000",
        "x-ratelimit-reset-tokens": "10ms",
    }

    async def run(callers: int, seconds: float) -> list[float]:
        timings: list[float] = []
        deadline = time.monotonic() + seconds

        async def caller() -> None:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                reservation = await controller.acquire("m", 600, 0, may_defer=False, explicit_max=False)
                await controller.settle(reservation, input_tokens=590, output_tokens=120, headers=headers)
                timings.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(caller() for _ in range(callers)))
        return timings

    alone = await run(1, args.overhead_s / 2)
    before = await redis.info("commandstats")
    loaded = await run(32, args.overhead_s / 2)
    after = await redis.info("commandstats")
    commands = sum(after[k]["calls"] - before.get(k, {"calls": 0})["calls"] for k in after if k.startswith("cmdstat_"))
    quantiles = statistics.quantiles(alone, n=20)
    return Overhead(
        p50_ms=quantiles[9],
        p95_ms=quantiles[18],
        calls_per_s=len(loaded) / (args.overhead_s / 2),
        loaded_p50_ms=statistics.median(loaded),
        commands_per_call=commands / len(loaded),
    )


def report(outcomes: list[Outcome], args: argparse.Namespace) -> Table:
    table = Table(
        title=f"Admission vs providers: RPM {args.rpm:,}, TPM {args.tpm:,}, latency {args.latency_ms:g} ± "
        f"{args.jitter_ms:g} ms, {args.jobs:,} jobs per run"
    )
    for column in ("row", "binding", "utilization", "429 share", "requests/job", "wall s", "vs ideal"):
        table.add_column(column, justify="left" if column in {"row", "binding"} else "right")
    for o in outcomes:
        table.add_row(
            o.name,
            o.binding,
            f"{o.utilization:.3f}",
            f"{o.share_429:.2%} ({o.rejected}/{o.requests})",
            f"{o.requests / o.jobs:.2f}",
            f"{o.wall_s:.1f}",
            f"{o.wall_s / o.ideal_s:.2f}" if o.ideal_s else "-",
        )
    return table


def rows(args: argparse.Namespace) -> list[Row]:
    matrix = [
        Row(charge, max_output, limits, processes)
        for charge, max_output, limits, processes in itertools.product(
            ("max", "actual"), (True, False), ("configured", "learned", "higher"), args.processes
        )
    ]
    matrix += [Row("max", True, "none", processes) for processes in args.processes]
    return [row for row in matrix if not args.only or any(word in row.name for word in args.only)]


async def main(args: argparse.Namespace) -> None:
    redis = Redis.from_url(args.redis)
    outcomes: list[Outcome] = []
    try:
        by_provider = itertools.groupby(
            rows(args), key=lambda r: (r.charge, "none" if r.limits == "none" else "openai")
        )
        for (charge, headers), group in by_provider:
            with simulator(args, charge=charge, headers=headers) as sim_url:
                if charge == "max" and headers == "openai" and args.naive:
                    outcomes.append(await run_naive(args, sim_url, redis))
                    console.print(f"done: {outcomes[-1].name}")
                for row in group:
                    outcomes.append(await run_ours(args, sim_url, redis, row))
                    console.print(f"done: {row.name}: {outcomes[-1].utilization:.3f}, {outcomes[-1].share_429:.2%}")
        overhead = await admission_overhead(args, redis)
        await redis.flushdb()
    finally:
        await redis.aclose()
    out = Console(width=170)
    out.print(report(outcomes, args))
    ours = [o for o in outcomes if not o.name.startswith("naive")]
    learnable = [o for o in ours if "limits none" not in o.name]
    headerless = [o for o in ours if "limits none" in o.name]
    met = all(o.utilization >= 0.97 and o.share_429 <= 0.005 for o in learnable)
    out.print(
        f"configured or learnable rows: utilization >= 0.97 and <= 0.5 % 429s in each: {'met' if met else 'NOT met'}"
    )
    if headerless:
        bounded = all(o.share_429 <= 0.05 for o in headerless)
        out.print(f"no limit headers: 429s <= 5 % in each: {'met' if bounded else 'NOT met'}")
    out.print(
        f"admission overhead per call (acquire + settle, back to back): p50 {overhead.p50_ms:.2f} ms, p95 "
        f"{overhead.p95_ms:.2f} ms; at the highest rate one process takes ({overhead.calls_per_s:,.0f} calls/s, 32 "
        f"callers) p50 {overhead.loaded_p50_ms:.1f} ms of queueing; {overhead.commands_per_call:.1f} Redis commands "
        "per call (script calls and the commands inside them)"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1500)
    parser.add_argument("--processes", type=lambda s: [int(p) for p in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=16, help="jobs per worker process")
    parser.add_argument("--naive-concurrency", type=int, default=64)
    parser.add_argument("--no-naive", dest="naive", action="store_false")
    parser.add_argument("--rpm", type=int, default=6000)
    parser.add_argument("--tpm", type=int, default=2_000_000)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--jitter-ms", type=float, default=100)
    parser.add_argument("--warmup-s", type=int, default=5)
    parser.add_argument("--tail-s", type=int, default=5)
    parser.add_argument("--overhead-s", type=float, default=10)
    parser.add_argument("--only", nargs="*", default=[], help="run only rows whose name contains one of these")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--quick", action="store_true", help="400 jobs, 1 and 4 processes: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.processes = 400, [1, 4]
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
