"""What one `producer wait` costs Redis, on an empty keyspace and on one crowded with other keys.

    .venv/bin/python -m bench.wait_cost [--keys 0,100000,1000000] [--seconds 5]

For each keyspace size it starts a private ``redis-server`` (nothing else runs against it), fills it with that many
keys that are not ours (as a 7-day result cache or another application would), records a batch that no worker
runs, and lets one ``wait`` poll it for ``--seconds``. It reports the Redis server's CPU time over that interval
(``INFO cpu``: used_cpu_user + used_cpu_sys) and the commands it ran, and the ratio of each size's CPU to the empty
keyspace's, measured in the same run. A ``wait`` that scanned the keyspace grew with it (1.67 s of Redis CPU in
5 s at a million keys); one that reads its batch's snapshot (``store.batches.SNAPSHOT``) does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from producer.batch.progress import WaitTimeoutError, wait_for_batch
from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import submit
from store.keys import Keys
from tests.processes import RedisServer, invoice_spec

KEYS = Keys("bench:")


def _fill(client: SyncRedis, count: int) -> None:
    for start in range(0, count, 10_000):
        client.mset({f"cache-of-someone-else:{n}": b"x" * 16 for n in range(start, min(start + 10_000, count))})


def _cpu(client: SyncRedis) -> tuple[float, int]:
    info: Any = client.info("cpu")
    stats: Any = client.info("stats")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"]), int(stats["total_commands_processed"])


async def _wait(url: str, seconds: float) -> None:
    redis = Redis.from_url(url)
    try:
        lines = tuple(InputLine(n + 1, f"doc-{n}", f"Invoice {n}, total {n}.00 USD.") for n in range(10))
        await submit(redis, KEYS, invoice_spec("waited"), MemorySource(lines), window=100, ttl_s=0)
        with contextlib.suppress(WaitTimeoutError):
            await wait_for_batch(redis, KEYS, "waited", timeout_s=seconds, console=Console(file=io.StringIO()))
    finally:
        await redis.aclose()


def measure(size: int, seconds: float) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), persist=False)
        server.start()
        try:
            client = SyncRedis.from_url(server.url)
            _fill(client, size)
            cpu_before, commands_before = _cpu(client)
            asyncio.run(_wait(server.url, seconds))
            cpu_after, commands_after = _cpu(client)
            client.close()
            return cpu_after - cpu_before, commands_after - commands_before
        finally:
            server.stop()


def main(args: argparse.Namespace) -> None:
    sizes = [int(x) for x in args.keys.split(",")]
    results = {size: measure(size, args.seconds) for size in sizes}
    base_cpu = results[sizes[0]][0] or 1e-9
    table = Table(title=f"one `wait` for {args.seconds:g}s: Redis CPU by keyspace size")
    for column in ("other keys", "Redis CPU (s)", "commands", f"CPU vs {sizes[0]:,} keys"):
        table.add_column(column, justify="right")
    for size, (cpu, commands) in results.items():
        table.add_row(f"{size:,}", f"{cpu:.3f}", f"{commands:,}", f"{cpu / base_cpu:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default="0,100000,1000000")
    parser.add_argument("--seconds", type=float, default=5.0)
    main(parser.parse_args())
