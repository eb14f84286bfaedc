"""A batch's attachment bytes and uploaded files: each distinct content stored (or uploaded) once, jobs refer to it.

Two hashes per batch (``BatchKeys.blobs``, ``BatchKeys.uploads``), both keyed by the content's ``sha256:<hex>``:

* **blobs** (``--attach inline``): the bytes, written by whoever enqueues a line that needs them (the feeder, a
  ``retry``, a ``--replace-changed`` resubmit) in the round trip before its jobs, with ``HSETNX`` so a content shared by
  many lines is stored once; the worker reads the ones its line needs in its first round trip. When the batch
  completes they go (``store.batches.COMPLETE_LUA``): Redis holds a running batch's distinct attachments once, and a
  finished batch's none. A line fed again (``retry``) has its bytes stored again first. A line whose bytes are not
  there (a ``retry`` that raced the batch's completion) fails with a message saying to retry it.
* **uploads** (``--attach upload``): the provider's ``file_id`` of each content the producer uploaded, so a
  resubmit, a ``retry`` or another line with the same content never uploads it again, and ``producer delete``
  knows what to delete at the provider. It lives and expires with the batch's other keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from store.keys import BatchKeys
from store.redis_typing import awaited
from store.scripts import RoundTrip, Slot


class BlobStore:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def put(self, keys: BatchKeys, blobs: Mapping[str, bytes]) -> int:
        """Store each content not stored yet (one round trip); returns how many were new."""
        if not blobs:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for content, data in blobs.items():
            pipe.hsetnx(keys.blobs, content, data)  # type: ignore[arg-type]  # bytes are what we store
        return sum(int(added) for added in await pipe.execute())

    def queue_get(self, trip: RoundTrip, keys: BatchKeys, contents: Sequence[str]) -> Slot[list[bytes | None]]:
        """The bytes of each content, None where missing."""
        return trip.command("HMGET", keys.blobs, *contents, parse=lambda raw: list(raw))

    async def uploaded(self, keys: BatchKeys, contents: Sequence[str]) -> dict[str, str]:
        """The file ids already uploaded for these contents."""
        if not contents:
            return {}
        found = await awaited(self._redis.hmget(keys.uploads, list(contents)))
        return {c: v.decode() for c, v in zip(contents, found, strict=True) if v is not None}

    async def note_uploaded(self, keys: BatchKeys, file_ids: Mapping[str, str]) -> None:
        if file_ids:
            await awaited(self._redis.hset(keys.uploads, mapping=dict(file_ids)))

    async def all_uploaded(self, keys: BatchKeys) -> dict[str, str]:
        raw = await awaited(self._redis.hgetall(keys.uploads))
        return {k.decode(): v.decode() for k, v in raw.items()}
