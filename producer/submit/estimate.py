"""What a batch will cost and take, before it runs: ``producer estimate`` (and ``submit --dry-run``). Reads only.

For every line of the input (read as submit reads it, the same checks): the input tokens the worker's estimator counts
(``schemas.input_limits.estimate_input_tokens`` and the attachments' formulas, exactly its raw estimate), and whether
the result cache holds a pointer to its answer (``store.cache.count_cached``, in pipelines; pointers are counted, not
followed, so one whose line has since gone still counts; such a line costs nothing). Then, per model, what this Redis
has learned from earlier batches (their records keep the uncalibrated estimates of their answered calls and what the
provider counted for them, ``store.fields``; and what their lines were billed for output): the input ratio that corrects
the raw estimate, and the output tokens a line took (repairs included). Without history the raw estimate is used as it
is, and a line's output is its ``--max-output-tokens`` (the most it can be billed) or, without one, the worker's default
output reserve; the report says which.

The prompt cache's share of earlier batches' input (their cached input tokens) is priced at the cached rate. Cost
per service tier (``schemas.pricing``: default, flex, priority where the model has them) and at the Batch API's
price (``batch``: half the default, every model) of the lines not in the cache, and the time the limits allow:
the learned limits of the provider's account for the model (``x-ratelimit-limit-*``, as the admission stored them,
found with the API key and base URL when set) or the configured ``EXTRACT_RPM``/``EXTRACT_TPM``/
``EXTRACT_RATE_LIMITS``; unknown limits mean no time is given. The Batch API's time is its completion window (24 h
at most); ``venue_now`` says where the batch's lines would go if it started now (``schemas.venues``).

A submit with a shadow batch (``producer.submit.shadow``) is estimated as two: the batch, and its shadow over the
sampled lines with the shadow's API and model (its own row, ``shadow``), and the two together (``total``: lines, tokens
and the cost per tier both are offered in). Their time is not added up: the shadow runs behind the batch, often under
another model's limits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from redis.asyncio import Redis

from producer.input.readers import InputLine, LineSource
from schemas.attachments import attachment_token_parts
from schemas.input_limits import estimate_input_tokens
from schemas.jobs import BatchSpec, Fingerprinter
from schemas.models import family_for
from schemas.pricing import BATCH_TIER, ModelPrice, cost_usd
from schemas.results import Usage
from schemas.settings import ProducerSettings
from schemas.venues import choose_venue
from store.batches import BatchStore
from store.cache import CacheStore, provider_endpoint
from store.keys import Keys
from store.limits import LimitStore, scope_id

CHUNK = 1000
TIERS = ("default", "flex", "priority", BATCH_TIER)
"""Cost is shown per service tier the model is offered in, and at the Batch API's price (every model)."""
HISTORY_BATCHES = 200
"""Finished batches read for the model's history (newest first)."""


@dataclass
class History:
    """What earlier batches of the model in this Redis say."""

    batches: int = 0
    input_ratio: float | None = None
    """Provider-counted input tokens per raw estimated token, over their answered calls."""
    output_per_line: float | None = None
    """Output tokens billed per finished line (repairs included)."""
    cached_share: float | None = None
    """The share of input tokens the provider's prompt cache served (billed at the cached rate)."""


@dataclass(frozen=True)
class EstimateTotal:
    """A batch and its shadow together."""

    lines: int
    cached_lines: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_usd: dict[str, float | None]
    """Per service tier both are offered in (None: a price is unknown)."""


@dataclass
class Estimate:
    lines: int
    cached_lines: int
    raw_input_tokens: int
    """The uncalibrated estimate of every line (cached ones too)."""
    input_tokens: int
    """Of the lines to be called, calibrated by the history when there is one."""
    cached_input_tokens: int
    output_tokens: int
    output_basis: str
    """Where the output figure comes from: history, --max-output-tokens, or the default reserve."""
    history: History
    cost_usd: dict[str, float | None] = field(default_factory=dict)
    """Per service tier the model is offered in (None: no price known for it)."""
    limits: dict[str, int] | None = None
    """rpm / tpm the time is figured from, and where they come from."""
    limits_source: str | None = None
    minutes: float | None = None
    api: str = ""
    model: str = ""
    shadow: Estimate | None = None
    """The shadow batch's estimate, over its sampled lines (``--shadow-api``/``--shadow-model``)."""
    venue: str = "sync"
    """The batch's ``--venue``."""
    venue_now: str = "sync"
    """Where its lines would go if it started now (``schemas.venues.choose_venue``, by its deadline)."""
    deadline_at: float | None = None

    @property
    def total(self) -> EstimateTotal | None:
        """This batch and its shadow together (None without a shadow)."""
        other = self.shadow
        if other is None:
            return None
        costs: dict[str, float | None] = {}
        for tier, usd in self.cost_usd.items():
            if tier in other.cost_usd:
                theirs = other.cost_usd[tier]
                costs[tier] = None if usd is None or theirs is None else usd + theirs
        return EstimateTotal(
            lines=self.lines + other.lines,
            cached_lines=self.cached_lines + other.cached_lines,
            input_tokens=self.input_tokens + other.input_tokens,
            cached_input_tokens=self.cached_input_tokens + other.cached_input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_usd=costs,
        )

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        total = self.total
        if total is not None:
            data["total"] = asdict(total)
        return data


def line_input_tokens(spec: BatchSpec, line: InputLine) -> int:
    """The worker's raw estimate for this line's first call (schema, instructions, document, attachments)."""
    text = estimate_input_tokens(line.text, instructions=spec.instructions, json_schema=spec.json_schema)
    for attachment in line.described:
        more_text, images = attachment_token_parts(spec.model, attachment, spec.image_detail)
        text += more_text + images
    return text


async def model_history(redis: Redis, keys: Keys, model: str) -> History:
    """The input ratio and output per line that this Redis's earlier batches of ``model`` show."""
    store = BatchStore(redis, keys)
    ids = await store.recent_ids(HISTORY_BATCHES)
    raw_input = counted_input = output = lines = batches = billed_input = cached_input = 0
    for batch_id in ids:
        record = await _record_or_none(store, batch_id)
        if record is None or record.spec.model != model or record.done == 0:
            continue
        batches += 1
        raw_input += record.calibration_raw_input
        counted_input += record.calibration_input
        billed_input += record.usage.input_tokens
        cached_input += record.usage.cached_input_tokens
        finished = record.succeeded + record.failed
        if finished:
            output += record.usage.output_tokens
            lines += finished
    return History(
        batches=batches,
        input_ratio=counted_input / raw_input if raw_input else None,
        output_per_line=output / lines if lines else None,
        cached_share=cached_input / billed_input if billed_input else None,
    )


async def _record_or_none(store: BatchStore, batch_id: str) -> Any:
    try:
        return await store.get(batch_id)
    except LookupError:
        return None


async def cached_count(redis: Redis, keys: Keys, endpoint: str, fingerprints: Iterable[str]) -> int:
    """How many of these fingerprints the result cache answers (read-only)."""
    return await CacheStore(redis, keys, endpoint).count_cached(fingerprints, chunk=CHUNK)


async def learned_limits(redis: Redis, keys: Keys, settings: ProducerSettings, model: str) -> dict[str, int]:
    """The provider's per-minute limits for the model as the admission learned them (needs the API key)."""
    key = settings.api_key()
    if key is None:
        return {}
    scope = scope_id(key, model, provider_endpoint(settings.openai_base_url))
    return await LimitStore(redis).learned(keys.rate_limit(scope))


async def estimate(
    redis: Redis,
    keys: Keys,
    spec: BatchSpec,
    source: LineSource,
    settings: ProducerSettings,
    *,
    default_output_reserve: int = 1024,
    shadow: tuple[BatchSpec, LineSource] | None = None,
) -> Estimate:
    """What running ``source`` as ``spec`` would cost and take (see the module note), and with ``shadow`` (its spec
    and sampled lines) what its shadow batch would. Writes nothing."""
    fingerprint = Fingerprinter(spec)
    raw_by_fingerprint: dict[str, int] = {}
    raw_total = lines = 0
    for line in source.lines():
        raw = line_input_tokens(spec, line)
        raw_total += raw
        lines += 1
        raw_by_fingerprint[fingerprint(line.text, line.described)] = raw
    endpoint = provider_endpoint(settings.openai_base_url)
    cached = await cached_count(redis, keys, endpoint, raw_by_fingerprint) if spec.use_cache else 0
    # Duplicate documents are called once (coalescing), so the lines to call are the distinct uncached ones.
    to_call = len(raw_by_fingerprint) - cached
    raw_to_call = sum(raw_by_fingerprint.values()) * to_call / len(raw_by_fingerprint) if raw_by_fingerprint else 0
    history = await model_history(redis, keys, spec.model)
    ratio = history.input_ratio or 1.0
    input_tokens = round(raw_to_call * ratio)
    if history.output_per_line is not None:
        per_line, basis = history.output_per_line, f"history ({history.batches} batch(es) of {spec.model})"
        if spec.params.max_output_tokens is not None:
            per_line = min(per_line, spec.params.max_output_tokens)
    elif spec.params.max_output_tokens is not None:
        per_line, basis = spec.params.max_output_tokens, "--max-output-tokens (the most a line can be billed)"
    else:
        per_line, basis = default_output_reserve, "the default output reserve (no history, no --max-output-tokens)"
    output_tokens = round(per_line * to_call)
    cached_input = round(input_tokens * (history.cached_share or 0.0))
    usage = Usage(input_tokens=input_tokens, cached_input_tokens=cached_input, output_tokens=output_tokens)
    costs: dict[str, float | None] = {}
    family = family_for(spec.model)
    for tier in TIERS:
        if tier not in ("default", BATCH_TIER) and family is not None and tier not in family.tiers:
            continue  # the model is not offered in that tier (left out rather than priced at default)
        price: ModelPrice | None = settings.price_for(spec.model, tier)
        costs[tier] = cost_usd(usage, price)
    result = Estimate(
        lines=lines,
        cached_lines=lines - to_call,
        raw_input_tokens=raw_total,
        input_tokens=input_tokens,
        cached_input_tokens=cached_input,
        output_tokens=output_tokens,
        output_basis=basis,
        history=history,
        cost_usd=costs,
        api=spec.api,
        model=spec.model,
        venue=spec.venue,
        venue_now=choose_venue(spec.venue, model=spec.model, deadline_at=spec.deadline_at, now=time.time()),
        deadline_at=spec.deadline_at,
    )
    if shadow is not None:
        result.shadow = await estimate(
            redis, keys, shadow[0], shadow[1], settings, default_output_reserve=default_output_reserve
        )
    learned = await learned_limits(redis, keys, settings, spec.model)
    configured = settings.limits_for(spec.model)
    rpm, tpm = learned.get("rpm") or configured.rpm, learned.get("tpm") or configured.tpm
    if rpm or tpm:
        result.limits = {"rpm": rpm, "tpm": tpm}
        result.limits_source = "learned from the provider's headers" if learned else "configured"
        per_minute = []
        if rpm:
            per_minute.append(to_call / rpm)
        if tpm:
            per_minute.append((input_tokens + output_tokens) / tpm)
        result.minutes = max(per_minute)
    return result
