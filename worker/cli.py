"""``worker run``: start one arq worker process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import click
import redis.exceptions

from schemas.settings import SECRETS_DIR_VARIABLE, InvalidSettingsError, WorkerSettings
from store.connect import RedisUnavailableError, describe_redis_error, open_redis
from worker.app import build_worker
from worker.health import MetricsPortTakenError
from worker.logs import configure_logging
from worker.runtime import Runtime

log = logging.getLogger("worker")

EXIT_USAGE = 2
"""An invalid flag or setting, as click exits on a usage error. Redis that cannot be used (a wrong password, a bad
URL) exits 1."""


class SettingsUsageError(click.ClickException):
    """An invalid setting (flag, variable or secret file): one line naming it, exit 2 like a usage error."""

    exit_code = EXIT_USAGE


def load_settings(**flags: Any) -> WorkerSettings:
    try:
        settings = WorkerSettings.from_flags(**flags)
    except InvalidSettingsError as exc:
        raise SettingsUsageError(f"invalid settings: {exc}") from exc
    if settings.api_key() is None:
        raise SettingsUsageError(
            f"invalid settings: no API key: set OPENAI_API_KEY (or a file OPENAI_API_KEY in {SECRETS_DIR_VARIABLE})"
        )
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="structured-extract", prog_name="worker")
def main() -> None:
    """Structured-extraction worker."""


@main.command()
@click.option("--concurrency", type=int, help="Jobs run at once by this process [env EXTRACT_CONCURRENCY].")
@click.option("--rpm", type=int, help="Requests per minute of the API key, all models [env EXTRACT_RPM].")
@click.option("--tpm", type=int, help="Tokens per minute of the API key, all models [env EXTRACT_TPM].")
@click.option("--metrics-port", type=int, help="Port for /healthz, /readyz, /metrics [env EXTRACT_METRICS_PORT; 9100].")
@click.option("--max-tries", type=int, help="Tries per job for transient failures [env EXTRACT_MAX_TRIES].")
@click.option("--burst/--no-burst", default=None, help="Exit once the queue is empty [env EXTRACT_BURST].")
@click.option(
    "--name", "worker_name", help="Worker name for its health key, e.g. the pod name [env EXTRACT_WORKER_NAME]."
)
@click.option("--log-level", help="Logging level [env EXTRACT_LOG_LEVEL].")
def run(**flags: Any) -> None:
    """Process extraction jobs from the queue until stopped (SIGTERM/SIGINT finish cleanly)."""
    settings = load_settings(**flags)
    configure_logging(settings.log_level)
    try:
        run_supervised(settings)
    except (RedisUnavailableError, MetricsPortTakenError) as exc:  # configuration: exit, seen (and the pod restarted)
        raise click.ClickException(str(exc)) from exc


def run_supervised(settings: WorkerSettings) -> None:
    """Run arq workers in one event loop until stopped; see :func:`supervise`."""
    asyncio.run(supervise(settings))


async def supervise(settings: WorkerSettings) -> None:
    """Run an arq worker; if it dies because Redis went away, start a new one once Redis answers again.

    arq's poll loop does not survive a refused connection (redis-py retries commands, not reconnects). Jobs that
    were running keep their claims in Redis (persisted with AOF) and run again when those lapse, and recorded
    results are never repeated, so restarting in-process is safe and keeps the pod alive through a Redis restart.
    The process's :class:`Runtime` -- the OpenAI client, the metrics and the one health server -- lives across
    restarts: however often Redis comes and goes, one server listens on the metrics port.

    Redis trouble that no retry fixes -- a wrong or missing password, a URL it cannot use, a failed TLS handshake --
    raises :class:`RedisUnavailableError` (``fatal``), at start-up or whenever a new worker meets it; an outage
    (refused, host not found yet, timed out) is logged, described, and waited out.
    """
    await _check_redis(settings.redis_url)
    runtime = await Runtime.start(settings)
    stopping = asyncio.Event()
    delay_s = 0.5
    try:
        while not stopping.is_set():
            worker = build_worker(settings, runtime=runtime)
            worker.on_stop = lambda _signal: stopping.set()
            try:
                await worker.async_run()
                return  # the queue drained in burst mode
            except asyncio.CancelledError:
                if stopping.is_set():
                    return  # SIGTERM/SIGINT: arq has drained and stopped
                raise
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError) as exc:
                problem = describe_redis_error(exc, settings.redis_url)
                if problem.fatal:
                    raise problem from exc
                log.error("lost the connection to Redis: %s; starting a new worker in %.1fs", problem, delay_s)
            finally:
                await worker.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay_s)
            delay_s = min(delay_s * 2, 5.0)
    finally:
        await runtime.stop()


async def _check_redis(url: str) -> None:
    """Meet Redis once before anything starts: a configuration error raises, an outage is said and waited out."""
    try:
        client = await open_redis(url, socket_connect_timeout=5)
    except RedisUnavailableError as exc:
        if exc.fatal:
            raise
        log.warning("%s; waiting for Redis", exc)
    else:
        await client.aclose()


if __name__ == "__main__":
    main()
