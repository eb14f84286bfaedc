"""The commands as a user runs them: simulator, `worker run` and `producer` as separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from schemas.registry import resolve_schema, validator_for
from schemas.results import ResultRecord, Status
from tests.conftest import API_KEY, REPO
from tests.processes import simulator_process, start_worker, stop

INPUT = [
    {"custom_id": f"doc-{n}", "text": f"Invoice {n} from Vendor {n} Ltd, {n} x Widget at 2.00, total {2 * n}.00 USD."}
    for n in range(1, 9)
]


@pytest.fixture
def sim_process() -> Iterator[str]:
    with simulator_process("--require-api-key", API_KEY, "--fault", "invalid_output:Vendor 3 :1") as url:
        yield url


def _env(redis_url: str, sim_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "OPENAI_BASE_URL": sim_url + "/v1",
        "OPENAI_API_KEY": API_KEY,
        "EXTRACT_KEY_PREFIX": "test:",
        "EXTRACT_LOG_LEVEL": "DEBUG",
        "EXTRACT_METRICS_PORT": "0",
    }


def _run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, env=env, cwd=REPO, capture_output=True, timeout=timeout, check=False)


def test_submit_worker_collect_as_processes(flushed_redis: str, sim_process: str, tmp_path: Path) -> None:
    env = _env(flushed_redis, sim_process)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(line) for line in INPUT) + b"\n")

    submitted = _run(
        env,
        sys.executable,
        "-m",
        "producer.cli",
        "submit",
        str(source),
        "--schema",
        "invoice",
        "--model",
        "gpt-4o-mini",
        "--api",
        "chat",
        "--batch-id",
        "proc",
    )
    assert submitted.returncode == 0, submitted.stderr.decode()
    assert submitted.stdout.decode().strip() == "proc"

    worker = _run(env, sys.executable, "-m", "worker.cli", "run", "--burst", "--concurrency", "4", "--name", "w1")
    assert worker.returncode == 0, worker.stderr.decode()
    worker_log = worker.stdout.decode() + worker.stderr.decode()
    assert "extract" in worker_log  # arq logged the jobs at DEBUG/INFO
    assert API_KEY not in worker_log

    waited = _run(env, sys.executable, "-m", "producer.cli", "wait", "proc", "--timeout", "10")
    assert waited.returncode == 0, waited.stderr.decode()
    assert "8/8 done, 8 ok / 0 failed / 0 cancelled" in waited.stderr.decode()

    out = tmp_path / "out.jsonl"
    collected = _run(env, sys.executable, "-m", "producer.cli", "collect", "proc", "--out", str(out))
    assert collected.returncode == 0, collected.stderr.decode()
    records = [ResultRecord.model_validate_json(line) for line in out.read_bytes().splitlines()]
    assert [r.custom_id for r in records] == [line["custom_id"] for line in INPUT]
    validator = validator_for(resolve_schema("invoice"))
    for record in records:
        assert record.status is Status.SUCCEEDED
        validator.validate(record.output)
    assert [r.repairs for r in records] == [0, 0, 1, 0, 0, 0, 0, 0]

    status = _run(env, sys.executable, "-m", "producer.cli", "status", "proc", "--json")
    summary = orjson.loads(status.stdout)
    assert summary["succeeded"] == 8
    assert summary["complete"] is True
    assert summary["usage"]["total_tokens"] == sum(r.usage.total_tokens for r in records)
    assert summary["cost_usd"] == pytest.approx(sum(r.cost_usd or 0 for r in records), rel=1e-6)

    batch_format = tmp_path / "openai.jsonl"
    collected = _run(
        env,
        sys.executable,
        "-m",
        "producer.cli",
        "collect",
        "proc",
        "--out",
        str(batch_format),
        "--format",
        "openai-batch",
    )
    assert collected.returncode == 0
    first = orjson.loads(batch_format.read_bytes().splitlines()[0])
    assert first["custom_id"] == "doc-1"
    assert first["error"] is None
    body = first["response"]["body"]
    assert orjson.loads(body["choices"][0]["message"]["content"]) == records[0].output
    assert body["usage"]["total_tokens"] == records[0].usage.total_tokens


def test_worker_without_api_key_fails_fast_with_a_clear_message(flushed_redis: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update({"REDIS_URL": flushed_redis, "EXTRACT_KEY_PREFIX": "test:"})
    worker = _run(env, sys.executable, "-m", "worker.cli", "run", "--burst", timeout=30)
    assert worker.returncode != 0
    assert "no API key" in worker.stderr.decode()


def test_producer_run_submits_waits_and_collects(flushed_redis: str, sim_process: str, tmp_path: Path) -> None:
    """`producer run` against a long-running `worker run`: one command from input file to result file."""
    env = _env(flushed_redis, sim_process)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps(line) for line in INPUT) + b"\n")
    worker = start_worker(env, "runner", log=tmp_path / "worker.log")
    try:
        out = tmp_path / "out.jsonl"
        ran = _run(
            env,
            sys.executable,
            "-m",
            "producer.cli",
            "run",
            str(source),
            "--schema",
            "invoice",
            "--model",
            "gpt-4o-mini",
            "--batch-id",
            "one-shot",
            "--out",
            str(out),
            "--timeout",
            "60",
        )
        assert ran.returncode == 0, ran.stderr.decode()
        assert ran.stdout.decode().strip() == "one-shot"
        records = [ResultRecord.model_validate_json(line) for line in out.read_bytes().splitlines()]
        assert [r.custom_id for r in records] == [line["custom_id"] for line in INPUT]
        assert all(r.status is Status.SUCCEEDED for r in records)
        retried = _run(env, sys.executable, "-m", "producer.cli", "retry", "one-shot")
        assert retried.returncode == 0, retried.stderr.decode()
        assert "re-enqueued 0 failed line(s)" in retried.stderr.decode()
        cancelled = _run(env, sys.executable, "-m", "producer.cli", "cancel", "one-shot")
        assert cancelled.returncode == 0, cancelled.stderr.decode()
        refused = _run(env, sys.executable, "-m", "producer.cli", "retry", "one-shot")
        assert refused.returncode == 1
        assert "was cancelled" in refused.stderr.decode()
        unknown = _run(env, sys.executable, "-m", "producer.cli", "status", "no-such-batch")
        assert unknown.returncode == 1
        assert "no batch 'no-such-batch'" in unknown.stderr.decode()
    finally:
        assert stop(worker) < 30
