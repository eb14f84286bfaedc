"""Small helpers shared by tests: read the simulator's ledger over HTTP, read results back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from schemas.results import ResultRecord, Usage
from schemas.settings import Settings
from store.batches import BatchStore
from store.keys import Keys
from store.redis_typing import awaited
from store.results import ResultStore
from worker.app import build_worker


async def sim_get(sim: Any, path: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(f"{sim.url}{path}") as response:
        response.raise_for_status()
        return await response.json()


async def sim_post(sim: Any, path: str, payload: Any) -> Any:
    async with aiohttp.ClientSession() as session, session.post(f"{sim.url}{path}", json=payload) as response:
        response.raise_for_status()
        return await response.json()


async def results_by_id(redis: Redis, keys: Keys, batch_id: str) -> dict[str, ResultRecord]:
    """Each line's latest final result, by custom_id (pending lines are left out)."""
    batch = await BatchStore(redis, keys).get(batch_id)
    found: dict[str, ResultRecord] = {}
    async for chunk in ResultStore(redis).final_lines(batch, keys.batch(batch_id), price=None):
        for final in chunk:
            if final.json is not None:
                found[final.line.custom_id] = ResultRecord.model_validate(orjson.loads(final.json))
    return found


def total_usage(records: list[ResultRecord]) -> Usage:
    total = Usage()
    for record in records:
        total = total + record.usage
    return total


async def redis_contents(redis: Redis) -> bytes:
    """Every key and value in the (test) database, concatenated: for asserting that something is NOT stored."""
    parts: list[bytes] = []
    async for key in redis.scan_iter(count=500):
        parts.append(key)
        kind = (await redis.type(key)).decode()
        if kind == "string":
            parts.append(await redis.get(key) or b"")
        elif kind == "hash":
            for field, value in (await awaited(redis.hgetall(key))).items():
                parts += [field, value]
        elif kind == "list":
            parts += await awaited(redis.lrange(key, 0, -1))
        elif kind == "set":
            parts += list(await awaited(redis.smembers(key)))
        elif kind == "zset":
            parts += [member for member, _ in await redis.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _entry, fields in await redis.xrange(key):
                for field, value in fields.items():
                    parts += [field, value]
    return b"\n".join(parts)


@contextlib.asynccontextmanager
async def running_worker(settings: Settings, **overrides: Any) -> AsyncIterator[None]:
    """A long-running (not burst) arq worker in this event loop, stopped on exit."""
    worker = build_worker(Settings(**{**settings.model_dump(), "burst": False, **overrides}), handle_signals=False)
    task = asyncio.create_task(worker.main())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await worker.close()


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it is true; fail the test with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s:g}s")
        await asyncio.sleep(0.05)
