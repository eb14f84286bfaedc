"""The baseline for ``bench.overhead``: a bare arq worker whose job does nothing, run as its own process.

    python -m bench.arq_noop REDIS_URL QUEUE CONCURRENCY

Same serializers as ours (JSON, never pickle), same ``max_jobs``; everything else is arq's default.
"""

from __future__ import annotations

import sys
from typing import Any

from arq import Worker
from arq.connections import RedisSettings

from schemas.wire import deserialize, serialize

NOOP = "noop"


async def noop(ctx: dict[str, Any], payload: dict[str, Any]) -> None:
    return None


def main() -> None:
    redis_url, queue, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    worker = Worker(
        functions=[noop],
        queue_name=queue,
        redis_settings=RedisSettings.from_dsn(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        max_jobs=concurrency,
        poll_delay=0.2,
        health_check_key=queue + ":health-check",
    )
    worker.run()


if __name__ == "__main__":
    main()
