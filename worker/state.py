"""What a worker process shares across its jobs, built once in arq's ``on_startup``."""

from __future__ import annotations

from dataclasses import dataclass, field

import openai
from redis.asyncio import Redis

from schemas.jobs import ApiKind
from schemas.settings import Settings
from store.accounts import Accounts
from store.batches import BatchStore
from store.cache import CacheStore
from store.keys import Keys
from store.lines import LineIndex
from store.results import ResultStore
from worker.adapters import ApiAdapter, adapter_for
from worker.admission import AdmissionController
from worker.batches import BatchCache
from worker.cache import Coalescer, ResultCache
from worker.health import HealthServer, Heartbeat
from worker.metrics import WorkerMetrics
from worker.tokens import TokenEstimator


@dataclass
class WorkerState:
    settings: Settings
    redis: Redis
    client: openai.AsyncOpenAI
    keys: Keys
    batches: BatchCache
    lines: LineIndex
    results: ResultStore
    accounts: Accounts
    admission: AdmissionController
    estimator: TokenEstimator
    cache: ResultCache
    coalescer: Coalescer
    metrics: WorkerMetrics
    heartbeat: Heartbeat
    health: HealthServer | None = None
    _adapters: dict[ApiKind, ApiAdapter] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, redis: Redis, client: openai.AsyncOpenAI) -> WorkerState:
        keys = Keys(settings.key_prefix)
        cache_store = CacheStore(redis, keys)
        return cls(
            settings=settings,
            redis=redis,
            client=client,
            keys=keys,
            batches=BatchCache(BatchStore(redis, keys)),
            lines=LineIndex(redis),
            results=ResultStore(redis),
            accounts=Accounts(redis),
            admission=AdmissionController(redis, keys, settings, _api_key(settings)),
            estimator=TokenEstimator(),
            cache=ResultCache(cache_store, settings.cache_ttl_s),
            coalescer=Coalescer(cache_store, settings.coalesce_lease_s),
            metrics=WorkerMetrics(),
            heartbeat=Heartbeat(),
        )

    def adapter(self, api: ApiKind) -> ApiAdapter:
        if api not in self._adapters:
            self._adapters[api] = adapter_for(api, self.client, secrets=(_api_key(self.settings),))
        return self._adapters[api]


def _api_key(settings: Settings) -> str:
    return settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
