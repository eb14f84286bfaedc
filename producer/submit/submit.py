"""Submit a batch: record it, write its line index, then feed its lines into the queue until all are enqueued.

The steps are ``producer.submit.indexer`` (record and index) and ``producer.submit.feeder`` (the window); a submit that
is stopped and run again goes on where the last one stopped and enqueues nothing twice. A submit to a known batch id
with another input is ``producer.submit.resubmit``'s: compared line by line, refused unless ``--replace-changed`` or
``--append`` allows what differs.

Before any of that, the preflight (``preflight_warnings``, ``preflight_error``, ``document_check``): what a submit
can tell about the batch without Redis or the API, so a mistake costs nothing: an unpriced model is warned about, a
schema and instructions that fill the context window on their own are refused once, and a line whose document is
over the size limits (``schemas.input_limits``) is reported with its number like any other bad line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from redis.asyncio import Redis

from producer.input.readers import DocumentCheck, InputLine, LineSource
from producer.submit.attachments import Uploader
from producer.submit.feeder import Feeder, ProgressHook, feeding
from producer.submit.indexer import OpenedBatch, adopt_input, index_lines, open_batch
from producer.submit.resubmit import apply_plan, matches_by_position, plan_resubmit, refusals
from schemas.attachments import AttachMode, ImageDetail, attachment_tokens
from schemas.input_limits import context_window, document_limits, prompt_too_large
from schemas.jobs import ApiKind, BatchSpec, GenerationParams, ResultsSink
from schemas.models import RequestTier
from schemas.registry import ExtractionSchema, codec_for, resolve_schema
from schemas.settings import ProducerSettings
from schemas.venues import VenueSetting
from store.batches import BatchStore
from store.keys import Keys
from store.sink.state import SinkStore


@dataclass(frozen=True)
class SubmitOptions:
    batch_id: str
    api: ApiKind
    model: str
    schema: ExtractionSchema
    instructions: str
    params: GenerationParams
    budget_tokens: int | None = None
    use_cache: bool = True
    image_detail: ImageDetail = "auto"
    attach: AttachMode = "inline"
    budget_usd: float | None = None
    service_tier: RequestTier | None = None
    flex_fallback_after_s: float | None = None
    count_tokens: Literal["estimate", "exact"] = "estimate"
    venue: VenueSetting = "sync"
    deadline_at: float | None = None
    results: ResultsSink | None = None


def preflight_warnings(settings: ProducerSettings, model: str, schema: ExtractionSchema | None = None) -> list[str]:
    """What a submit for ``model`` should warn about (it goes on): no price known, no context window known, and one
    line per lossy step of the schema's conversion (``schemas.codec``: the path in the user's schema and what is
    checked locally instead). ``schema``: the resolved schema; when not given it is resolved from
    ``settings.schema_spec`` (a schema that does not resolve is the plan's error to report, not a warning)."""
    warnings = []
    if settings.price_for(model) is None:
        warnings.append(
            f"no price is configured for model {model!r}: costs will show as n/a (add it to EXTRACT_PRICES)"
        )
    if context_window(model, settings) is None:
        warnings.append(
            f"no context window is known for model {model!r}: documents are checked against "
            "EXTRACT_MAX_DOCUMENT_BYTES only (add it to EXTRACT_CONTEXT_WINDOWS)"
        )
    if schema is None and settings.schema_spec:
        try:
            schema = resolve_schema(settings.schema_spec)
        except ValueError:  # UnknownSchemaError, SchemaError: reported by the plan, with its exit code
            schema = None
    codec = codec_for(schema) if schema is not None else None
    if codec is not None:
        warnings += [step.warning(schema.name if schema is not None else "") for step in codec.lossy_steps]
    return warnings


def preflight_error(spec: BatchSpec, settings: ProducerSettings) -> str | None:
    """What makes every line of the batch fail, found before its lines are read: a schema and instructions that
    fill the model's context window on their own (``schemas.input_limits.prompt_too_large``)."""
    return prompt_too_large(spec, settings)


def document_check(spec: BatchSpec, settings: ProducerSettings) -> DocumentCheck:
    """The preflight of one document (for ``FileSource.open``): the reason it is too large to send, or None. Its
    attachments' tokens (by the published formulas) count toward the model's context window."""
    limits = document_limits(spec, settings)

    def check(line: InputLine) -> str | None:
        extra = sum(attachment_tokens(spec.model, a, spec.image_detail) for a in line.described)
        return limits(line.text, extra)

    return check


def build_spec(options: SubmitOptions) -> BatchSpec:
    return BatchSpec(
        batch_id=options.batch_id,
        api=options.api,
        model=options.model,
        schema_ref=options.schema.ref,
        schema_name=options.schema.name,
        json_schema=options.schema.json_schema,
        source_schema=options.schema.source_schema,
        instructions=options.instructions,
        params=options.params,
        budget_tokens=options.budget_tokens,
        use_cache=options.use_cache,
        image_detail=options.image_detail,
        attach=options.attach,
        budget_usd=options.budget_usd,
        service_tier=options.service_tier,
        flex_fallback_after_s=options.flex_fallback_after_s,
        count_tokens=options.count_tokens,
        venue=options.venue,
        deadline_at=options.deadline_at,
        results=options.results,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


@dataclass(frozen=True)
class SubmitResult:
    created: bool
    """False: the batch was known, and this submit went on from where it was."""
    lines: int
    enqueued: int
    """Jobs this submit put on the queue."""
    fed: int
    """Lines enqueued so far by any submit of the batch (all of them, unless it was cancelled)."""
    cancelled: bool
    replaced: int = 0
    """Lines given a new document (``replace_changed``)."""
    appended: int = 0
    running: tuple[int, ...] = ()
    """Ordinals of changed lines left alone because they were running: submit again when they have finished."""


async def submit(
    redis: Redis,
    keys: Keys,
    spec: BatchSpec,
    source: LineSource,
    *,
    window: int,
    ttl_s: int,
    chunk: int = 1000,
    replace_changed: bool = False,
    append: bool = False,
    on_opened: Callable[[OpenedBatch], None] | None = None,
    on_progress: ProgressHook | None = None,
    uploader: Uploader | None = None,
    before_feed: Callable[[OpenedBatch], Awaitable[object]] | None = None,
) -> SubmitResult:
    """Record the batch (or check it matches the known one), index its lines and feed them all. ``before_feed`` is
    awaited once the batch is recorded, before any line is indexed or fed (``producer.submit.shadow.share_budget``).

    Raises ``ResubmitRefusedError`` (nothing written) when a known batch id comes with lines it cannot take.
    """
    store = BatchStore(redis, keys)
    async with feeding(redis, keys, spec.batch_id):
        opened = await open_batch(redis, keys, spec, lines=source.count, ttl_s=ttl_s, input_ref=source.describe())
        if opened.record.spec.results is not None:  # the writers move its results out as they come (idempotent)
            await SinkStore(redis, keys).schedule(spec.batch_id)
        if on_opened is not None:
            on_opened(opened)
        if before_feed is not None:
            await before_feed(opened)
        if opened.created or await matches_by_position(redis, keys, opened.record, source):
            if not opened.created:
                await adopt_input(redis, keys, opened.record, source.describe())
            await index_lines(redis, keys, opened.record, source, chunk=chunk)
            record = await store.get(spec.batch_id)
            feeder = Feeder(redis, keys, record, window=window, chunk=chunk, uploader=uploader)
            fed = await feeder.feed(source, on_progress=on_progress)
            return SubmitResult(opened.created, fed.lines, fed.enqueued, fed.fed, fed.cancelled)
        plan = await plan_resubmit(redis, keys, opened.record, source)
        refusals(plan, replace_changed=replace_changed, append=append, source_lines=source.lines)
        applied = await apply_plan(
            redis,
            keys,
            opened.record,
            source,
            plan,
            window=window,
            chunk=chunk,
            on_progress=on_progress,
            uploader=uploader,
        )
    record = await store.get(spec.batch_id)
    appended = applied.feed.enqueued if applied.feed is not None else 0
    return SubmitResult(
        created=False,
        lines=record.lines,
        enqueued=applied.replaced + appended,
        fed=record.fed,
        cancelled=record.cancelled_at is not None,
        replaced=applied.replaced,
        appended=applied.appended,
        running=tuple(applied.running),
    )
