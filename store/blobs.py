"""A batch's attachment bytes and uploaded files: each distinct content stored (or uploaded) once, jobs refer to it.

Two hashes per batch (``BatchKeys.blobs``, ``BatchKeys.uploads``), both keyed by the content's ``sha256:<hex>``:

* **blobs** (``--attach inline``): the bytes, written by whoever enqueues a line that needs them (the feeder, a
  ``retry``, a ``--replace-changed`` resubmit) in the round trip before its jobs, with ``HSETNX`` so a content shared by
  many lines is stored once; the worker reads the ones its line needs in its first round trip. When the batch
  completes they go (``store.batches.COMPLETE_LUA``): Redis holds a running batch's distinct attachments once, and a
  finished batch's none. A line fed again (``retry``) has its bytes stored again first. A line whose bytes are not
  there (a ``retry`` that raced the batch's completion) fails with a message saying to retry it.
* **uploads** (``--attach upload``): the provider's ``file_id`` of each content the producer uploaded, so a
  resubmit, a ``retry`` or another line with the same content never uploads it again. It is ``store.uploads``'s: the
  intents written before each upload, and the files sets that outlive the batch so its files are deleted with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from redis.asyncio import Redis

from store.keys import BatchKeys
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
