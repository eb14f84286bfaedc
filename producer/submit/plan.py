"""The plan of a submit: every check a submit (``submit``, ``estimate``, ``run``) makes before it touches Redis.

``plan_submit(settings, path)`` turns the settings (flags, their environment twins, ``.env``) and an input path into
a :class:`SubmitPlan` — the batch's spec and its input, every line of which has been read and checked — or raises
what is wrong, in the order a user meets it:

1. the options: a model and a schema are required; ``--instructions`` and ``--instructions-file`` exclude each
   other; the batch id must fit the id alphabet (:class:`producer.errors.OptionError`);
2. what the model or the API would refuse for every line (a temperature a reasoning model does not take, a tier
   the model does not offer ...): :class:`RequestRefusedError` with every problem; a budget in dollars without a
   price, flex fallback without flex, ``--attach upload`` without a key (:class:`~producer.errors.OptionError`);
3. a schema and instructions too large for the model's context window on their own
   (:class:`~producer.errors.InputError`);
4. the shadow batch's own model and API, by the same checks;
5. every input line (:class:`InvalidLinesError` with the scan, unless ``--skip-invalid`` and some lines are valid:
   the plan then holds the scan's errors for the caller to show).

Warnings (an unpriced model, an unknown context window) do not stop a plan: they go to ``on_warning`` as they are
found. Nothing here prints or exits; ``producer.cli`` says each error its way. ``estimate_plan`` is what a plan
would cost and take (``producer.submit.estimate``), its shadow batch's share included.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from pyarrow.fs import FileType
from redis.asyncio import Redis

from producer.errors import InputError, OptionError
from producer.input.readers import FileSource, FolderSource, LineShape, batch_body_check
from producer.input.tables import TableSource, is_table_input
from producer.submit.estimate import Estimate, estimate
from producer.submit.shadow import SampledSource, shadow_id, shadow_spec
from producer.submit.submit import SubmitOptions, build_spec, document_check, preflight_error, preflight_warnings
from schemas.jobs import DEFAULT_INSTRUCTIONS, BatchSpec, GenerationParams, ResultsSink
from schemas.models import request_problems
from schemas.registry import resolve_schema
from schemas.settings import ProducerSettings
from schemas.venues import COMPLETION_WINDOW_S, RECORD_MARGIN_S, batch_api_fits, parse_deadline
from store.keys import InvalidIdError, Keys, check_batch_id
from store.objects import LocationError, open_location


class RequestRefusedError(InputError):
    """What the model or the API would refuse for every line: each problem in ``problems``, nothing sent."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class InvalidLinesError(InputError):
    """Input lines that cannot be run (each with its line or file, ``source.scan.errors``); nothing was enqueued."""

    def __init__(self, path: Path | str, source: FileSource | FolderSource | TableSource) -> None:
        super().__init__(f"{source.scan.error_count} invalid line(s) in {path}; nothing was enqueued")
        self.path, self.source = path, source


@dataclass(frozen=True)
class SubmitPlan:
    """A submit that has passed every check: the batch's spec and its input, read and checked line by line."""

    spec: BatchSpec
    source: FileSource | FolderSource | TableSource
    path: Path | str
    """The input as given (``-``: standard input; an ``s3://`` URL is a string: a path would lose its ``//``)."""

    @property
    def skipped(self) -> int:
        """Invalid lines left out (``--skip-invalid``); their reasons are in ``source.scan.errors``."""
        return self.source.scan.error_count


def default_batch_id(path: Path | str) -> str:
    """The input's name (made to fit the batch-id alphabet) and the time."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", PurePosixPath(str(path)).stem).strip("-._")[:96] or "batch"
    return f"{stem}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"


def plan_submit(
    settings: ProducerSettings,
    path: Path | str,
    batch_id: str | None = None,
    *,
    on_warning: Callable[[str], None] | None = None,
    stdin: BinaryIO | None = None,
) -> SubmitPlan:
    """Check a submit of ``path`` (a JSONL file, a folder of documents, ``-`` for ``stdin``, or Parquet/CSV tables:
    a file, a glob, an ``s3://`` URL) with ``settings`` (the module note gives the order); raises the first problem
    found."""
    if settings.model is None:
        raise OptionError("--model is required (or set EXTRACT_MODEL)")
    if not settings.model.strip():
        raise RequestRefusedError(["--model is empty: name a model, e.g. gpt-4o-mini (or set EXTRACT_MODEL)"])
    for warning in preflight_warnings(settings, settings.model):
        if on_warning is not None:
            on_warning(warning)
    if settings.schema_spec is None:
        raise OptionError("--schema is required (or set EXTRACT_SCHEMA)")
    if settings.instructions and settings.instructions_file:
        raise OptionError("give --instructions or --instructions-file, not both")
    batch_id = batch_id or default_batch_id(path)
    try:
        check_batch_id(batch_id)
    except InvalidIdError as exc:
        raise OptionError(f"--batch-id: {exc}") from exc
    instructions = settings.instructions or DEFAULT_INSTRUCTIONS
    if settings.instructions_file:
        instructions = Path(settings.instructions_file).read_text(encoding="utf-8")
    try:
        schema = resolve_schema(settings.schema_spec)
    except ValueError as exc:  # UnknownSchemaError and friends: the message says what to fix
        raise OptionError(str(exc)) from exc
    deadline_at = check_venue(settings, on_warning=on_warning)
    results = check_results(settings)
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
            venue=settings.venue,
            deadline_at=deadline_at,
            results=results,
        )
    )
    check_parameters(settings, settings.model)
    check_prompt(spec, settings)
    if settings.shadow_api or settings.shadow_model:
        shadow_model = settings.shadow_model or settings.model
        if (settings.shadow_api or settings.api) == settings.api and shadow_model == settings.model:
            raise OptionError("a shadow batch needs another API (--shadow-api) or model (--shadow-model)")
        check_parameters(settings, shadow_model)
        check_prompt(spec.model_copy(update={"model": shadow_model}), settings)
        spec = spec.model_copy(update={"shadow": shadow_id(spec.batch_id)})
    source = open_source(path, spec, settings, stdin=stdin)
    if source.scan.error_count and (not settings.skip_invalid or not source.scan.count):
        raise InvalidLinesError(path, source)
    return SubmitPlan(spec=spec, source=source, path=path)


def check_venue(
    settings: ProducerSettings, *, now: float | None = None, on_warning: Callable[[str], None] | None = None
) -> float | None:
    """The deadline as a UNIX time (None without one); refuses a deadline in the past, and ``--venue batch-api``
    with a deadline the provider's completion window does not fit in (``auto`` would go synchronously instead).
    Warns that the window bounds the lines at the provider."""
    if settings.venue != "sync" and on_warning is not None:
        on_warning(
            f"--venue {settings.venue}: lines waiting in provider batches count against the window (--window "
            f"{settings.queue_window:,}), so at most that many are at the provider at once; raise it for more provider "
            "batches in flight (each waiting line keeps its document in Redis)"
        )
    if settings.deadline is None:
        return None
    moment = time.time() if now is None else now
    try:
        deadline_at = parse_deadline(settings.deadline, now=moment)
    except ValueError as exc:
        raise OptionError(str(exc)) from exc
    if deadline_at <= moment:
        raise OptionError(f"--deadline {settings.deadline!r} is in the past")
    if settings.venue == "batch-api" and not batch_api_fits(deadline_at, moment):
        hours = (deadline_at - moment) / 3600
        need = (COMPLETION_WINDOW_S + RECORD_MARGIN_S) / 3600
        raise RequestRefusedError(
            [
                f"--venue batch-api with --deadline {settings.deadline}: the Batch API may take its whole 24 h window "
                f"(plus {RECORD_MARGIN_S // 60} min to record), {need:g} h, and the deadline leaves {hours:.1f} h; "
                "use --venue auto (flex or sync when the window does not fit) or sync"
            ]
        )
    return deadline_at


def check_prompt(spec: BatchSpec, settings: ProducerSettings) -> None:
    """A schema (with the instructions) too large for the model: refused once, before a line is read."""
    problem = preflight_error(spec, settings)
    if problem is not None:
        raise InputError(problem)


def check_parameters(settings: ProducerSettings, model: str) -> None:
    """What the model or the API would refuse for every line, or what cannot work: refused here, before any cost."""
    problems = request_problems(
        model,
        temperature=settings.temperature,
        reasoning_effort=settings.reasoning_effort,
        service_tier=settings.service_tier,
    )
    if problems:
        raise RequestRefusedError(problems)
    if settings.budget_usd is not None and settings.price_for(model) is None:
        raise OptionError(f"--budget-usd needs a price for {model}: add it to EXTRACT_PRICES (or use --budget-tokens)")
    if settings.flex_fallback_after_s is not None and settings.service_tier != "flex":
        raise OptionError("--flex-fallback-after is for --service-tier flex")
    if settings.api == "chat" and settings.image_detail == "original":
        raise OptionError(
            "--image-detail original is a Responses API setting; Chat Completions takes auto, low or high"
        )
    if settings.attach == "upload" and not settings.api_key():
        raise OptionError("--attach upload uploads to the provider's Files API: set OPENAI_API_KEY")


def check_results(settings: ProducerSettings) -> ResultsSink | None:
    """The results sink ``--results`` names, checked from here: a local folder that exists (its batch folder is
    created in it), or an S3 bucket these credentials can reach. Workers write it with their own credentials."""
    if settings.results is None:
        return None
    try:
        location = open_location(settings.results)
        info = location.fs.get_file_info(location.root)
    except LocationError as exc:
        raise OptionError(f"--results: {exc}") from exc
    except OSError as exc:  # the bucket is unreachable, refused, or missing
        raise OptionError(f"--results {location.url}: cannot reach it ({exc})") from exc
    if location.is_local and info.type != FileType.Directory:
        state = "is not a folder" if info.type != FileType.NotFound else "does not exist"
        raise OptionError(
            f"--results {location.url}: {state} (create it first; workers write a folder per batch in it)"
        )
    return ResultsSink(url=location.url, format=settings.results_format)


def open_source(
    path: Path | str, spec: BatchSpec, settings: ProducerSettings, *, stdin: BinaryIO | None = None
) -> FileSource | FolderSource | TableSource:
    """A folder (each file a document), Parquet/CSV tables (``producer.input.tables``: each row a line) or a JSONL
    file (``-``: standard input), checked line by line."""
    if isinstance(path, Path) and path.is_dir():
        return FolderSource.open(
            path,
            glob=settings.glob,
            api=spec.api,
            check=document_check(spec, settings),
            max_text_bytes=settings.max_document_bytes or None,
        )
    shape = LineShape(
        id_field=settings.id_field,
        text_field=settings.text_field,
        files_field=settings.files_field,
        urls_field=settings.urls_field,
        file_ids_field=settings.file_ids_field,
        api=spec.api,
    )
    check, batch_check = document_check(spec, settings), batch_body_check(spec)
    if is_table_input(path):  # raises TableInputError (an InputError) for tables it cannot read at all
        return TableSource.open(path, shape=shape, check=check)
    path = Path(path)
    if str(path) == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return FileSource.from_stream(stream, shape=shape, check=check, batch_check=batch_check)
    return FileSource.open(path, shape=shape, check=check, batch_check=batch_check)


async def estimate_plan(redis: Redis, keys: Keys, settings: ProducerSettings, plan: SubmitPlan) -> Estimate:
    """The batch's estimate, and its shadow's over the sampled lines when it has one. Reads only."""
    spec, source = plan.spec, plan.source
    shadow = None
    if spec.shadow is not None:
        shadow_batch = shadow_spec(spec, api=settings.shadow_api, model=settings.shadow_model)
        shadow = (shadow_batch, SampledSource(source, spec, settings.shadow_sample))
    return await estimate(redis, keys, spec, source, settings, shadow=shadow)
