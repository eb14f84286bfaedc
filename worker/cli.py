"""``worker run``: start one arq worker process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import click
import redis.exceptions
from pydantic import ValidationError

from schemas.settings import Settings
from worker.app import Runtime, build_worker

log = logging.getLogger("worker")


def load_settings(**flags: Any) -> Settings:
    try:
        return Settings.from_flags(**flags)
    except ValidationError as exc:
        raise click.UsageError(f"invalid settings:\n{exc}") from exc


@click.group()
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
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # httpx-style clients log request lines at INFO; keep them quiet (they never carry the key, but they are noise).
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("openai").setLevel(logging.WARNING)
    run_supervised(settings)


def run_supervised(settings: Settings) -> None:
    """Run arq workers in one event loop until stopped; see :func:`supervise`."""
    asyncio.run(supervise(settings))


async def supervise(settings: Settings) -> None:
    """Run an arq worker; if it dies because Redis went away, start a new one once Redis answers again.

    arq's poll loop does not survive a refused connection (redis-py retries commands, not reconnects). Jobs that
    were running keep their claims in Redis (persisted with AOF) and run again when those lapse, and recorded
    results are never repeated, so restarting in-process is safe and keeps the pod alive through a Redis restart.
    The process's :class:`Runtime` -- the OpenAI client, the metrics and the one health server -- lives across
    restarts: however often Redis comes and goes, one server listens on the metrics port.
    """
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
                log.error("lost the connection to Redis (%s); starting a new worker in %.1fs", exc, delay_s)
            finally:
                await worker.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay_s)
            delay_s = min(delay_s * 2, 5.0)
    finally:
        await runtime.stop()


if __name__ == "__main__":
    main()
