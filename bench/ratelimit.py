"""Shared admission control against a rate-limited provider: utilization and 429s, with a naive baseline.

    .venv/bin/python -m bench.ratelimit [--jobs 3000] [--processes 1,2,4] [--quick]

One simulator (RPM 6,000, TPM 2,000,000, latency 200 ± 100 ms) serves every scenario of the run:

- ours, N processes: N `worker run --burst` processes sharing one limit scope through Redis;
- naive baseline: one asyncio process, a semaphore of 64, the openai SDK's default retries (which honour
  retry-after), no admission control, and a retry loop around it so every job finishes.

For each it prints the steady-state requests and tokens per minute the provider admitted (from the simulator's
per-second series, dropping the first and last seconds of warm-up and drain), the utilization of the binding
limit (achieved / limit) and the share of requests answered 429. Uses Redis database 14 and flushes only it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
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

from producer.readers import InputLine, MemorySource
from producer.submit import submit
from store.batches import BatchStore
from store.keys import Keys
from tests.processes import invoice_spec, simulator_process
from worker.adapters.responses import ResponsesAdapter
from worker.prompt import first_request

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "sk-bench-not-a-real-key"
PREFIX = "bench:"
console = Console(stderr=True)


@dataclass(frozen=True)
class Outcome:
    name: str
    jobs: int
    wall_s: float
    rpm: float
    tpm: float
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


def simulator(args: argparse.Namespace) -> contextlib.AbstractContextManager[str]:
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
    )


async def sim_json(url: str, method: str = "GET") -> Any:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        response.raise_for_status()
        return await response.json()


async def fresh_start(sim_url: str, redis: Redis, window_s: float) -> None:
    """Empty our Redis database and the simulator's ledger; let the provider's buckets refill."""
    await redis.flushdb()
    await sim_json(f"{sim_url}/_sim/reset", "POST")
    await asyncio.sleep(window_s + 0.5)


def steady_state(ledger: dict[str, Any], args: argparse.Namespace, name: str, jobs: int, wall_s: float) -> Outcome:
    series = ledger["series"]
    window = [row for row in series if args.warmup_s <= row["t"] < len(series) - args.tail_s]
    if not window:  # a run too short to have a steady state: use all of it
        window = series
    seconds = len(window)
    rpm = sum(row["admitted"] for row in window) * 60 / seconds
    tpm = sum(row["admitted_tokens"] for row in window) * 60 / seconds
    by_status = ledger["requests"]["by_status"]
    rpm_share, tpm_share = rpm / args.rpm, tpm / args.tpm
    binding = "tokens" if tpm_share >= rpm_share else "requests"
    return Outcome(
        name=name,
        jobs=jobs,
        wall_s=wall_s,
        rpm=rpm,
        tpm=tpm,
        utilization=max(rpm_share, tpm_share),
        binding=binding,
        requests=ledger["requests"]["total"],
        rejected=int(by_status.get("429", 0)),
    )


async def run_ours(args: argparse.Namespace, sim_url: str, redis: Redis, processes: int) -> Outcome:
    await fresh_start(sim_url, redis, 1.0)
    batch = invoice_spec(f"ours-{processes}", args.max_output_tokens)
    await submit(redis, Keys(PREFIX), batch, MemorySource(tuple(documents(args.jobs))), window=args.jobs, ttl_s=0)
    env = {
        **os.environ,
        "REDIS_URL": args.redis,
        "EXTRACT_KEY_PREFIX": PREFIX,
        "OPENAI_BASE_URL": sim_url + "/v1",
        "OPENAI_API_KEY": API_KEY,
        "EXTRACT_RPM": str(args.rpm),
        "EXTRACT_TPM": str(args.tpm),
        "EXTRACT_LOG_LEVEL": "WARNING",
        "EXTRACT_METRICS_PORT": "0",
    }
    started = time.monotonic()
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker.cli",
            "run",
            "--burst",
            "--concurrency",
            str(args.concurrency),
            "--name",
            f"bench-{n}",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for n in range(processes)
    ]
    codes = await asyncio.gather(*(w.wait() for w in workers))
    wall = time.monotonic() - started
    if any(codes):
        raise RuntimeError(f"a worker exited with {codes}")
    done = (await BatchStore(redis, Keys(PREFIX)).get(batch.batch_id)).succeeded
    if done != args.jobs:
        raise RuntimeError(f"only {done} of {args.jobs} lines succeeded")
    ledger = await sim_json(f"{sim_url}/_sim/ledger?series=1")
    return steady_state(ledger, args, f"ours, {processes} process{'es' if processes > 1 else ''}", args.jobs, wall)


async def run_naive(args: argparse.Namespace, sim_url: str, redis: Redis) -> Outcome:
    """What most scripts do: a semaphore, the SDK's own retries, and try again after a rate-limit error."""
    await fresh_start(sim_url, redis, 1.0)
    batch = invoice_spec("naive", args.max_output_tokens)
    client = openai.AsyncOpenAI(
        api_key=API_KEY, base_url=sim_url + "/v1", http_client=openai.DefaultAioHttpClient(), timeout=60
    )
    adapter = ResponsesAdapter(client)
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
    ledger = await sim_json(f"{sim_url}/_sim/ledger?series=1")
    return steady_state(ledger, args, f"naive baseline (semaphore {args.naive_concurrency})", args.jobs, wall)


def report(outcomes: list[Outcome], args: argparse.Namespace) -> Table:
    table = Table(
        title=f"Admission control vs provider limits: RPM {args.rpm:,}, TPM {args.tpm:,}, "
        f"latency {args.latency_ms:g} ± {args.jitter_ms:g} ms, {args.jobs:,} jobs per run"
    )
    columns = ("scenario", "wall s", "requests/min", "tokens/min", "binding", "utilization", "429 share")
    for column in (*columns, "requests per job"):
        table.add_column(column, justify="left" if column in {"scenario", "binding"} else "right")
    for o in outcomes:
        table.add_row(
            o.name,
            f"{o.wall_s:.1f}",
            f"{o.rpm:,.0f}",
            f"{o.tpm:,.0f}",
            o.binding,
            f"{o.utilization:.3f}",
            f"{o.share_429:.2%} ({o.rejected}/{o.requests})",
            f"{o.requests / o.jobs:.2f}",
        )
    return table


async def main(args: argparse.Namespace) -> None:
    redis = Redis.from_url(args.redis)
    outcomes: list[Outcome] = []
    try:
        with simulator(args) as sim_url:
            outcomes.append(await run_naive(args, sim_url, redis))
            console.print(f"done: {outcomes[-1].name}")
            for processes in args.processes:
                outcomes.append(await run_ours(args, sim_url, redis, processes))
                console.print(f"done: {outcomes[-1].name}")
        await redis.flushdb()
    finally:
        await redis.aclose()
    Console(width=160).print(report(outcomes, args))
    ok = all(o.utilization >= 0.95 and o.share_429 <= 0.01 for o in outcomes if not o.name.startswith("naive"))
    Console(width=160).print(
        f"target (utilization >= 0.95 and <= 1 % 429s for every process count): {'met' if ok else 'NOT met'}"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--processes", type=lambda s: [int(p) for p in s.split(",")], default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=16, help="jobs per worker process")
    parser.add_argument("--naive-concurrency", type=int, default=64)
    parser.add_argument("--rpm", type=int, default=6000)
    parser.add_argument("--tpm", type=int, default=2_000_000)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--jitter-ms", type=float, default=100)
    parser.add_argument("--max-output-tokens", type=int, default=256)
    parser.add_argument("--warmup-s", type=int, default=5)
    parser.add_argument("--tail-s", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--quick", action="store_true", help="600 jobs, for a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.jobs = 600
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
