"""Shadow runs: a deterministic sample of a batch's lines, run again with another API or model, to compare the two.

``submit ... --shadow-api chat|responses`` and/or ``--shadow-model M`` (``--shadow-sample 0.1``) record a second,
linked batch, ``<batch>-shadow`` (its spec says ``shadow_of``; the main one's says ``shadow``), holding the lines whose
fingerprint in the *main* batch falls in the sample: the first 8 bytes of the fingerprint's digest, read as a
fraction of 2^64, below the sample rate. The same input and parameters give the same fingerprints, so a rerun, a
resubmit or a ``retry`` picks exactly the same lines; the shadow lines keep their custom_ids, which is how
``producer compare BATCH --shadow`` matches them.

The shadow batch is fed only once every line of the main batch is enqueued, so its jobs queue behind the main
batch's (arq takes due jobs in the order they were queued) and never delay its results; it shares the admission
controller (the same rate-limit scopes) with everything else and uses the result cache under its own fingerprints.

The shadow is part of its main batch for ``cancel``, ``budget`` and ``estimate``:

- ``cancel MAIN`` cancels the shadow too (``producer.batch.control.cancel``). The shadow is recorded late, so a
  cancel can come before it exists: its creation checks, in the same step, that the main batch is not cancelled
  (``store.batches.CREATE``), so the shadow is either seen and cancelled, or never made -- and ``submit_shadow``
  says which.
- A budget given to the main batch (``--budget-usd``/``--budget-tokens``, ``producer budget MAIN``) covers both:
  ``share_budget`` splits it, before the main batch's first line is fed, in proportion to their estimates (dollars by
  estimated cost, tokens by estimated tokens; ``store.budget`` keeps the shares and gives each record its part).
- ``estimate`` (and ``submit --dry-run``) estimate the shadow over its sampled lines, as its own row and in the total.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from producer.input.readers import InputLine, LineSource
from producer.submit.attachments import Uploader
from producer.submit.estimate import Estimate, estimate
from producer.submit.indexer import OpenedBatch
from producer.submit.submit import SubmitResult, submit
from schemas.jobs import ApiKind, BatchSpec, Fingerprinter
from schemas.settings import ProducerSettings
from store.batches import BatchStore, MainBatchCancelledError
from store.budget import BudgetStore, Lifted, Shares
from store.keys import Keys

SHADOW_SUFFIX = "-shadow"


def shadow_id(batch_id: str) -> str:
    return batch_id + SHADOW_SUFFIX


def in_sample(fingerprint: str, fraction: float) -> bool:
    """Whether a line with this (main batch) fingerprint is in a sample of ``fraction`` (0 < fraction <= 1)."""
    digest = fingerprint.removeprefix("sha256:")
    return int(digest[:16], 16) < fraction * 2**64


def shadow_spec(main: BatchSpec, *, api: ApiKind | None, model: str | None) -> BatchSpec:
    """The shadow batch's spec: the main one's with the other API and/or model, linked both ways."""
    return main.model_copy(
        update={
            "batch_id": shadow_id(main.batch_id),
            "api": api or main.api,
            "model": model or main.model,
            "shadow_of": main.batch_id,
            "shadow": None,
            "budget_usd": None,
            "budget_tokens": None,
        }
    )


@dataclass
class SampledSource:
    """The lines of ``source`` in the sample, by their fingerprint in the main batch (``main``), in order."""

    source: LineSource
    main: BatchSpec
    fraction: float
    _count: int | None = field(default=None, init=False)

    def _sampled(self) -> Iterator[InputLine]:
        fingerprint = Fingerprinter(self.main)
        for line in self.source.lines():
            if in_sample(fingerprint(line.text, line.described), self.fraction):
                yield line

    @property
    def count(self) -> int:
        if self._count is None:
            self._count = sum(1 for _ in self._sampled())
        return self._count

    first_ordinal = 0

    def lines(self) -> Iterator[InputLine]:
        return self._sampled()

    def describe(self) -> dict[str, Any] | None:
        described = self.source.describe()
        if described is None:
            return None
        return {**described, "sample": self.fraction, "sample_of": self.main.batch_id}


@dataclass(frozen=True)
class ShadowOutcome:
    """What became of the shadow batch a submit asked for."""

    batch_id: str
    lines: int
    """The lines in the sample (0: none, and no shadow is made)."""
    made: bool
    """It is recorded (by this submit or an earlier one) and was fed: ``result`` says how far."""
    main_cancelled: bool = False
    """Not made: the main batch was cancelled before the shadow was recorded (it never will be)."""
    result: SubmitResult | None = None


async def submit_shadow(
    redis: Redis,
    keys: Keys,
    main: BatchSpec,
    source: LineSource,
    *,
    api: ApiKind | None,
    model: str | None,
    sample: float,
    window: int,
    ttl_s: int,
    chunk: int = 1000,
    on_opened: Callable[[OpenedBatch], None] | None = None,
    uploader: Uploader | None = None,
) -> ShadowOutcome:
    """Record and feed the shadow batch of ``main`` (every line of which is enqueued, or it was cancelled): the lines
    of ``source`` in the sample, behind the main batch's in the queue. A cancelled main batch makes no shadow."""
    shadow = shadow_spec(main, api=api, model=model)
    sampled = SampledSource(source, main, sample)
    if sampled.count == 0:
        return ShadowOutcome(shadow.batch_id, 0, made=False)
    try:
        result = await submit(
            redis,
            keys,
            shadow,
            sampled,
            window=window,
            ttl_s=ttl_s,
            chunk=chunk,
            on_opened=on_opened,
            uploader=uploader,
        )
    except MainBatchCancelledError:
        return ShadowOutcome(shadow.batch_id, sampled.count, made=False, main_cancelled=True)
    return ShadowOutcome(shadow.batch_id, sampled.count, made=True, result=result)


def estimate_tier(spec: BatchSpec) -> str:
    """The tier whose estimated cost weighs the batch: the one it asks for (not sent or ``auto``: default)."""
    return spec.service_tier if spec.service_tier in ("flex", "priority") else "default"


def budget_shares(main: Estimate, shadow: Estimate, *, tier: str) -> Shares:
    """The shadow's shares of a budget given to both: of dollars by estimated cost at ``tier`` (by tokens when a price
    is unknown), of tokens by estimated tokens (by lines to call, then lines, when the estimates are all 0)."""

    def share(mine: float, theirs: float) -> float | None:
        return theirs / (mine + theirs) if mine + theirs > 0 else None

    tokens = share(main.input_tokens + main.output_tokens, shadow.input_tokens + shadow.output_tokens)
    if tokens is None:
        called = share(main.lines - main.cached_lines, shadow.lines - shadow.cached_lines)
        tokens = called if called is not None else share(main.lines, shadow.lines) or 0.0
    cost_main, cost_shadow = main.cost_usd.get(tier), shadow.cost_usd.get(tier)
    usd = share(cost_main, cost_shadow) if cost_main is not None and cost_shadow is not None else None
    return Shares(usd=tokens if usd is None else usd, tokens=tokens)


async def share_budget(
    redis: Redis,
    keys: Keys,
    settings: ProducerSettings,
    main: BatchSpec,
    source: LineSource,
    *,
    api: ApiKind | None,
    model: str | None,
    sample: float,
) -> Lifted | None:
    """Split the main batch's budget with its shadow, once (a submit run again keeps the split, and any ``producer
    budget`` made since): record the shares their estimates give and give the main batch its part (the shadow takes
    its own when it is recorded). Run it before any line of the main batch is fed. None when nothing was split."""
    if main.shadow is None or (await BatchStore(redis, keys).get(main.batch_id)).budget_split is not None:
        return None
    shadow = shadow_spec(main, api=api, model=model)
    mine = await estimate(redis, keys, main, source, settings)
    theirs = await estimate(redis, keys, shadow, SampledSource(source, main, sample), settings)
    return await BudgetStore(redis).split(
        keys.batch(main.batch_id),
        keys.batch(shadow.batch_id),
        usd=main.budget_usd,
        tokens=main.budget_tokens,
        shares=budget_shares(mine, theirs, tier=estimate_tier(main)),
        only_if_new=True,
    )
