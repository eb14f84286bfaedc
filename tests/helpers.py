"""Small helpers shared by tests: read the simulator's ledger over HTTP, read results back."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
from redis.asyncio import Redis

from schemas.results import ResultRecord, Usage
from store.batches import BatchStore
from store.keys import Keys
from store.redis_typing import awaited
from store.results import ResultStore


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
