"""What a worker process keeps for its whole life, across the arq workers it runs: the OpenAI client and the one HTTP
path through it, the metrics, the liveness heartbeat, a Redis connection of its own and the one health server.

``worker.cli.supervise`` starts it once per process and hands it to every arq worker it builds
(``worker.app.build_worker``; one built without it, as a test or one-off run builds it, starts and stops its own).
It sits below ``worker.state`` (each arq worker's shared state is built from it) and ``worker.app``, so neither has to
import the other to name it.
"""

from __future__ import annotations

from dataclasses import dataclass

import openai
from redis.asyncio import Redis

from schemas.settings import WorkerSettings
from store.keys import Keys
from worker.adapters.client import build_client
from worker.adapters.http import HttpSender
from worker.health import HealthServer, Heartbeat
from worker.metrics import WorkerMetrics


@dataclass
class Runtime:
    """What a worker process keeps across the arq workers it runs."""

    client: openai.AsyncOpenAI
    """Owns the provider's address, headers and timeouts; calls go through ``http`` (see ``worker.adapters.http``)."""
    http: HttpSender
    metrics: WorkerMetrics
    heartbeat: Heartbeat
    redis: Redis
    """A connection of its own, for /readyz and the due-queue gauge (arq's pool goes with each arq worker)."""
    health: HealthServer | None = None

    @classmethod
    async def start(cls, settings: WorkerSettings) -> Runtime:
        client = build_client(settings)
        runtime = cls(
            client=client,
            http=HttpSender(client, connections=settings.concurrency, secrets=_secrets(settings)),
            metrics=WorkerMetrics(),
            heartbeat=Heartbeat(),
            redis=Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2),
        )
        runtime.heartbeat.start()
        if settings.metrics_port is not None:
            runtime.health = HealthServer(
                redis=runtime.redis,
                keys=Keys(settings.key_prefix),
                metrics=runtime.metrics,
                heartbeat=runtime.heartbeat,
                worker_interval_s=settings.health_check_interval_s,
                host=settings.metrics_host,
                port=settings.metrics_port,
            )
            try:
                # The default port falls back to a free one: several workers may share a machine. A port the user
                # chose does not: Prometheus and the probes look there.
                await runtime.health.start(fallback="metrics_port" not in settings.model_fields_set)
            except BaseException:
                await runtime.stop()
                raise
        return runtime

    async def stop(self) -> None:
        if self.health is not None:
            await self.health.stop()
        await self.heartbeat.stop()
        await self.http.close()
        await self.client.close()
        await self.redis.aclose()


def _secrets(settings: WorkerSettings) -> tuple[str, ...]:
    key = settings.api_key()
    return (key,) if key is not None else ()
