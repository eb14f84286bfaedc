"""Configuration mistakes read as one line naming the cause: Redis trouble (exit 1), invalid settings (exit 2).

Also: a Secret mounted as files (``EXTRACT_SECRETS_DIR``), logs without document text, ``--version`` and ``-h``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.exceptions
from click.testing import CliRunner, Result
from redis import Redis as SyncRedis

from examples.redis_server import find_redis_server
from producer.cli import main as producer
from schemas.settings import InvalidSettingsError, Settings, WorkerSettings
from store.connect import describe_redis_error
from store.keys import Keys
from tests.conftest import API_KEY, INVOICE_TEXTS, REPO, TEST_REDIS_URL, Submit
from tests.processes import free_port, start_worker, stop, wait_until
from worker.cli import load_settings
from worker.cli import main as worker
from worker.logs import HIDE_JOB_ARGUMENTS, hide_job_arguments

PASSWORD = "right-horse-battery"
"""The private server's password; a test fails if it ever shows up in a message."""
REFUSED = "redis://127.0.0.1:1/0"


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private ``redis-server --requirepass``; yields ``host:port`` (the URLs put their own credentials)."""
    binary = str(find_redis_server().path)  # the system's, never a venv copy shadowing it (issue 19, item 8)
    port = free_port()
    workdir = tmp_path_factory.mktemp("password-redis")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", ""]
    command += ["--appendonly", "no", "--requirepass", PASSWORD]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)

    def answers() -> bool:
        client = SyncRedis.from_url(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    try:
        wait_until(answers, 10, "the password-protected redis-server did not answer")
        yield f"127.0.0.1:{port}"
    finally:
        stop(proc)


def _plain_host_port() -> str:
    """The test Redis's ``host:port`` (it has no password and no TLS)."""
    return TEST_REDIS_URL.split("://", 1)[1].split("/", 1)[0]


def _db() -> str:
    return TEST_REDIS_URL.rsplit("/", 1)[1]


def _one_line_error(result: Result) -> str:
    """The command ended through click (not an escaping exception) and said one line on stderr."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert PASSWORD not in result.output
    return lines[0]


# ------------------------------------------------------------------------------------------- Redis trouble
REDIS_FAILURES = {
    "refused": (REFUSED, "Redis at 127.0.0.1:1 refused the connection"),
    "unknown-host": ("redis://no-such-host.invalid:6379/0", "Redis host 'no-such-host.invalid' not found"),
    "bad-scheme": ("foo://x", "REDIS_URL must start with redis://, rediss:// (TLS) or unix://, not foo://"),
    "password-for-passwordless": (
        f"redis://:{PASSWORD}@{_plain_host_port()}/{_db()}",
        "did not accept the credentials in REDIS_URL: AUTH <password> called without any password configured",
    ),
    "tls-to-plain": (
        f"rediss://{_plain_host_port()}/{_db()}",
        f"Redis at {_plain_host_port()} speaks plain Redis, not TLS: REDIS_URL is rediss://; use redis://",
    ),
}


@pytest.mark.parametrize("kind", REDIS_FAILURES)
def test_each_redis_failure_is_one_line_and_exit_1(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused, unknown host, bad scheme, an unexpected password, TLS to a plain server: one line naming it."""
    url, expected = REDIS_FAILURES[kind]
    monkeypatch.setenv("REDIS_URL", url)
    result = CliRunner().invoke(producer, ["status", "some-batch"])
    assert result.exit_code == 1
    line = _one_line_error(result)
    assert line.startswith("Error: ")
    assert expected in line


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        ("", "did not accept the credentials in REDIS_URL: Authentication required"),
        (":wrong@", "did not accept the credentials in REDIS_URL: invalid username-password pair"),
    ],
)
def test_a_missing_or_wrong_password_is_one_line(
    password_redis: str, credentials: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against a server with a password: none given, or the wrong one, is named as such."""
    monkeypatch.setenv("REDIS_URL", f"redis://{credentials}{password_redis}/0")
    result = CliRunner().invoke(producer, ["list"])
    assert result.exit_code == 1
    assert expected in _one_line_error(result)


@pytest.mark.parametrize(
    "args",
    [
        ["status", "b"],
        ["status", "b", "--json"],
        ["list"],
        ["wait", "b", "--timeout", "1"],
        ["collect", "b", "--out", "OUT"],
        ["retry", "b"],
        ["cancel", "b"],
        ["delete", "b"],
        ["resume", "b"],
        ["submit", "INPUT", "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "b"],
        ["run", "INPUT", "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "b", "--out", "OUT"],
    ],
    ids=lambda args: "-".join(a for a in args if not a.isupper() and not a.startswith("-"))[:40],
)
def test_every_producer_command_reports_redis_down_in_one_line(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"custom_id": "a", "text": "Invoice 1 from ACME, total 3 EUR."}\n', encoding="utf-8")
    args = [str(source) if a == "INPUT" else str(tmp_path / "out.jsonl") if a == "OUT" else a for a in args]
    monkeypatch.setenv("REDIS_URL", REFUSED)
    result = CliRunner().invoke(producer, args)
    assert result.exit_code == 1, result.output
    assert "refused the connection" in _one_line_error(result)


def test_the_producer_as_a_process_prints_no_traceback(password_redis: str) -> None:
    env = {**_clean_env(), "REDIS_URL": f"redis://:wrong@{password_redis}/0"}
    done = subprocess.run(
        [sys.executable, "-m", "producer.cli", "status", "b"], env=env, cwd=REPO, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.decode().strip().splitlines() == [
        f"Error: Redis at {password_redis} did not accept the credentials in REDIS_URL: "
        "invalid username-password pair or user is disabled."
    ]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXTRACT_", "OPENAI_")) and k != "REDIS_URL"}
    return {**env, "OPENAI_API_KEY": API_KEY, "EXTRACT_METRICS_PORT": "0", **extra}


def _worker_process(redis_url: str, timeout_s: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", "run", "--burst", "--name", "cfg"],
        env=_clean_env(REDIS_URL=redis_url),
        cwd=REPO,
        capture_output=True,
        timeout=timeout_s,
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("wrong-password", "did not accept the credentials in REDIS_URL: invalid username-password pair"),
        ("no-password", "did not accept the credentials in REDIS_URL: Authentication required"),
        ("bad-scheme", "REDIS_URL must start with redis://"),
        ("tls-to-plain", "speaks plain Redis, not TLS"),
    ],
)
def test_a_worker_exits_1_on_a_redis_configuration_error(password_redis: str, kind: str, expected: str) -> None:
    """A configuration error is not an outage: the worker says it once and exits (Kubernetes shows the restarts)."""
    url = {
        "wrong-password": f"redis://:wrong@{password_redis}/0",
        "no-password": f"redis://{password_redis}/0",
        "bad-scheme": "foo://x",
        "tls-to-plain": f"rediss://{password_redis}/0",
    }[kind]
    done = _worker_process(url, timeout_s=30)
    stderr = done.stderr.decode()
    assert done.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert PASSWORD not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, stderr
    assert expected in errors[0]


def test_a_worker_keeps_retrying_through_a_refused_connection_and_says_so(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    proc = start_worker(_clean_env(REDIS_URL=REFUSED), "refused", log=log)
    try:
        wait_until(lambda: "refused the connection" in log.read_text(), 30, "the worker did not log the refusal")
        assert proc.poll() is None  # an outage: it waits for Redis
    finally:
        assert stop(proc) < 30
    text = log.read_text()
    assert "Redis at 127.0.0.1:1 refused the connection (is it running? is REDIS_URL right?); waiting for Redis" in text
    assert "Traceback" not in text


# -------------------------------------------------------------------------------------------------- settings
def test_malformed_json_is_one_line_naming_the_variable_in_both_clis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", REFUSED)  # never reached: settings come first
    for variable, cli, args in (
        ("EXTRACT_RATE_LIMITS", worker, ["run", "--burst"]),
        ("EXTRACT_PRICES", worker, ["run", "--burst"]),
        ("EXTRACT_PRICES", producer, ["status", "b"]),
    ):
        with monkeypatch.context() as env:
            env.setenv(variable, "not json")
            result = CliRunner().invoke(cli, args, env={"OPENAI_API_KEY": API_KEY})
        assert result.exit_code == 2, result.output
        assert _one_line_error(result) == (
            f"Error: invalid settings: {variable}: not valid JSON (Expecting value: line 1 column 1 (char 0))"
        )


def test_each_process_validates_only_the_settings_it_reads(flushed_redis: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker-only variable gone wrong leaves the producer's commands working, and a producer-only one the worker."""
    monkeypatch.setenv("REDIS_URL", flushed_redis)
    for variable, value in (("EXTRACT_CONCURRENCY", "lots"), ("EXTRACT_MAX_REPAIRS", "-1")):
        monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(producer, ["list", "--json"])
    assert result.exit_code == 0, result.output
    with pytest.raises(InvalidSettingsError, match=r"EXTRACT_CONCURRENCY.*EXTRACT_MAX_REPAIRS"):
        WorkerSettings.from_flags()

    monkeypatch.delenv("EXTRACT_CONCURRENCY")
    monkeypatch.delenv("EXTRACT_MAX_REPAIRS")
    monkeypatch.setenv("EXTRACT_QUEUE_WINDOW", "0")
    monkeypatch.setenv("EXTRACT_TEMPERATURE", "hot")
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    assert load_settings().concurrency == 32
    result = CliRunner().invoke(producer, ["list"])
    assert result.exit_code == 2
    line = _one_line_error(result)
    assert "EXTRACT_QUEUE_WINDOW: Input should be greater than or equal to 1 (got '0')" in line
    assert "EXTRACT_TEMPERATURE: Input should be a valid number" in line


def test_an_invalid_nested_value_names_the_variable_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACT_RATE_LIMITS", '{"gpt-4o-mini": {"rpm": -5}}')
    with pytest.raises(InvalidSettingsError) as caught:
        Settings.from_flags()
    assert str(caught.value) == (
        "EXTRACT_RATE_LIMITS: gpt-4o-mini.rpm: Input should be greater than or equal to 0 (got -5)"
    )


def test_a_bad_log_level_flag_is_a_usage_error_naming_the_flag() -> None:
    result = CliRunner().invoke(worker, ["run", "--log-level", "foo"], env={"OPENAI_API_KEY": API_KEY})
    assert result.exit_code == 2
    line = _one_line_error(result)
    assert line.startswith("Error: invalid settings: --log-level: not a log level: use one of DEBUG, INFO")


def test_a_flag_is_named_as_a_flag_and_a_variable_as_a_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACT_MAX_TRIES", "many")
    with pytest.raises(InvalidSettingsError) as caught:
        Settings.from_flags(concurrency=0, max_tries=None)
    message = str(caught.value)
    assert "\n" not in message
    assert "--concurrency: Input should be greater than or equal to 1 (got 0)" in message
    assert "EXTRACT_MAX_TRIES: Input should be a valid integer" in message


def test_an_unknown_key_in_from_flags_raises() -> None:
    with pytest.raises(TypeError, match="concurency"):
        Settings.from_flags(concurency=3)
    with pytest.raises(ValueError, match="concurency"):
        Settings(concurency=3)  # type: ignore[call-arg]


def test_the_worker_without_an_api_key_is_one_line() -> None:
    result = CliRunner().invoke(worker, ["run", "--burst"])
    assert result.exit_code == 2
    assert "no API key: set OPENAI_API_KEY" in _one_line_error(result)


# ----------------------------------------------------------------------------------------------- secrets dir
def _mount_secret(directory: Path, files: dict[str, str]) -> Path:
    """The layout kubelet writes for a Secret volume: files behind ``..data`` symlinks to a timestamped dir."""
    directory.mkdir()
    stamped = directory / "..2026_12_01_10_00_00.123456789"
    stamped.mkdir()
    for name, value in files.items():
        (stamped / name).write_text(value + "\n", encoding="utf-8")  # kubectl --from-file keeps a newline
    (directory / "..data").symlink_to(stamped.name)
    for name in files:
        (directory / name).symlink_to(f"..data/{name}")
    return directory


def test_a_mounted_secret_sets_the_key_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = _mount_secret(
        tmp_path / "secret", {"OPENAI_API_KEY": "sk-from-file", "EXTRACT_CONCURRENCY": "5", "EXTRACT_MAX_TRIES": "7"}
    )
    monkeypatch.setenv("EXTRACT_SECRETS_DIR", str(mount))
    monkeypatch.setenv("EXTRACT_MAX_TRIES", "9")
    settings = Settings.from_flags(concurrency=None)
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-from-file"
    assert settings.concurrency == 5
    assert settings.max_tries == 9  # the environment over the file
    assert Settings.from_flags(concurrency=3).concurrency == 3  # a flag over both


def test_a_mounted_redis_url_is_what_the_commands_use(tmp_path: Path, flushed_redis: str, monkeypatch) -> None:
    mount = _mount_secret(tmp_path / "secret", {"REDIS_URL": REFUSED})
    monkeypatch.setenv("EXTRACT_SECRETS_DIR", str(mount))
    result = CliRunner().invoke(producer, ["status", "b"])
    assert result.exit_code == 1
    assert "Redis at 127.0.0.1:1 refused the connection" in _one_line_error(result)


def test_secrets_dir_errors_name_the_variable_and_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACT_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(InvalidSettingsError, match=r"^EXTRACT_SECRETS_DIR: .*missing is not a directory$"):
        Settings.from_flags()
    mount = _mount_secret(tmp_path / "secret", {"EXTRACT_RATE_LIMITS": "{oops"})
    monkeypatch.setenv("EXTRACT_SECRETS_DIR", str(mount))
    with pytest.raises(InvalidSettingsError, match=r"^EXTRACT_RATE_LIMITS \(file in EXTRACT_SECRETS_DIR\): not valid"):
        Settings.from_flags()


# ------------------------------------------------------------------------------------------------------ logs
@pytest.fixture
def job_arguments_hidden() -> Iterator[None]:
    hide_job_arguments()
    yield
    logging.getLogger("arq.worker").removeFilter(HIDE_JOB_ARGUMENTS)


async def test_arq_job_lines_at_info_carry_ids_and_no_document_text(
    job_arguments_hidden: None, submit_batch: Submit, run_worker: Any, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    texts = {f"doc-{n}": text for n, text in enumerate(INVOICE_TEXTS)}
    await submit_batch(texts)
    with caplog.at_level(logging.INFO):
        await run_worker()
    started = [r.getMessage() for r in caplog.records if r.name == "arq.worker" and "→" in r.getMessage()]
    assert len(started) == len(texts)
    for ordinal in range(len(texts)):
        assert any(f"{keys.job_id('b1', ordinal)}:extract(…)" in line for line in started), started
    for record in caplog.records:
        for text in texts.values():
            assert text[:12] not in record.getMessage(), record.getMessage()


async def test_openai_log_debug_does_not_silence_the_workers_own_logs(
    submit_batch: Submit, flushed_redis: str, sim: Any
) -> None:
    """OPENAI_LOG=debug: the SDK configures logging at import; ours and arq's INFO lines still appear (no text)."""
    texts = {f"doc-{n}": text for n, text in enumerate(INVOICE_TEXTS[:2])}
    await submit_batch(texts)
    env = _clean_env(
        REDIS_URL=flushed_redis, OPENAI_BASE_URL=sim.base_url, EXTRACT_KEY_PREFIX="test:", OPENAI_LOG="debug"
    )
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "worker.cli", "run", "--burst", "--name", "openai-log"),
        env=env,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), 60)
    log = output.decode()
    assert proc.returncode == 0, log
    assert " INFO worker: worker openai-log ready" in log  # ours
    info = [line for line in log.splitlines() if " INFO " in line]
    assert sum("→ test:b1:" in line and "extract(…)" in line for line in info) == 2, log
    for line in info:
        for text in texts.values():
            assert text[:12] not in line, line


# ---------------------------------------------------------------------------------------------- --version, -h
@pytest.mark.parametrize(("cli", "name"), [(producer, "producer"), (worker, "worker")])
def test_version_and_short_help(cli: Any, name: str) -> None:
    version = CliRunner().invoke(cli, ["--version"])
    assert version.exit_code == 0
    assert version.output.strip() == f"{name}, version 0.1.0"
    for args in (["-h"], ["status" if name == "producer" else "run", "-h"]):
        shown = CliRunner().invoke(cli, args)
        assert shown.exit_code == 0, shown.output
        assert shown.output.startswith("Usage: ")


@pytest.mark.parametrize("package", ["producer", "worker"])
def test_python_dash_m_runs_the_same_command_line(package: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", package, "--version"], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{package}, version 0.1.0"


def test_a_redis_still_loading_its_data_is_an_outage_not_a_configuration_error() -> None:
    loading = redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory")
    described = describe_redis_error(loading, "redis://127.0.0.1:6379/0")
    assert not described.fatal  # a worker waits for it (a restart, a failover) instead of exiting
    assert "loading" in str(described)
