"""The worker's HTTP side: ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics`` (Prometheus).

- ``/healthz`` is 200 while the event loop keeps beating (a task stamps the time every second) and arq's poll loop
  last ran (it stamps ``worker_beat`` on every pass, whatever Redis is doing: ``worker.app.ExtractionWorker``) no
  longer ago than three health-check intervals plus 5 s. A blocked loop cannot answer at all, which fails the probe
  too. Redis being down does not fail it: that is readiness.
- ``/readyz`` is 200 when Redis answers a PING within a second and the worker still takes jobs (it stops on
  SIGTERM, while it drains).
- ``/metrics`` refreshes the due-queue gauge (jobs whose score is at most now) and renders the registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis

from store.keys import Keys
from store.provider_batches import ProviderBatchStore
from store.queue import due_jobs
from store.redis_typing import awaited
from worker.metrics import WorkerMetrics

log = logging.getLogger("worker.health")

BEAT_S = 1.0


class Heartbeat:
    """Proof that this process's event loop runs, and when arq's poll loop last ran."""

    def __init__(self) -> None:
        self.loop_beat = time.monotonic()
        self.worker_beat = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.loop_beat = time.monotonic()
            await asyncio.sleep(BEAT_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


class MetricsPortTakenError(RuntimeError):
    """The health and metrics server cannot listen where it was told to: one line for the user, exit 1."""


class HealthServer:
    def __init__(
        self,
        *,
        redis: Redis,
        keys: Keys,
        metrics: WorkerMetrics,
        heartbeat: Heartbeat,
        worker_interval_s: float,
        port: int,
        host: str = "0.0.0.0",  # noqa: S104 - probes and Prometheus reach the pod on its own address
        accepting_jobs: Callable[[], bool] = lambda: True,
    ) -> None:
        self.accepting_jobs = accepting_jobs
        """Whether the worker takes jobs now (it stops on SIGTERM); the current arq worker sets it."""
        self._redis, self._keys, self._metrics, self._heartbeat = redis, keys, metrics, heartbeat
        self._max_worker_silence_s = 3 * worker_interval_s + 5
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None
        self.address: str | None = None
        """The address it is bound to, once started."""

    async def start(self, *, fallback: bool = False) -> None:
        """Listen on the port. A port that is taken raises :class:`MetricsPortTakenError`, unless ``fallback`` (the
        port is only the default, not one the user chose): then any free port, with a warning naming it, so that a
        second worker on one machine runs instead of dying."""
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self._host, self._port, reuse_address=True).start()
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                await self.stop()
                raise MetricsPortTakenError(
                    f"cannot serve /healthz and /metrics on {self._host}:{self._port}: {exc.strerror or exc}"
                ) from exc
            if not fallback:
                await self.stop()
                raise MetricsPortTakenError(
                    f"metrics port {self._port} is already in use on {self._host} (another worker on this machine?): "
                    "set EXTRACT_METRICS_PORT (--metrics-port) to a free port, or 0 for any free one"
                ) from exc
            await web.TCPSite(self._runner, self._host, 0, reuse_address=True).start()
            self.address, self.port = self._runner.addresses[0][0], self._runner.addresses[0][1]
            log.warning(
                "the default metrics port %d is in use (another worker on this machine?): serving /healthz, /readyz "
                "and /metrics on port %d instead; set EXTRACT_METRICS_PORT to choose one",
                self._port,
                self.port,
            )
            return
        self.address, self.port = self._runner.addresses[0][0], self._runner.addresses[0][1]
        log.info("health and metrics on port %d", self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _request: web.Request) -> web.Response:
        now = time.monotonic()
        loop_age, worker_age = now - self._heartbeat.loop_beat, now - self._heartbeat.worker_beat
        if loop_age > 3 * BEAT_S or worker_age > self._max_worker_silence_s:
            return web.json_response(
                {"ok": False, "loop_beat_age_s": round(loop_age, 1), "worker_beat_age_s": round(worker_age, 1)},
                status=503,
            )
        return web.json_response({"ok": True})

    async def _readyz(self, _request: web.Request) -> web.Response:
        if not self.accepting_jobs():
            return web.json_response({"ok": False, "draining": True}, status=503)
        try:
            async with asyncio.timeout(1.0):
                await awaited(self._redis.ping())
        except Exception as exc:
            return web.json_response({"ok": False, "redis": type(exc).__name__}, status=503)
        return web.json_response({"ok": True})

    async def _metrics_handler(self, _request: web.Request) -> web.Response:
        with contextlib.suppress(Exception):  # a scrape during a Redis outage still gets the other metrics
            async with asyncio.timeout(1.0):
                due = await due_jobs(self._redis, self._keys)
            self._metrics.queue_due.set(due)
            by_state, waiting = await ProviderBatchStore(self._redis, self._keys).in_flight()
            self._metrics.provider_batches.clear()
            for state, count in by_state.items():
                self._metrics.provider_batches.labels(state).set(count)
            self._metrics.provider_lines.set(waiting)
        body = self._metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
