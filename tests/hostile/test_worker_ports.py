"""Two workers on one machine: the second one used to die with an 18-line traceback (``OSError: [Errno 98] address
already in use``) on the default metrics port, though the README says to run as many as you like."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import API_KEY, REPO
from tests.processes import free_port, simulator_process, worker_env

DEFAULT_METRICS_PORT = 9100


@contextlib.contextmanager
def _taken(port: int) -> Iterator[None]:
    """Something listens on ``port`` for the block (if something else already does, so much the better)."""
    sock = socket.socket()
    try:
        with contextlib.suppress(OSError):
            sock.bind(("0.0.0.0", port))  # noqa: S104 - where the worker binds by default
            sock.listen()
        yield
    finally:
        sock.close()


def _worker(redis_url: str, sim_url: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = worker_env(redis_url, sim_url, API_KEY, "test:", EXTRACT_BURST="true", **env)
    if "EXTRACT_METRICS_PORT" not in env:
        del base["EXTRACT_METRICS_PORT"]  # the default port, as a user who sets nothing gets it
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run", "--name", "second"],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("EXTRACT_")}, **base},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_second_worker_on_the_default_port_falls_back_to_a_free_one(flushed_redis: str, tmp_path: Path) -> None:
    with simulator_process("--require-api-key", API_KEY) as sim_url, _taken(DEFAULT_METRICS_PORT):
        ran = _worker(flushed_redis, sim_url, tmp_path)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    assert "Traceback" not in output
    assert f"the default metrics port {DEFAULT_METRICS_PORT} is in use" in output
    assert "on port " in output


def test_a_chosen_metrics_port_that_is_taken_is_one_line_and_exit_1(flushed_redis: str, tmp_path: Path) -> None:
    port = free_port()
    with simulator_process("--require-api-key", API_KEY) as sim_url, _taken(port):
        ran = _worker(flushed_redis, sim_url, tmp_path, EXTRACT_METRICS_PORT=str(port))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stdout + ran.stderr
    errors = [line for line in ran.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert f"metrics port {port} is already in use" in errors[0]
