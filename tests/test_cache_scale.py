"""The result cache at scale: pointers to the line that holds the answer, not the answer (``store.cache``).

Real arq workers, real Redis, the simulator over HTTP; the store-level tests at the end pass ``now`` explicitly to
walk through generations.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

import store.cache
from producer.batch.control import delete
from producer.submit.submit import submit
from schemas.jobs import BatchSpec, Fingerprinter, ResultsSink
from schemas.records import CallTotals, line_result
from schemas.results import ResultRecord, Status, Usage
from schemas.settings import Settings
from store.batches import BatchStore
from store.cache import (
    LOAD,
    CachedAnswer,
    CacheStore,
    Lookup,
    digest_field,
    generation_of,
    provider_endpoint,
    provider_id,
)
from store.codec import ResultCodec
from store.fields import F
from store.keys import Keys
from store.lines import LineIndex
from store.redis_typing import awaited
from store.results import ResultStore
from store.scripts import RoundTrip
from tests.conftest import memory_source
from tests.helpers import results_by_id, sim_get
from tests.processes import invoice_spec
from tests.test_end_to_end import INVOICES
from worker.sink_writer import SinkWriter

AGAIN = {f"again-{n}": text for n, text in enumerate(INVOICES.values())}
"""The same documents under other custom ids."""


async def _submit(redis: Redis, keys: Keys, spec: BatchSpec, texts: dict[str, str], **options: Any) -> None:
    await submit(redis, keys, spec, memory_source(texts), window=100, ttl_s=0, **options)


async def _calls(sim: Any) -> int:
    return int((await sim_get(sim, "/_sim/ledger"))["requests"]["total"])


async def _pointers(redis: Redis, keys: Keys) -> int:
    """Pointers in every bucket of every generation."""
    total = 0
    async for key in redis.scan_iter(match=f"{keys.prefix}cache:*"):
        if key.count(b":") == 5:  # {p}cache:{provider}:{ttl}:{g}:{n}
            total += await awaited(redis.hlen(key))
    return total


def _cache(redis: Redis, keys: Keys, settings: Settings) -> CacheStore:
    return CacheStore(redis, keys, provider_endpoint(settings.openai_base_url))


async def test_a_document_of_an_earlier_batch_is_a_hit_with_its_output_and_no_call(
    sim, redis, keys, settings, submit_batch, run_worker
) -> None:
    spec = await submit_batch(INVOICES, batch_id="b1")
    await run_worker()
    first = await results_by_id(redis, keys, "b1")
    assert await _calls(sim) == len(INVOICES)
    assert await _pointers(redis, keys) == len(INVOICES)  # one 8-byte pointer per document, no answer stored

    await submit_batch(AGAIN, batch_id="b2")
    await run_worker()
    second = await results_by_id(redis, keys, "b2")
    assert await _calls(sim) == len(INVOICES)  # not one more call
    for (cid, text), again in zip(INVOICES.items(), AGAIN, strict=True):
        hit, source = second[again], first[cid]
        assert hit.cache_hit, text
        assert not source.cache_hit, text
        assert hit.status is Status.SUCCEEDED
        assert (hit.output, hit.response_id, hit.fingerprint) == (source.output, source.response_id, source.fingerprint)
        assert hit.usage.total_tokens == 0
        assert hit.cost_usd == 0
    assert await _pointers(redis, keys) == len(INVOICES)  # a hit writes no pointer of its own
    assert await redis.hget(keys.batch("b2").record, F.CACHE_NUMBER) is None
    assert await redis.hget(keys.batch("b1").record, F.CACHE_NUMBER) == b"1"
    fingerprints = [Fingerprinter(spec)(text) for text in INVOICES.values()]
    cache = _cache(redis, keys, settings)
    assert await cache.count_cached([*fingerprints, "sha256:" + "ab" * 32]) == len(INVOICES)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
async def test_a_hit_whose_source_result_left_for_the_sink_is_read_back_from_its_part(
    fmt, sim, redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    await submit_batch(INVOICES, batch_id="b1", results=ResultsSink(url=str(tmp_path), format=fmt))
    await run_worker()
    first = await results_by_id(redis, keys, "b1")
    assert await SinkWriter(redis, keys, settings).write_batch("b1") >= 1
    assert await redis.xlen(keys.batch("b1").results) == 0  # every answer is in a part now, none in Redis

    await submit_batch(AGAIN, batch_id="b2")
    await run_worker()
    second = await results_by_id(redis, keys, "b2")
    assert await _calls(sim) == len(INVOICES)
    for cid, again in zip(INVOICES, AGAIN, strict=True):
        assert second[again].cache_hit
        assert (second[again].output, second[again].response_id) == (first[cid].output, first[cid].response_id)


async def test_a_sink_part_that_cannot_be_read_is_a_miss_not_an_error(
    sim, redis, keys, settings, submit_batch, run_worker, tmp_path: Path
) -> None:
    await submit_batch(INVOICES, batch_id="b1", results=ResultsSink(url=str(tmp_path), format="jsonl"))
    await run_worker()
    assert await SinkWriter(redis, keys, settings).write_batch("b1") >= 1
    parts = list((tmp_path / "b1").glob("part-*"))
    assert parts
    for part in parts:
        part.unlink()  # the answers are nowhere now; the pointers still name their lines
    await submit_batch(AGAIN, batch_id="b2")
    await run_worker()
    results = await results_by_id(redis, keys, "b2")
    assert all(r.status is Status.SUCCEEDED and not r.cache_hit for r in results.values())
    assert await _calls(sim) == 2 * len(INVOICES)


async def test_a_line_that_now_holds_another_document_is_not_served(sim, redis, keys, run_worker) -> None:
    original = {"a": INVOICES["inv-1"], "b": INVOICES["inv-2"]}
    await _submit(redis, keys, invoice_spec("b1"), original)
    await run_worker()
    # b1's line "a" is given another document: X's pointer now leads to a line holding Y's answer
    await _submit(
        redis, keys, invoice_spec("b1"), {"a": INVOICES["inv-3"], "b": INVOICES["inv-2"]}, replace_changed=True
    )
    await run_worker()
    assert await _calls(sim) == 3

    await _submit(redis, keys, invoice_spec("b2"), {"x": INVOICES["inv-1"], "y": INVOICES["inv-3"]})
    await run_worker()
    found = await results_by_id(redis, keys, "b2")
    assert not found["x"].cache_hit  # asked again: the line its pointer named holds another document now
    assert found["y"].cache_hit
    assert found["x"].fingerprint != found["y"].fingerprint
    assert await _calls(sim) == 4

    await _submit(redis, keys, invoice_spec("b3"), {"z": INVOICES["inv-1"]})
    await run_worker()
    assert (await results_by_id(redis, keys, "b3"))["z"].cache_hit  # the new pointer, to b2's line
    assert await _calls(sim) == 4


@pytest.mark.parametrize("how", ["deleted", "expired"])
async def test_a_source_batch_that_is_gone_is_a_miss_not_an_error(how, sim, redis, keys, run_worker) -> None:
    await _submit(redis, keys, invoice_spec("b1"), INVOICES)
    await run_worker()
    assert await redis.hlen(keys.cache_batch_ids) == 1
    if how == "deleted":
        await delete(redis, keys, "b1")
        assert await redis.hlen(keys.cache_batch_ids) == 0  # its number goes with it
    else:  # its keys expired: nothing told the cache
        await redis.delete(*keys.batch("b1"))
    await _submit(redis, keys, invoice_spec("b2"), AGAIN)
    await run_worker()
    results = await results_by_id(redis, keys, "b2")
    assert all(r.status is Status.SUCCEEDED and not r.cache_hit for r in results.values())
    assert await _calls(sim) == 2 * len(INVOICES)
    assert await redis.hvals(keys.cache_batch_ids) == [b"b2"]  # the gone batch's number was dropped by the lookups
    assert await _pointers(redis, keys) == len(INVOICES)  # each pointer now names b2's line


async def test_a_batch_id_used_again_is_another_batch(sim, redis, keys, run_worker) -> None:
    """b1 expires and a new b1 with other documents is answered: the old pointers must not lead into it."""
    await _submit(redis, keys, invoice_spec("b1"), {"a": INVOICES["inv-1"]})
    await run_worker()
    await redis.delete(*keys.batch("b1"))
    await _submit(redis, keys, invoice_spec("b1"), {"a": INVOICES["inv-2"]})
    await run_worker()
    await _submit(redis, keys, invoice_spec("b2"), {"x": INVOICES["inv-1"], "y": INVOICES["inv-2"]})
    await run_worker()
    found = await results_by_id(redis, keys, "b2")
    assert (found["x"].cache_hit, found["y"].cache_hit) == (False, True)
    assert await _calls(sim) == 3


async def test_no_cache_batches_neither_read_nor_write_pointers(sim, redis, keys, submit_batch, run_worker) -> None:
    await submit_batch(INVOICES, batch_id="fresh", use_cache=False)
    await run_worker()
    assert [key async for key in redis.scan_iter(match=f"{keys.prefix}cache:*")] == []
    await submit_batch(INVOICES, batch_id="cached")
    await run_worker()
    assert not any(r.cache_hit for r in (await results_by_id(redis, keys, "cached")).values())
    await submit_batch(INVOICES, batch_id="fresh-again", use_cache=False)
    await run_worker()
    assert not any(r.cache_hit for r in (await results_by_id(redis, keys, "fresh-again")).values())
    assert await _calls(sim) == 3 * len(INVOICES)


class _Clock:
    """What ``store.cache`` takes the time from, set by the test."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


async def test_answers_live_from_one_to_two_generations(
    sim, redis, keys, submit_batch, run_worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cache_ttl_s = 100 and the cache's clock moved by hand: answered 10 s into a generation, an answer is reused
    until the end of the next one (190 s later), not after."""
    start = time.time() // 100 * 100  # generation g (its keys expire for real at the end of g + 1: still ahead)
    clock = _Clock(start + 10)
    monkeypatch.setattr(store.cache, "time", clock)
    await submit_batch(INVOICES, batch_id="b1")
    await run_worker(cache_ttl_s=100)
    for batch_id, at, hit in (("b2", 150, True), ("b3", 199.9, True), ("b4", 200, False)):
        clock.now = start + at
        await submit_batch(AGAIN, batch_id=batch_id)
        await run_worker(cache_ttl_s=100)
        assert [r.cache_hit for r in (await results_by_id(redis, keys, batch_id)).values()] == [hit] * len(AGAIN)
    assert await _calls(sim) == 2 * len(INVOICES)


# --- the store, with ``now`` given --------------------------------------------------------------------------------

SPEC = invoice_spec("s1")
CODEC = ResultCodec(SPEC.json_schema)
PREFIX = Keys("cs:")


def _fp(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"document {n}".encode()).hexdigest()


def _result(n: int, *, fingerprint: str | None = None, status: Status = Status.SUCCEEDED) -> ResultRecord:
    return line_result(
        SPEC,
        custom_id=f"id-{n}",
        fingerprint=fingerprint or _fp(n),
        status=status,
        totals=CallTotals(usage=Usage(input_tokens=1, total_tokens=1), attempts=1),
        price=None,
        output={"n": n} if status is Status.SUCCEEDED else None,
        response_id=f"resp_{n}" if status is Status.SUCCEEDED else None,
    )


async def _batch(redis: Redis, batch_id: str, lines: int) -> None:
    spec = SPEC.model_copy(update={"batch_id": batch_id})
    assert await BatchStore(redis, PREFIX).create(spec, lines=lines, ttl_ms=0, input_ref=None, created_ms=1)
    index = LineIndex(redis)
    for first in range(0, lines, 1000):
        entries = [(_fp(n), f"id-{n}") for n in range(first, min(lines, first + 1000))]
        assert (await index.append(PREFIX.batch(batch_id), first, entries))[0] == 1


async def _record(redis: Redis, batch_id: str, results: dict[int, ResultRecord]) -> None:
    store, trip = ResultStore(redis), RoundTrip(redis)
    for ordinal, result in results.items():
        store.queue_record(trip, PREFIX.batch(batch_id), PREFIX.queue, ordinal, result, CODEC, job_id="")
        if len(trip) >= 500:
            await trip.run()
    await trip.run()


async def test_a_pointer_lives_one_to_two_generations(redis) -> None:
    cache = CacheStore(redis, PREFIX, "http://provider/v1")
    await _batch(redis, "s1", 1)
    await _record(redis, "s1", {0: _result(0)})
    ttl = 100
    g = int(time.time() // ttl)  # (Redis expires the keys at the end of g + 1 for real: still ahead)
    written = g * ttl + 50.0
    assert await cache.put(_fp(0), PREFIX.batch("s1"), 0, ttl_s=ttl, now=written)
    answer = CachedAnswer({"n": 0}, "resp_0")
    for now in (written, g * ttl + 99.9, g * ttl + 100, g * ttl + 199.9):  # its generation, then the next one
        assert (await cache.lookup(_fp(0), CODEC, now=now)).answer == answer, now
    assert (await cache.lookup(_fp(0), CODEC, now=g * ttl + 200)).answer is None  # two generations on: gone
    generation, expires_ms = generation_of(written, ttl)
    assert (generation, expires_ms) == (f"100:{g}", (g + 2) * ttl * 1000)
    provider_keys = [key async for key in redis.scan_iter(match=f"{PREFIX.prefix}cache:*")]
    for key in provider_keys:
        if key.count(b":") >= 4:  # the generation, its buckets: they expire together, at the end of the next one
            assert await redis.pexpiretime(key) == expires_ms


async def test_a_pointer_to_a_line_that_is_not_its_answer_is_dropped(redis) -> None:
    cache = CacheStore(redis, PREFIX, "http://provider/v1")
    await _batch(redis, "s1", 3)
    bk = PREFIX.batch("s1")
    await _record(redis, "s1", {0: _result(0, fingerprint=_fp(9)), 1: _result(1, status=Status.FAILED)})
    for n in range(3):
        assert await cache.put(_fp(n), bk, n, ttl_s=60)
    stale = await cache.lookup(_fp(0), CODEC)  # line 0 holds another document's answer: found, then dropped
    assert stale.answer is None
    assert stale.stale is not None
    assert await cache.forget(stale.stale)
    failed = await cache.lookup(_fp(1), CODEC)  # line 1 failed: dropped inside the lookup itself
    assert failed == Lookup()
    pending = await cache.lookup(_fp(2), CODEC)  # line 2 not recorded yet: a miss, the pointer kept
    assert pending == Lookup()
    assert await cache.count_cached([_fp(0), _fp(1), _fp(2)]) == 1
    await _record(redis, "s1", {2: _result(2)})
    assert (await cache.lookup(_fp(2), CODEC)).answer == CachedAnswer({"n": 2}, "resp_2")


async def test_buckets_split_as_a_generation_grows_and_every_pointer_is_found(redis) -> None:
    lines = 6000
    cache = CacheStore(redis, PREFIX, "http://provider/v1")
    await _batch(redis, "s1", lines)
    await _record(redis, "s1", {n: _result(n) for n in range(lines)})
    now, trip = time.time(), RoundTrip(redis)
    for n in range(lines):
        cache.queue_put(trip, _fp(n), PREFIX.batch("s1"), n, ttl_s=3600, now=now)
        if len(trip) >= 500:
            await trip.run()
    await trip.run()
    assert await cache.count_cached([_fp(n) for n in range(lines + 1000)], now=now) == lines
    generation = PREFIX.cache_generation(provider_id("http://provider/v1"), generation_of(now, 3600)[0])
    meta = await redis.hgetall(generation)
    buckets = 2 ** int(meta[b"l"]) + int(meta[b"s"])
    assert int(meta[b"n"]) == lines
    assert lines / LOAD - 1 <= buckets <= lines / LOAD + 1
    sizes = [await redis.hlen(f"{generation}:{b}") for b in range(buckets)]
    assert sum(sizes) == lines
    assert max(sizes) <= 128
    assert {await redis.object("encoding", f"{generation}:{b}") for b in range(buckets)} == {b"listpack"}
    for n in range(0, lines, 97):
        assert (await cache.lookup(_fp(n), CODEC, now=now)).answer == CachedAnswer({"n": n}, f"resp_{n}")
    assert digest_field(_fp(0)) == bytes.fromhex(_fp(0)[7:])[:12]
