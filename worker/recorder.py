"""Record a line's result exactly once per ``(batch, custom_id)`` (the script is in ``schemas.recording``)."""

from __future__ import annotations

from redis.asyncio import Redis

from schemas.keys import Keys
from schemas.recording import RECORD_ONCE_LUA, record_once_call
from schemas.redis_typing import awaited
from schemas.results import ResultRecord


class Recorder:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(RECORD_ONCE_LUA)

    async def record(self, result: ResultRecord) -> bool:
        """True if this call recorded the line; False if it was already recorded (a repeated job)."""
        keys, args = record_once_call(self._keys, result)
        return bool(await self._script(keys=keys, args=args))

    async def is_recorded(self, batch_id: str, custom_id: str) -> bool:
        return bool(await awaited(self._redis.hexists(self._keys.recorded(batch_id), custom_id)))
