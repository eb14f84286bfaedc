"""What the result cache holds in Redis per distinct document: pointers (``store.cache``) against whole answers.

    .venv/bin/python -m bench.cache_memory [--sizes 1000,10000,100000,1000000] [--old 100000] [--batch-lines 100000]

A private ``redis-server`` (default configuration, no persistence) is started for the run and flushed before each
measurement. For each size N, batches of ``--batch-lines`` lines are recorded (their records only), then N distinct
fingerprints are pointed at their lines through the real store code (``CacheStore.queue_put``, in round trips of
2,000, all in one generation); the figure is Redis ``used_memory`` after minus before, divided by N. The old layout
is measured the same way at ``--old`` documents: one string per document under the old key
(``{p}cache:{provider}:{fingerprint}``) holding the answer as the old code stored it (the output and response id,
compressed with the batch's codec), with its TTL. Outputs are the simulator's invoice answers. Each row also shows
the exact ``MEMORY USAGE`` of every cache key over N (it leaves out the expiry entries, and is not moved by Redis'
other allocations: below ~100,000 documents the ``used_memory`` delta is within Redis' own noise of some 50 KB, dict
resizes and client buffers), and Redis' own time per write (``INFO commandstats``): the put script against ``SET``.

Measured on a 2-core machine under load (Redis 7.0.15), ``--sizes 1000,10000,100000,1000000,4000000 --old 100000``:
answers 494.4 bytes per document (433.2 by ``MEMORY USAGE``); pointers 29.0 / 30.2 / 30.3 at 100,000 / 1,000,000 /
4,000,000 (0.061 of before), 28.8 to 29.1 by ``MEMORY USAGE`` at every size from 1,000; under 20 minutes in all.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import random
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from simulator.generate import document_words, generate_instance
from store.batches import BatchStore
from store.cache import PUT, CacheStore, generation_of, provider_id
from store.codec import ResultCodec
from store.keys import Keys
from store.redis_typing import awaited
from store.scripts import RoundTrip
from tests.processes import RedisServer, invoice_spec

PREFIX = "extract:"
ENDPOINT = "https://api.openai.com/v1"
TTL_S = 7 * 24 * 3600
TRIP = 2000
TEXT = (
    "Invoice INV-001 from ACME Corp, dated 2026-03-01. 3 x Widget at 10.00 = 30.00. Total due 30.00 USD. "
    "Bill to Globex Corporation, 42 Main Street, Springfield. Payment terms net 30."
)


@dataclass(frozen=True)
class Row:
    layout: str
    documents: int
    bytes_per_document: float
    """``used_memory`` after the writes minus before, over the documents."""
    key_bytes_per_document: float
    """``MEMORY USAGE`` of every cache key, summed, over the documents."""
    usec_per_write: float
    """Redis' own time per write (the put script, or the old SET), from commandstats."""
    detail: str


def fingerprint(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"document {n}".encode()).hexdigest()


async def used_memory(redis: Redis) -> int:
    info = await redis.info("memory")
    return int(info["used_memory"])


async def redis_usec(redis: Redis, command: str) -> float:
    """Redis' own time per call of ``command`` since the last ``CONFIG RESETSTAT`` (commandstats)."""
    stats = await redis.info("commandstats")
    return float(stats.get(f"cmdstat_{command}", {}).get("usec_per_call", 0.0))


async def key_bytes(redis: Redis, match: str) -> int:
    """``MEMORY USAGE`` (exact: ``SAMPLES 0``) summed over the keys matching ``match``: a second figure that the
    server's other allocations (clients' buffers, Lua) cannot move; it leaves out the expiry entries."""
    total = 0
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=match, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            total += await _usage(redis, batch)
            batch = []
    return total + (await _usage(redis, batch) if batch else 0)


async def _usage(redis: Redis, keys: list[bytes]) -> int:
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return sum(int(size or 0) for size in await pipe.execute())


async def settle(redis: Redis) -> int:
    """``used_memory`` once the writers' connections are closed (their query buffers counted otherwise)."""
    await asyncio.sleep(0.2)
    return await used_memory(redis)


@asynccontextmanager
async def client(url: str) -> AsyncIterator[Redis]:
    """A connection of its own, closed after: what it leaves in Redis' buffers goes with it."""
    redis = Redis.from_url(url)
    try:
        yield redis
    finally:
        await redis.aclose()


async def pointers(url: str, documents: int, batch_lines: int) -> Row:
    keys = Keys(PREFIX)
    batches = math.ceil(documents / batch_lines)
    async with client(url) as setup:
        await setup.flushall()
        store = BatchStore(setup, keys)
        for b in range(batches):
            await store.create(invoice_spec(f"b{b}"), lines=batch_lines, ttl_ms=0, input_ref=None, created_ms=1)
        await setup.script_load(PUT.text)  # the script's text is not the cache's
    now = time.time()
    async with client(url) as probe:
        before = await settle(probe)
        await probe.config_resetstat()
        async with client(url) as writer:
            cache = CacheStore(writer, keys, ENDPOINT)
            trip = RoundTrip(writer)
            started = time.perf_counter()
            for n in range(documents):
                batch = keys.batch(f"b{n // batch_lines}")
                cache.queue_put(trip, fingerprint(n), batch, n % batch_lines, ttl_s=TTL_S, now=now)
                if len(trip) >= TRIP:
                    await trip.run()
            await trip.run()
            elapsed = time.perf_counter() - started
        after = await settle(probe)
        usec = await redis_usec(probe, "evalsha")
    async with client(url) as look:
        generation = keys.cache_generation(provider_id(ENDPOINT), generation_of(now, TTL_S)[0])
        meta = await awaited(look.hgetall(generation))
        buckets = 2 ** int(meta[b"l"]) + int(meta[b"s"])
        sample = random.Random(7).sample(range(buckets), min(buckets, 500))
        encodings = [await look.object("encoding", f"{generation}:{b}") for b in sample]
        by_key = await key_bytes(look, f"{PREFIX}cache:*")
    listpacks = sum(e == b"listpack" for e in encodings) / len(encodings)
    detail = (
        f"{buckets:,} buckets ({documents / buckets:.1f} each, {listpacks:.0%} listpack), {batches} batch number(s); "
        f"{documents / elapsed:,.0f} puts/s from one client"
    )
    return Row("pointers", documents, (after - before) / documents, by_key / documents, usec, detail)


async def answers(url: str, documents: int) -> Row:
    spec = invoice_spec("old")
    codec = ResultCodec(spec.json_schema)
    words = document_words(TEXT)
    values = []
    for seed in range(500):
        output = generate_instance(spec.json_schema, seed, words)
        payload = orjson.dumps({"output": output, "response_id": f"resp_{seed:032x}"})
        values.append(codec.encode(payload))
    provider = provider_id(ENDPOINT)
    async with client(url) as setup:
        await setup.flushall()
    async with client(url) as probe:
        before = await settle(probe)
        await probe.config_resetstat()
        async with client(url) as writer:
            pipe = writer.pipeline(transaction=False)
            for n in range(documents):
                pipe.set(f"{PREFIX}cache:{provider}:{fingerprint(n)}", values[n % len(values)], ex=TTL_S)
                if len(pipe) >= TRIP:
                    await pipe.execute()
            await pipe.execute()
        after = await settle(probe)
        usec = await redis_usec(probe, "set")
    async with client(url) as look:
        by_key = await key_bytes(look, f"{PREFIX}cache:*")
    average = sum(map(len, values)) / len(values)
    detail = f"one string per document, values of {average:.0f} bytes on average"
    return Row("answers (before)", documents, (after - before) / documents, by_key / documents, usec, detail)


async def run(url: str, sizes: list[int], old: int, batch_lines: int) -> list[Row]:
    rows = [await answers(url, old)] if old else []
    return rows + [await pointers(url, size, batch_lines) for size in sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--old", type=int, default=100_000, help="documents for the old layout (0: skip)")
    parser.add_argument("--batch-lines", type=int, default=100_000)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    console = Console(width=220)
    with tempfile.TemporaryDirectory(prefix="cache-memory-") as workdir:
        server = RedisServer(Path(workdir), persist=False)
        server.start()
        try:
            console.print(f"Redis: {server.binary.describe()}")
            rows = asyncio.run(run(server.url, sizes, args.old, args.batch_lines))
        finally:
            server.stop()
    table = Table(title="Redis bytes per distinct document in the result cache")
    numbers = ("documents", "used_memory delta / N", "vs before", "MEMORY USAGE / N", "Redis µs / write")
    for column in ("layout", *numbers, "detail"):
        table.add_column(column, justify="right" if column in numbers else "left")
    baseline = next((row.bytes_per_document for row in rows if row.layout.startswith("answers")), None)
    for row in rows:
        table.add_row(
            row.layout,
            f"{row.documents:,}",
            f"{row.bytes_per_document:.1f}",
            f"{row.bytes_per_document / baseline:.3f}" if baseline else "-",
            f"{row.key_bytes_per_document:.1f}",
            f"{row.usec_per_write:.1f}",
            row.detail,
        )
    console.print(table)


if __name__ == "__main__":
    main()
