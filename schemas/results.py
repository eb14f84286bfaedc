"""The result line: one per input line, the file users consume."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class ErrorType(StrEnum):
    """What went wrong, grouped by what the user does about it."""

    INVALID_REQUEST = "invalid_request"  # 400 / 422 (or another 4xx): fix the request (schema, parameters)
    AUTHENTICATION = "authentication"  # 401: fix the key
    PERMISSION = "permission"  # 403: the key may not use this model or endpoint
    NOT_FOUND = "not_found"  # 404: unknown model (or endpoint)
    SCHEMA_VALIDATION = "schema_validation"  # output still invalid after the allowed repairs
    REFUSAL = "refusal"  # the model refused
    TRUNCATED = "truncated"  # hit its output cap (--max-output-tokens, the model's, the context), or cut off too often
    RETRIES_EXHAUSTED = "retries_exhausted"  # transient errors outlasted the retry budget
    BUDGET_EXCEEDED = "budget_exceeded"  # 429 insufficient_quota: the account is out of credit (a budget pauses)
    INPUT_TOO_LARGE = "input_too_large"  # one request is above the per-minute limit (or the context window)
    TIMEOUT = "timeout"  # its tries ran past their time limit until the retry budget was spent
    INTERNAL_ERROR = "internal_error"  # the worker could not finish the line (a bug, Redis failing, arq giving up)


class Usage(BaseModel):
    """Tokens billed, normalized across both APIs (Responses and Chat Completions name them differently)."""

    model_config = ConfigDict(frozen=True)

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    """Part of output_tokens (billed as output), reported separately as the APIs do."""
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )

    def as_counts(self) -> dict[str, int]:
        return self.model_dump()


class ErrorInfo(BaseModel):
    type: ErrorType
    message: str
    status_code: int | None = None


class ResultRecord(BaseModel):
    """One line of the results file (see DESIGN.md, "Result line")."""

    custom_id: str
    batch_id: str
    status: Status
    output: Any = None
    """The answer in the user's shape: an object for an object schema; any JSON value for a schema whose root is not
    one (an array, a scalar, a union: ``schemas.codec`` wraps it for the API and unwraps the answer); null when the
    line failed."""
    error: ErrorInfo | None = None
    api: str
    model: str
    schema_: str = Field(alias="schema", serialization_alias="schema")
    fingerprint: str
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    """None when the model has no price in the table (add one with EXTRACT_PRICES)."""
    cache_hit: bool = False
    attempts: int = 0
    """API calls made across all tries, repairs included."""
    repairs: int = 0
    latency_ms: int | None = None
    """Time spent in API calls for this line, summed."""
    response_id: str | None = None
    request_id: str | None = None
    """The provider's ``x-request-id`` of the line's last call: what its support asks for."""
    service_tier: str | None = None
    """The tier the provider says served the line's last call (``default``, ``flex``, ``priority``): priced at it."""
    service_tier_fallback: bool = False
    """A flex line that was refused for capacity long enough (``--flex-fallback-after``) and was sent with ``auto``."""
    venue: str | None = None
    """Where the line was answered: ``batch-api`` (a provider batch, priced at the batch price) or ``sync`` (a call
    of its own, at ``service_tier``); None for a line answered by no call (a cache hit, a cancel)."""
    provider_batch_id: str | None = None
    """The provider batch (``batch_...``) that answered it, with ``venue`` ``batch-api``."""
    retries: int = 0
    """Tries of the line that ended in an error (5xx, timeout, dropped connection ...), counted as each ended: the try
    the line gave up on, if it did, counts too."""
    rate_limited: int = 0
    """Tries of the line that ended in a 429, counted the same way."""
    document_fingerprint: str | None = None
    """A hash of the document alone (``schemas.jobs.document_fingerprint``): the same in every batch, whatever the API,
    model or prompt (``fingerprint`` is per batch parameters); None on lines recorded without their document."""
    invalid_fields: list[str] = Field(default_factory=list)
    """The output fields that failed schema validation on any call of the line, repairs included (at most 20)."""
    finished_at: str

    model_config = ConfigDict(populate_by_name=True)

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
