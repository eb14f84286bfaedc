"""``status``, ``list`` and ``wait``: a batch (or all of them) as it stands, and its progress until it is done."""

from __future__ import annotations

import dataclasses
import sys

import click
import orjson
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from producer.batch.progress import WaitTimeoutError, wait_for_batch
from producer.batch.status import (
    BatchOverview,
    BatchPausedError,
    SinkStatus,
    VenueStatus,
    batch_state,
    incomplete_message,
    list_batches,
    read_sink,
    read_venue,
    schema_warnings,
)
from producer.cli.common import (
    EXIT_CODES_HELP,
    FiniteFloatRange,
    err,
    exit_for,
    exit_paused,
    load_settings,
    mb,
    run_in_redis,
)
from producer.cli.status_view import status_table
from producer.errors import EXIT_INCOMPLETE
from schemas.settings import ProducerSettings
from store.batches import BatchRecord, BatchSnapshot, BatchStore, Footprint
from store.keys import Keys


@click.command("status")
@click.argument("batch_id", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def status_command(batch_id: str, as_json: bool) -> None:
    """Show a batch's progress, usage, cost and Redis footprint."""

    async def body(
        redis: Redis, keys: Keys
    ) -> tuple[BatchSnapshot, Footprint, BatchRecord | None, VenueStatus | None, SinkStatus | None]:
        store = BatchStore(redis, keys)
        snapshot = await store.snapshot(batch_id)
        shadow_id = snapshot.record.spec.shadow  # its budget is a part of this batch's: shown with it
        shadow = await store.get(shadow_id) if shadow_id is not None and await store.spec(shadow_id) else None
        venue = await read_venue(redis, keys, snapshot.record)
        sink = await read_sink(redis, keys, snapshot.record)
        return snapshot, await store.footprint(batch_id), shadow, venue, sink

    snapshot, footprint, shadow, venue, sink = run_in_redis(load_settings(), body)
    record, alive = snapshot.record, snapshot.feeder_alive
    lossy = schema_warnings(record)
    if as_json:
        data = {
            **record.to_json_dict(),
            "state": batch_state(record, feeder_alive=alive),
            "redis_bytes": footprint.total,
        }
        if not record.submitted and not alive:
            data["note"] = incomplete_message(record)
        if record.spec.shadow is not None:
            data["shadow_budget"] = dataclasses.asdict(shadow.budget) if shadow and shadow.budget else None
        if venue is not None:
            data["venue"] = venue.to_json_dict()
        if sink is not None:
            data["results_sink"] = sink.to_json_dict()
        data["schema_checked_locally"] = lossy
        click.echo(orjson.dumps(data).decode())
    else:
        table = status_table(record, footprint, feeder_alive=alive, shadow=shadow, venue=venue, lossy=lossy, sink=sink)
        Console().print(table)


@click.command("list")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Show at most this many batches."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per batch.")
def list_command(limit: int, as_json: bool) -> None:
    """List batches, newest first: state, size, age and Redis memory.

    On a terminal, a table; piped, one tab-separated line per batch under a header line, every value whole.
    """
    overviews = run_in_redis(load_settings(), lambda redis, keys: list_batches(redis, keys, limit=limit))
    if as_json:
        for o in overviews:
            row = {
                **o.record.to_json_dict(),
                "state": o.state,
                "age_s": round(o.age_s),
                "redis_bytes": o.footprint.total,
            }
            click.echo(orjson.dumps(row).decode())
        return
    columns = ("batch", "state", "lines", "done", "failed", "age", "Redis")
    rows = [_list_row(o) for o in overviews]
    if not sys.stdout.isatty():  # `producer list | grep`: a table would be cut to a width nobody sees
        for values in (columns, *rows):
            click.echo("\t".join(values))
        return
    table = Table(title="batches")
    for column in columns:  # a narrow terminal folds an id onto more lines; it never cuts one short
        table.add_column(column, justify="left" if column in {"batch", "state"} else "right", overflow="fold")
    for values in rows:
        table.add_row(*values)
    Console().print(table)


def _list_row(o: BatchOverview) -> tuple[str, ...]:
    r = o.record
    return (r.batch_id, o.state, str(r.lines), str(r.done), str(r.failed), _age(o.age_s), mb(o.footprint.total))


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _do_wait(settings: ProducerSettings, batch_id: str, timeout: float | None) -> BatchRecord:
    try:
        return run_in_redis(settings, lambda redis, keys: wait_for_batch(redis, keys, batch_id, timeout_s=timeout))
    except WaitTimeoutError as exc:
        err.print(f"[yellow]timeout[/yellow]: {exc}")
        sys.exit(EXIT_INCOMPLETE)
    except BatchPausedError as exc:
        exit_paused(exc)


@click.command("wait", epilog=EXIT_CODES_HELP)
@click.argument("batch_id", metavar="BATCH")
@click.option("--timeout", type=FiniteFloatRange(min=0), help="Give up after this many seconds (exit code 3).")
def wait_command(batch_id: str, timeout: float | None) -> None:
    """Show live progress until every line has a final result: exit 0 if all succeeded, 4 if some failed."""
    exit_for(_do_wait(load_settings(), batch_id, timeout))
