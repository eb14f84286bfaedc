"""Building a result line from what a line's tries added up to: the one builder the worker, the producer and the
store share."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.jobs import BatchSpec
from schemas.pricing import ModelPrice, cost_usd
from schemas.results import ErrorInfo, ResultRecord, Status, Usage


@dataclass(frozen=True)
class CallTotals:
    """What a line's API calls added up to over all its tries (kept by the store while the line runs)."""

    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    repairs: int = 0
    latency_ms: int = 0
    last_response_id: str | None = None
    last_request_id: str | None = None
    service_tier: str | None = None
    """The tier that served the last billed call."""
    flex_fallback: bool = False
    retries: int = 0
    """Tries that ended in an error (not a 429), counted as each ended: a try the line then gave up on counts too."""
    rate_limited: int = 0
    """Tries that ended in a 429, counted the same way."""


MAX_INVALID_FIELDS = 20
"""Field paths a result line keeps of its failed validations (the report counts failures per field from them)."""


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def line_result(
    spec: BatchSpec,
    *,
    custom_id: str,
    fingerprint: str,
    status: Status,
    totals: CallTotals,
    price: ModelPrice | None,
    output: dict[str, Any] | None = None,
    error: ErrorInfo | None = None,
    response_id: str | None = None,
    cache_hit: bool = False,
    invalid_fields: tuple[str, ...] = (),
    document: str | None = None,
    provider_batch_id: str | None = None,
) -> ResultRecord:
    """The one way a result line is built: by the worker, by ``producer cancel``, and for a line cancelled before it
    was ever enqueued (``store.results.never_enqueued``).

    ``totals`` are every call of every try of the line: billed calls of earlier tries count even when the line
    ends in a cache hit or a cancel.
    """
    return ResultRecord(
        custom_id=custom_id,
        batch_id=spec.batch_id,
        status=status,
        output=output,
        error=error,
        api=spec.api,
        model=spec.model,
        schema_=spec.schema_ref,
        fingerprint=fingerprint,
        usage=totals.usage,
        cost_usd=cost_usd(totals.usage, price),
        cache_hit=cache_hit,
        attempts=totals.attempts,
        repairs=totals.repairs,
        latency_ms=totals.latency_ms,
        response_id=response_id if response_id is not None else totals.last_response_id,
        request_id=totals.last_request_id,
        service_tier=totals.service_tier,
        service_tier_fallback=totals.flex_fallback,
        venue=("batch-api" if provider_batch_id else "sync") if totals.attempts else None,
        provider_batch_id=provider_batch_id,
        retries=totals.retries,
        rate_limited=totals.rate_limited,
        invalid_fields=list(invalid_fields[:MAX_INVALID_FIELDS]),
        document_fingerprint=document,
        finished_at=now_iso(),
    )
