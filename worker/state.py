"""What a worker process shares across its jobs, built once in arq's ``on_startup``."""

from __future__ import annotations

from dataclasses import dataclass, field

import openai
from redis.asyncio import Redis

from schemas.jobs import ApiKind
from schemas.keys import Keys
from schemas.settings import Settings
from worker.adapters import ApiAdapter, adapter_for
from worker.batches import BatchCache
from worker.recorder import Recorder


@dataclass
class WorkerState:
    settings: Settings
    redis: Redis
    client: openai.AsyncOpenAI
    keys: Keys
    batches: BatchCache
    recorder: Recorder
    _adapters: dict[ApiKind, ApiAdapter] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: Settings, redis: Redis, client: openai.AsyncOpenAI) -> WorkerState:
        keys = Keys(settings.key_prefix)
        return cls(
            settings=settings,
            redis=redis,
            client=client,
            keys=keys,
            batches=BatchCache(redis, keys),
            recorder=Recorder(redis, keys),
        )

    def adapter(self, api: ApiKind) -> ApiAdapter:
        if api not in self._adapters:
            secrets = (self.settings.openai_api_key.get_secret_value(),) if self.settings.openai_api_key else ()
            self._adapters[api] = adapter_for(api, self.client, secrets=secrets)
        return self._adapters[api]
