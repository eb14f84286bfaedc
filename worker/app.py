"""Composition root: arq ``Worker`` settings from our ``WorkerSettings``, the job boundary, start-up and shut-down.

A worker *process* keeps one ``worker.runtime.Runtime`` (the OpenAI client, metrics, the heartbeat and the one health
server) for its whole life; the arq worker inside it is rebuilt whenever Redis goes away (``worker.cli``), so a Redis
restart never leaves a second health server behind or a port taken.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import time
from typing import Any

import redis.exceptions
from arq import Worker, func
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from schemas.settings import WorkerSettings
from schemas.wire import TASK_NAME, deserialize, serialize
from store.batches import BatchStore
from store.keys import Keys
from store.queue import JobClaims
from store.workers import WorkerRegistry, forget_health
from worker.boundary import JobBoundary, failure_reason
from worker.health import Heartbeat
from worker.leases import LeaseKeeper
from worker.runtime import Runtime
from worker.sink_writer import SinkWriter
from worker.state import WorkerState
from worker.tasks import ARQ_MAX_TRIES, extract
from worker.tokens import warm_up_tokenizer
from worker.uploads_sweep import UploadsSweep
from worker.venue.keeper import PartKeeper
from worker.venue.provider import ProviderBatches

log = logging.getLogger("worker")

RECORD_MARGIN_S = 5.0
"""arq's own job timeout sits this far above ours, so our timeout fires first and the line gets a result."""


def worker_name(settings: WorkerSettings) -> str:
    return settings.worker_name or f"{socket.gethostname()}-{os.getpid()}"


class ExtractionWorker(Worker):
    """arq's worker, with our liveness heartbeat, the job boundary (``worker.boundary``) and fewer round trips.

    Two of arq's steps are done by our scripts instead, with the same effect on arq's keys (``store.queue``): a job is
    claimed in one script rather than WATCH/EXISTS/ZSCORE/MULTI, and a job whose line was recorded has already left
    the queue with its text, claim and try counter, so arq's own clean-up after it (one more transaction) is skipped.
    """

    heartbeat: Heartbeat | None = None
    boundary: JobBoundary | None = None
    lease_owner: str = ""
    """Whose claims this worker's are (its name and a token of this process): ``store.workers``."""
    lease_s: float = 10.0
    leases: LeaseKeeper | None = None
    _claims: JobClaims | None = None

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's ``start_jobs``, claiming each job with one script (``store.queue.CLAIM``) for one lease, which the
        :class:`LeaseKeeper` renews while the job runs (arq would claim it for its whole time limit)."""
        if self._claims is None:
            self._claims = JobClaims(self.pool, self.lease_owner)
        lease_ms = int(self.lease_s * 1000)
        for job_id_b in job_ids:
            await self.sem.acquire()
            if self.job_counter >= self.max_jobs:
                self.sem.release()
                return
            self.job_counter += 1
            job_id = job_id_b.decode()
            score = await self._claims.claim(self.queue_name, job_id, lease_ms=lease_ms)
            if score is None:  # running elsewhere, finished, or deferred meanwhile
                self.job_counter -= 1
                self.sem.release()
                continue
            task = self.loop.create_task(self.run_job(job_id, score))
            task.add_done_callback(lambda _: self._release_sem_dec_counter_on_complete())
            self.tasks[job_id] = task

    async def record_health(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.worker_beat = time.monotonic()  # the poll loop runs, whatever Redis is doing
        await super().record_health()

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        if self.boundary is not None:
            cleaned_up = self.boundary.take_cleaned_up(job_id)
            if finish and self.boundary.take_ended(job_id):
                if cleaned_up and keep_in_progress is None and not result_data:
                    return  # recording the line already did all of this (store.queue's finish_job)
            elif finish:  # without our function having returned: it raised, or arq's own time limit cancelled it
                reason = self.boundary.take_exception(job_id) or "the job ran past arq's time limit"
                await self.boundary.record_unfinished(job_id, reason)
        await super().finish_job(
            job_id, finish, result_data, result_timeout_s, keep_result_forever, incr_score, keep_in_progress
        )

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        # arq failed the job without running our function: expired, unreadable, out of tries, unknown function.
        if self.boundary is not None:
            await self.boundary.record_unfinished(job_id, f"arq: {failure_reason(result_data)}")
        await super().finish_failed_job(job_id, result_data)

    def running_job_ids(self) -> list[str]:
        return [job_id for job_id, task in self.tasks.items() if not task.done()]

    async def close(self) -> None:
        """arq's close, but a Redis that is gone does not stop the rest of the shut-down. The leases are kept until
        the jobs have ended (a SIGTERM's drain may last longer than a lease)."""
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if self._pool is None:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self.leases is not None:
            await self.leases.stop()
            self.leases = None
        with contextlib.suppress(Exception):
            await forget_health(self.pool, self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        with contextlib.suppress(Exception):
            await self.pool.close(close_connection_pool=True)
        self._pool = None


def redis_settings(settings: WorkerSettings) -> RedisSettings:
    """arq's connection settings, with commands retried through a Redis restart or failover of up to ~30 s."""
    base = RedisSettings.from_dsn(settings.redis_url)
    base.conn_retries = 30
    base.retry_on_error = [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    base.retry = Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=20)
    return base


def build_worker(
    settings: WorkerSettings, *, handle_signals: bool = True, runtime: Runtime | None = None
) -> ExtractionWorker:
    """One arq worker. Without ``runtime`` it starts (and stops) one of its own, as a test or one-off run wants."""
    keys = Keys(settings.key_prefix)
    owned: list[Runtime] = []

    async def on_startup(ctx: dict[str, Any]) -> None:
        shared = runtime
        if shared is None:
            shared = await Runtime.start(settings)
            owned.append(shared)
        state = WorkerState.build(settings, ctx["redis"], shared)
        ctx["state"] = state
        await asyncio.to_thread(warm_up_tokenizer)  # loads the BPE file once, off the event loop
        worker.heartbeat = shared.heartbeat
        worker.boundary = state.boundary
        ctx["uploads_sweep"] = sweep = UploadsSweep(ctx["redis"], keys, shared.client)  # files of gone batches
        sweep.start()
        ctx["venue_keeper"] = keeper = PartKeeper(  # provider batches of the Batch API venue
            state.venue,
            BatchStore(ctx["redis"], keys),
            keys,
            settings,
            ProviderBatches(shared.client),
            shared.metrics,
            api_key=settings.api_key() or "",
            endpoint=state.endpoint,
        )
        keeper.start()
        # results out of Redis, into parts in the batches' sinks
        ctx["sink_writer"] = writer = SinkWriter(ctx["redis"], keys, settings, shared.metrics)
        writer.start()
        worker.leases = LeaseKeeper(
            WorkerRegistry(ctx["redis"], keys, worker.lease_owner),
            lease_s=settings.job_lease_s,
            running=worker.running_job_ids,
        )
        await worker.leases.start()
        if shared.health is not None:
            shared.health.accepting_jobs = lambda: worker.allow_pick_jobs
        log.info(
            "worker %s ready: queue=%s concurrency=%d base_url=%s",
            worker_name(settings),
            keys.queue,
            settings.concurrency,
            state.endpoint,
        )

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if (sweep := ctx.pop("uploads_sweep", None)) is not None:
            await sweep.stop()
        if (keeper := ctx.pop("venue_keeper", None)) is not None:
            await keeper.stop()
        if (writer := ctx.pop("sink_writer", None)) is not None:
            await writer.stop()  # a part cut short is written again by the next writer: its rows are still in Redis
        while owned:
            await owned.pop().stop()

    worker = ExtractionWorker(
        functions=[
            func(
                extract,
                name=TASK_NAME,
                max_tries=ARQ_MAX_TRIES,
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
    worker.lease_owner = f"{worker_name(settings)}#{secrets.token_hex(4)}"
    worker.lease_s = settings.job_lease_s
    return worker
