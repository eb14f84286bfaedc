"""A batch's record as a table (``status``, and ``run`` at its end), with its budget and its shadow's share."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.table import Table
from rich.text import Text

from producer.analysis.compare import printable
from producer.batch.status import SinkStatus, VenueStatus, batch_state, incomplete_message
from producer.cli.common import mb
from store.batches import BatchRecord, Footprint


def status_table(
    record: BatchRecord,
    footprint: Footprint | None = None,
    *,
    feeder_alive: bool = False,
    shadow: BatchRecord | None = None,
    venue: VenueStatus | None = None,
    lossy: list[str] | None = None,
    sink: SinkStatus | None = None,
) -> Table:
    table = Table(title=f"batch {record.batch_id}", show_header=False)
    usage = record.usage
    rows = [
        ("api / model / schema", f"{record.spec.api} / {record.spec.model} / {record.spec.schema_ref}"),
        ("state", batch_state(record, feeder_alive=feeder_alive)),
        ("lines", str(record.lines)),
        ("enqueued", f"{record.fed} ({record.queued} in the queue now)"),
        ("done", f"{record.done} ({record.pending} pending)"),
        ("succeeded", str(record.succeeded)),
        ("failed", str(record.failed)),
        ("cancelled", str(record.cancelled)),
        ("tokens in / cached / out", f"{usage.input_tokens} / {usage.cached_input_tokens} / {usage.output_tokens}"),
        ("estimated cost", "n/a" if record.cost_usd is None else f"${record.cost_usd:.6f}"),
        (
            "possibly billed, unrecorded",
            f"{record.possibly_billed_calls} call(s), ~{record.possibly_billed_input_tokens} input tokens"
            if record.possibly_billed_calls
            else "none",
        ),
    ]
    if not record.submitted and not feeder_alive:
        rows.insert(2, ("submit", incomplete_message(record)))
    if record.paused is not None:
        rows.insert(2, ("paused", f"since {record.paused_at}: {record.paused} (fix it, then producer resume)"))
    if record.budget is not None:
        b = record.budget
        limits = [
            f"${b.budget_usd:,.4f}" if b.budget_usd is not None else "",
            f"{b.budget_tokens:,} tokens" if b.budget_tokens else "",
        ]
        rows.append(
            (
                "budget",
                f"{' and '.join(x for x in limits if x)}: spent ${b.spent_usd:,.4f} / {b.spent_tokens:,} tokens, "
                f"in flight ${b.reserved_usd:,.4f} / {b.reserved_tokens:,} tokens",
            )
        )
    rows += split_rows(record, shadow)
    rows += venue_rows(venue)
    rows += sink_rows(sink)
    rows += [("schema, checked locally", warning) for warning in (lossy or [])[:SHOWN_PARTS]]
    if lossy and len(lossy) > SHOWN_PARTS:
        rows.append(("schema, checked locally", f"... {len(lossy) - SHOWN_PARTS} more (status --json lists them)"))
    if footprint is not None:
        parts = ", ".join(f"{name} {mb(size)}" for name, size in footprint.by_key.items() if size)
        rows.append(("Redis", f"{mb(footprint.total)} ({parts}, queued jobs {mb(footprint.queued_jobs)})"))
    for name, value in rows:
        # Values carry text from outside (a provider's error in the pause reason, a model name): never markup.
        table.add_row(name, Text(printable(value)))
    return table


def split_rows(record: BatchRecord, shadow: BatchRecord | None) -> list[tuple[str, str]]:
    """A batch with a shadow and a budget: the whole given to the two, and the shadow's part."""
    split, shadow_id = record.budget_split, record.spec.shadow
    if split is None or shadow_id is None or (split.group_usd is None and split.group_tokens is None):
        return []
    whole = [
        f"${split.group_usd:,.4f}" if split.group_usd is not None else "",
        f"{split.group_tokens:,} tokens" if split.group_tokens else "",
    ]
    rows = [
        ("budget, with the shadow", f"{' and '.join(x for x in whole if x)} for this batch and {shadow_id} together")
    ]
    if shadow is None:
        rows.append(("shadow's part", f"{shadow_id} is not recorded yet: it takes its part when it is"))
    elif shadow.budget is not None:
        b = shadow.budget
        rows.append(
            (
                "shadow's part",
                f"{shadow_id} {budget_part(shadow)}: spent ${b.spent_usd:,.4f} / {b.spent_tokens:,} tokens, "
                f"in flight ${b.reserved_usd:,.4f} / {b.reserved_tokens:,} tokens",
            )
        )
    return rows


def budget_part(record: BatchRecord) -> str:
    """A batch's own budgets, as ``producer budget`` and ``status`` show them."""
    b = record.budget
    if b is None:
        return "none"
    parts = [
        f"${b.budget_usd:,.4f}" if b.budget_usd is not None else "",
        f"{b.budget_tokens:,} tokens" if b.budget_tokens else "",
    ]
    return " and ".join(x for x in parts if x) or "none"


SHOWN_PARTS = 20


def sink_rows(sink: SinkStatus | None) -> list[tuple[str, str]]:
    """Where the results sink stands: written, waiting in Redis, its last error."""
    if sink is None:
        return []
    state = "complete" if sink.complete else f"{sink.waiting:,} waiting in Redis"
    rows = [("results", f"{sink.url} ({sink.format}): {sink.rows:,} line(s) in {sink.parts:,} part(s), {state}")]
    if sink.error is not None:
        when = datetime.fromtimestamp(sink.error_at or 0, UTC).strftime("%H:%M:%S UTC")
        rows.append(("results sink error", f"{when}: {sink.error} (retried; the lines wait in Redis)"))
    return rows


def venue_rows(venue: VenueStatus | None) -> list[tuple[str, str]]:
    """A batch on the Batch API venue: where its unfinished lines are, and each provider batch's state."""
    if venue is None:
        return []
    deadline = ""
    if venue.deadline_at is not None:
        deadline = f", deadline {datetime.fromtimestamp(venue.deadline_at, UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    names = {
        "staged": "staged",
        "sent": "in provider batches",
        "answered": "answered, recording",
        "resend": "going on",
        "sync": "gone on synchronously",
    }
    where = ", ".join(f"{names.get(state, state)} {count:,}" for state, count in sorted(venue.lines.items()) if count)
    rows = [("venue", f"{venue.venue}{deadline}"), ("unfinished lines", where or "none")]
    for part in venue.parts[-SHOWN_PARTS:]:
        status = part.status or part.state
        error = f" ({part.error})" if part.error else ""
        rows.append(
            (
                f"provider batch {part.number}",
                f"{part.provider_batch_id or 'not created yet'}: {status}{error}, {part.lines:,} line(s), "
                f"{part.answered:,} answered, {part.resent:,} sent on",
            )
        )
    if len(venue.parts) > SHOWN_PARTS:
        rows.append(("provider batches", f"{len(venue.parts):,} in all (status --json lists every one)"))
    return rows
