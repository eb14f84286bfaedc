"""``producer``: submit batches, feed them, watch them, collect their results."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import orjson
from redis.asyncio import Redis
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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
from producer.batch.collect import (
    OutputFormat,
    OutputPathError,
    check_output_path,
    collect,
    final_result_chunks,
    follow,
    write_output,
)
from producer.batch.control import (
    BudgetSet,
    CancelResult,
    Deleted,
    ShadowBudgetError,
    cancel,
    delete,
    resume,
    retry_failed,
    set_budget,
)
from producer.batch.progress import WaitTimeoutError, wait_for_batch
from producer.batch.status import (
    BatchOverview,
    BatchPausedError,
    IncompleteSubmitError,
    batch_state,
    incomplete_message,
    list_batches,
    read_status,
)
from producer.errors import (
    EXIT_FAILED_LINES,
    EXIT_INCOMPLETE,
    EXIT_INVALID_INPUT,
    EXIT_PAUSED,
    ProducerError,
)
from producer.input.documents import GlobError
from producer.input.readers import FileSource, FolderSource, LineShape, LineSource, batch_body_check
from producer.submit.attachments import Uploader
from producer.submit.estimate import Estimate, estimate
from producer.submit.feeder import FeedResult
from producer.submit.indexer import OpenedBatch
from producer.submit.resubmit import ResubmitRefusedError
from producer.submit.shadow import SampledSource, ShadowOutcome, shadow_id, shadow_spec, share_budget, submit_shadow
from producer.submit.submit import (
    SubmitOptions,
    SubmitResult,
    build_spec,
    document_check,
    preflight_error,
    preflight_warnings,
    submit,
)
from schemas.jobs import DEFAULT_INSTRUCTIONS, BatchSpec, GenerationParams
from schemas.models import EFFORTS, REQUEST_TIERS, request_problems
from schemas.registry import resolve_schema
from schemas.settings import InvalidSettingsError, ProducerSettings
from schemas.strict import canonical_schema_json
from store.batches import BatchNotFoundError, BatchRecord, BatchSnapshot, BatchStore, Footprint
from store.connect import REDIS_ERRORS, describe_redis_error, open_redis
from store.feed import FeedState
from store.keys import InvalidIdError, Keys, check_batch_id

EXIT_CODES_HELP = (
    "Exit codes: 0 every line succeeded; 1 error; 2 invalid input or usage; 3 incomplete (timed out, lines pending, "
    "or an interrupted submit); 4 complete with failed or cancelled lines; 5 paused (see `producer status`)."
)
REPORT_EVERY_S = 10.0
"""How often a long feed says how far it got."""

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True, highlight=False)


class SettingsUsageError(click.ClickException):
    """An invalid setting (flag, variable or secret file): one line naming it, exit 2 like a usage error."""

    exit_code = EXIT_INVALID_INPUT


class InvalidInputError(click.ClickException):
    """What the user asked for cannot be done as asked (an output in a missing folder, two batches with nothing to
    compare, a schema the API would refuse): one line saying what to change, exit 2."""

    exit_code = EXIT_INVALID_INPUT


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` without ``inf`` and ``nan`` (which pass its comparisons, then break the arithmetic)."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        converted = super().convert(value, param, ctx)
        if not math.isfinite(converted):
            self.fail(f"{converted} is not a finite number.", param, ctx)
        return converted


OUTPUT_FILE = click.Path(dir_okay=False, path_type=Path)
OUT_HELP = "The JSONL file to write (owner-only, mode 0600); its folder must exist."
FORMAT_HELP = "native: our result lines; openai-batch: the OpenAI Batch API output lines."


def _output_file(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """An output option, checked as it is parsed (before any work): its folder must exist (``check_output_path``)."""
    if value is not None:
        try:
            check_output_path(value)
        except OutputPathError as exc:
            raise InvalidInputError(str(exc)) from exc
    return value


def _settings(**flags: Any) -> ProducerSettings:
    try:
        return ProducerSettings.from_flags(**flags)
    except InvalidSettingsError as exc:
        raise SettingsUsageError(f"invalid settings: {exc}") from exc


def _keys(settings: ProducerSettings) -> Keys:
    try:
        return Keys(settings.key_prefix)
    except InvalidIdError as exc:
        raise SettingsUsageError(f"invalid settings: EXTRACT_KEY_PREFIX: {exc}") from exc


def _with_redis(settings: ProducerSettings, body: Callable[[Redis, Keys], Awaitable[T]]) -> T:
    """Run ``body`` in one event loop with one Redis client; the errors a user can act on become one line.

    Redis that cannot be used (down, a wrong password, TLS against a plain server, a bad URL, an unknown host) is
    met by one PING before ``body`` starts, and is one line (``store.connect``) then or later, exit 1.
    """
    keys = _keys(settings)

    async def run() -> T:
        redis = await open_redis(settings.redis_url, socket_connect_timeout=5, health_check_interval=30)
        try:
            return await body(redis, keys)
        finally:
            await redis.aclose()

    coroutine: Coroutine[Any, Any, T] = run()
    try:
        return asyncio.run(coroutine)
    except (BatchNotFoundError, InvalidIdError) as exc:  # the store's own
        raise click.ClickException(str(exc)) from exc
    except REDIS_ERRORS as exc:
        raise click.ClickException(str(describe_redis_error(exc, settings.redis_url))) from exc
    except ResubmitRefusedError as exc:
        for problem in exc.problems:
            err.print(f"[red]refused[/red] {problem}", markup=True)
        if exc.total > len(exc.problems):
            err.print(f"... and {exc.total - len(exc.problems)} more")
        err.print(f"{exc.total} line(s) refused; nothing was changed")
        sys.exit(exc.exit_code)
    except IncompleteSubmitError as exc:
        err.print(f"[yellow]incomplete[/yellow]: {exc}", markup=True)
        sys.exit(exc.exit_code)
    except (WaitTimeoutError, BatchPausedError):
        raise  # `wait` and `run` say these their own way
    except ProducerError as exc:  # the rest of the tree (producer.errors): its message, its exit code
        click.echo(f"Error: {exc}", err=True)  # as click prints its own errors
        sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="structured-extract", prog_name="producer")
def main() -> None:
    """Submit extraction batches and collect their results (Redis from REDIS_URL)."""


# --------------------------------------------------------------------------------------------------- submit
# Every option defaults to None so that its environment twin (EXTRACT_<NAME>) applies when it is not given.
_SUBMIT_OPTIONS = [
    click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, allow_dash=True, path_type=Path)),
    # Required, but not click-required: the environment twin (or a secret file, or .env) may give them instead.
    click.option(
        "--schema",
        "schema_spec",
        help="Built-in name, JSON Schema file or package.module:Class [required; or env EXTRACT_SCHEMA].",
    ),
    click.option("--model", help="Model name, e.g. gpt-4o-mini [required; or env EXTRACT_MODEL]."),
    click.option("--api", type=click.Choice(["responses", "chat"]), help="Which API [env EXTRACT_API; responses]."),
    click.option(
        "--batch-id", help="Batch id: letters, digits, '.', '_', '-' (default: the input's name and the time)."
    ),
    click.option("--instructions", help="Instructions for the model [env EXTRACT_INSTRUCTIONS]."),
    click.option(
        "--instructions-file",
        type=click.Path(exists=True, dir_okay=False),
        help="Read the instructions from a file [env EXTRACT_INSTRUCTIONS_FILE].",
    ),
    click.option("--id-field", help="Field holding the line id [env EXTRACT_ID_FIELD; custom_id]."),
    click.option("--text-field", help="Field holding the document [env EXTRACT_TEXT_FIELD; text]."),
    click.option(
        "--files-field",
        help="Field listing attachment files, paths relative to INPUT [env EXTRACT_FILES_FIELD; files].",
    ),
    click.option("--urls-field", help="Field listing http(s) or data: URLs [env EXTRACT_URLS_FIELD; urls]."),
    click.option("--file-ids-field", help="Field listing OpenAI file ids [env EXTRACT_FILE_IDS_FIELD; file_ids]."),
    click.option("--glob", help="A folder INPUT: which files are documents [env EXTRACT_GLOB; **/*]."),
    click.option(
        "--image-detail",
        type=click.Choice(["auto", "low", "high", "original"]),
        help="The detail images are sent with [env EXTRACT_IMAGE_DETAIL; auto].",
    ),
    click.option(
        "--attach",
        type=click.Choice(["inline", "upload"]),
        help="Attachments: bytes in Redis once per content (inline), or uploaded once to the Files API "
        "(upload; needs OPENAI_API_KEY) [env EXTRACT_ATTACH; inline].",
    ),
    click.option(
        "--max-output-tokens",
        type=click.IntRange(min=1),
        help="The most tokens the model may write per call (reasoning included), sent as max_output_tokens "
        "[env EXTRACT_MAX_OUTPUT_TOKENS; not sent: the model's own limit].",
    ),
    click.option(
        "--temperature",
        type=FiniteFloatRange(0, 2),
        help="Sampling temperature sent with every call [env EXTRACT_TEMPERATURE; not sent].",
    ),
    click.option(
        "--budget-tokens",
        type=click.IntRange(min=1),
        help="The most tokens (input + output) the batch may be billed; it pauses there [env EXTRACT_BUDGET_TOKENS].",
    ),
    click.option(
        "--budget-usd",
        type=FiniteFloatRange(min=0, min_open=True),
        help="The most the batch may cost; it pauses there (producer budget raises it) [env EXTRACT_BUDGET_USD].",
    ),
    click.option(
        "--reasoning-effort",
        type=click.Choice(EFFORTS),
        help="Reasoning models: the effort sent [env EXTRACT_REASONING_EFFORT; the model's default].",
    ),
    click.option(
        "--service-tier",
        type=click.Choice(REQUEST_TIERS),
        help="The service tier asked for; flex bills at half price, slower [env EXTRACT_SERVICE_TIER; not sent].",
    ),
    click.option(
        "--count-tokens",
        type=click.Choice(["estimate", "exact"]),
        help="Size each call for the rate limit and the budget by our estimate, or by the provider's input-token "
        "counter (one more request per call) [env EXTRACT_COUNT_TOKENS; estimate].",
    ),
    click.option(
        "--shadow-api",
        type=click.Choice(["responses", "chat"]),
        help="Also run a sample of the lines through this API, as the linked batch BATCH-shadow "
        "(producer compare BATCH --shadow) [env EXTRACT_SHADOW_API].",
    ),
    click.option("--shadow-model", help="... or with this model (or both) [env EXTRACT_SHADOW_MODEL]."),
    click.option(
        "--shadow-sample",
        type=FiniteFloatRange(min=0, max=1, min_open=True),
        help="The share of lines the shadow batch runs, chosen by fingerprint [env EXTRACT_SHADOW_SAMPLE; 0.1].",
    ),
    click.option(
        "--flex-fallback-after",
        "flex_fallback_after_s",
        type=FiniteFloatRange(min=0, min_open=True),
        help="Seconds a flex line may be refused for capacity before it is sent with auto "
        "[env EXTRACT_FLEX_FALLBACK_AFTER_S; never].",
    ),
    click.option(
        "--no-cache",
        is_flag=True,
        default=None,
        help="Neither reuse nor store cached answers for this batch [env EXTRACT_NO_CACHE].",
    ),
    click.option(
        "--skip-invalid",
        is_flag=True,
        default=None,
        help="Enqueue the valid lines even if some are invalid [env EXTRACT_SKIP_INVALID].",
    ),
    click.option(
        "--replace-changed",
        is_flag=True,
        default=None,
        help="Resubmit: run lines whose document changed again (new result supersedes) [env EXTRACT_REPLACE_CHANGED].",
    ),
    click.option(
        "--append",
        is_flag=True,
        default=None,
        help="Resubmit: add lines the batch does not have at its end [env EXTRACT_APPEND].",
    ),
    click.option(
        "--window",
        "queue_window",
        type=click.IntRange(min=1),
        help="Lines of this batch in the queue at most; the rest is fed as lines finish [env EXTRACT_QUEUE_WINDOW].",
    ),
]


def _submit_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_SUBMIT_OPTIONS):
        func = option(func)
    return func


def _report_invalid(path: Path, source: FileSource | FolderSource, skip_invalid: bool) -> None:
    scan = source.scan
    shown = 50
    for error in scan.errors[:shown]:
        if error.where:
            where = error.where if error.where == str(path) else f"{path / error.where}"
        else:
            name = "<stdin>" if str(path) == "-" else str(path)
            where = f"{name}:{error.line}" if error.line else name
        err.print(f"[red]error[/red] {where}: {error.reason}", highlight=False, markup=True)
    if scan.error_count > shown:
        err.print(f"... and {scan.error_count - shown} more invalid line(s)")
    if not skip_invalid or not scan.count:
        hint = " (use --skip-invalid to enqueue the valid ones)" if scan.count else ""
        err.print(f"{scan.error_count} invalid line(s); nothing was enqueued{hint}")
        sys.exit(EXIT_INVALID_INPUT)
    err.print(f"skipping {scan.error_count} invalid line(s)")


def default_batch_id(path: Path) -> str:
    """The input's name (made to fit the batch-id alphabet) and the time."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-._")[:96] or "batch"
    return f"{stem}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def _prepare_submit(
    settings: ProducerSettings, path: Path, batch_id: str | None
) -> tuple[BatchSpec, FileSource | FolderSource]:
    """Everything a submit checks before it touches Redis: options, schema, every input line."""
    if settings.model is None:
        raise click.UsageError("--model is required (or set EXTRACT_MODEL)")
    if not settings.model.strip():
        err.print("error: --model is empty: name a model, e.g. gpt-4o-mini (or set EXTRACT_MODEL)", markup=False)
        sys.exit(EXIT_INVALID_INPUT)
    for warning in preflight_warnings(settings, settings.model):
        err.print(f"[yellow]warning[/yellow]: {escape(warning)}", markup=True)
    if settings.schema_spec is None:
        raise click.UsageError("--schema is required (or set EXTRACT_SCHEMA)")
    if settings.instructions and settings.instructions_file:
        raise click.UsageError("give --instructions or --instructions-file, not both")
    batch_id = batch_id or default_batch_id(path)
    try:
        check_batch_id(batch_id)
    except InvalidIdError as exc:
        raise click.UsageError(f"--batch-id: {exc}") from exc
    instructions = settings.instructions or DEFAULT_INSTRUCTIONS
    if settings.instructions_file:
        instructions = Path(settings.instructions_file).read_text(encoding="utf-8")
    try:
        schema = resolve_schema(settings.schema_spec)
    except ValueError as exc:  # UnknownSchemaError and friends: the message says what to fix
        raise click.UsageError(str(exc)) from exc

    spec = build_spec(
        SubmitOptions(
            batch_id=batch_id,
            api=settings.api,
            model=settings.model,
            schema=schema,
            instructions=instructions,
            params=GenerationParams(
                max_output_tokens=settings.max_output_tokens,
                temperature=settings.temperature,
                reasoning_effort=settings.reasoning_effort,
            ),
            budget_tokens=settings.budget_tokens,
            budget_usd=settings.budget_usd,
            service_tier=settings.service_tier,
            flex_fallback_after_s=settings.flex_fallback_after_s,
            count_tokens=settings.count_tokens,
            use_cache=not settings.no_cache,
            image_detail=settings.image_detail,
            attach=settings.attach,
        )
    )
    _check_parameters(settings, settings.model)
    _check_prompt(spec, settings)
    if settings.shadow_api or settings.shadow_model:
        shadow_model = settings.shadow_model or settings.model
        if (settings.shadow_api or settings.api) == settings.api and shadow_model == settings.model:
            raise click.UsageError("a shadow batch needs another API (--shadow-api) or model (--shadow-model)")
        _check_parameters(settings, shadow_model)
        _check_prompt(spec.model_copy(update={"model": shadow_model}), settings)
        spec = spec.model_copy(update={"shadow": shadow_id(spec.batch_id)})
    source = _open_source(path, spec, settings)
    if source.scan.error_count:
        _report_invalid(path, source, settings.skip_invalid)
    return spec, source


def _check_prompt(spec: BatchSpec, settings: ProducerSettings) -> None:
    """A schema (with the instructions) too large for the model: refused once, before a line is read."""
    problem = preflight_error(spec, settings)
    if problem is not None:
        raise InvalidInputError(problem)


def _check_parameters(settings: ProducerSettings, model: str) -> None:
    """What the model or the API would refuse for every line, or what cannot work: refused here, before any cost."""
    problems = request_problems(
        model,
        temperature=settings.temperature,
        reasoning_effort=settings.reasoning_effort,
        service_tier=settings.service_tier,
    )
    if problems:
        for problem in problems:
            err.print(f"error: {problem}", markup=False)
        sys.exit(EXIT_INVALID_INPUT)
    if settings.budget_usd is not None and settings.price_for(model) is None:
        raise click.UsageError(
            f"--budget-usd needs a price for {model}: add it to EXTRACT_PRICES (or use --budget-tokens)"
        )
    if settings.flex_fallback_after_s is not None and settings.service_tier != "flex":
        raise click.UsageError("--flex-fallback-after is for --service-tier flex")
    if settings.api == "chat" and settings.image_detail == "original":
        raise click.UsageError(
            "--image-detail original is a Responses API setting; Chat Completions takes auto, low or high"
        )
    if settings.attach == "upload" and not settings.api_key():
        raise click.UsageError("--attach upload uploads to the provider's Files API: set OPENAI_API_KEY")


def _open_source(path: Path, spec: BatchSpec, settings: ProducerSettings) -> FileSource | FolderSource:
    """A folder (each file a document) or a JSONL file (``-``: standard input), checked line by line."""
    if path.is_dir():
        try:
            return FolderSource.open(
                path,
                glob=settings.glob,
                api=spec.api,
                check=document_check(spec, settings),
                max_text_bytes=settings.max_document_bytes or None,
            )
        except GlobError as exc:
            raise SettingsUsageError(str(exc)) from exc
    shape = LineShape(
        id_field=settings.id_field,
        text_field=settings.text_field,
        files_field=settings.files_field,
        urls_field=settings.urls_field,
        file_ids_field=settings.file_ids_field,
        api=spec.api,
    )
    if str(path) == "-":
        return FileSource.from_stream(
            sys.stdin.buffer, shape=shape, check=document_check(spec, settings), batch_check=batch_body_check(spec)
        )
    return FileSource.open(path, shape=shape, check=document_check(spec, settings), batch_check=batch_body_check(spec))


def _uploader(settings: ProducerSettings) -> Uploader | None:
    """The Files API client an upload batch needs (None without a key: ``delete`` then leaves files to expire)."""
    key = settings.api_key()
    return Uploader.connect(api_key=key, base_url=settings.openai_base_url) if key else None


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


async def _submit_and_feed(
    redis: Redis, keys: Keys, settings: ProducerSettings, spec: BatchSpec, source: LineSource, *, wait: bool
) -> SubmitResult:
    """Record and index the batch, print its id, then feed it (while waiting for it, with ``wait``)."""
    scan_format = source.scan.format if isinstance(source, FileSource | FolderSource) else "native"
    fmt = {"openai-batch": " (OpenAI batch input format)", "folder": " (one per file)"}.get(scan_format, "")
    recorded = asyncio.Event()

    def opened(batch: OpenedBatch) -> None:
        """Say what was submitted, once the batch is recorded and before it is fed."""
        recorded.set()
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

    reporter = FeedReporter(spec.batch_id, settings.queue_window)
    uploader = _uploader(settings) if spec.attach == "upload" else None

    shadows: list[ShadowOutcome] = []

    async def share(_opened: OpenedBatch) -> None:
        await share_budget(
            redis,
            keys,
            settings,
            spec,
            source,
            api=settings.shadow_api,
            model=settings.shadow_model,
            sample=settings.shadow_sample,
        )

    async def feed_all() -> SubmitResult:
        """The batch, then (once every line of it is enqueued) its shadow batch, behind it in the queue."""
        main = await submit(
            redis,
            keys,
            spec,
            source,
            window=settings.queue_window,
            ttl_s=settings.batch_ttl_s,
            chunk=settings.submit_chunk_size,
            replace_changed=settings.replace_changed,
            append=settings.append,
            on_opened=opened,
            on_progress=reporter,
            uploader=uploader,
            before_feed=share if spec.shadow is not None else None,
        )
        if spec.shadow is not None:  # also after a cancel: the shadow's creation refuses, and the outcome says so
            shadows.append(await _submit_shadow(redis, keys, settings, spec, source, uploader))
        return main

    feeding = feed_all()
    try:
        result = await (_feed_while_waiting(redis, keys, spec.batch_id, feeding, recorded) if wait else feeding)
    finally:
        if uploader is not None:
            await uploader.close()
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
    for outcome in shadows:
        _report_shadow(outcome, spec.batch_id, settings.shadow_sample)
    return result


async def _submit_shadow(
    redis: Redis,
    keys: Keys,
    settings: ProducerSettings,
    spec: BatchSpec,
    source: LineSource,
    uploader: Uploader | None,
) -> ShadowOutcome:
    def opened(batch: OpenedBatch) -> None:
        state = "submitted" if batch.created else "known"
        shadow = batch.record.spec
        err.print(
            f"{state} shadow batch [bold]{shadow.batch_id}[/bold]: {batch.record.lines} line(s) "
            f"({settings.shadow_sample:.0%} sample) on {shadow.api} / {shadow.model}"
        )

    return await submit_shadow(
        redis,
        keys,
        spec,
        source,
        api=settings.shadow_api,
        model=settings.shadow_model,
        sample=settings.shadow_sample,
        window=settings.queue_window,
        ttl_s=settings.batch_ttl_s,
        chunk=settings.submit_chunk_size,
        on_opened=opened,
        uploader=uploader,
    )


def _report_shadow(outcome: ShadowOutcome, batch_id: str, sample: float) -> None:
    """What became of the shadow batch, when it is not simply fed."""
    if outcome.main_cancelled:
        err.print(f"shadow batch {outcome.batch_id} was not made: batch {batch_id} was cancelled")
    elif not outcome.lines:
        err.print(f"shadow batch {outcome.batch_id}: the {sample:.0%} sample holds no line; none made")
    elif outcome.result is not None and outcome.result.cancelled:
        never = outcome.result.lines - outcome.result.fed
        err.print(f"shadow batch {outcome.batch_id} was cancelled: {never} line(s) were never enqueued")


async def _feed_while_waiting(
    redis: Redis, keys: Keys, batch_id: str, feeding: Coroutine[Any, Any, SubmitResult], recorded: asyncio.Event
) -> SubmitResult:
    """``run``: feed the batch and show its progress at once, until it is complete (or either fails)."""
    feed = asyncio.create_task(feeding)
    started = asyncio.create_task(recorded.wait())
    waiter: asyncio.Task[BatchRecord] | None = None
    try:
        await asyncio.wait({feed, started}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            waiter = asyncio.create_task(wait_for_batch(redis, keys, batch_id, timeout_s=None))
            await asyncio.wait({feed, waiter}, return_when=asyncio.FIRST_EXCEPTION)
            if feed.done():
                feed.result()  # a failed feed ends the run with its error
            await waiter
        return await feed
    finally:
        for task in (feed, started, waiter):
            if task is not None and not task.done():
                task.cancel()


@main.command("submit")
@_submit_options
@click.option("--dry-run", is_flag=True, help="Check INPUT and print the estimate; write nothing (= estimate).")
def submit_command(input_path: Path, batch_id: str | None, dry_run: bool, **flags: Any) -> None:
    """Validate INPUT, record the batch and feed its lines into the queue until all are enqueued.

    Prints the batch id on stdout first. A batch larger than the window keeps this command running while workers
    drain it; if it is stopped, run the same submit again: it goes on where it was.
    """
    settings = _settings(**flags)
    spec, source = _prepare_submit(settings, input_path, batch_id)
    if dry_run:
        _print_estimate(_estimate(settings, spec, source), spec)
        return
    _with_redis(settings, lambda redis, keys: _submit_and_feed(redis, keys, settings, spec, source, wait=False))


@main.command("estimate")
@_submit_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def estimate_command(input_path: Path, batch_id: str | None, as_json: bool, **flags: Any) -> None:
    """What INPUT would cost and take, per service tier, without writing anything (Redis is only read: the result
    cache, and what earlier batches of the model were billed)."""
    settings = _settings(**flags)
    spec, source = _prepare_submit(settings, input_path, batch_id)
    result = _estimate(settings, spec, source)
    if as_json:
        click.echo(orjson.dumps(result.to_json_dict()).decode())
    else:
        _print_estimate(result, spec)


def _estimate(settings: ProducerSettings, spec: BatchSpec, source: LineSource) -> Estimate:
    """The batch's estimate, and its shadow's over the sampled lines when it has one."""
    shadow = None
    if spec.shadow is not None:
        shadow_batch = shadow_spec(spec, api=settings.shadow_api, model=settings.shadow_model)
        shadow = (shadow_batch, SampledSource(source, spec, settings.shadow_sample))
    return _with_redis(settings, lambda redis, keys: estimate(redis, keys, spec, source, settings, shadow=shadow))


def _print_estimate(result: Estimate, spec: BatchSpec) -> None:
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
        rows.append((f"cost, {tier} tier", "no price known" if usd is None else f"${usd:,.4f}"))
    if result.minutes is not None and result.limits is not None:
        limits = ", ".join(f"{v:,} {k.upper()}" for k, v in result.limits.items() if v)
        rows.append(("time at the limits", f"{result.minutes:,.1f} min ({limits}, {result.limits_source})"))
    else:
        rows.append(("time at the limits", "unknown: no limit configured or learned for this model"))
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


# --------------------------------------------------------------------------------------------------- status
def _mb(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"


def _status_table(
    record: BatchRecord,
    footprint: Footprint | None = None,
    *,
    feeder_alive: bool = False,
    shadow: BatchRecord | None = None,
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
    rows += _split_rows(record, shadow)
    if footprint is not None:
        parts = ", ".join(f"{name} {_mb(size)}" for name, size in footprint.by_key.items() if size)
        rows.append(("Redis", f"{_mb(footprint.total)} ({parts}, queued jobs {_mb(footprint.queued_jobs)})"))
    for name, value in rows:
        # Values carry text from outside (a provider's error in the pause reason, a model name): never markup.
        table.add_row(name, Text(printable(value)))
    return table


@main.command("status")
@click.argument("batch_id", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def status_command(batch_id: str, as_json: bool) -> None:
    """Show a batch's progress, usage, cost and Redis footprint."""

    async def body(redis: Redis, keys: Keys) -> tuple[BatchSnapshot, Footprint, BatchRecord | None]:
        store = BatchStore(redis, keys)
        snapshot = await store.snapshot(batch_id)
        shadow_id = snapshot.record.spec.shadow  # its budget is a part of this batch's: shown with it
        shadow = await store.get(shadow_id) if shadow_id is not None and await store.spec(shadow_id) else None
        return snapshot, await store.footprint(batch_id), shadow

    snapshot, footprint, shadow = _with_redis(_settings(), body)
    record, alive = snapshot.record, snapshot.feeder_alive
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
        click.echo(orjson.dumps(data).decode())
    else:
        Console().print(_status_table(record, footprint, feeder_alive=alive, shadow=shadow))


@main.command("list")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Show at most this many batches."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per batch.")
def list_command(limit: int, as_json: bool) -> None:
    """List batches, newest first: state, size, age and Redis memory.

    On a terminal, a table; piped, one tab-separated line per batch under a header line, every value whole.
    """
    overviews = _with_redis(_settings(), lambda redis, keys: list_batches(redis, keys, limit=limit))
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
    return (r.batch_id, o.state, str(r.lines), str(r.done), str(r.failed), _age(o.age_s), _mb(o.footprint.total))


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


# ----------------------------------------------------------------------------------------------------- wait
def _do_wait(settings: ProducerSettings, batch_id: str, timeout: float | None) -> BatchRecord:
    try:
        return _with_redis(settings, lambda redis, keys: wait_for_batch(redis, keys, batch_id, timeout_s=timeout))
    except WaitTimeoutError as exc:
        err.print(f"[yellow]timeout[/yellow]: {exc}")
        sys.exit(EXIT_INCOMPLETE)
    except BatchPausedError as exc:
        _exit_paused(exc)


def _exit_paused(exc: BatchPausedError) -> NoReturn:
    err.print(f"[red]paused[/red]: {escape(printable(str(exc)))}", markup=True)  # the reason is a provider's text
    sys.exit(EXIT_PAUSED)


def _exit_for(record: BatchRecord) -> None:
    """A complete batch with failed or cancelled lines exits 4: scripts can tell it from an all-succeeded one."""
    if record.complete and record.succeeded < record.lines:
        err.print(
            f"batch {record.batch_id}: {record.failed:,} failed and {record.cancelled:,} cancelled of "
            f"{record.lines:,} lines (exit {EXIT_FAILED_LINES})"
        )
        sys.exit(EXIT_FAILED_LINES)


@main.command("wait", epilog=EXIT_CODES_HELP)
@click.argument("batch_id", metavar="BATCH")
@click.option("--timeout", type=FiniteFloatRange(min=0), help="Give up after this many seconds (exit code 3).")
def wait_command(batch_id: str, timeout: float | None) -> None:
    """Show live progress until every line has a final result: exit 0 if all succeeded, 4 if some failed."""
    _exit_for(_do_wait(_settings(), batch_id, timeout))


# -------------------------------------------------------------------------------------------------- collect
async def _collect(
    redis: Redis,
    keys: Keys,
    settings: ProducerSettings,
    batch_id: str,
    out: Path,
    output_format: OutputFormat,
    follow_: bool,
) -> tuple[int, int]:
    snapshot = await BatchStore(redis, keys).snapshot(batch_id)
    record = snapshot.record
    if snapshot.interrupted:
        err.print(f"[yellow]warning[/yellow]: {incomplete_message(record)}", markup=True)
    price = settings.price_for(record.spec.model)
    if follow_:
        return await follow(redis, keys, batch_id, out, output_format=output_format, price=price), 0
    return await collect(redis, keys, batch_id, out, output_format=output_format, price=price)


def _report_collected(out: Path, written: int, missing: int) -> None:
    err.print(f"wrote {written} line(s) to {out}", highlight=False)
    if missing:
        err.print(f"[yellow]warning[/yellow]: {missing} line(s) have no result yet (producer wait, or --follow)")
        sys.exit(EXIT_INCOMPLETE)


@main.command("collect", epilog=EXIT_CODES_HELP)
@click.argument("batch_id", metavar="BATCH")
@click.option("--out", required=True, type=OUTPUT_FILE, callback=_output_file, help=OUT_HELP)
@click.option("--follow", "follow_", is_flag=True, help="Stream lines as they finish, until the batch completes.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["native", "openai-batch"]),
    default="native",
    show_default=True,
    help=FORMAT_HELP,
)
def collect_command(batch_id: str, out: Path, follow_: bool, output_format: OutputFormat) -> None:
    """Write the batch's results as JSONL (input order, atomic replace; or as they finish with --follow)."""
    settings = _settings()

    async def body(redis: Redis, keys: Keys) -> tuple[int, int, BatchRecord]:
        written, missing = await _collect(redis, keys, settings, batch_id, out, output_format, follow_)
        return written, missing, await read_status(redis, keys, batch_id)

    written, missing, record = _with_redis(settings, body)
    _report_collected(out, written, missing)
    _exit_for(record)


# ------------------------------------------------------------------------------------------ retry/cancel/delete
@main.command("retry")
@click.argument("batch_id", metavar="BATCH")
@click.option(
    "--input",
    "input_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The batch's input file (default: the path it was submitted from). Its lines must be unchanged.",
)
def retry_command(batch_id: str, input_path: Path | None) -> None:
    """Re-enqueue the batch's failed lines (their new results replace the failed ones).

    Redis keeps no text of finished lines, so this reads the input file again; it feeds a window at a time.
    """
    settings = _settings()

    async def body(redis: Redis, keys: Keys) -> FeedResult:
        record = await read_status(redis, keys, batch_id)
        source: LineSource = _retry_source(record, input_path, settings)
        sample = (record.input or {}).get("sample")
        if record.spec.shadow_of is not None and sample:  # a shadow batch: its sample of the main batch's input
            main = await read_status(redis, keys, record.spec.shadow_of)
            source = SampledSource(source, main.spec, float(sample))
        uploader = _uploader(settings) if record.spec.attach == "upload" else None
        if record.spec.attach == "upload" and uploader is None:
            raise click.UsageError("batch uses --attach upload: set OPENAI_API_KEY to retry it")
        try:
            return await retry_failed(
                redis,
                keys,
                batch_id,
                source,
                window=settings.queue_window,
                chunk=settings.submit_chunk_size,
                uploader=uploader,
            )
        finally:
            if uploader is not None:
                await uploader.close()

    result = _with_redis(settings, body)
    err.print(f"re-enqueued {result.enqueued} failed line(s) of {batch_id}")


def _retry_source(
    record: BatchRecord, input_path: Path | None, settings: ProducerSettings
) -> FileSource | FolderSource:
    recorded = record.input or {}
    path = input_path or (Path(recorded["path"]) if recorded.get("path") else None)
    if path is None or not path.exists():
        where = f" ({path} is not there)" if path is not None else ""
        raise click.UsageError(f"retry reads the failed lines from the batch's input: pass --input FILE{where}")
    check = document_check(record.spec, settings)  # the lines submit refused are not the batch's
    source: FileSource | FolderSource
    if path.is_dir():
        source = FolderSource.open(
            path,
            glob=str(recorded.get("glob", "**/*")),
            api=record.spec.api,
            check=check,
            max_text_bytes=settings.max_document_bytes or None,
        )
    else:
        shape = LineShape.recorded(recorded, base_dir=None, api=record.spec.api)
        source = FileSource.open(path, shape=shape, check=check, batch_check=batch_body_check(record.spec))
    if record.spec.shadow_of is None and source.scan.count != record.lines:  # a shadow batch holds a sample
        raise click.UsageError(
            f"{path} has {source.scan.count} valid line(s) and batch {record.batch_id} has {record.lines}: "
            "not the batch's input"
        )
    return source


@main.command("cancel")
@click.argument("batch_id", metavar="BATCH")
def cancel_command(batch_id: str) -> None:
    """Stop the batch: lines not started end as cancelled; lines already running finish."""
    settings = _settings()

    async def body(redis: Redis, keys: Keys) -> CancelResult:
        record = await read_status(redis, keys, batch_id)
        price = settings.price_for(record.spec.model)
        return await cancel(redis, keys, batch_id, price=price, price_of=settings.price_for)

    result = _with_redis(settings, body)
    err.print(
        f"cancelled {batch_id}: {result.waiting} waiting line(s) and {result.never_enqueued} never-enqueued line(s) "
        "recorded as cancelled; running ones will finish"
    )
    if result.shadow is not None and result.shadow.result is None:
        err.print(f"its shadow batch {result.shadow.batch_id} was not recorded yet: it will not be made")
    elif result.shadow is not None and result.shadow.result is not None:
        shadow = result.shadow.result
        err.print(
            f"cancelled its shadow batch {result.shadow.batch_id} too: {shadow.waiting} waiting line(s) and "
            f"{shadow.never_enqueued} never-enqueued line(s) recorded as cancelled"
        )


@main.command("resume")
@click.argument("batch_id", metavar="BATCH")
def resume_command(batch_id: str) -> None:
    """Go on with a batch that paused on a batch-wide error (a bad key, an unknown model ...), once it is fixed."""
    resumed = _with_redis(_settings(), lambda redis, keys: resume(redis, keys, batch_id))
    if resumed.reason is None:
        err.print(f"batch {batch_id} is not paused; {resumed.rescheduled} waiting line(s) made due now")
    else:
        err.print(
            f"resumed {batch_id} (it was paused: {resumed.reason}); {resumed.rescheduled} waiting line(s) made due now"
        )


@main.command("budget")
@click.argument("batch_id", metavar="BATCH")
@click.option("--usd", type=FiniteFloatRange(min=0), help="The batch's budget in dollars (0 removes it).")
@click.option("--tokens", type=click.IntRange(min=0), help="The batch's budget in tokens (0 removes it).")
def budget_command(batch_id: str, usd: float | None, tokens: int | None) -> None:
    """Set (raise) a batch's budget; a batch paused by its budget goes on at once."""
    if usd is None and tokens is None:
        raise click.UsageError("give --usd and/or --tokens")

    async def body(redis: Redis, keys: Keys) -> BudgetSet:
        try:
            return await set_budget(redis, keys, batch_id, usd=usd, tokens=tokens)
        except ShadowBudgetError as exc:
            raise click.UsageError(str(exc)) from exc

    done = _with_redis(_settings(), body)
    parts = [f"${usd:,.4f}" if usd else None, f"{tokens:,} tokens" if tokens else None]
    said = " and ".join(p for p in parts if p) or "none"
    if done.shadow_id is None:
        err.print(f"batch {batch_id}: budget {said}")
    else:
        shadow = (
            f"{done.shadow_id} {_budget_part(done.shadow.record)}"
            if done.shadow is not None
            else (f"{done.shadow_id} (not recorded yet) takes its part when it is")
        )
        err.print(
            f"batch {batch_id}: budget {said} for it and its shadow batch together, split by their estimates: "
            f"{batch_id} {_budget_part(done.main.record)}, {shadow}"
        )
    for change in (done.main, done.shadow):
        if change is not None and change.lifted is not None:
            err.print(
                f"resumed {change.record.batch_id} (it was paused: {change.lifted}); {change.rescheduled} waiting "
                "line(s) made due now"
            )


def _split_rows(record: BatchRecord, shadow: BatchRecord | None) -> list[tuple[str, str]]:
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
                f"{shadow_id} {_budget_part(shadow)}: spent ${b.spent_usd:,.4f} / {b.spent_tokens:,} tokens, "
                f"in flight ${b.reserved_usd:,.4f} / {b.reserved_tokens:,} tokens",
            )
        )
    return rows


def _budget_part(record: BatchRecord) -> str:
    """A batch's own budgets, as ``producer budget`` and ``status`` show them."""
    b = record.budget
    if b is None:
        return "none"
    parts = [
        f"${b.budget_usd:,.4f}" if b.budget_usd is not None else "",
        f"{b.budget_tokens:,} tokens" if b.budget_tokens else "",
    ]
    return " and ".join(x for x in parts if x) or "none"


@main.command("compare")
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
    callback=_output_file,
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

    first, second, comparison = _with_redis(_settings(), body)
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


@main.command("report")
@click.argument("batch_id", metavar="BATCH")
@click.option(
    "--html",
    "html_out",
    required=True,
    type=OUTPUT_FILE,
    callback=_output_file,
    help="The HTML file to write (mode 0600; its folder must exist).",
)
def report_command(batch_id: str, html_out: Path) -> None:
    """Write one self-contained HTML page about a batch: throughput, latency, tokens and cost, errors, fields."""
    settings = _settings()

    async def body(redis: Redis, keys: Keys) -> tuple[BatchSnapshot, ReportSummary]:
        snapshot = await BatchStore(redis, keys).snapshot(batch_id)
        return snapshot, await summarise_chunks(final_result_chunks(redis, keys, batch_id))

    snapshot, summary = _with_redis(settings, body)
    record = snapshot.record
    price = settings.price_for(record.spec.model)
    batch = {**record.to_json_dict(), "state": batch_state(record, feeder_alive=snapshot.feeder_alive)}
    html = summary_report_html(batch, summary, price=price.model_dump() if price is not None else None)
    write_output(html_out, html.encode())
    err.print(f"wrote {html_out} ({len(html) / 1e6:.1f} MB, {summary.lines:,} line(s))", highlight=False, markup=False)


@main.command("delete")
@click.argument("batch_id", metavar="BATCH")
def delete_command(batch_id: str) -> None:
    """Remove every key of the batch from Redis (record, index, results, waiting jobs). Collect first."""
    settings = _settings()

    async def body(redis: Redis, keys: Keys) -> Deleted:
        uploader = _uploader(settings)
        try:
            return await delete(redis, keys, batch_id, uploader=uploader)
        finally:
            if uploader is not None:
                await uploader.close()

    deleted = _with_redis(settings, body)
    files = f"; {deleted.files_deleted} uploaded file(s) deleted at the provider" if deleted.files_deleted else ""
    err.print(f"deleted batch {batch_id} ({deleted.waiting} waiting job(s) taken off the queue{files})")
    if deleted.files_left:
        err.print(
            f"[yellow]warning[/yellow]: {len(deleted.files_left)} uploaded file(s) were not deleted "
            "(a running worker's uploads sweep deletes them; they expire 30 days after upload in any case): "
            + ", ".join(deleted.files_left[:10]),
            markup=True,
        )


# ------------------------------------------------------------------------------------------------------ run
@main.command("run", epilog=EXIT_CODES_HELP)
@_submit_options
@click.option("--out", required=True, type=OUTPUT_FILE, callback=_output_file, help=OUT_HELP)
@click.option("--timeout", type=FiniteFloatRange(min=0), help="Give up waiting after this many seconds (exit code 3).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["native", "openai-batch"]),
    default="native",
    show_default=True,
    help=FORMAT_HELP,
)
def run_command(
    input_path: Path,
    batch_id: str | None,
    out: Path,
    timeout: float | None,
    output_format: OutputFormat,
    **flags: Any,
) -> None:
    """Submit INPUT, feed and wait for it, and collect the results into --out."""
    settings = _settings(**flags)
    spec, source = _prepare_submit(settings, input_path, batch_id)

    async def body(redis: Redis, keys: Keys) -> tuple[BatchRecord, int, int]:
        async with asyncio.timeout(timeout):
            await _submit_and_feed(redis, keys, settings, spec, source, wait=True)
        record = await read_status(redis, keys, spec.batch_id)
        written, missing = await _collect(redis, keys, settings, spec.batch_id, out, output_format, False)
        return record, written, missing

    try:
        record, written, missing = _with_redis(settings, body)
    except TimeoutError:
        err.print(f"[yellow]timeout[/yellow]: batch {spec.batch_id} did not finish within {timeout:g}s")
        sys.exit(EXIT_INCOMPLETE)
    except BatchPausedError as exc:
        _exit_paused(exc)
    Console(stderr=True).print(_status_table(record))
    _report_collected(out, written, missing)
    _exit_for(record)


if __name__ == "__main__":
    main()
