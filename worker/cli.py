"""``worker run``: start one arq worker process."""

from __future__ import annotations

import logging
from typing import Any

import click
from pydantic import ValidationError

from schemas.settings import Settings
from worker.app import build_worker


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
    worker = build_worker(settings)
    worker.run()


if __name__ == "__main__":
    main()
