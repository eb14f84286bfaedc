"""Composition root: arq ``Worker`` settings from our ``Settings``, start-up and shut-down hooks."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

import redis.exceptions
from arq import Worker, func
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from schemas.settings import Settings
from schemas.wire import TASK_NAME, deserialize, serialize
from store.keys import Keys
from worker.adapters.client import build_client
from worker.health import HealthServer, Heartbeat
from worker.state import WorkerState
from worker.tasks import arq_max_tries, extract
from worker.tokens import warm_up_tokenizer

log = logging.getLogger("worker")

RECORD_MARGIN_S = 5.0
"""arq's own job timeout sits this far above ours, so our timeout fires first and the line gets a result."""


def worker_name(settings: Settings) -> str:
    return settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"


class ExtractionWorker(Worker):
    """arq's worker, stamping our liveness heartbeat on every pass of its poll loop."""

    heartbeat: Heartbeat | None = None

    async def record_health(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.worker_beat = time.monotonic()  # the poll loop runs, whatever Redis is doing
        await super().record_health()


def redis_settings(settings: Settings) -> RedisSettings:
    """arq's connection settings, with commands retried through a Redis restart or failover of up to ~30 s."""
    base = RedisSettings.from_dsn(settings.redis_url)
    base.conn_retries = 30
    base.retry_on_error = [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    base.retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=20)
    return base


def build_worker(settings: Settings, *, handle_signals: bool = True) -> ExtractionWorker:
    keys = Keys(settings.key_prefix)

    async def on_startup(ctx: dict[str, Any]) -> None:
        state = WorkerState.build(settings, ctx["redis"], build_client(settings))
        ctx["state"] = state
        await asyncio.to_thread(warm_up_tokenizer)  # loads the BPE file once, off the event loop
        state.heartbeat.start()
        worker.heartbeat = state.heartbeat
        if settings.metrics_port is not None:
            state.health = HealthServer(
                redis=state.redis,
                keys=keys,
                metrics=state.metrics,
                heartbeat=state.heartbeat,
                worker_interval_s=settings.health_check_interval_s,
                port=settings.metrics_port,
                accepting_jobs=lambda: worker.allow_pick_jobs,
            )
            await state.health.start()
        log.info(
            "worker %s ready: queue=%s concurrency=%d base_url=%s",
            worker_name(settings),
            keys.queue,
            settings.concurrency,
            settings.openai_base_url or "https://api.openai.com/v1",
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        state: WorkerState | None = ctx.get("state")
        if state is not None:
            if state.health is not None:
                await state.health.stop()
            await state.heartbeat.stop()
            await state.client.close()

    worker = ExtractionWorker(
        functions=[
            func(
                extract,
                name=TASK_NAME,
                max_tries=arq_max_tries(settings),
                timeout=settings.job_timeout_s + RECORD_MARGIN_S,
            )
        ],
        queue_name=keys.queue,
        redis_settings=redis_settings(settings),
        job_serializer=serialize,
        job_deserializer=deserialize,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        max_jobs=settings.concurrency,
        burst=settings.burst,
        poll_delay=0.2,
        handle_signals=handle_signals,
        # SIGTERM: stop taking jobs, let running ones finish for this long, then cancel and hand them back.
        job_completion_wait=settings.job_completion_wait_s,
        # Results live in our own stream. arq's copy would keep the job's arguments -- the document -- in Redis for
        # as long as it was kept; with 0 a finished job leaves nothing behind.
        keep_result=0,
        health_check_key=keys.health(worker_name(settings)),
        health_check_interval=settings.health_check_interval_s,
        # Running jobs stay at the queue head; read far enough past them that idle slots find due work.
        queue_read_limit=settings.queue_read_limit or max(settings.concurrency * 4, 100),
    )
    return worker
