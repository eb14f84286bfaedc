"""The estimate as a table: tokens, the calibration used, cost per tier, time at the limits, the shadow's share."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from producer.submit.estimate import Estimate
from schemas.jobs import BatchSpec
from schemas.pricing import BATCH_TIER


def print_estimate(result: Estimate, spec: BatchSpec) -> None:
    table = Table(title=f"estimate: {spec.model} on the {spec.api} API", show_header=False)
    history = result.history
    rows = [
        ("lines", f"{result.lines:,} ({result.cached_lines:,} answered by the cache or duplicates)"),
        ("input tokens", f"{result.input_tokens:,} ({result.cached_input_tokens:,} expected from the prompt cache)"),
        ("output tokens", f"{result.output_tokens:,} ({result.output_basis})"),
        (
            "calibration",
            f"input x {history.input_ratio:.3f} from {history.batches} earlier batch(es)"
            if history.input_ratio is not None
            else "none yet (no earlier batch of this model here): the raw estimate",
        ),
    ]
    for tier, usd in result.cost_usd.items():
        name = "cost, Batch API (--venue batch-api)" if tier == BATCH_TIER else f"cost, {tier} tier"
        rows.append((name, "no price known" if usd is None else f"${usd:,.4f}"))
    if result.minutes is not None and result.limits is not None:
        limits = ", ".join(f"{v:,} {k.upper()}" for k, v in result.limits.items() if v)
        rows.append(("time at the limits", f"{result.minutes:,.1f} min ({limits}, {result.limits_source})"))
    else:
        rows.append(("time at the limits", "unknown: no limit configured or learned for this model"))
    rows.append(("time on the Batch API", "within 24 h (the provider's completion window; often much sooner)"))
    rows.append(("venue", _venue_words(result)))
    rows += _shadow_estimate_rows(result)
    for name, value in rows:
        table.add_row(name, value)
    Console().print(table)


def _shadow_estimate_rows(result: Estimate) -> list[tuple[str, str]]:
    """The shadow batch's own row (and its cost per tier), then the two together."""
    shadow, total = result.shadow, result.total
    if shadow is None or total is None:
        return []
    rows = [
        (
            "shadow batch",
            f"{shadow.lines:,} line(s) on {shadow.api} / {shadow.model}: {shadow.input_tokens:,} input and "
            f"{shadow.output_tokens:,} output tokens ({shadow.output_basis})",
        )
    ]
    rows += [
        (f"shadow cost, {t} tier", "no price known" if u is None else f"${u:,.4f}") for t, u in shadow.cost_usd.items()
    ]
    rows.append(
        (
            "total, with the shadow",
            f"{total.lines:,} line(s): {total.input_tokens:,} input and {total.output_tokens:,} output tokens",
        )
    )
    rows += [
        (f"total cost, {t} tier", "no price known" if u is None else f"${u:,.4f}") for t, u in total.cost_usd.items()
    ]
    return rows


def _venue_words(result: Estimate) -> str:
    """The batch's venue, and where its lines would go if it started now."""
    deadline = ""
    if result.deadline_at is not None:
        deadline = f" by {datetime.fromtimestamp(result.deadline_at, UTC).strftime('%Y-%m-%d %H:%M UTC')}"
    if result.venue == result.venue_now:
        return f"{result.venue}{deadline}"
    return f"{result.venue}{deadline}: its lines would go {result.venue_now} if it started now"
