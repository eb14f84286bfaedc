"""What the producer writes and the worker reads: the batch record and the per-line job.

Batch-wide parameters (schema, model, instructions ...) live once in the batch record; a job carries only
its line (ids, text, attachment references, fingerprint). A 100,000-line batch therefore stores the schema once,
not 100,000 times.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.attachments import Attachment, AttachMode, ImageDetail, fingerprint_part
from schemas.models import Effort, RequestTier
from schemas.strict import local_constraints
from schemas.venues import VenueSetting

ApiKind = Literal["responses", "chat"]

DEFAULT_INSTRUCTIONS = (
    "You extract structured data from the document the user sends. Return only what the document states or "
    "directly implies; use null for anything it does not contain. Follow the JSON schema exactly."
)


ResultsFormat = Literal["jsonl", "jsonl.gz", "parquet"]
RESULTS_FORMATS: tuple[ResultsFormat, ...] = ("jsonl", "jsonl.gz", "parquet")


class ResultsSink(BaseModel):
    """Where a batch's result lines go as they are made (``--results``, ``store.sink``): a local folder seen by every
    worker, or ``s3://bucket/prefix``; the batch's parts are written under ``{url}/{batch id}/``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    format: ResultsFormat = "jsonl"


class GenerationParams(BaseModel):
    """Parameters that change the model's answer; all of them are part of the fingerprint."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_output_tokens: int | None = Field(default=None, ge=1)
    """The output cap; on a reasoning model its reasoning tokens count against it too."""
    temperature: float | None = Field(default=None, ge=0, le=2)
    reasoning_effort: Effort | None = None
    """Sent as ``reasoning.effort`` (Responses) or ``reasoning_effort`` (Chat Completions); None = the model's."""


class BatchSpec(BaseModel):
    """Everything a worker needs to process any line of a batch, fixed at submit time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str
    api: ApiKind
    model: str
    schema_ref: str
    """What the user passed as --schema, normalized (a built-in name, ``module:Class``, ``file:name``)."""
    schema_name: str
    """The name sent in the API's json_schema format."""
    json_schema: dict[str, Any]
    """The strict JSON Schema sent to the API (without the constraints strict mode refuses; see ``schemas.strict``)."""
    source_schema: dict[str, Any]
    """The schema before the strict conversion (needed to map nulls back to pydantic defaults)."""
    instructions: str = DEFAULT_INSTRUCTIONS
    params: GenerationParams = Field(default_factory=GenerationParams)
    budget_tokens: int | None = Field(default=None, ge=1)
    use_cache: bool = True
    """Reuse cached answers and coalesce identical in-flight lines (``--no-cache`` turns both off)."""
    image_detail: ImageDetail = "auto"
    """The ``detail`` sent with every image (``--image-detail``); part of a fingerprint only with attachments."""
    attach: AttachMode = "inline"
    """How attachments travel (``--attach``): bytes in Redis once per content, or uploaded once to the Files API."""
    service_tier: RequestTier | None = None
    """Sent as ``service_tier`` (``--service-tier``); None = not sent (the API's default, ``auto``)."""
    flex_fallback_after_s: float | None = Field(default=None, gt=0)
    """A flex line refused for capacity (429 ``resource_unavailable``) for this long is sent with ``auto``."""
    budget_usd: float | None = Field(default=None, gt=0)
    """The most the batch may spend (``--budget-usd``), enforced across the fleet (``store.budget``)."""
    count_tokens: Literal["estimate", "exact"] = "estimate"
    """How a call's input is sized for admission and the budget: our offline estimate, or the provider's counter
    (``POST /v1/responses/input_tokens``, one more request per call; ``--count-tokens exact``)."""
    venue: VenueSetting = "sync"
    """Where its lines are answered (``--venue``): synchronous calls, provider batches, or chosen by the deadline
    (``schemas.venues``)."""
    deadline_at: float | None = None
    """When every line should be final (``--deadline``, a UNIX time): what ``auto`` and ``batch-api`` plan for."""
    results: ResultsSink | None = None
    """Where the result lines go as they are made (``--results``); None: they stay in Redis until collected."""
    shadow: str | None = None
    """The id of this batch's shadow batch (``producer.submit.shadow``), if it has one."""
    shadow_of: str | None = None
    """The main batch this one shadows (a sample of its lines, with another API or model)."""
    created_at: str

    def same_work_as(self, other: BatchSpec) -> bool:
        """Whether two specs would produce the same lines (creation time aside): a resubmit must match."""
        return not self.differences(other)

    def differences(self, other: BatchSpec) -> list[str]:
        """What differs from ``other`` (creation time aside), one ``name: ours vs theirs`` per parameter."""
        mine, theirs = self.model_dump(exclude={"created_at"}), other.model_dump(exclude={"created_at"})
        found = []
        for name in mine:
            if mine[name] != theirs[name]:
                if name in ("json_schema", "source_schema", "instructions"):
                    found.append(f"{name} (the text differs)")
                else:
                    found.append(f"{name}: {mine[name]!r} vs {theirs[name]!r}")
        return found


class ExtractionJob(BaseModel):
    """One input line as enqueued (the arq job's single argument, as a JSON object).

    This is the only place a document's text is kept in Redis, and only while its line is queued or running.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_id: str
    ordinal: int = Field(ge=0)
    """The line's position among the input's lines (0-based): what names it in the batch's store."""
    custom_id: str
    text: str
    """The document's text; empty when the document is only its attachments."""
    fingerprint: str
    line: int
    """1-based line number in the input file (or position in a folder), for messages a user can act on."""
    attachments: tuple[Attachment, ...] = ()
    """Images and PDFs, sent after the text; references only, never bytes (``schemas.attachments``)."""


class Fingerprinter:
    """``sha256:`` over a canonical serialization of everything that determines the answer.

    The serialization is the batch's stable part (api, model, strict schema, instructions, generation params) as
    sorted-key JSON, a newline, then the document text. Same fingerprint ⇒ the same answer may be reused. Batch id
    and custom_id are deliberately not part of it. The constraints our validator checks but the API is not sent
    (``minLength``, ``maxLength``, ``uniqueItems``: ``schemas.strict.local_constraints``) are part of it when the
    source schema has any: an answer valid for ``minLength: 3`` may not be for ``minLength: 30``. The stable part is
    hashed once per batch and the hash state copied per line, so fingerprinting 100,000 lines does not re-serialize
    the schema 100,000 times. Attachments add their contents (``schemas.attachments.fingerprint_part``): a line
    with none fingerprints exactly as before they existed.
    """

    def __init__(self, spec: BatchSpec) -> None:
        parts: dict[str, Any] = {
            "api": spec.api,
            "model": spec.model,
            "schema": spec.json_schema,
            "instructions": spec.instructions,
            # A field added later is left out while unset, so the fingerprints of earlier batches stay what they were.
            "params": spec.params.model_dump(
                exclude={"reasoning_effort"} if spec.params.reasoning_effort is None else None
            ),
        }
        local = local_constraints(spec.source_schema)
        if local:  # only then: fingerprints of every other schema stay what they were
            parts["local_constraints"] = local
        stable = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)
        self._base = hashlib.sha256(stable + b"\n")
        self._detail = spec.image_detail

    def __call__(self, text: str, attachments: tuple[Attachment, ...] = ()) -> str:
        digest = self._base.copy()
        digest.update(text.encode("utf-8"))
        digest.update(fingerprint_part(attachments, self._detail))
        return "sha256:" + digest.hexdigest()


def document_fingerprint(text: str, attachments: tuple[Attachment, ...] = ()) -> str:
    """``sha256:`` over the document alone (its text and its attachments' contents): equal across APIs, models and
    prompts, which is how ``producer compare --by document`` matches the lines of two different runs."""
    digest = hashlib.sha256(text.encode("utf-8"))
    digest.update(fingerprint_part(attachments, "auto"))
    return "sha256:" + digest.hexdigest()
