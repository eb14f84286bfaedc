"""What every command shares: the stderr console, the option types, settings, and the one way a command runs its
body against Redis and turns the library's errors into a message and an exit code (``run_in_redis``)."""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from redis.asyncio import Redis
from rich.console import Console
from rich.markup import escape

from producer.analysis.compare import printable
from producer.batch.collect import OutputPathError, check_output_path
from producer.batch.progress import WaitTimeoutError
from producer.batch.status import BatchPausedError, IncompleteSubmitError
from producer.errors import EXIT_FAILED_LINES, EXIT_INVALID_INPUT, EXIT_PAUSED, OptionError, ProducerError
from producer.submit.resubmit import ResubmitRefusedError
from schemas.settings import InvalidSettingsError, ProducerSettings
from store.batches import BatchNotFoundError, BatchRecord
from store.connect import REDIS_ERRORS, describe_redis_error, open_redis
from store.keys import InvalidIdError, Keys
from store.objects import ObjectStoreError
from store.sink.formats import PartFormatError
from store.sink.reader import SinkReadError

EXIT_CODES_HELP = (
    "Exit codes: 0 every line succeeded; 1 error; 2 invalid input or usage; 3 incomplete (timed out, lines pending, "
    "or an interrupted submit); 4 complete with failed or cancelled lines; 5 paused (see `producer status`)."
)
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


def output_file(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    """An output option, checked as it is parsed (before any work): its folder must exist (``check_output_path``)."""
    if value is not None:
        try:
            check_output_path(value)
        except OutputPathError as exc:
            raise InvalidInputError(str(exc)) from exc
    return value


def load_settings(**flags: Any) -> ProducerSettings:
    try:
        return ProducerSettings.from_flags(**flags)
    except InvalidSettingsError as exc:
        raise SettingsUsageError(f"invalid settings: {exc}") from exc


def _keys(settings: ProducerSettings) -> Keys:
    try:
        return Keys(settings.key_prefix)
    except InvalidIdError as exc:
        raise SettingsUsageError(f"invalid settings: EXTRACT_KEY_PREFIX: {exc}") from exc


@contextmanager
def said_as_usage() -> Iterator[None]:
    """An :class:`~producer.errors.OptionError` from the library, said as click says a usage error."""
    try:
        yield
    except OptionError as exc:
        raise click.UsageError(str(exc)) from exc


def run_in_redis(settings: ProducerSettings, body: Callable[[Redis, Keys], Awaitable[T]]) -> T:
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
        with said_as_usage():
            return asyncio.run(coroutine)
    except (BatchNotFoundError, InvalidIdError) as exc:  # the store's own
        raise click.ClickException(str(exc)) from exc
    except (ObjectStoreError, SinkReadError, PartFormatError) as exc:  # the results sink: which object, why
        raise click.ClickException(f"results sink: {exc}") from exc
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


def exit_paused(exc: BatchPausedError) -> NoReturn:
    err.print(f"[red]paused[/red]: {escape(printable(str(exc)))}", markup=True)  # the reason is a provider's text
    sys.exit(EXIT_PAUSED)


def exit_for(record: BatchRecord) -> None:
    """A complete batch with failed or cancelled lines exits 4: scripts can tell it from an all-succeeded one."""
    if record.complete and record.succeeded < record.lines:
        err.print(
            f"batch {record.batch_id}: {record.failed:,} failed and {record.cancelled:,} cancelled of "
            f"{record.lines:,} lines (exit {EXIT_FAILED_LINES})"
        )
        sys.exit(EXIT_FAILED_LINES)


def mb(size: int) -> str:
    return f"{size / 1_000_000:,.1f} MB"
