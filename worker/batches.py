"""Per-process cache of what a worker needs for each batch: spec, schema validator, request template.

A batch's spec is immutable once submitted, so each worker reads it from Redis once per batch, not once per line.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from redis.asyncio import Redis

from schemas.jobs import BatchSpec
from schemas.keys import Keys
from schemas.redis_typing import awaited
from schemas.registry import OutputValidator, load_schema_from_record, validator_for


@dataclass(frozen=True)
class LoadedBatch:
    spec: BatchSpec
    validator: OutputValidator


class BatchNotFoundError(LookupError):
    pass


class BatchCache:
    def __init__(self, redis: Redis, keys: Keys, *, max_batches: int = 256) -> None:
        self._redis = redis
        self._keys = keys
        self._max = max_batches
        self._loaded: OrderedDict[str, LoadedBatch] = OrderedDict()

    async def get(self, batch_id: str) -> LoadedBatch:
        loaded = self._loaded.get(batch_id)
        if loaded is not None:
            self._loaded.move_to_end(batch_id)
            return loaded
        raw = await awaited(self._redis.hget(self._keys.batch(batch_id), "spec"))
        if raw is None:
            raise BatchNotFoundError(f"batch {batch_id!r} has no record in Redis")
        spec = BatchSpec.model_validate_json(raw)
        schema = load_schema_from_record(spec.schema_ref, spec.json_schema, spec.source_schema)
        loaded = LoadedBatch(spec=spec, validator=validator_for(schema))
        self._loaded[batch_id] = loaded
        if len(self._loaded) > self._max:
            self._loaded.popitem(last=False)
        return loaded
