"""What an arq worker shares across its jobs, built in its ``on_startup`` (once per arq worker: what outlives a
rebuild, once per process, is ``worker.runtime.Runtime``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from redis.asyncio import Redis

from schemas.jobs import ApiKind
from schemas.settings import WorkerSettings
from store.accounts import Accounts
from store.batches import BatchStore
from store.blobs import BlobStore
from store.cache import CacheStore, provider_endpoint
from store.keys import Keys
from store.lines import LineIndex
from store.pause import PauseStore
from store.provider_batches import ProviderBatchStore
from store.results import ResultStore
from store.scripts import RoundTrip
from worker.adapters import ApiAdapter, HttpSender, adapter_for
from worker.admission import AdmissionController
from worker.batches import BatchCache
from worker.boundary import JobBoundary
from worker.cache import Coalescer, ResultCache, SinkLines
from worker.health import HealthServer
from worker.metrics import WorkerMetrics
from worker.policy import Limits
from worker.recorder import LineRecorder
from worker.runtime import Runtime
from worker.tokens import TokenEstimator

FLEX_MARGIN_S = 10.0
"""A flex call's timeout stays this far under the try's limit, so the try ends by the call's own timeout."""


def flex_call_timeout_s(settings: WorkerSettings) -> float:
    """A flex call may take ``flex_request_timeout_s`` (OpenAI advises 15 minutes), within the try's own limit
    (``job_timeout_s``; arq's backstop and the recovery of a killed worker's jobs follow it): raise
    ``EXTRACT_JOB_TIMEOUT_S`` to 910 s or more to give flex the whole 900 s."""
    return max(min(settings.flex_request_timeout_s, settings.job_timeout_s - FLEX_MARGIN_S), settings.request_timeout_s)


@dataclass
class WorkerState:
    settings: WorkerSettings
    redis: Redis
    http: HttpSender
    keys: Keys
    batches: BatchCache
    lines: LineIndex
    results: ResultStore
    accounts: Accounts
    admission: AdmissionController
    estimator: TokenEstimator
    cache: ResultCache
    coalescer: Coalescer
    pauses: PauseStore
    blobs: BlobStore
    venue: ProviderBatchStore
    metrics: WorkerMetrics
    limits: Limits
    endpoint: str
    """The provider's base URL, normalized: part of every cache and coalescing key."""
    secrets: tuple[str, ...]
    """What must never appear in a message we write (the API key)."""
    health: HealthServer | None = None
    recorder: LineRecorder = field(init=False)
    boundary: JobBoundary = field(init=False)
    _adapters: dict[ApiKind, ApiAdapter] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.recorder = LineRecorder(self.settings, self.keys, self.results, self.metrics)
        self.boundary = JobBoundary(
            self.keys, self.batches, self.lines, self.accounts, self.results, self.recorder, self.secrets
        )

    @classmethod
    def build(cls, settings: WorkerSettings, redis: Redis, runtime: Runtime) -> WorkerState:
        endpoint = provider_endpoint(settings.openai_base_url)
        keys = Keys(settings.key_prefix)
        cache_store = CacheStore(redis, keys, endpoint)
        batch_store = BatchStore(redis, keys)
        api_key = settings.api_key() or ""  # the worker refuses to start without one (``worker.cli``)
        return cls(
            settings=settings,
            redis=redis,
            http=runtime.http,
            keys=keys,
            batches=BatchCache(batch_store, settings, allowed_modules=frozenset(settings.schema_modules)),
            lines=LineIndex(redis),
            results=ResultStore(redis),
            accounts=Accounts(redis),
            admission=AdmissionController(redis, keys, settings, api_key, endpoint=endpoint),
            estimator=TokenEstimator(),
            cache=ResultCache(cache_store, settings.cache_ttl_s, SinkLines(cache_store, batch_store)),
            coalescer=Coalescer(cache_store, settings.coalesce_lease_s),
            pauses=PauseStore(redis, keys),
            blobs=BlobStore(redis),
            venue=ProviderBatchStore(redis, keys),
            metrics=runtime.metrics,
            health=runtime.health,
            limits=Limits(
                max_tries=settings.max_tries,
                retry_horizon_s=settings.retry_horizon_s,
                max_deferrals=settings.max_deferrals,
                max_internal_errors=settings.max_internal_errors,
                backoff_base_s=settings.backoff_base_s,
                backoff_cap_s=settings.backoff_cap_s,
            ),
            endpoint=endpoint,
            secrets=(api_key,),
        )

    def trip(self) -> RoundTrip:
        """A new round trip on the worker's connection (``store.scripts.RoundTrip``)."""
        return RoundTrip(self.redis)

    def adapter(self, api: ApiKind) -> ApiAdapter:
        if api not in self._adapters:
            self._adapters[api] = adapter_for(api, self.http, flex_timeout_s=flex_call_timeout_s(self.settings))
        return self._adapters[api]
