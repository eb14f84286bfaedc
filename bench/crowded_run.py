"""`producer run` again and again against a Redis crowded with keys that are not ours: how many false alarms?

    .venv/bin/python -m bench.crowded_run [--runs 100] [--keys 100000] [--lines 3]

Starts a private ``redis-server`` (nothing else runs against it) and fills it with ``--keys`` unrelated keys, then the
simulator and one `worker run`, and runs ``producer run`` of a small batch ``--runs`` times, each a new batch id. It
reports the exit codes: every run should exit 0 with its ``--out`` file complete. Before the snapshot read
(``store.batches.SNAPSHOT``) a run that waited while its own submit finished feeding read the record, scanned the
keyspace for workers and then looked at the feeder: 13 of 13 runs at ~4,600 keys exited 3 ("submit incomplete").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from redis import Redis as SyncRedis
from rich.console import Console
from rich.table import Table

from tests.processes import REPO, RedisServer, simulator_process, start_worker, stop, worker_env

API_KEY = "sk-crowded-demo-not-a-real-key"
PREFIX = "bench:"


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), persist=False)
        server.start()
        try:
            client = SyncRedis.from_url(server.url)
            for start in range(0, args.keys, 10_000):
                client.mset({f"someone-else:{n}": b"x" for n in range(start, min(start + 10_000, args.keys))})
            keyspace: Any = client.dbsize()
            client.close()
            with simulator_process("--require-api-key", API_KEY) as sim_url:
                env = worker_env(server.url, sim_url, API_KEY, PREFIX)
                worker = start_worker(env, "crowded", log=Path(tmp) / "worker.log")
                try:
                    codes, seconds = _runs(args, {**os.environ, **env}, Path(tmp))
                finally:
                    stop(worker)
        finally:
            server.stop()
    table = Table(title=f"`producer run` of {args.lines} lines x {args.runs}, {int(keyspace):,} keys in Redis")
    table.add_column("exit code")
    table.add_column("runs", justify="right")
    for code, count in sorted(codes.items()):
        table.add_row(str(code), str(count))
    Console().print(table)
    print(f"false alarms (exit 3, 'submit incomplete'): {codes.get(3, 0)}; median run {seconds:.2f} s")


def _runs(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> tuple[Counter[int], float]:
    codes: Counter[int] = Counter()
    times = []
    for run in range(args.runs):
        source = tmp / f"in-{run}.jsonl"
        rows = [
            {"custom_id": f"doc-{n}", "text": f"Invoice {run}-{n} from ACME, total {n}.00 USD."}
            for n in range(args.lines)
        ]
        source.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
        out = tmp / f"out-{run}.jsonl"
        started = time.monotonic()
        ran = subprocess.run(
            [
                *(sys.executable, "-m", "producer.cli", "run", str(source), "--schema", "invoice"),
                *("--model", "gpt-4o-mini", "--batch-id", f"crowded-{run}", "--out", str(out)),
            ],
            env=env,
            cwd=REPO,
            capture_output=True,
            timeout=120,
            check=False,
        )
        times.append(time.monotonic() - started)
        complete = ran.returncode == 0 and out.exists() and len(out.read_bytes().splitlines()) == args.lines
        codes[ran.returncode if complete or ran.returncode else -1] += 1
        if not complete:
            print(f"run {run}: exit {ran.returncode}: {ran.stderr.decode(errors='replace')[-600:]}", file=sys.stderr)
    return codes, sorted(times)[len(times) // 2]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=3)
    main(parser.parse_args())
