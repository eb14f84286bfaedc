"""A process that takes admissions from one shared scope as fast as it is allowed, for a multi-process test.

    python -m tests.admission_load REDIS_URL PREFIX SECONDS TOKENS_PER_CALL RPM TPM

Prints one JSON list of [admitted_at_ms (Redis server time), tokens] pairs.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
from redis.asyncio import Redis

from schemas.settings import Settings
from store.keys import Keys
from worker.admission import AdmissionController


async def main(redis_url: str, prefix: str, seconds: float, tokens: int, rpm: int, tpm: int) -> None:
    redis = Redis.from_url(redis_url)
    settings = Settings(rpm=rpm, tpm=tpm, admission_max_sleep_s=60)
    controller = AdmissionController(redis, Keys(prefix), settings, "sk-shared-key")
    admitted: list[tuple[int, int]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def taker() -> None:
        while loop.time() < deadline:
            reservation = await controller.acquire("m", tokens, 0, may_defer=False)
            admitted.append((reservation.admitted_at_ms, reservation.tokens))

    await asyncio.gather(*(taker() for _ in range(8)))
    await redis.aclose()
    sys.stdout.write(orjson.dumps(admitted).decode())


if __name__ == "__main__":
    url, prefix, seconds, tokens, rpm, tpm = sys.argv[1:7]
    asyncio.run(main(url, prefix, float(seconds), int(tokens), int(rpm), int(tpm)))
