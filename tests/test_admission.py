"""The admission controller's Lua buckets, against a real Redis: arithmetic, settlement, sharing, cool-downs."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from schemas.settings import RateLimit, Settings
from store.keys import Keys
from store.limits import scope_id
from tests.conftest import REPO
from worker import admission
from worker.admission import (
    MIN_FILL,
    RECOVERY_PER_S,
    SLOW_FACTOR,
    AdmissionController,
    AdmissionDeferredError,
)

KEYS = Keys("adm:")


@pytest.fixture(autouse=True)
def exact_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    """The arithmetic below uses whole-window capacities; BURST_FRACTION has its own test."""
    monkeypatch.setattr(admission, "BURST_FRACTION", 1.0)


class FakeClock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000

    def __call__(self) -> int:
        return self.now_ms


def _settings(rpm: int, tpm: int, window_s: float = 1.0) -> Settings:
    return Settings(rate_limits={"m": RateLimit(rpm=rpm, tpm=tpm)}, limit_window_s=window_s, limit_headroom=1.0)


def _within_limit(events: list[tuple[int, int]], rate_per_ms: float, capacity: float) -> None:
    """Every window [a, b] admitted at most capacity + rate * (b - a): the token-bucket guarantee."""
    events = sorted(events)
    for i, (start, _) in enumerate(events):
        total = 0
        for end, amount in events[i:]:
            total += amount
            assert total <= capacity + rate_per_ms * (end - start) + 1e-6, (start, end, total)


async def _fresh(url: str) -> Redis:
    redis: Redis = Redis.from_url(url)
    async for key in redis.scan_iter(match="adm:*"):
        await redis.delete(key)
    return redis


arrivals = st.lists(st.tuples(st.integers(0, 400), st.integers(1, 500)), min_size=1, max_size=60)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals=arrivals)
def test_admissions_never_exceed_the_limit_in_any_window(flushed_redis: str, arrivals) -> None:
    """Random arrival times and sizes: what is admitted fits capacity + rate * window, for both buckets."""

    async def scenario() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        redis = await _fresh(flushed_redis)
        clock = FakeClock()
        controller = AdmissionController(redis, KEYS, _settings(rpm=600, tpm=60_000), "k", clock_ms=clock)
        tokens, requests = [], []
        for gap_ms, cost in arrivals:
            clock.now_ms += gap_ms
            reservation, _ = await controller.try_acquire("m", cost, 0)
            if reservation is not None:
                tokens.append((clock.now_ms, cost))
                requests.append((clock.now_ms, 1))
        await redis.aclose()
        return tokens, requests

    tokens, requests = asyncio.run(scenario())
    _within_limit(tokens, rate_per_ms=60_000 / 60_000, capacity=1_000)
    _within_limit(requests, rate_per_ms=600 / 60_000, capacity=10)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reserved_input=st.integers(0, 900), output=st.integers(0, 100), actual=st.integers(0, 5_000))
def test_a_refund_never_exceeds_the_reservation_and_settling_twice_is_settling_once(
    flushed_redis: str, reserved_input: int, output: int, actual: int
) -> None:
    async def scenario() -> None:
        redis = await _fresh(flushed_redis)
        controller = AdmissionController(redis, KEYS, _settings(rpm=600, tpm=60_000), "k", clock_ms=FakeClock())
        reservation, _ = await controller.try_acquire("m", reserved_input, output)
        assert reservation is not None
        before = (await controller.levels("m"))["tk"]
        assert await controller.settle(reservation, input_tokens=actual, output_tokens=0) is True
        after = (await controller.levels("m"))["tk"]
        assert after - before <= reservation.tokens
        assert after - before == pytest.approx(min(reserved_input - actual, 1_000 - before))
        assert after <= 1_000
        assert await controller.settle(reservation, input_tokens=0) is False  # the second settle changes nothing
        assert (await controller.levels("m"))["tk"] == after
        await redis.aclose()

    asyncio.run(scenario())


async def test_both_buckets_or_neither(flushed_redis: str) -> None:
    redis = await _fresh(flushed_redis)
    clock = FakeClock()
    controller = AdmissionController(redis, KEYS, _settings(rpm=120, tpm=6_000), "k", clock_ms=clock)
    # Capacity: 2 requests and 100 tokens (one second of each limit).
    first, _ = await controller.try_acquire("m", 90, 0)
    assert first is not None
    denied, wait_s = await controller.try_acquire("m", 50, 0)  # a request is left, but not 50 tokens
    assert denied is None
    assert wait_s == pytest.approx(0.4, abs=0.002)  # 40 tokens at 100 tokens/s
    levels = await controller.levels("m")
    assert levels["rq"] == pytest.approx(1.0)  # nothing was taken
    assert levels["tk"] == pytest.approx(10.0)
    await redis.aclose()


async def test_a_request_larger_than_the_bucket_waits_for_a_full_bucket(flushed_redis: str) -> None:
    redis = await _fresh(flushed_redis)
    clock = FakeClock()
    controller = AdmissionController(redis, KEYS, _settings(rpm=0, tpm=6_000), "k", clock_ms=clock)
    small, _ = await controller.try_acquire("m", 50, 0)
    assert small is not None
    big, wait_s = await controller.try_acquire("m", 500, 0)
    assert big is None
    assert wait_s == pytest.approx(0.5)
    clock.now_ms += 500
    big, _ = await controller.try_acquire("m", 500, 0)
    assert big is not None
    assert (await controller.levels("m"))["tk"] == pytest.approx(-400)  # in debt: the next waits it out
    await redis.aclose()


def _account(remaining_tokens: int, reset: str | None = None, *, tpm: int = 60_000, rpm: int = 600) -> dict[str, str]:
    """Headers of a reply: tokens as given; requests 5 left, or (with a reset) a full request bucket."""
    headers = {
        "x-ratelimit-limit-tokens": str(tpm),
        "x-ratelimit-remaining-tokens": str(remaining_tokens),
        "x-ratelimit-limit-requests": str(rpm),
        "x-ratelimit-remaining-requests": "5" if reset is None else str(rpm),
    }
    if reset is not None:
        headers["x-ratelimit-reset-tokens"] = reset
        headers["x-ratelimit-reset-requests"] = "0s"
    return headers


async def test_without_reset_headers_remaining_only_lowers_the_buckets(flushed_redis: str) -> None:
    redis = await _fresh(flushed_redis)
    controller = AdmissionController(redis, KEYS, _settings(rpm=600, tpm=60_000), "k", clock_ms=FakeClock())
    one, _ = await controller.try_acquire("m", 100, 0)
    two, _ = await controller.try_acquire("m", 100, 0)
    assert one is not None
    assert two is not None
    await controller.settle(one, input_tokens=100, headers=_account(999_999))
    assert (await controller.levels("m"))["tk"] == pytest.approx(800)
    await controller.settle(two, input_tokens=100, headers=_account(120))
    levels = await controller.levels("m")
    assert levels["tk"] == pytest.approx(120)
    assert levels["rq"] == pytest.approx(5)
    await redis.aclose()


async def test_the_providers_account_raises_and_lowers_the_bucket(flushed_redis: str) -> None:
    """With reset headers, the provider's deficit when it took a call (reset x its rate) is what ours should have been
    right after we admitted it, less the output other calls then held; the difference applies now."""
    redis = await _fresh(flushed_redis)
    controller = AdmissionController(redis, KEYS, _settings(rpm=600, tpm=60_000), "k", clock_ms=FakeClock())
    spent = [await controller.try_acquire("m", 100, 100) for _ in range(3)]  # 600 of 1,000 reserved
    assert all(r is not None for r, _ in spent)
    assert (await controller.levels("m"))["tk"] == pytest.approx(400)
    first, second, third = (r for r, _ in spent)
    assert first is not None
    assert second is not None
    assert third is not None
    # The provider charged the first call only its input: 100 ms (100 tokens) from full when it took it, where we
    # stood at 800 right after it: 100 more room, on top of the 400 the two later reservations left.
    await controller.settle(first, input_tokens=100, output_tokens=40, headers=_account(900, "100ms"))
    assert (await controller.levels("m"))["tk"] == pytest.approx(500)
    # The second: 800 ms from full (it charged far more than we reserved) where we stood at 600 -- 700 counting the
    # correction just made about that moment -- with one other call's 100 output in flight: 1,000 - 800 - 100 = 100
    # is what we should have had, 600 less; ours drops as far.
    await controller.settle(second, input_tokens=100, output_tokens=40, headers=_account(200, "800ms"))
    assert (await controller.levels("m"))["tk"] == pytest.approx(-100)
    await redis.aclose()


@pytest.mark.parametrize(
    "headers",
    [
        {
            "x-ratelimit-limit-tokens": "-1",
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-limit-requests": "-1",
            "x-ratelimit-remaining-requests": "0",
        },
        {"x-ratelimit-limit-tokens": "0", "x-ratelimit-remaining-tokens": "0"},
        {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-remaining-requests": "0"},
        {"x-ratelimit-limit-tokens": "lots", "x-ratelimit-remaining-tokens": "none", "x-ratelimit-reset-tokens": "?"},
    ],
    ids=["azure -1/0", "zero limit", "no limit", "unparsable"],
)
async def test_headers_that_say_nothing_never_exhaust_a_bucket(flushed_redis: str, headers: dict[str, str]) -> None:
    redis = await _fresh(flushed_redis)
    controller = AdmissionController(redis, KEYS, _settings(rpm=600, tpm=60_000), "k", clock_ms=FakeClock())
    reservation, _ = await controller.try_acquire("m", 100, 0)
    assert reservation is not None
    await controller.settle(reservation, input_tokens=100, headers=headers)
    levels = await controller.levels("m")
    assert levels["tk"] == pytest.approx(900)  # the call's own charge, and nothing else: not "exhausted"
    assert levels["lt"] == 0  # nothing learned
    await redis.aclose()


async def test_limits_are_learned_from_replies_and_shared_by_every_worker(flushed_redis: str) -> None:
    """No limit configured: the first reply's headers teach the scope its limits, for every worker, and a later
    reply with other limits (a tier change) is followed at once."""
    redis_a, redis_b = await _fresh(flushed_redis), Redis.from_url(flushed_redis)
    clock = FakeClock()
    unconfigured = Settings(limit_window_s=1.0, limit_headroom=1.0)
    worker_a = AdmissionController(redis_a, KEYS, unconfigured, "key", clock_ms=clock)
    worker_b = AdmissionController(redis_b, KEYS, unconfigured, "key", clock_ms=clock)
    reservation, _ = await worker_a.try_acquire("m", 100, 0)
    assert reservation is not None
    await worker_a.settle(reservation, input_tokens=100, headers=_account(59_900, "100ms", tpm=60_000, rpm=600))
    levels = await worker_b.levels("m")
    assert (levels["lt"], levels["lr"]) == (60_000, 600)
    taken = 0
    while (await worker_b.try_acquire("m", 100, 0))[0] is not None:
        taken += 1
    assert 8 <= taken <= 10  # the learned bucket: 1,000 tokens, 900 of them left, 100 per call
    clock.now_ms += 10_000
    reservation, _ = await worker_b.try_acquire("m", 100, 0)
    assert reservation is not None
    await worker_b.settle(reservation, input_tokens=100, headers=_account(5_900, "0s", tpm=6_000, rpm=60))
    levels = await worker_a.levels("m")
    assert (levels["lt"], levels["lr"]) == (6_000, 60)  # the new tier, for both
    assert levels["tk"] <= 100
    await redis_a.aclose()
    await redis_b.aclose()


async def test_configured_limits_are_a_ceiling_over_learned_ones(flushed_redis: str) -> None:
    redis = await _fresh(flushed_redis)
    controller = AdmissionController(redis, KEYS, _settings(rpm=600, tpm=30_000), "k", clock_ms=FakeClock())
    reservation, _ = await controller.try_acquire("m", 100, 0)
    assert reservation is not None
    await controller.settle(reservation, input_tokens=100, headers=_account(60_000, "0s", tpm=60_000))
    assert (await controller.levels("m"))["tk"] == pytest.approx(500)  # half a second of 30,000 tpm, not of 60,000
    await redis.aclose()


async def test_a_fresh_unknown_scope_starts_small_and_grows(flushed_redis: str) -> None:
    """No limit configured, nothing learned yet: a fleet starting together gets a handful of calls, not hundreds,
    and the allowance grows with every answered call."""
    redis = await _fresh(flushed_redis)
    clock = FakeClock()
    controller = AdmissionController(redis, KEYS, Settings(limit_headroom=1.0), "k", clock_ms=clock)
    first_second = 0
    for _ in range(200):
        reservation, _ = await controller.try_acquire("m", 100, 0)
        if reservation is None:
            clock.now_ms += 5
            continue
        first_second += 1
    assert first_second <= admission.SLOW_START_RPM / 60 * 2  # the first second admits a bounded number
    for _ in range(30):  # answers come back without limit headers (a local server)
        reservation, _ = await controller.try_acquire("m", 100, 0)
        if reservation is not None:
            await controller.settle(reservation, input_tokens=100)
        clock.now_ms += 50
    assert (await controller.levels("m"))["pr"] > admission.SLOW_START_RPM
    await redis.aclose()


async def test_a_429_cools_the_whole_scope_down_across_workers(flushed_redis: str) -> None:
    """One worker's 429 with retry-after blocks every worker of the scope and slows the fill rate."""
    redis_a, redis_b = await _fresh(flushed_redis), Redis.from_url(flushed_redis)
    settings_ = _settings(rpm=600, tpm=60_000)
    worker_a = AdmissionController(redis_a, KEYS, settings_, "shared-key")
    worker_b = AdmissionController(redis_b, KEYS, settings_, "shared-key")
    other_key = AdmissionController(redis_b, KEYS, settings_, "another-key")
    reservation, _ = await worker_a.try_acquire("m", 10, 0)
    assert reservation is not None
    await worker_a.settle(reservation, rate_limited=True, retry_after_s=0.8)

    denied, wait_s = await worker_b.try_acquire("m", 10, 0)
    assert denied is None
    assert 0.7 <= wait_s <= 0.8
    assert (await worker_b.levels("m"))["fill"] == pytest.approx(SLOW_FACTOR, abs=0.01)
    other, _ = await other_key.try_acquire("m", 10, 0)  # a different key is a different limit
    assert other is not None

    started = asyncio.get_running_loop().time()
    admitted = await worker_b.acquire("m", 10, 0, may_defer=False)
    assert asyncio.get_running_loop().time() - started >= 0.6
    assert admitted.admitted_at_ms >= reservation.admitted_at_ms + 800
    await redis_a.aclose()
    await redis_b.aclose()


async def test_fill_rate_slows_after_429s_and_recovers(flushed_redis: str) -> None:
    redis = await _fresh(flushed_redis)
    clock = FakeClock()
    controller = AdmissionController(redis, KEYS, _settings(rpm=600, tpm=60_000), "k", clock_ms=clock)
    for _ in range(10):
        reservation, _ = await controller.try_acquire("m", 1, 0)
        assert reservation is not None
        await controller.settle(reservation, rate_limited=True, retry_after_s=0)
    assert (await controller.levels("m"))["fill"] == pytest.approx(MIN_FILL)
    clock.now_ms += 10_000
    await controller.try_acquire("m", 1, 0)
    assert (await controller.levels("m"))["fill"] == pytest.approx(MIN_FILL + 10 * RECOVERY_PER_S)
    clock.now_ms += 60_000
    await controller.try_acquire("m", 1, 0)
    assert (await controller.levels("m"))["fill"] == pytest.approx(1.0)
    await redis.aclose()


async def test_long_waits_are_deferred_short_ones_slept(flushed_redis: str) -> None:
    redis = await _fresh(flushed_redis)
    settings_ = _settings(rpm=60, tpm=0).model_copy(update={"admission_max_sleep_s": 0.3})
    controller = AdmissionController(redis, KEYS, settings_, "k")
    await controller.acquire("m", 1, 0, may_defer=True)  # the one request of the bucket
    with pytest.raises(AdmissionDeferredError) as deferred:
        await controller.acquire("m", 1, 0, may_defer=True)
    assert 0.9 <= deferred.value.wait_s <= 1.2
    await redis.aclose()


def test_several_processes_sharing_a_scope_stay_within_the_limit(flushed_redis: str) -> None:
    """Three processes, eight takers each, two seconds, one scope: the union of their admissions obeys the limit."""
    rpm, tpm, tokens = 3_000, 300_000, 100  # 50 requests/s and 5,000 tokens/s: the token bucket binds (50/s too)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.admission_load", flushed_redis, "adm:", "2", str(tokens), str(rpm), str(tpm)],
            stdout=subprocess.PIPE,
            cwd=REPO,
        )
        for _ in range(3)
    ]
    events: list[tuple[int, int]] = []
    per_process = []
    for proc in procs:
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        admitted = [tuple(e) for e in orjson.loads(out)]
        per_process.append(len(admitted))
        events += admitted
    assert all(count > 0 for count in per_process)  # every process got a share
    headroom = Settings().limit_headroom
    _within_limit(events, rate_per_ms=tpm * headroom / 60_000, capacity=tpm * headroom / 60)
    span_s = (max(t for t, _ in events) - min(t for t, _ in events)) / 1000
    achieved = sum(n for _, n in events) / span_s
    assert achieved >= 0.9 * tpm * headroom / 60  # and the shared limit was actually used


async def test_our_burst_is_a_fraction_of_the_providers(redis: Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bursts may arrive compressed at the provider, so our buckets hold less than one window of the limit."""
    monkeypatch.undo()
    controller = AdmissionController(redis, KEYS, _settings(rpm=6_000, tpm=2_000_000), "k", clock_ms=FakeClock())
    reservation, _ = await controller.try_acquire("m", 0, 0)
    assert reservation is not None
    levels = await controller.levels("m")
    assert levels["tk"] == pytest.approx(2_000_000 / 60 * admission.BURST_FRACTION)
    assert levels["rq"] == pytest.approx(100 * admission.BURST_FRACTION - 1)
    assert admission.BURST_FRACTION < 1


def test_the_scope_names_the_key_by_hash_only() -> None:
    scope = scope_id("sk-secret-value", "gpt-4o-mini")
    assert "sk-secret-value" not in scope
    assert scope.endswith(":gpt-4o-mini")
    assert scope != scope_id("sk-other", "gpt-4o-mini")
