"""``submit``, ``estimate`` and ``run``: a plan (``producer.submit.plan``) said on the terminal, then carried out."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
import orjson
from redis.asyncio import Redis
from rich.console import Console
from rich.markup import escape

from producer.batch.collect import OutputFormat
from producer.batch.progress import wait_for_batch
from producer.batch.status import BatchPausedError, read_status
from producer.cli.collecting import collect_into, report_collected
from producer.cli.common import (
    EXIT_CODES_HELP,
    OUT_HELP,
    OUTPUT_FILE,
    FiniteFloatRange,
    InvalidInputError,
    err,
    exit_for,
    exit_paused,
    load_settings,
    output_file,
    run_in_redis,
    said_as_usage,
)
from producer.cli.estimate_view import print_estimate
from producer.cli.options import OUTPUT_FORMAT, submit_options
from producer.cli.status_view import status_table
from producer.errors import EXIT_INCOMPLETE, InputError
from producer.input.readers import InputScan
from producer.submit.indexer import OpenedBatch
from producer.submit.plan import InvalidLinesError, RequestRefusedError, SubmitPlan, estimate_plan, plan_submit
from producer.submit.run import SubmitEvents, SubmitReport, submit_plan
from producer.submit.shadow import ShadowOutcome
from schemas.settings import ProducerSettings
from store.batches import BatchRecord
from store.feed import FeedState
from store.keys import Keys

REPORT_EVERY_S = 10.0
"""How often a long feed says how far it got."""
SHOWN_ERRORS = 50


def planned(settings: ProducerSettings, path: Path | str, batch_id: str | None) -> SubmitPlan:
    """The submit's plan, its warnings and skipped lines said on stderr; its refusals said and exited with."""

    def warn(text: str) -> None:
        err.print(f"[yellow]warning[/yellow]: {escape(text)}", markup=True)

    try:
        with said_as_usage():
            plan = plan_submit(settings, path, batch_id, on_warning=warn)
    except RequestRefusedError as exc:
        for problem in exc.problems:
            err.print(f"error: {problem}", markup=False)
        sys.exit(exc.exit_code)
    except InvalidLinesError as exc:
        _report_invalid(path, exc.source.scan)
        hint = " (use --skip-invalid to enqueue the valid ones)" if exc.source.scan.count else ""
        err.print(f"{exc.source.scan.error_count} invalid line(s); nothing was enqueued{hint}")
        sys.exit(exc.exit_code)
    except InputError as exc:  # a schema too large for the model, a --glob that selects nothing ...
        raise InvalidInputError(str(exc)) from exc
    if plan.skipped:
        _report_invalid(path, plan.source.scan)
        err.print(f"skipping {plan.skipped} invalid line(s)")
    return plan


def _report_invalid(path: Path | str, scan: InputScan) -> None:
    for error in scan.errors[:SHOWN_ERRORS]:
        if error.where:
            below = error.where != str(path) and os.path.isdir(path)  # a folder's file, named below the folder
            where = f"{Path(path) / error.where}" if below else error.where
        else:
            name = "<stdin>" if str(path) == "-" else str(path)
            where = f"{name}:{error.line}" if error.line else name
        err.print(f"[red]error[/red] {where}: {error.reason}", highlight=False, markup=True)
    if scan.error_count > SHOWN_ERRORS:
        err.print(f"... and {scan.error_count - SHOWN_ERRORS} more invalid line(s)")


class FeedReporter:
    """Says how a long feed is going, every ``REPORT_EVERY_S`` seconds (a short one says nothing)."""

    def __init__(self, batch_id: str, window: int) -> None:
        self._batch_id, self._window = batch_id, window
        self._last = time.monotonic()
        self.spoke = False

    def __call__(self, state: FeedState) -> None:
        now = time.monotonic()
        if now - self._last < REPORT_EVERY_S:
            return
        self._last, self.spoke = now, True
        err.print(
            f"batch {self._batch_id}: {state.fed:,} of {state.lines:,} lines enqueued "
            f"({state.queued:,} in the queue, window {self._window:,}); feeding until all are enqueued"
        )


async def submit_and_say(
    redis: Redis, keys: Keys, settings: ProducerSettings, plan: SubmitPlan, *, wait: bool
) -> SubmitReport:
    """Carry out the plan, saying what happens; with ``wait``, show the batch's progress until it is complete."""
    spec = plan.spec
    fmt = {"openai-batch": " (OpenAI batch input format)", "folder": " (one per file)"}.get(plan.source.scan.format, "")

    def opened(batch: OpenedBatch) -> None:
        click.echo(spec.batch_id)  # on stdout at once: a script can resume this batch even if we are killed
        sys.stdout.flush()
        record = batch.record
        if batch.created:
            err.print(f"submitted batch [bold]{spec.batch_id}[/bold]: {record.lines} line(s){fmt}")
        else:
            err.print(
                f"batch [bold]{spec.batch_id}[/bold] already known ({record.lines} line(s){fmt}): "
                f"{record.fed} enqueued before; going on from there"
            )

    def shadow_opened(batch: OpenedBatch) -> None:
        state, shadow = ("submitted" if batch.created else "known"), batch.record.spec
        err.print(
            f"{state} shadow batch [bold]{shadow.batch_id}[/bold]: {batch.record.lines} line(s) "
            f"({settings.shadow_sample:.0%} sample) on {shadow.api} / {shadow.model}"
        )

    reporter = FeedReporter(spec.batch_id, settings.queue_window)
    events = SubmitEvents(on_opened=opened, on_progress=reporter, on_shadow_opened=shadow_opened)
    waiting = (lambda: wait_for_batch(redis, keys, spec.batch_id, timeout_s=None)) if wait else None
    report = await submit_plan(redis, keys, settings, plan, events=events, alongside=waiting)
    result = report.result
    if result.replaced or result.appended:
        err.print(f"batch {spec.batch_id}: {result.replaced} changed line(s) run again, {result.appended} appended")
    if result.running:
        err.print(
            f"[yellow]warning[/yellow]: {len(result.running)} changed line(s) were running with their earlier "
            "document and were left alone; submit again once they have finished to replace them"
        )
    if result.cancelled:
        err.print(f"batch {spec.batch_id} was cancelled: {result.lines - result.fed} line(s) were never enqueued")
    elif reporter.spoke or (not result.created and result.enqueued):
        err.print(f"batch {spec.batch_id}: all {result.lines:,} lines enqueued ({result.enqueued:,} by this run)")
    elif not result.created:
        err.print(f"batch {spec.batch_id}: nothing new to enqueue")
    for outcome in report.shadows:
        _report_shadow(outcome, spec.batch_id, settings.shadow_sample)
    return report


def _report_shadow(outcome: ShadowOutcome, batch_id: str, sample: float) -> None:
    """What became of the shadow batch, when it is not simply fed."""
    if outcome.main_cancelled:
        err.print(f"shadow batch {outcome.batch_id} was not made: batch {batch_id} was cancelled")
    elif not outcome.lines:
        err.print(f"shadow batch {outcome.batch_id}: the {sample:.0%} sample holds no line; none made")
    elif outcome.result is not None and outcome.result.cancelled:
        never = outcome.result.lines - outcome.result.fed
        err.print(f"shadow batch {outcome.batch_id} was cancelled: {never} line(s) were never enqueued")


@click.command("submit")
@submit_options
@click.option("--dry-run", is_flag=True, help="Check INPUT and print the estimate; write nothing (= estimate).")
def submit_command(input_path: Path, batch_id: str | None, dry_run: bool, **flags: Any) -> None:
    """Validate INPUT, record the batch and feed its lines into the queue until all are enqueued.

    Prints the batch id on stdout first. A batch larger than the window keeps this command running while workers
    drain it; if it is stopped, run the same submit again: it goes on where it was.
    """
    settings = load_settings(**flags)
    plan = planned(settings, input_path, batch_id)
    if dry_run:
        print_estimate(run_in_redis(settings, lambda r, k: estimate_plan(r, k, settings, plan)), plan.spec)
        return
    run_in_redis(settings, lambda redis, keys: submit_and_say(redis, keys, settings, plan, wait=False))


@click.command("estimate")
@submit_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def estimate_command(input_path: Path, batch_id: str | None, as_json: bool, **flags: Any) -> None:
    """What INPUT would cost and take, per service tier, without writing anything (Redis is only read: the result
    cache, and what earlier batches of the model were billed)."""
    settings = load_settings(**flags)
    plan = planned(settings, input_path, batch_id)
    result = run_in_redis(settings, lambda redis, keys: estimate_plan(redis, keys, settings, plan))
    if as_json:
        click.echo(orjson.dumps(result.to_json_dict()).decode())
    else:
        print_estimate(result, plan.spec)


@click.command("run", epilog=EXIT_CODES_HELP)
@submit_options
@click.option(
    "--out",
    type=OUTPUT_FILE,
    callback=output_file,
    help=OUT_HELP + " With --results it may be left out: the results are then in the sink once `run` ends "
    "[required unless --results].",
)
@click.option("--timeout", type=FiniteFloatRange(min=0), help="Give up waiting after this many seconds (exit code 3).")
@OUTPUT_FORMAT
def run_command(
    input_path: Path,
    batch_id: str | None,
    out: Path | None,
    timeout: float | None,
    output_format: OutputFormat,
    **flags: Any,
) -> None:
    """Submit INPUT, feed and wait for it, and collect the results into a file (--out); with --results and no
    file, wait until the results sink holds every line instead."""
    settings = load_settings(**flags)
    if out is None and settings.results is None:
        raise click.UsageError("--out is required (unless --results sends the results to a sink)")
    plan = planned(settings, input_path, batch_id)
    batch_id = plan.spec.batch_id

    async def body(redis: Redis, keys: Keys) -> tuple[BatchRecord, int, int]:
        async with asyncio.timeout(timeout):
            await submit_and_say(redis, keys, settings, plan, wait=True)
        record = await read_status(redis, keys, batch_id)
        if out is None:
            return record, record.done, 0
        written, missing = await collect_into(redis, keys, settings, batch_id, out, output_format, follow_=False)
        return record, written, missing

    try:
        record, written, missing = run_in_redis(settings, body)
    except TimeoutError:
        err.print(f"[yellow]timeout[/yellow]: batch {batch_id} did not finish within {timeout:g}s")
        sys.exit(EXIT_INCOMPLETE)
    except BatchPausedError as exc:
        exit_paused(exc)
    Console(stderr=True).print(status_table(record))
    if out is not None:
        report_collected(out, written, missing)
    elif plan.spec.results is not None:
        where = f"{plan.spec.results.url}/{batch_id}"
        err.print(
            f"results: {written} line(s) in {where}/ ({plan.spec.results.format} parts, _manifest.json lists them)"
        )
    exit_for(record)
