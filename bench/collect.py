"""``collect`` from the results sink against ``collect`` from Redis, on the same finished lines, in one run.

    .venv/bin/python -m bench.collect [--lines 200000] [--format parquet] [--part-lines 10000] [--workdir DIR]

Two batches of the same ``--lines`` realistic invoice result lines (the built-in invoice schema, outputs of ~600
bytes, usage, ids) are recorded straight through the store into a private ``redis-server`` (no API calls: this
measures reading, not answering): one keeps its results in Redis, the other has a local results sink, which the
real sink writer (``worker.sink_writer``) fills until its manifest is complete. Then ``producer.batch.collect.collect``
writes each batch in input order, in this process, and the table shows seconds and MB/s of JSONL written, the
writer's own time and the parts' bytes per line, and Redis bytes per line left for each batch.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from producer.batch.collect import collect
from schemas.jobs import ResultsSink
from schemas.records import CallTotals, line_result
from schemas.results import Status, Usage
from schemas.settings import Settings
from store.batches import BatchStore
from store.codec import ResultCodec
from store.keys import Keys
from store.lines import LineIndex
from store.results import ResultStore
from store.scripts import RoundTrip
from tests.processes import RedisServer, invoice_spec
from worker.sink_writer import SinkWriter

KEYS = Keys("bench:")
CHUNK = 2000


def output(n: int, rng: random.Random) -> dict[str, object]:
    items = [
        {
            "description": f"Item {k} {rng.choice(['widget', 'service', 'licence'])}",
            "quantity": k + 1,
            "unit_price": round(rng.uniform(1, 500), 2),
            "amount": round(rng.uniform(1, 2000), 2),
        }
        for k in range(rng.randint(1, 4))
    ]
    return {
        "vendor": f"Vendor {n % 997} Ltd",
        "vendor_address": {
            "street": f"{n % 300} Harbour Road",
            "city": "Bristol",
            "postal_code": "BS1 4DJ",
            "country": "GB",
        },
        "invoice_number": f"INV-{n:08d}",
        "invoice_date": "2026-03-01",
        "due_date": None,
        "currency": "EUR",
        "line_items": items,
        "subtotal": round(sum(float(str(i["amount"])) for i in items), 2),
        "tax": None,
        "total": round(sum(float(str(i["amount"])) for i in items), 2),
    }


async def fill(redis: Redis, batch_id: str, lines: int, sink: ResultsSink | None) -> None:
    spec = invoice_spec(batch_id, results=sink)
    keys = KEYS.batch(batch_id)
    assert await BatchStore(redis, KEYS).create(spec, lines=lines, ttl_ms=0, input_ref=None, created_ms=1)
    rng = random.Random(7)
    codec = ResultCodec(spec.json_schema)
    results, index = ResultStore(redis), LineIndex(redis)
    for first in range(0, lines, CHUNK):
        count = min(CHUNK, lines - first)
        fps = [f"sha256:{(first + n):064x}" for n in range(count)]
        await index.append(keys, first, [(fp, f"doc-{first + n:08d}") for n, fp in enumerate(fps)])
        trip = RoundTrip(redis)
        for n, fp in enumerate(fps):
            record = line_result(
                spec,
                custom_id=f"doc-{first + n:08d}",
                fingerprint=fp,
                status=Status.SUCCEEDED,
                totals=CallTotals(usage=Usage(input_tokens=900, output_tokens=180, total_tokens=1080), attempts=1),
                price=None,
                output=output(first + n, rng),
            )
            results.queue_record(trip, keys, KEYS.queue, first + n, record, codec, job_id="")
        await trip.run()


async def used(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def main(args: argparse.Namespace) -> None:
    console = Console(width=140)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        server = RedisServer(workdir, persist=False)
        server.start()
        try:
            redis = Redis.from_url(server.url)
            sink_dir = workdir / "sink"
            sink_dir.mkdir()
            base = await used(redis)
            await fill(redis, "in-redis", args.lines, None)
            in_redis = await used(redis) - base
            base = await used(redis)
            await fill(redis, "to-sink", args.lines, ResultsSink(url=str(sink_dir), format=args.format))
            settings = Settings(key_prefix=KEYS.prefix, sink_part_lines=args.part_lines, sink_flush_after_s=0)
            writer = SinkWriter(redis, KEYS, settings)
            started = time.monotonic()
            while not await redis.hexists(KEYS.batch("to-sink").sink, "done"):
                await writer.write_batch("to-sink")
            write_s = time.monotonic() - started
            to_sink = await used(redis) - base
            sink_bytes = sum(f.stat().st_size for f in (sink_dir / "to-sink").iterdir())
            rows = []
            for batch_id in ("in-redis", "to-sink"):
                out = workdir / f"{batch_id}.jsonl"
                started = time.monotonic()
                written, missing = await collect(redis, KEYS, batch_id, out)
                seconds = time.monotonic() - started
                assert (written, missing) == (args.lines, 0)
                rows.append((batch_id, seconds, out.stat().st_size))
                out.unlink()
            await redis.aclose()
        finally:
            server.stop()
    table = Table(title=f"bench.collect: {args.lines:,} finished lines, input order, in-process")
    for column in ("results", "collect s", "MB/s written", "ratio", "Redis bytes/line left"):
        table.add_column(column, justify="left" if column == "results" else "right")
    base_rate = rows[0][2] / rows[0][1]
    for (batch_id, seconds, size), memory in zip(rows, (in_redis, to_sink), strict=True):
        name = "in Redis" if batch_id == "in-redis" else f"in the sink ({args.format})"
        table.add_row(
            name,
            f"{seconds:.1f}",
            f"{size / 1e6 / seconds:,.1f}",
            f"{size / seconds / base_rate:.2f}",
            f"{memory / args.lines:,.0f}",
        )
    console.print(table)
    console.print(
        f"sink writer: {write_s:.1f}s for {args.lines:,} lines ({args.lines / write_s:,.0f} lines/s), "
        f"{sink_bytes / args.lines:,.0f} bytes per line in {args.format} parts of {args.part_lines:,}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--format", default="parquet", choices=["jsonl", "jsonl.gz", "parquet"])
    parser.add_argument("--part-lines", type=int, default=10_000)
    parser.add_argument("--workdir", default=None)
    asyncio.run(main(parser.parse_args()))
