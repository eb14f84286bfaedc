"""The record-once contract shared by workers (results) and the producer (``cancel``): script text and arguments.

One atomic Lua script: the guard (``recorded`` hash), the results-stream entry, the batch counters and the deletion
of the job's usage account change together or not at all, so a job that runs twice (arq is at-least-once) cannot
add a second line or count twice. Pure data here; each side registers the script on its own connection.
"""

from __future__ import annotations

import orjson

from schemas.keys import Keys
from schemas.results import ResultRecord

# KEYS: recorded hash, results stream, batch hash, job usage account
# ARGV: custom_id, result JSON, status, input, cached, output, reasoning, total tokens, cost (string, may be "")
RECORD_ONCE_LUA = """
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


def record_once_call(keys: Keys, result: ResultRecord) -> tuple[list[str], list[str | int | bytes]]:
    """(KEYS, ARGV) for ``RECORD_ONCE_LUA``."""
    batch_id, custom_id, u = result.batch_id, result.custom_id, result.usage
    return (
        [
            keys.recorded(batch_id),
            keys.results(batch_id),
            keys.batch(batch_id),
            keys.job_usage(batch_id, custom_id),
        ],
        [
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
