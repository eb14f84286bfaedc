"""Every Lua script of the store, called directly against a real Redis (database 13)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import orjson
import pytest
from arq.constants import abort_jobs_ss, in_progress_key_prefix, job_key_prefix, retry_key_prefix
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from schemas.jobs import ExtractionJob
from schemas.records import CallTotals, line_result
from schemas.registry import resolve_schema
from schemas.results import ResultRecord, Status, Usage
from store.accounts import Account, Accounts, EndingCounts
from store.batches import BatchStore
from store.cache import CachedAnswer, CacheStore, Lookup
from store.codec import ResultCodec
from store.feed import CancelItem, FeedCode, FeedStore
from store.keys import BatchKeys, Keys
from store.limits import BucketParams, LimitStore, ProviderAccount, SettleArgs
from store.lines import SLOT_BYTES, LineIndex, SlotStatus
from store.queue import REMOVE_WAITING, JobClaims, job_payload
from store.results import LineState, ResultStore
from store.scripts import RoundTrip, Slot, single
from tests.processes import invoice_spec

KEYS = Keys("st:")
BATCH = "s1"
BK = KEYS.batch(BATCH)
SPEC = invoice_spec(BATCH)
CODEC = ResultCodec(SPEC.json_schema)


async def _add_call(redis: Redis, accounts: Accounts, keys: BatchKeys, ordinal: int, **how: Any) -> Account | None:
    return await single(redis, lambda trip: accounts.queue_add_call(trip, keys, ordinal, **how))


def _fp(n: int) -> str:
    return "sha256:" + f"{n:064x}"


async def _batch(redis: Redis, lines: int, *, ttl_ms: int = 0, index: bool = True) -> None:
    assert await BatchStore(redis, KEYS).create(SPEC, lines=lines, ttl_ms=ttl_ms, input_ref=None, created_ms=1)
    if index:
        assert await LineIndex(redis).append(BK, 0, [(_fp(n), f"id-{n}") for n in range(lines)]) == (1, lines)


def _result(n: int, status: Status = Status.SUCCEEDED, tokens: int = 10) -> ResultRecord:
    return line_result(
        SPEC,
        custom_id=f"id-{n}",
        fingerprint=_fp(n),
        status=status,
        totals=CallTotals(usage=Usage(input_tokens=tokens, total_tokens=tokens), attempts=1),
        price=None,
        output={"n": n} if status is Status.SUCCEEDED else None,
    )


async def _feed(redis: Redis, first: int, count: int, *, window: int = 100, round_: int = 0) -> int:
    jobs = []
    for n in range(first, first + count):
        job = ExtractionJob(batch_id=BATCH, ordinal=n, custom_id=f"id-{n}", text=f"doc {n}", fingerprint=_fp(n), line=n)
        jobs.append((KEYS.job_id(BATCH, n, round_), job_payload(job, 1)))
    return (await FeedStore(redis, KEYS).feed(BK, first, window, jobs)).code


async def test_create_batch_writes_the_record_once(redis) -> None:
    store = BatchStore(redis, KEYS)
    assert await store.create(SPEC, lines=3, ttl_ms=5000, input_ref={"path": "/x"}, created_ms=7)
    assert not await store.create(SPEC, lines=9, ttl_ms=0, input_ref=None, created_ms=8)
    record = await store.get(BATCH)
    assert (record.lines, record.indexed, record.fed, record.ttl_ms, record.input) == (3, 0, 0, 5000, {"path": "/x"})
    assert [s.record.batch_id for s in await store.list()] == [BATCH]


async def test_index_chunk_appends_at_the_expected_position_only(redis) -> None:
    await _batch(redis, 4, index=False)
    index = LineIndex(redis)
    assert await index.append(BK, 0, [(_fp(0), "a"), (_fp(1), "b")]) == (1, 2)
    assert await index.append(BK, 0, [(_fp(0), "a")]) == (0, 2)  # another submit got there first
    assert await index.append(BK, 2, [(_fp(2), "c"), (_fp(3), "d:é\n")]) == (1, 4)
    assert [(line.custom_id, line.fingerprint) for line in await index.read(BK, 1, 3)] == [
        ("b", _fp(1)),
        ("c", _fp(2)),
        ("d:é\n", _fp(3)),
    ]
    assert await redis.strlen(BK.slots) == 4 * SLOT_BYTES  # preallocated: every slot pending
    assert await LineIndex(redis).append(KEYS.batch("gone"), 0, [(_fp(0), "a")]) == (-1, 0)


async def test_feed_chunk_moves_the_cursor_within_the_window(redis) -> None:
    await _batch(redis, 6)
    assert await _feed(redis, 0, 3, window=4) == FeedCode.DONE
    assert await _feed(redis, 0, 1, window=4) == FeedCode.MOVED  # the cursor is at 3 now
    assert await _feed(redis, 3, 2, window=4) == FeedCode.FULL  # 3 queued + 2 > 4
    assert await _feed(redis, 3, 1, window=4) == FeedCode.DONE
    state = await FeedStore(redis, KEYS).state(BK)
    assert state is not None
    assert (state.fed, state.queued) == (4, 4)
    assert await redis.zcard(KEYS.queue) == 4
    assert await redis.exists(job_key_prefix + KEYS.job_id(BATCH, 3))


async def test_feed_chunk_refuses_lines_that_are_not_indexed_yet(redis) -> None:
    await _batch(redis, 2, index=False)
    assert await _feed(redis, 0, 1) == FeedCode.NOT_INDEXED


async def test_record_once_records_the_first_result_and_completes_the_batch(redis) -> None:
    await _batch(redis, 2, ttl_ms=60_000)
    await _feed(redis, 0, 2)
    results = ResultStore(redis)
    assert await results.record(BK, KEYS.queue, 1, _result(1), CODEC, job_id=KEYS.job_id(BATCH, 1)) == 1
    assert not await redis.exists(job_key_prefix + KEYS.job_id(BATCH, 1))  # the recorded line's job is gone
    assert await redis.zscore(KEYS.queue, KEYS.job_id(BATCH, 1)) is None
    assert await results.record(BK, KEYS.queue, 1, _result(1, tokens=99), CODEC, job_id=KEYS.job_id(BATCH, 1)) == 0
    assert await redis.ttl(BK.record) == -1  # one line to go
    assert await results.record(BK, KEYS.queue, 0, _result(0, Status.FAILED), CODEC, job_id=KEYS.job_id(BATCH, 0)) == 1
    record = await BatchStore(redis, KEYS).get(BATCH)
    assert (record.done, record.succeeded, record.failed, record.queued) == (2, 1, 1, 0)
    assert record.usage.input_tokens == 20
    assert record.complete
    assert record.completed_ms is not None
    for key in (BK.record, BK.lines, BK.slots, BK.results):
        assert 0 < await redis.pttl(key) <= 60_000  # retention starts when the last line is final
    assert await results.record(KEYS.batch("gone"), KEYS.queue, 0, _result(0), CODEC, job_id="") == -1


async def test_read_range_and_read_since_return_each_lines_latest_result(redis) -> None:
    await _batch(redis, 3)
    await _feed(redis, 0, 3)
    results, feeds = ResultStore(redis), FeedStore(redis, KEYS)
    await results.record(BK, KEYS.queue, 0, _result(0, Status.FAILED), CODEC, job_id=KEYS.job_id(BATCH, 0))
    await results.record(BK, KEYS.queue, 2, _result(2), CODEC, job_id=KEYS.job_id(BATCH, 2))
    read = await results.read_range(BK, 0, 3)
    assert [status for status, _, _ in read] == [SlotStatus.FAILED, SlotStatus.PENDING, SlotStatus.SUCCEEDED]
    assert read[1][1] is None
    assert read[0][1] is not None
    stored = read[2][2]
    assert stored is not None
    assert orjson.loads(CODEC.decode(stored))["output"] == {"n": 2}
    # A retry reopens line 0; its new result supersedes the failed one.
    job = ExtractionJob(batch_id=BATCH, ordinal=0, custom_id="id-0", text="doc", fingerprint=_fp(0), line=1)
    assert (await feeds.reopen(BATCH, 100, [(0, job_payload(job, 1))])).count == 1
    assert await redis.zscore(KEYS.queue, KEYS.job_id(BATCH, 0, 1)) is not None  # the line's next generation
    await results.record(BK, KEYS.queue, 0, _result(0), CODEC, job_id=KEYS.job_id(BATCH, 0, 1))
    since = await results.read_since(BK, "0-0", 100)
    lines = since.lines
    assert sorted(ordinal for ordinal, _ in lines) == [0, 2]  # the superseded failure is left out
    assert orjson.loads(CODEC.decode(dict(lines)[0]))["status"] == "succeeded"
    assert since.sink_after == "0-0"  # no results sink: everything is in the stream
    again = await results.read_since(BK, since.last, 100)
    assert (again.last, again.lines) == (since.last, [])


async def test_reopen_chunk_reopens_only_failed_lines_within_the_window(redis) -> None:
    await _batch(redis, 3, ttl_ms=60_000)
    await _feed(redis, 0, 3)
    results, feeds = ResultStore(redis), FeedStore(redis, KEYS)
    for n, status in ((0, Status.FAILED), (1, Status.SUCCEEDED), (2, Status.FAILED)):
        await results.record(BK, KEYS.queue, n, _result(n, status), CODEC, job_id=KEYS.job_id(BATCH, n))
    assert await redis.pttl(BK.record) > 0
    job = ExtractionJob(batch_id=BATCH, ordinal=0, custom_id="id-0", text="doc", fingerprint=_fp(0), line=1)
    pairs = [(n, job_payload(job, 1)) for n in (0, 1, 2)]
    assert (await feeds.reopen(BATCH, 1, pairs)).code == FeedCode.FULL
    answer = await feeds.reopen(BATCH, 100, pairs)
    assert (answer.code, answer.count, answer.queued) == (FeedCode.DONE, 2, 2)
    assert (await feeds.reopen(BATCH, 100, pairs)).count == 0  # nothing twice
    assert sorted(await redis.zrange(KEYS.queue, 0, -1)) == sorted(KEYS.job_id(BATCH, n, 1).encode() for n in (0, 2))
    assert [slot.generation for slot in await LineIndex(redis).slots(BK, 0, 3)] == [1, 0, 1]
    record = await BatchStore(redis, KEYS).get(BATCH)
    assert (record.done, record.failed, record.retried, record.completed_ms) == (1, 0, 2, None)
    assert await redis.pttl(BK.record) == -1  # incomplete again: retention waits for the new results


async def test_cancel_closes_the_feed_and_records_waiting_lines_with_their_billed_usage(redis) -> None:
    await _batch(redis, 5)
    await _feed(redis, 0, 3)
    feeds, accounts = FeedStore(redis, KEYS), Accounts(redis)
    added = await _add_call(
        redis, accounts, BK, 1, usage=Usage(input_tokens=7, total_tokens=7), response_id="r", latency_ms=5, repair=False
    )
    assert added is not None
    version = added.version
    await redis.set(in_progress_key_prefix + KEYS.job_id(BATCH, 2), b"1")  # line 2 is running
    assert await feeds.begin_cancel(BK, "2026-12-01T00:00:00Z") == (1, 3, 2)
    assert await feeds.begin_cancel(BK, "later") == (0, 3, 0)
    assert await _feed(redis, 3, 1) == FeedCode.CANCELLED

    def item(n: int, account_version: int) -> CancelItem:
        totals = CallTotals(usage=Usage(input_tokens=7, total_tokens=7)) if n == 1 else CallTotals()
        record = line_result(
            SPEC, custom_id=f"id-{n}", fingerprint=_fp(n), status=Status.CANCELLED, totals=totals, price=None
        )
        return CancelItem(KEYS.job_id(BATCH, n), n, account_version, record, CODEC)

    assert await feeds.cancel_waiting(BK, [item(0, 0), item(1, version - 1), item(2, 0)]) == (1, [1])
    assert await feeds.cancel_waiting(BK, [item(1, version)]) == (1, [])
    record = await BatchStore(redis, KEYS).get(BATCH)
    assert (record.done, record.cancelled, record.queued, record.usage.input_tokens) == (4, 4, 1, 7)
    assert await redis.zcard(KEYS.queue) == 1  # the running one stays
    assert not await redis.exists(job_key_prefix + KEYS.job_id(BATCH, 0))
    assert not await redis.hexists(BK.accounts, "1")


async def test_remove_waiting_leaves_running_jobs(redis) -> None:
    await _batch(redis, 2)
    await _feed(redis, 0, 2)
    await redis.set(in_progress_key_prefix + KEYS.job_id(BATCH, 1), b"1")
    remove = REMOVE_WAITING.bind(redis)
    assert await remove([KEYS.queue], [KEYS.job_id(BATCH, 0), KEYS.job_id(BATCH, 1)]) == 1
    assert await redis.zrange(KEYS.queue, 0, -1) == [KEYS.job_id(BATCH, 1).encode()]


async def test_accounts_add_calls_and_errors_and_vanish_with_their_line(redis) -> None:
    await _batch(redis, 1)
    accounts = Accounts(redis)
    usage = Usage(input_tokens=5, cached_input_tokens=1, output_tokens=2, reasoning_tokens=1, total_tokens=7)
    assert await accounts.begin_call(BK, 0, estimate=40) == 1
    first = await _add_call(
        redis, accounts, BK, 0, usage=usage, response_id="resp_1", latency_ms=30, repair=False, estimate=40
    )
    assert first is not None
    assert (first.version, first.outstanding, first.totals.usage) == (2, 0, usage)  # the account as saved
    assert await accounts.begin_call(BK, 0, estimate=50) == 3
    second = await _add_call(
        redis,
        accounts,
        BK,
        0,
        usage=None,
        response_id=None,
        latency_ms=12,
        repair=True,
        possibly_billed=True,
        estimate=50,
    )
    assert second is not None
    assert (second.version, second.possibly_billed, second.totals.repairs) == (4, 1, 1)
    assert second == await accounts.get(BK, 0)
    assert await accounts.begin_call(BK, 0, estimate=60) == 5  # then the worker is killed: never answered
    assert await accounts.note_ending(BK, 0, 1000, "transient") == EndingCounts(1, 0, 0, 1000)
    assert await accounts.note_ending(BK, 0, 2000, "rate_limited") == EndingCounts(1, 0, 0, 1000)
    assert await accounts.note_ending(BK, 0, 3000, "waiting") == EndingCounts(1, 0, 1, 1000)
    assert await accounts.note_ending(BK, 0, 4000, "internal") == EndingCounts(1, 1, 1, 1000)
    account = await accounts.get(BK, 0)
    # One transient error and one internal error are retries; the 429 is counted apart.
    assert account.totals == CallTotals(
        usage=usage, attempts=2, repairs=1, latency_ms=42, last_response_id="resp_1", retries=2, rate_limited=1
    )
    assert (account.version, account.outstanding, account.possibly_billed) == (9, 1, 1)
    await _feed(redis, 0, 1)
    await ResultStore(redis).record(BK, KEYS.queue, 0, _result(0), CODEC, job_id=KEYS.job_id(BATCH, 0))
    assert not await redis.exists(BK.accounts)  # recorded lines keep no account
    record = await BatchStore(redis, KEYS).get(BATCH)
    assert (record.possibly_billed_calls, record.possibly_billed_input_tokens) == (2, 110)  # timed out + abandoned
    assert (
        await _add_call(
            redis, accounts, KEYS.batch("gone"), 0, usage=usage, response_id=None, latency_ms=1, repair=False
        )
        is None
    )
    assert not await redis.exists(KEYS.batch("gone").accounts)


async def test_cache_and_lease_scripts(redis) -> None:
    cache = CacheStore(redis, KEYS, "http://127.0.0.1:8100/v1")
    await _batch(redis, 1)
    result = _result(0)
    assert await ResultStore(redis).record(BK, KEYS.queue, 0, result, CODEC, job_id="") == 1
    assert await cache.put(_fp(0), BK, 0, ttl_s=60)  # the cache points at the line whose result holds the answer
    assert (await cache.lookup(_fp(0), CODEC)).answer == CachedAnswer(result.output or {}, result.response_id)
    token = await cache.claim(_fp(0), lease_ms=5000)
    assert token is not None
    assert await cache.claim(_fp(0), lease_ms=5000) is None
    assert not await cache.extend(_fp(0), "not-the-owner", lease_ms=9000)
    assert await cache.extend(_fp(0), token, lease_ms=9000)
    assert await redis.pttl(cache.lease_key(_fp(0))) > 5000
    assert not await cache.release(_fp(0), "not-the-owner")
    assert await cache.release(_fp(0), token)
    assert not await cache.held(_fp(0))


async def test_admit_and_settle_scripts(redis) -> None:
    """Configured 60 rpm / 60,000 tpm, a one-second window: 1 request and 1,000 tokens of capacity, 1 token per ms."""
    limits = LimitStore(redis)
    params = BucketParams(
        now_ms=1000,
        configured_rpm=120,
        configured_tpm=60_000,
        headroom=1.0,
        window_ms=1000,
        burst_fraction=1.0,
        recovery_per_ms=0.0,
        slow_start_rpm=240,
        slow_start_ceiling_rpm=6000,
    )
    bucket, flight = KEYS.rate_limit("scope"), KEYS.rate_flight("scope")

    async def admit(name: str, input_tokens: int, output: int, *, explicit: bool = True):
        return await single(
            redis,
            lambda trip: limits.queue_admit(
                trip,
                bucket,
                flight,
                KEYS.reservation(name),
                name,
                params,
                input_tokens=input_tokens,
                output_tokens=output,
                explicit_max=explicit,
            ),
        )

    first = await admit("a", 700, 100)
    assert (first.admitted, first.tokens, first.output_tokens) == (True, 800, 100)
    assert await redis.zcard(flight) == 1
    denied = await admit("b", 300, 100)
    assert (denied.admitted, denied.wait_ms) == (False, 200)  # 200 left, 400 needed, 1 per ms

    def how(outcome: str, **account: int) -> SettleArgs:
        return SettleArgs(
            outcome=outcome,
            input_tokens=600,
            output_tokens=20,
            cooldown_ms=None,
            slow_factor=0.8,
            min_fill=0.25,
            account=ProviderAccount(**account),
            learning_weight=0.5,
            slow_start_growth_rpm=42,
            avoidance_growth_rpm=2,
            backoff_factor=0.7,
            reservation_id="a",
            output_charge_ceiling=1024,
        )

    assert await limits.settle(bucket, flight, KEYS.reservation("a"), params, how("ok"))  # real input 600: 100 back
    assert not await limits.settle(bucket, flight, KEYS.reservation("a"), params, how("ok"))  # settles once
    levels = await limits.levels(bucket)
    assert levels["tk"] == 300
    assert levels["fo"] == 0  # nothing in flight any more
    assert await redis.zcard(flight) == 0
    # The provider's account wins, upwards too: its bucket is 100 ms from full, i.e. 100 tokens short.
    second = await admit("c", 100, 100, explicit=False)
    assert second.admitted
    account = {"limit_tokens": 60_000, "remaining_tokens": 900, "reset_tokens_ms": 100}
    await limits.settle(
        bucket, flight, KEYS.reservation("c"), params, dataclasses.replace(how("ok", **account), reservation_id="c")
    )
    levels = await limits.levels(bucket)
    assert levels["tk"] == 900
    assert levels["lt"] == 60_000  # the limit, learned
    assert 0 <= levels["oc"] <= 100  # what the provider charged for output, as its account tells


def test_the_codec_shrinks_result_lines_and_gives_them_back() -> None:
    line = orjson.dumps(
        line_result(
            invoice_spec("x"),
            custom_id="inv-1",
            fingerprint=_fp(1),
            status=Status.SUCCEEDED,
            totals=CallTotals(usage=Usage(input_tokens=812, output_tokens=95, total_tokens=907), attempts=1),
            price=None,
            output={"vendor": "ACME Corp", "invoice_number": "INV-001", "currency": "EUR", "total": 1290.5},
        ).to_json_dict()
    )
    codec = ResultCodec(resolve_schema("invoice").json_schema)
    stored = codec.encode(line)
    assert codec.decode(stored) == line
    assert len(stored) < len(line) / 2
    assert codec.decode(line) == line  # plain JSON is read as it is
    with pytest.raises(ValueError, match="unknown stored result encoding"):
        codec.decode(b"\x07junk")


async def test_scripts_survive_a_script_flush(redis) -> None:
    """redis-py reloads a script Redis forgot (a restart without persistence): EVALSHA falls back to loading."""
    await _batch(redis, 1)
    await redis.script_flush()
    await asyncio.sleep(0)
    assert await _feed(redis, 0, 1) == FeedCode.DONE


async def test_a_round_trip_reloads_scripts_a_restarted_redis_lost_and_keeps_the_order(redis) -> None:
    await _batch(redis, 2)
    accounts, results = Accounts(redis), ResultStore(redis)
    await redis.script_flush()  # what a Redis restart does to every script
    trip = RoundTrip(redis)
    before = results.queue_line_state(trip, BK, 0)
    added = accounts.queue_add_call(
        trip, BK, 0, usage=Usage(input_tokens=3, total_tokens=3), response_id="r1", latency_ms=4, repair=False
    )
    again = accounts.queue_add_call(trip, BK, 0, usage=None, response_id=None, latency_ms=1, repair=True)
    await trip.run()
    assert before.value == LineState(batch_exists=True, recorded=False, cancelled=False)
    assert added.value is not None
    assert again.value is not None
    assert (added.value.version, again.value.version) == (1, 2)  # re-sent in their order after the reload
    assert again.value.totals.usage.input_tokens == 3
    assert again.value == await accounts.get(BK, 0)
    await RoundTrip(redis).run()  # an empty trip sends nothing


async def test_a_round_trip_raises_what_a_step_answered(redis) -> None:
    await redis.set("st:not-a-hash", "x")
    trip = RoundTrip(redis)
    ok: Slot[bytes] = trip.command("SET", "st:fine", "1")
    trip.command("HGET", "st:not-a-hash", "f")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await trip.run()
    with pytest.raises(RuntimeError):
        _ = ok.value  # no step of a failed trip is read as if it had succeeded
    assert await redis.get("st:fine") == b"1"  # not a transaction: the steps before it ran


async def test_claim_takes_a_due_waiting_job_once(redis) -> None:
    await _batch(redis, 3)
    await _feed(redis, 0, 2)
    claims = JobClaims(redis, "w1#test")
    first, second = KEYS.job_id(BATCH, 0), KEYS.job_id(BATCH, 1)
    score = await redis.zscore(KEYS.queue, first)
    assert score is not None
    assert await claims.claim(KEYS.queue, first, lease_ms=60_000) == int(score)  # its due time, for arq
    assert 59_000 < await redis.pttl(in_progress_key_prefix + first) <= 60_000
    assert await claims.claim(KEYS.queue, first, lease_ms=60_000) is None  # running here already
    await redis.zadd(KEYS.queue, {second: 2**50})  # deferred far into the future
    assert await claims.claim(KEYS.queue, second, lease_ms=60_000) is None
    assert await claims.claim(KEYS.queue, KEYS.job_id(BATCH, 2), lease_ms=60_000) is None  # never queued
    assert not await redis.exists(in_progress_key_prefix + second)


async def test_recording_leaves_nothing_of_the_job_for_arq_to_clean_up(redis) -> None:
    await _batch(redis, 1)
    await _feed(redis, 0, 1)
    job_id = KEYS.job_id(BATCH, 0)
    assert await JobClaims(redis, "w1#test").claim(KEYS.queue, job_id, lease_ms=60_000) is not None
    await redis.set(retry_key_prefix + job_id, 1)
    await redis.zadd(abort_jobs_ss, {job_id: 1})
    assert await ResultStore(redis).record(BK, KEYS.queue, 0, _result(0), CODEC, job_id=job_id) == 1
    for key in (job_key_prefix, in_progress_key_prefix, retry_key_prefix):
        assert not await redis.exists(key + job_id)
    assert await redis.zscore(KEYS.queue, job_id) is None
    assert await redis.zscore(abort_jobs_ss, job_id) is None
    await redis.delete(abort_jobs_ss)


async def test_lookup_returns_the_answer_or_takes_the_lease_once(redis) -> None:
    store = CacheStore(redis, KEYS, "http://provider/v1")
    trip = RoundTrip(redis)
    first = store.queue_lookup(trip, _fp(1), CODEC, lease_ms=10_000)
    second = store.queue_lookup(trip, _fp(1), CODEC, lease_ms=10_000)
    await trip.run()
    assert first.value.answer is None
    assert first.value.token is not None  # the lease is this lookup's
    assert second.value == Lookup()  # another job's lease: neither an answer nor a lease
    await _batch(redis, 2)
    result = _result(1)
    trip = RoundTrip(redis)
    ResultStore(redis).queue_record(trip, BK, KEYS.queue, 1, result, CODEC, job_id="")
    store.queue_put(trip, _fp(1), BK, 1, ttl_s=60)
    released = store.queue_release(trip, _fp(1), first.value.token)
    await trip.run()
    trip = RoundTrip(redis)  # (steps of one trip may run out of order after a SCRIPT FLUSH: store.scripts)
    found = store.queue_lookup(trip, _fp(1), CODEC, lease_ms=10_000)
    await trip.run()
    assert released.value is True
    assert found.value == Lookup(answer=CachedAnswer({"n": 1}, result.response_id))
    assert not await store.held(_fp(1))  # a hit takes no lease


async def test_a_call_is_counted_as_sent_only_if_its_admission_reserved_it(redis) -> None:
    await _batch(redis, 1)
    accounts = Accounts(redis)
    trip = RoundTrip(redis)
    refused = accounts.queue_begin_call(trip, BK, 0, estimate=40, if_reserved="st:rl:resv:never-made")
    await trip.run()
    assert refused.value == 0
    assert not await redis.hexists(BK.accounts, "0")
    await redis.set("st:rl:resv:made", "1")
    trip = RoundTrip(redis)
    begun = accounts.queue_begin_call(trip, BK, 0, estimate=40, if_reserved="st:rl:resv:made")
    await trip.run()
    assert begun.value == 1
    assert (await accounts.get(BK, 0)).outstanding == 1
    await redis.delete("st:rl:resv:made")
