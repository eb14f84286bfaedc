"""Record a line's result exactly once per ``(batch, custom_id)``: one atomic Lua script.

The guard (``recorded`` hash), the results-stream entry, the batch counters and the deletion of the job's usage
account change together or not at all, so a job that runs twice (arq is at-least-once) cannot add a second line
or count twice.
"""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from schemas.keys import Keys
from schemas.redis_typing import awaited
from schemas.results import ResultRecord

# KEYS: recorded hash, results stream, batch hash, job usage account
# ARGV: custom_id, result JSON, status, input, cached, output, reasoning, total tokens, cost (string, may be "")
_RECORD_ONCE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 0
end
local entry = redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'r', ARGV[2])
redis.call('HSET', KEYS[1], ARGV[1], entry)
redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
redis.call('HINCRBY', KEYS[3], 'done', 1)
redis.call('HINCRBY', KEYS[3], 'input_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'cached_input_tokens', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'output_tokens', ARGV[6])
redis.call('HINCRBY', KEYS[3], 'reasoning_tokens', ARGV[7])
redis.call('HINCRBY', KEYS[3], 'total_tokens', ARGV[8])
if ARGV[9] ~= '' then
  redis.call('HINCRBYFLOAT', KEYS[3], 'cost_usd', ARGV[9])
end
redis.call('DEL', KEYS[4])
return 1
"""


class Recorder:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(_RECORD_ONCE)

    async def record(self, result: ResultRecord) -> bool:
        """True if this call recorded the line; False if it was already recorded (a repeated job)."""
        batch_id, custom_id = result.batch_id, result.custom_id
        u = result.usage
        recorded = await self._script(
            keys=[
                self._keys.recorded(batch_id),
                self._keys.results(batch_id),
                self._keys.batch(batch_id),
                self._keys.job_usage(batch_id, custom_id),
            ],
            args=[
                custom_id,
                orjson.dumps(result.to_json_dict()),
                result.status.value,
                u.input_tokens,
                u.cached_input_tokens,
                u.output_tokens,
                u.reasoning_tokens,
                u.total_tokens,
                "" if result.cost_usd is None else repr(result.cost_usd),
            ],
        )
        return bool(recorded)

    async def is_recorded(self, batch_id: str, custom_id: str) -> bool:
        return bool(await awaited(self._redis.hexists(self._keys.recorded(batch_id), custom_id)))
