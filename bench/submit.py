"""How fast `producer submit` enqueues, against arq's own one-job-per-round-trip `enqueue_job`, in one run.

    .venv/bin/python -m bench.submit [--lines 100000] [--baseline-lines 10000] [--redis redis://127.0.0.1:6379/14]

Uses its own Redis database (default 14) and flushes only that one. Prints lines per second for both paths on the
same line count, the ratio, and the wall time of a full 100,000-line submit (check every line, record the batch,
write its line index, enqueue), with a window as large as the file so that everything is enqueued at once.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import orjson
from arq.connections import ArqRedis, RedisSettings, create_pool
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from producer.input.readers import FileSource, InputLine
from producer.submit.submit import submit
from schemas.jobs import ExtractionJob, Fingerprinter
from schemas.wire import TASK_NAME, deserialize, serialize
from store.keys import Keys
from tests.processes import invoice_spec


def make_input(path: Path, count: int) -> None:
    with path.open("wb") as handle:
        for n in range(count):
            text = f"Invoice {n} from Vendor {n % 97} Ltd. {n % 7 + 1} x Widget at 12.50. Total due {n * 1.5:.2f} EUR."
            handle.write(orjson.dumps({"custom_id": f"doc-{n}", "text": text}) + b"\n")


async def ours(redis: Redis, keys: Keys, path: Path, batch_id: str) -> tuple[int, float]:
    """The whole submit (check the file, record, index, enqueue), with a window as large as the file."""
    started = time.perf_counter()
    source = FileSource.open(path)
    spec = invoice_spec(batch_id)
    count = (await submit(redis, keys, spec, source, window=source.count, ttl_s=0)).enqueued
    return count, time.perf_counter() - started


async def baseline(arq: ArqRedis, keys: Keys, lines: list[InputLine], batch_id: str) -> tuple[int, float]:
    """The obvious way: one `enqueue_job` (WATCH/MULTI/EXEC) per line."""
    spec = invoice_spec(batch_id)
    fingerprint = Fingerprinter(spec)
    started = time.perf_counter()
    for ordinal, line in enumerate(lines):
        job = ExtractionJob(
            batch_id=batch_id,
            ordinal=ordinal,
            custom_id=line.custom_id,
            text=line.text,
            fingerprint=fingerprint(line.text),
            line=line.line,
        )
        await arq.enqueue_job(
            TASK_NAME, job.model_dump(), _job_id=keys.job_id(batch_id, ordinal), _queue_name=keys.queue
        )
    return len(lines), time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    keys = Keys("bench:")
    redis = Redis.from_url(args.redis)
    arq = await create_pool(RedisSettings.from_dsn(args.redis), job_serializer=serialize, job_deserializer=deserialize)
    try:
        await redis.flushdb()
        with tempfile.TemporaryDirectory() as tmp:
            small, large = Path(tmp) / "small.jsonl", Path(tmp) / "large.jsonl"
            make_input(small, args.baseline_lines)
            make_input(large, args.lines)
            small_lines = list(FileSource.open(small).lines())
            base_n, base_s = await baseline(arq, keys, small_lines, "base")
            await redis.flushdb()
            ours_n, ours_s = await ours(redis, keys, small, "ours-small")
            await redis.flushdb()
            full_n, full_s = await ours(redis, keys, large, "ours-large")
            assert await redis.zcard(keys.queue) == full_n
        await redis.flushdb()
    finally:
        await redis.aclose()
        await arq.aclose()

    table = Table(title="producer submit: enqueue throughput (same machine, same Redis, same run)")
    for column in ("path", "lines", "seconds", "lines/s", "vs baseline"):
        table.add_column(column, justify="left" if column == "path" else "right")
    base_rate = base_n / base_s
    table.add_row("baseline: arq enqueue_job per line", str(base_n), f"{base_s:.2f}", f"{base_rate:,.0f}", "1.0x")
    table.add_row(
        "producer submit (pipelined)",
        str(ours_n),
        f"{ours_s:.2f}",
        f"{ours_n / ours_s:,.0f}",
        f"{(ours_n / ours_s) / base_rate:.1f}x",
    )
    table.add_row(
        "producer submit (pipelined)",
        str(full_n),
        f"{full_s:.2f}",
        f"{full_n / full_s:,.0f}",
        f"{(full_n / full_s) / base_rate:.1f}x",
    )
    Console(width=120).print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--baseline-lines", type=int, default=10_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    asyncio.run(main(parser.parse_args()))
