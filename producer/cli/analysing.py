"""``compare`` (two runs over the same documents, field by field) and ``report`` (one batch as an HTML page).

Both read a batch's results as a stream of chunks in input order (``producer.batch.collect.final_result_chunks``)
into the pure analysis wing, which holds a bounded state (``producer.analysis``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import orjson
from redis.asyncio import Redis
from rich.console import Console

from producer.analysis.compare import (
    CompareOptions,
    Comparison,
    PendingLimitError,
    compare_chunks,
    comparison_html,
    comparison_json,
    comparison_table,
    printable,
)
from producer.analysis.report import ReportSummary, summarise_chunks, summary_report_html
from producer.batch.collect import final_result_chunks, write_output
from producer.batch.status import batch_state, read_status
from producer.cli.common import (
    OUTPUT_FILE,
    FiniteFloatRange,
    InvalidInputError,
    err,
    load_settings,
    output_file,
    run_in_redis,
)
from schemas.strict import canonical_schema_json
from store.batches import BatchRecord, BatchSnapshot, BatchStore
from store.keys import Keys


@click.command("compare")
@click.argument("batch_a", metavar="A")
@click.argument("batch_b", metavar="B", required=False)
@click.option("--shadow", is_flag=True, help="Compare A with its shadow batch (submit --shadow-api/--shadow-model).")
@click.option(
    "--by",
    type=click.Choice(["custom_id", "document"]),
    default="custom_id",
    show_default=True,
    help="Match lines by custom_id, or by their document's fingerprint.",
)
@click.option(
    "--tolerance",
    type=FiniteFloatRange(min=0),
    default=0.01,
    show_default=True,
    help="How far two numbers may differ and still agree, relative to the larger (0.01: 1 %).",
)
@click.option(
    "--list-key",
    "list_keys",
    multiple=True,
    metavar="PATH=FIELD",
    help="Match the items of a list by a field instead of by position, e.g. line_items=description.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option(
    "--html",
    "html_out",
    type=OUTPUT_FILE,
    callback=output_file,
    help="Also write the comparison as an HTML page to this file (mode 0600; its folder must exist).",
)
def compare_command(
    batch_a: str,
    batch_b: str | None,
    shadow: bool,
    by: str,
    tolerance: float,
    list_keys: tuple[str, ...],
    as_json: bool,
    html_out: Path | None,
) -> None:
    """Compare two batches over the same documents, field by field: agreement, status, tokens, cost, latency.

    Exit 2 when there is nothing to compare: a batch with itself, or two batches with no line in common.
    """
    if shadow == (batch_b is not None):
        raise click.UsageError("give two batches (A B), or one with --shadow")
    if batch_a == batch_b:
        raise InvalidInputError(f"A and B are the same batch ({batch_a}): nothing to compare")
    keys_by_path = {}
    for item in list_keys:
        path, sep, key = item.partition("=")
        if not sep or not path or not key:
            raise click.UsageError(f"--list-key {item!r}: write PATH=FIELD, e.g. line_items=description")
        keys_by_path[path] = key

    options = CompareOptions(by="document" if by == "document" else "custom_id", number_tolerance=tolerance)
    options = dataclasses.replace(options, list_keys=keys_by_path)

    async def body(redis: Redis, keys: Keys) -> tuple[BatchRecord, BatchRecord, Comparison]:
        first = await read_status(redis, keys, batch_a)
        other_id = batch_b if batch_b is not None else first.spec.shadow
        if other_id is None:
            raise click.UsageError(f"batch {batch_a} has no shadow batch (submit it with --shadow-api/--shadow-model)")
        second = await read_status(redis, keys, other_id)
        if first.batch_id == second.batch_id:  # possible only through a hand-made record
            raise InvalidInputError(f"A and B are the same batch ({first.batch_id}): nothing to compare")
        return first, second, await _compare_batches(redis, keys, first, second, options)

    first, second, comparison = run_in_redis(load_settings(), body)
    if not comparison.matched:
        raise InvalidInputError(_nothing_matched(comparison, by))
    if canonical_schema_json(first.spec.json_schema) != canonical_schema_json(second.spec.json_schema):
        refs = (first.spec.schema_ref, second.spec.schema_ref)
        which = f"{refs[0]} and {refs[1]}" if refs[0] != refs[1] else f"both {refs[0]}, changed in between"
        err.print(
            f"warning: {first.batch_id} and {second.batch_id} have different schemas ({printable(which)}): "
            f"{second.batch_id}'s fields are compared by name with {first.batch_id}'s schema",
            markup=False,
        )
    if html_out is not None:
        write_output(html_out, comparison_html(comparison).encode())
        err.print(f"wrote {html_out}", highlight=False, markup=False)
    if as_json:
        click.echo(orjson.dumps(comparison_json(comparison)).decode())
    else:
        Console(width=max(Console().width, 120)).print(comparison_table(comparison))


async def _compare_batches(
    redis: Redis, keys: Keys, first: BatchRecord, second: BatchRecord, options: CompareOptions
) -> Comparison:
    """Both batches stream by in input order, chunk by chunk (``producer.analysis.compare``: bounded memory)."""
    try:
        return await compare_chunks(
            final_result_chunks(redis, keys, first.batch_id),
            final_result_chunks(redis, keys, second.batch_id),
            json_schema=first.spec.json_schema,
            names=(first.batch_id, second.batch_id),
            options=options,
        )
    except ValueError as exc:  # a --list-key that names no list of the schema
        raise InvalidInputError(f"--list-key: {exc}") from exc
    except PendingLimitError as exc:  # runs in different orders: more lines waiting than compare holds
        raise InvalidInputError(str(exc)) from exc


def _nothing_matched(comparison: Comparison, by: str) -> str:
    a, b = comparison.a, comparison.b
    if not a.lines or not b.lines:
        hint = "a batch without results yet: producer wait, then compare"
    elif by == "custom_id":
        hint = "are they runs over the same input? --by document matches lines by their document"
    else:
        hint = "are they runs over the same documents?"
    return (
        f"nothing to compare: no line of {a.name} ({a.lines:,} result line(s)) matches one of {b.name} "
        f"({b.lines:,}) by {by} - {hint}"
    )


@click.command("report")
@click.argument("batch_id", metavar="BATCH")
@click.option(
    "--html",
    "html_out",
    required=True,
    type=OUTPUT_FILE,
    callback=output_file,
    help="The HTML file to write (mode 0600; its folder must exist).",
)
def report_command(batch_id: str, html_out: Path) -> None:
    """Write one self-contained HTML page about a batch: throughput, latency, tokens and cost, errors, fields."""
    settings = load_settings()

    async def body(redis: Redis, keys: Keys) -> tuple[BatchSnapshot, ReportSummary]:
        snapshot = await BatchStore(redis, keys).snapshot(batch_id)
        return snapshot, await summarise_chunks(final_result_chunks(redis, keys, batch_id))

    snapshot, summary = run_in_redis(settings, body)
    record = snapshot.record
    price = settings.price_for(record.spec.model)
    batch = {**record.to_json_dict(), "state": batch_state(record, feeder_alive=snapshot.feeder_alive)}
    html = summary_report_html(batch, summary, price=price.model_dump() if price is not None else None)
    write_output(html_out, html.encode())
    err.print(f"wrote {html_out} ({len(html) / 1e6:.1f} MB, {summary.lines:,} line(s))", highlight=False, markup=False)
