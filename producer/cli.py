"""``producer``: submit batches, watch them, collect results."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
from pydantic import ValidationError
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from producer.collect import OutputFormat, collect, follow
from producer.control import cancel, retry_failed
from producer.progress import WaitTimeoutError, wait_for_batch
from producer.readers import ParsedInput, parse_lines
from producer.status import BatchNotFoundError, BatchStatus, read_status
from producer.submit import BatchExistsError, SubmitOptions, SubmitResult, build_spec, submit
from schemas.jobs import DEFAULT_INSTRUCTIONS, GenerationParams
from schemas.keys import Keys
from schemas.registry import resolve_schema
from schemas.settings import Settings

EXIT_INVALID_INPUT = 2
EXIT_INCOMPLETE = 3
"""``wait`` timed out, or ``collect`` wrote a file with lines still pending."""

T = TypeVar("T")
err = Console(stderr=True, soft_wrap=True, highlight=False)


def _settings(**flags: Any) -> Settings:
    try:
        return Settings.from_flags(**flags)
    except ValidationError as exc:
        raise click.UsageError(f"invalid settings:\n{exc}") from exc


def _with_redis(settings: Settings, body: Callable[[Redis, Keys], Awaitable[T]]) -> T:
    async def run() -> T:
        redis = Redis.from_url(settings.redis_url, socket_connect_timeout=5, health_check_interval=30)
        try:
            return await body(redis, Keys(settings.key_prefix))
        finally:
            await redis.aclose()

    coroutine: Coroutine[Any, Any, T] = run()
    try:
        return asyncio.run(coroutine)
    except (BatchNotFoundError, BatchExistsError) as exc:  # the message says what to do
        raise click.ClickException(str(exc)) from exc


@click.group()
def main() -> None:
    """Submit extraction batches and collect their results (Redis from REDIS_URL)."""


# --------------------------------------------------------------------------------------------------- submit
# Every option defaults to None so that its environment twin (EXTRACT_<NAME>) applies when it is not given.
_SUBMIT_OPTIONS = [
    click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, dir_okay=False, path_type=Path)),
    click.option(
        "--schema", "schema_spec", help="Built-in name, JSON Schema file or package.module:Class [env EXTRACT_SCHEMA]."
    ),
    click.option("--model", help="Model name, e.g. gpt-4o-mini [env EXTRACT_MODEL]."),
    click.option("--api", type=click.Choice(["responses", "chat"]), help="Which API [env EXTRACT_API; responses]."),
    click.option("--batch-id", help="Batch id (default: the input's name and the time)."),
    click.option("--instructions", help="Instructions for the model [env EXTRACT_INSTRUCTIONS]."),
    click.option(
        "--instructions-file",
        type=click.Path(exists=True, dir_okay=False),
        help="Read the instructions from a file [env EXTRACT_INSTRUCTIONS_FILE].",
    ),
    click.option("--id-field", help="Field holding the line id [env EXTRACT_ID_FIELD; custom_id]."),
    click.option("--text-field", help="Field holding the document [env EXTRACT_TEXT_FIELD; text]."),
    click.option("--max-output-tokens", type=click.IntRange(min=1), help="[env EXTRACT_MAX_OUTPUT_TOKENS]"),
    click.option("--temperature", type=click.FloatRange(0, 2), help="[env EXTRACT_TEMPERATURE]"),
    click.option(
        "--budget-tokens",
        type=click.IntRange(min=1),
        help="Recorded with the batch; not enforced yet [env EXTRACT_BUDGET_TOKENS].",
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
]


def _submit_options(func: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(_SUBMIT_OPTIONS):
        func = option(func)
    return func


def _report_invalid(path: Path, parsed: ParsedInput, skip_invalid: bool) -> None:
    shown = 50
    for error in parsed.errors[:shown]:
        where = f"{path}:{error.line}" if error.line else str(path)
        err.print(f"[red]error[/red] {where}: {error.reason}", highlight=False, markup=True)
    if len(parsed.errors) > shown:
        err.print(f"... and {len(parsed.errors) - shown} more invalid line(s)")
    if not skip_invalid or not parsed.lines:
        hint = " (use --skip-invalid to enqueue the valid ones)" if parsed.lines else ""
        err.print(f"{len(parsed.errors)} invalid line(s); nothing was enqueued{hint}")
        sys.exit(EXIT_INVALID_INPUT)
    err.print(f"skipping {len(parsed.errors)} invalid line(s)")


def _do_submit(settings: Settings, path: Path, batch_id: str | None) -> str:
    if settings.model is None:
        raise click.UsageError("--model is required (or set EXTRACT_MODEL)")
    if settings.schema_spec is None:
        raise click.UsageError("--schema is required (or set EXTRACT_SCHEMA)")
    if settings.instructions and settings.instructions_file:
        raise click.UsageError("give --instructions or --instructions-file, not both")
    instructions = settings.instructions or DEFAULT_INSTRUCTIONS
    if settings.instructions_file:
        instructions = Path(settings.instructions_file).read_text(encoding="utf-8")
    try:
        schema = resolve_schema(settings.schema_spec)
    except ValueError as exc:  # UnknownSchemaError and friends: the message says what to fix
        raise click.UsageError(str(exc)) from exc

    with path.open("rb") as handle:
        parsed = parse_lines(handle, id_field=settings.id_field, text_field=settings.text_field)
    if parsed.errors:
        _report_invalid(path, parsed, settings.skip_invalid)

    batch_id = batch_id or f"{path.stem}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    spec = build_spec(
        SubmitOptions(
            batch_id=batch_id,
            api=settings.api,
            model=settings.model,
            schema=schema,
            instructions=instructions,
            params=GenerationParams(max_output_tokens=settings.max_output_tokens, temperature=settings.temperature),
            budget_tokens=settings.budget_tokens,
            use_cache=not settings.no_cache,
        )
    )

    async def body(redis: Redis, keys: Keys) -> SubmitResult:
        return await submit(redis, keys, spec, parsed.lines, chunk_size=settings.submit_chunk_size)

    result = _with_redis(settings, body)
    fmt = " (OpenAI batch input format)" if parsed.format == "openai-batch" else ""
    if result.new_lines == len(parsed.lines):
        err.print(f"submitted batch [bold]{batch_id}[/bold]: {result.enqueued} line(s){fmt}", highlight=False)
    else:
        err.print(
            f"batch [bold]{batch_id}[/bold] already known: {result.new_lines} new line(s), {result.enqueued} "
            f"enqueued; lines already enqueued or finished were left alone{fmt}",
            highlight=False,
        )
    return batch_id


@main.command("submit")
@_submit_options
def submit_command(input_path: Path, batch_id: str | None, **flags: Any) -> None:
    """Validate INPUT and enqueue one job per line. Prints the batch id on stdout."""
    click.echo(_do_submit(_settings(**flags), input_path, batch_id))


# --------------------------------------------------------------------------------------------------- status
def _status_table(status: BatchStatus) -> Table:
    table = Table(title=f"batch {status.batch_id}", show_header=False)
    rows = [
        ("api / model / schema", f"{status.api} / {status.model} / {status.schema}"),
        ("lines", str(status.total)),
        ("done", f"{status.done} ({status.pending} pending)"),
        ("succeeded", str(status.succeeded)),
        ("failed", str(status.failed)),
        ("cancelled", str(status.cancelled)),
        (
            "tokens in / cached / out",
            f"{status.usage.input_tokens} / {status.usage.cached_input_tokens} / {status.usage.output_tokens}",
        ),
        ("estimated cost", "n/a" if status.cost_usd is None else f"${status.cost_usd:.6f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


@main.command("status")
@click.argument("batch_id", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def status_command(batch_id: str, as_json: bool) -> None:
    """Show a batch's progress, usage and cost."""
    status = _with_redis(_settings(), lambda redis, keys: read_status(redis, keys, batch_id))
    if as_json:
        click.echo(orjson.dumps(status.to_json_dict()).decode())
    else:
        Console().print(_status_table(status))


# ----------------------------------------------------------------------------------------------------- wait
def _do_wait(settings: Settings, batch_id: str, timeout: float | None) -> BatchStatus:
    try:
        return _with_redis(settings, lambda redis, keys: wait_for_batch(redis, keys, batch_id, timeout_s=timeout))
    except WaitTimeoutError as exc:
        err.print(f"[yellow]timeout[/yellow]: {exc}")
        sys.exit(EXIT_INCOMPLETE)


@main.command("wait")
@click.argument("batch_id", metavar="BATCH")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit code 3).")
def wait_command(batch_id: str, timeout: float | None) -> None:
    """Show live progress; exit 0 once every line has a final result."""
    _do_wait(_settings(), batch_id, timeout)


# -------------------------------------------------------------------------------------------------- collect
def _do_collect(settings: Settings, batch_id: str, out: Path, output_format: OutputFormat, follow_: bool) -> None:
    async def body(redis: Redis, keys: Keys) -> tuple[int, int]:
        status = await read_status(redis, keys, batch_id)
        if follow_:
            written = await follow(redis, keys, batch_id, out, total=status.total, output_format=output_format)
            return written, 0
        return await collect(redis, keys, batch_id, out, output_format=output_format)

    written, missing = _with_redis(settings, body)
    err.print(f"wrote {written} line(s) to {out}", highlight=False)
    if missing:
        err.print(f"[yellow]warning[/yellow]: {missing} line(s) have no result yet (producer wait, or --follow)")
        sys.exit(EXIT_INCOMPLETE)


@main.command("collect")
@click.argument("batch_id", metavar="BATCH")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--follow", "follow_", is_flag=True, help="Stream lines as they finish, until the batch completes.")
@click.option(
    "--format", "output_format", type=click.Choice(["native", "openai-batch"]), default="native", show_default=True
)
def collect_command(batch_id: str, out: Path, follow_: bool, output_format: OutputFormat) -> None:
    """Write the batch's results as JSONL (input order, atomic replace; or as they finish with --follow)."""
    _do_collect(_settings(), batch_id, out, output_format, follow_)


# ------------------------------------------------------------------------------------------------ retry/cancel
@main.command("retry")
@click.argument("batch_id", metavar="BATCH")
def retry_command(batch_id: str) -> None:
    """Re-enqueue the batch's failed lines (their new results replace the failed ones)."""
    count = _with_redis(_settings(), lambda redis, keys: retry_failed(redis, keys, batch_id))
    err.print(f"re-enqueued {count} failed line(s) of {batch_id}")


@main.command("cancel")
@click.argument("batch_id", metavar="BATCH")
def cancel_command(batch_id: str) -> None:
    """Stop the batch: waiting lines end as cancelled; lines already running finish."""
    count = _with_redis(_settings(), lambda redis, keys: cancel(redis, keys, batch_id))
    err.print(f"cancelled {batch_id}: {count} waiting line(s) recorded as cancelled; running ones will finish")


# ------------------------------------------------------------------------------------------------------ run
@main.command("run")
@_submit_options
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", type=float, help="Give up waiting after this many seconds (exit code 3).")
@click.option("--format", "output_format", type=click.Choice(["native", "openai-batch"]), default="native")
def run_command(
    input_path: Path,
    batch_id: str | None,
    out: Path,
    timeout: float | None,
    output_format: OutputFormat,
    **flags: Any,
) -> None:
    """Submit INPUT, wait for it, and collect the results into --out."""
    settings = _settings(**flags)
    batch_id = _do_submit(settings, input_path, batch_id)
    status = _do_wait(settings, batch_id, timeout)
    _do_collect(settings, batch_id, out, output_format, follow_=False)
    Console(stderr=True).print(_status_table(status))
    click.echo(batch_id)


if __name__ == "__main__":
    main()
