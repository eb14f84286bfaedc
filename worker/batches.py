"""Per-worker cache of what a worker needs for each batch: spec, keys, schema validator, result codec, prompt cache
key, input limits.

A batch's spec is immutable once submitted, so each arq worker reads it from Redis once per batch (while it is among
the ``max_batches`` most recently used), not once per line.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from schemas.input_limits import DocumentLimits, document_limits
from schemas.jobs import BatchSpec
from schemas.registry import OutputValidator, load_schema_from_record, validator_for
from schemas.settings import WorkerSettings
from store.batches import BatchNotFoundError, BatchStore
from store.codec import ResultCodec
from store.keys import BatchKeys
from worker.prompt import prompt_cache_key

__all__ = ["BatchCache", "BatchNotFoundError", "LoadedBatch"]


@dataclass(frozen=True)
class LoadedBatch:
    spec: BatchSpec
    keys: BatchKeys
    validator: OutputValidator
    codec: ResultCodec
    prompt_key: str
    """The batch's ``prompt_cache_key`` (a hash of model, instructions and schema), computed once."""
    too_large: DocumentLimits
    """Why a document of this batch must not be sent (``schemas.input_limits.document_limits``: its text, and its
    attachments' tokens as ``extra_tokens``), or None."""


class BatchCache:
    def __init__(
        self, store: BatchStore, settings: WorkerSettings, *, allowed_modules: frozenset[str], max_batches: int = 256
    ) -> None:
        self._store = store
        self._settings = settings
        self._allowed_modules = allowed_modules
        self._max = max_batches
        self._loaded: OrderedDict[str, LoadedBatch] = OrderedDict()

    async def get(self, batch_id: str) -> LoadedBatch:
        loaded = self._loaded.get(batch_id)
        if loaded is not None:
            self._loaded.move_to_end(batch_id)
            return loaded
        spec = await self._store.spec(batch_id)
        if spec is None:
            raise BatchNotFoundError(f"batch {batch_id!r} has no record in Redis")
        schema = load_schema_from_record(
            spec.schema_ref, spec.json_schema, spec.source_schema, allowed_modules=self._allowed_modules
        )
        loaded = LoadedBatch(
            spec=spec,
            keys=self._store.keys_of(batch_id),
            validator=validator_for(schema),
            codec=ResultCodec(spec.json_schema),
            prompt_key=prompt_cache_key(spec),
            too_large=document_limits(spec, self._settings),
        )
        self._loaded[batch_id] = loaded
        if len(self._loaded) > self._max:
            self._loaded.popitem(last=False)
        return loaded
