"""``collect`` (a batch's results into a file, or followed as they finish) and ``retry`` (its failed lines again)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from redis.asyncio import Redis

from producer.batch.collect import OutputFormat, collect, follow
from producer.batch.retry import retry_batch
from producer.batch.status import incomplete_message, read_status
from producer.cli.common import (
    EXIT_CODES_HELP,
    OUT_HELP,
    OUTPUT_FILE,
    err,
    exit_for,
    load_settings,
    output_file,
    run_in_redis,
)
from producer.cli.options import OUTPUT_FORMAT, InputArgument
from producer.errors import EXIT_INCOMPLETE
from schemas.settings import ProducerSettings
from store.batches import BatchRecord, BatchStore
from store.keys import Keys


async def collect_into(
    redis: Redis,
    keys: Keys,
    settings: ProducerSettings,
    batch_id: str,
    out: Path,
    output_format: OutputFormat,
    *,
    follow_: bool,
) -> tuple[int, int]:
    """Write the batch's results to ``out``: (lines written, lines still without a result)."""
    snapshot = await BatchStore(redis, keys).snapshot(batch_id)
    record = snapshot.record
    if snapshot.interrupted:
        err.print(f"[yellow]warning[/yellow]: {incomplete_message(record)}", markup=True)
    price = settings.price_for(record.spec.model)
    if follow_:
        return await follow(redis, keys, batch_id, out, output_format=output_format, price=price), 0
    return await collect(redis, keys, batch_id, out, output_format=output_format, price=price)


def report_collected(out: Path, written: int, missing: int) -> None:
    err.print(f"wrote {written} line(s) to {out}", highlight=False)
    if missing:
        err.print(f"[yellow]warning[/yellow]: {missing} line(s) have no result yet (producer wait, or --follow)")
        sys.exit(EXIT_INCOMPLETE)


@click.command("collect", epilog=EXIT_CODES_HELP)
@click.argument("batch_id", metavar="BATCH")
@click.option("--out", required=True, type=OUTPUT_FILE, callback=output_file, help=OUT_HELP)
@click.option("--follow", "follow_", is_flag=True, help="Stream lines as they finish, until the batch completes.")
@OUTPUT_FORMAT
def collect_command(batch_id: str, out: Path, follow_: bool, output_format: OutputFormat) -> None:
    """Write the batch's results as JSONL (input order, atomic replace; or as they finish with --follow)."""
    settings = load_settings()

    async def body(redis: Redis, keys: Keys) -> tuple[int, int, BatchRecord]:
        written, missing = await collect_into(redis, keys, settings, batch_id, out, output_format, follow_=follow_)
        return written, missing, await read_status(redis, keys, batch_id)

    written, missing, record = run_in_redis(settings, body)
    report_collected(out, written, missing)
    exit_for(record)


@click.command("retry")
@click.argument("batch_id", metavar="BATCH")
@click.option(
    "--input",
    "input_path",
    type=InputArgument(exists=True, dir_okay=False, path_type=Path),
    help="The batch's input file, table glob or s3:// URL (default: what it was submitted from). Its lines must be "
    "unchanged.",
)
def retry_command(batch_id: str, input_path: Path | str | None) -> None:
    """Re-enqueue the batch's failed lines (their new results replace the failed ones).

    Redis keeps no text of finished lines, so this reads the input file again; it feeds a window at a time.
    """
    settings = load_settings()
    result = run_in_redis(settings, lambda redis, keys: retry_batch(redis, keys, settings, batch_id, input_path))
    err.print(f"re-enqueued {result.enqueued} failed line(s) of {batch_id}")
