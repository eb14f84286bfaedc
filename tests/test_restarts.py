"""Processes killed and Redis restarted: a worker keeps one health server; an interrupted submit says so."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import orjson
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import submit
from store.fields import F
from store.keys import Keys
from tests.conftest import API_KEY, REPO
from tests.processes import RedisServer, free_port, invoice_spec, simulator_process, start_worker, stop, wait_until

KEYS = Keys("restart:")


def _env(redis_url: str, sim_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": sim_url + "/v1",
        "OPENAI_API_KEY": API_KEY,
        "EXTRACT_KEY_PREFIX": KEYS.prefix,
        "EXTRACT_HEALTH_CHECK_INTERVAL_S": "1",
        "EXTRACT_JOB_TIMEOUT_S": "5",
        **extra,
    }


def _listeners(port: int) -> int:
    """Sockets in LISTEN state on ``port`` (any address), from the kernel's own tables."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                count += 1
    return count


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return int(response.status)
    except Exception:
        return 0


def _submit(redis_url: str, batch_id: str, count: int) -> None:
    async def run() -> None:
        redis = Redis.from_url(redis_url)
        lines = tuple(
            InputLine(n + 1, f"d{n}", f"Invoice {n} of batch {batch_id}, total {n} EUR.") for n in range(count)
        )
        try:
            await submit(redis, KEYS, invoice_spec(batch_id), MemorySource(lines), window=100, ttl_s=0)
        finally:
            await redis.aclose()

    asyncio.run(run())


def _done(redis_url: str, batch_id: str) -> int:
    client = SyncRedis.from_url(redis_url, socket_connect_timeout=1)
    try:
        return int(client.hget(KEYS.batch(batch_id).record, F.DONE) or 0)  # type: ignore[arg-type]
    except Exception:
        return -1
    finally:
        client.close()


def test_a_worker_on_a_fixed_metrics_port_survives_three_redis_restarts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)
    server.start()
    port = free_port()
    log = tmp_path / "worker.log"
    try:
        with simulator_process("--require-api-key", API_KEY) as sim_url:
            worker = start_worker(_env(server.url, sim_url, EXTRACT_METRICS_PORT=str(port)), "restarts", log=log)
            try:
                for restart in range(4):
                    if restart:
                        server.stop()
                        time.sleep(0.5)  # noqa: TID251 - a synchronous test between processes
                        server.start()
                    _submit(server.url, f"r{restart}", 5)
                    wait_until(lambda b=f"r{restart}": _done(server.url, b) == 5, 60, f"batch r{restart} not done")
                    wait_until(lambda: _healthz(port) == 200, 30, "the health server did not answer")
                    assert _listeners(port) == 1, log.read_text()
                assert worker.poll() is None  # still the same process
            finally:
                assert stop(worker) < 30
    finally:
        server.stop()
    assert "Errno 98" not in log.read_text()
    # Each restart either rebuilt the arq worker (the path that used to leave a second listener) or was absorbed by
    # redis-py's own retries when Redis came back fast enough; at least one must have taken the rebuild path.
    assert log.read_text().count("lost the connection to Redis") >= 1


def test_an_interrupted_submit_is_reported_incomplete_until_it_is_run_again(flushed_redis: str, tmp_path: Path) -> None:
    count = 300
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(f'{{"custom_id": "d{n}", "text": "Invoice {n} from Vendor {n}, {n} EUR."}}\n' for n in range(count))
    )
    with simulator_process("--require-api-key", API_KEY) as sim_url:
        env = _env(flushed_redis, sim_url, EXTRACT_QUEUE_WINDOW="50", EXTRACT_METRICS_PORT="0")
        args = [
            sys.executable,
            "-m",
            "producer.cli",
            "submit",
            str(source),
            "--schema",
            "invoice",
            "--model",
            "gpt-4o-mini",
            "--batch-id",
            "cut",
        ]
        first = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _fed(flushed_redis) == 50, 30, "the window did not fill")  # no worker: the feed waits
        stop(first, signal.SIGKILL)
        SyncRedis.from_url(flushed_redis).delete(KEYS.batch("cut").feeder)  # its heartbeat would lapse in 15 s

        def cli(*command: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(
                [sys.executable, "-m", "producer.cli", *command],
                env=env,
                cwd=REPO,
                capture_output=True,
                timeout=120,
                check=False,
            )

        message = "submit incomplete: 50 of 300 lines enqueued - rerun the same submit to finish"
        for command in (
            ("wait", "cut"),
            ("collect", "cut", "--out", str(tmp_path / "out.jsonl")),
            ("collect", "cut", "--follow", "--out", str(tmp_path / "f.jsonl")),
        ):
            done = cli(*command)
            assert done.returncode == 3, (command, done.stderr.decode())
            assert message in done.stderr.decode(), command
        status = orjson.loads(cli("status", "cut", "--json").stdout)
        assert (status["state"], status["submitted"], status["note"]) == (
            "interrupted",
            False,
            message + " (batch cut)",
        )
        worker = start_worker(env, "finisher", log=tmp_path / "worker.log")
        try:
            again = cli(*args[3:])
            assert again.returncode == 0, again.stderr.decode()
            assert cli("wait", "cut").returncode == 0
            out = tmp_path / "all.jsonl"
            collected = cli("collect", "cut", "--out", str(out))
            assert collected.returncode == 0, collected.stderr.decode()
        finally:
            stop(worker)
    assert len(out.read_bytes().splitlines()) == count


def _fed(redis_url: str) -> int:
    client = SyncRedis.from_url(redis_url)
    try:
        return int(client.hget(KEYS.batch("cut").record, F.FED) or 0)  # type: ignore[arg-type]
    finally:
        client.close()


def test_wait_rides_out_a_redis_restart_and_says_so(tmp_path: Path) -> None:
    """`producer wait` while Redis restarts: "reconnecting", then "back", then it finishes when the batch does."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        with simulator_process("--require-api-key", API_KEY) as sim_url:
            env = _env(server.url, sim_url, EXTRACT_METRICS_PORT="0")

            async def submit_two() -> None:
                redis = Redis.from_url(server.url)
                try:
                    lines = (InputLine(1, "a", "Invoice 1, total 5 EUR."), InputLine(2, "b", "Invoice 2, 7 EUR."))
                    await submit(redis, KEYS, invoice_spec("blip"), MemorySource(lines), window=10, ttl_s=0)
                finally:
                    await redis.aclose()

            asyncio.run(submit_two())
            waiting = subprocess.Popen(
                [sys.executable, "-m", "producer", "wait", "blip"],
                env=env,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            probe = SyncRedis.from_url(server.url)
            try:  # `wait` is connected (it holds a client besides this one) before Redis goes away
                wait_until(lambda: len(probe.client_list()) >= 2, 30, "producer wait did not connect")  # type: ignore[arg-type]
            finally:
                probe.close()
            server.stop()
            time.sleep(2.0)  # noqa: TID251
            server.start()
            worker = start_worker({**env, "EXTRACT_BURST": "true"}, "blip")
            try:
                _out, err = waiting.communicate(timeout=60)
            finally:
                stop(worker)
    finally:
        server.stop()
    text = err.decode()
    assert waiting.returncode == 0, text
    assert "reconnecting" in text
    assert "Redis is back" in text
    assert "2/2 done" in text
