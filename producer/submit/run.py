"""A planned submit, carried out: the batch (recorded, indexed, fed), then its shadow batch behind it.

``submit_plan`` is what ``producer submit`` and ``producer run`` do once :func:`producer.submit.plan.plan_submit`
has passed: open the Files API client an upload batch needs, submit the batch (sharing its budget with its shadow
before a line is fed), then submit the shadow batch over the sampled lines once every line of the batch is enqueued
(also after a cancel: the shadow's creation then refuses, and its outcome says so). What happens on the way goes to
:class:`SubmitEvents`; ``alongside`` (``run``: waiting for the batch) starts once the batch is recorded and runs
with the feed: a failed feed ends both with its error, and the submit returns when both are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from producer.submit.attachments import Uploader, uploader_for
from producer.submit.feeder import ProgressHook
from producer.submit.indexer import OpenedBatch
from producer.submit.plan import SubmitPlan
from producer.submit.shadow import ShadowOutcome, share_budget, submit_shadow
from producer.submit.submit import SubmitResult, submit
from schemas.settings import ProducerSettings
from store.keys import Keys


@dataclass(frozen=True)
class SubmitEvents:
    """What a caller hears while a submit runs (each optional)."""

    on_opened: Callable[[OpenedBatch], None] | None = None
    """The batch is recorded (created, or known and gone on with), before a line is fed."""
    on_progress: ProgressHook | None = None
    """The feed's state, after every chunk."""
    on_shadow_opened: Callable[[OpenedBatch], None] | None = None
    """The shadow batch is recorded."""


@dataclass(frozen=True)
class SubmitReport:
    result: SubmitResult
    shadows: list[ShadowOutcome] = field(default_factory=list)
    """What became of the shadow batch the plan asked for (empty without one)."""


async def submit_plan(
    redis: Redis,
    keys: Keys,
    settings: ProducerSettings,
    plan: SubmitPlan,
    *,
    events: SubmitEvents | None = None,
    alongside: Callable[[], Awaitable[object]] | None = None,
) -> SubmitReport:
    """Carry out ``plan`` (see the module note)."""
    events = events or SubmitEvents()
    spec, source = plan.spec, plan.source
    recorded = asyncio.Event()

    def opened(batch: OpenedBatch) -> None:
        recorded.set()
        if events.on_opened is not None:
            events.on_opened(batch)

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

    uploader = uploader_for(settings) if spec.attach == "upload" else None
    shadows: list[ShadowOutcome] = []

    async def feed_all(uploader: Uploader | None) -> SubmitResult:
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
            on_progress=events.on_progress,
            uploader=uploader,
            before_feed=share if spec.shadow is not None else None,
        )
        if spec.shadow is not None:
            shadows.append(
                await submit_shadow(
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
                    on_opened=events.on_shadow_opened,
                    uploader=uploader,
                )
            )
        return main

    try:
        feeding = feed_all(uploader)
        result = await (_with_alongside(feeding, recorded, alongside) if alongside is not None else feeding)
    finally:
        if uploader is not None:
            await uploader.close()
    return SubmitReport(result, shadows)


async def _with_alongside(
    feeding: Coroutine[Any, Any, SubmitResult], recorded: asyncio.Event, alongside: Callable[[], Awaitable[object]]
) -> SubmitResult:
    """Feed, and once the batch is recorded run ``alongside`` too, until both are done (or either fails)."""
    feed = asyncio.create_task(feeding)
    started = asyncio.create_task(recorded.wait())
    other: asyncio.Future[object] | None = None
    try:
        await asyncio.wait({feed, started}, return_when=asyncio.FIRST_COMPLETED)
        if started.done():
            other = asyncio.ensure_future(alongside())
            await asyncio.wait({feed, other}, return_when=asyncio.FIRST_EXCEPTION)
            if feed.done():
                feed.result()  # a failed feed ends the run with its error
            await other
        return await feed
    finally:
        for task in (feed, started, other):
            if task is not None and not task.done():
                task.cancel()
