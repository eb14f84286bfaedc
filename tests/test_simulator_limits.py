"""The simulator under load: rate limits (token buckets, 429s, ``x-ratelimit-*``), seeded faults, the richer ledger.

Bucket arithmetic runs on an injected fake clock, so it is exact and needs no
sleeping; behaviour a client can see is checked through the real ``openai``
SDK over real HTTP, and bodies against the official OpenAPI spec.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import FaultKind, FaultRule, RunningSimulator, SimulatorConfig, SimulatorState, running_simulator
from simulator.__main__ import config_from_args, parse_args
from simulator.completion import rate_limit_charge
from simulator.faults import RATE_FAULT_KINDS, FaultBook, check_rates
from simulator.ratelimit import StaticRateLimits, TokenBucketLimits, ceil_ms, format_duration
from simulator.request import parse_request
from tests.openapi_spec import validate_component
from tests.test_simulator import (
    DOC_A,
    DOC_B,
    INVOICE_SCHEMA,
    REPO_ROOT,
    call_chat,
    call_responses,
    chat_body,
    get_json,
    is_valid,
    new_client,
    response_text,
    responses_body,
    usage_of,
)

GO_DURATION = re.compile(r"^(0s|\d+ms|(\d+h)?(\d+m)?\d+(\.\d{1,3})?s)$")
RATE_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def charge_of(body: dict[str, Any], endpoint: str = "responses", default_max: int = 1024) -> int:
    """The rate-limit charge the simulator computes: input tokens + max output tokens (or the default)."""
    parsed = parse_request("responses" if endpoint == "responses" else "chat.completions", body)
    return rate_limit_charge(parsed, default_max)


def header_ints(headers: Mapping[str, str]) -> dict[str, int]:
    return {name: int(headers[name]) for name in RATE_HEADERS if "reset" not in name}


async def post_json(http: aiohttp.ClientSession, url: str, payload: object) -> Any:
    async with http.post(url, json=payload) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def wait_for(predicate: Any, timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


# -- duration formatting ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.02, "20ms"),
        (0.0201, "21ms"),  # rounded up: waiting the printed time is always enough
        (0.0000001, "1ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.5, "1.5s"),
        (1.25, "1.25s"),
        (59.999, "59.999s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (361.5, "6m1.5s"),
        (3600, "1h0m0s"),
        (3723, "1h2m3s"),
        (-1, "0s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert GO_DURATION.match(text)


def test_ceil_ms_ignores_float_noise() -> None:
    assert ceil_ms(0.045) == 45
    assert ceil_ms(0.1 + 0.2 - 0.3) == 0
    assert ceil_ms(0.0450001) == 46


# -- token buckets on a fake clock --------------------------------------------------------------------------------


def test_capacity_is_window_times_rate_and_refills_over_time() -> None:
    clock = FakeClock()
    limits = TokenBucketLimits(rpm=120, tpm=0, window_s=2.5, clock=clock)  # 2 req/s, 5 in the bucket
    assert [limits.admit("m", 10).admitted for _ in range(6)] == [True] * 5 + [False]
    clock.advance(0.49)
    assert not limits.admit("m", 10).admitted
    clock.advance(0.01)
    assert limits.admit("m", 10).admitted
    clock.advance(100)  # refills to capacity, never beyond
    assert [limits.admit("m", 10).admitted for _ in range(6)] == [True] * 5 + [False]
    assert limits.admit("other-model", 10).admitted  # buckets are per model


def test_admission_takes_from_both_buckets_or_neither() -> None:
    clock = FakeClock()
    limits = TokenBucketLimits(rpm=300, tpm=6000, window_s=1.0, clock=clock)  # 5 requests, 100 tokens
    assert header_ints(limits.headers("m"))["x-ratelimit-remaining-tokens"] == 100

    first = limits.admit("m", 70)
    assert first.admitted
    assert header_ints(first.headers) == {
        "x-ratelimit-limit-requests": 300,
        "x-ratelimit-remaining-requests": 4,
        "x-ratelimit-limit-tokens": 6000,
        "x-ratelimit-remaining-tokens": 30,
    }
    short_of_tokens = limits.admit("m", 50)
    assert not short_of_tokens.admitted
    assert short_of_tokens.limited_by == "tokens"
    after = header_ints(limits.headers("m"))
    assert after["x-ratelimit-remaining-requests"] == 4  # the request bucket was not charged either
    assert after["x-ratelimit-remaining-tokens"] == 30

    for _ in range(4):
        assert limits.admit("m", 1).admitted
    short_of_requests = limits.admit("m", 1)
    assert short_of_requests.limited_by == "requests"
    assert header_ints(limits.headers("m"))["x-ratelimit-remaining-tokens"] == 26  # tokens untouched


def test_429_reports_the_short_bucket_and_the_exact_wait() -> None:
    clock = FakeClock()
    limits = TokenBucketLimits(rpm=600, tpm=6000, window_s=1.0, clock=clock)  # tokens: 100/s, capacity 100
    assert limits.admit("gpt-4o", 80).admitted  # 20 left
    rejected = limits.admit("gpt-4o", 65)  # 45 short at 100/s: 450 ms
    assert rejected.error is not None
    assert rejected.error.status == 429
    assert rejected.retry_after_s == pytest.approx(0.45)
    assert rejected.error.headers["retry-after-ms"] == "450"
    assert rejected.error.headers["retry-after"] == "1"
    body = rejected.error.body()
    validate_component("ErrorResponse", body)
    assert body == {
        "error": {
            "message": "Rate limit reached for gpt-4o in organization org-simulator on tokens per min (TPM): "
            "Limit 6000, Used 5980, Requested 65. Please try again in 450ms. "
            "Visit https://platform.openai.com/account/rate-limits to learn more.",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    clock.advance(0.449)
    assert not limits.admit("gpt-4o", 65).admitted
    clock.advance(0.001)
    assert limits.admit("gpt-4o", 65).admitted

    requests_only = TokenBucketLimits(rpm=60, tpm=0, clock=clock)  # one request per second, bucket of one
    assert requests_only.admit("m", 10**9).admitted  # no token limit: any size goes
    clock.advance(0.25)
    rejected = requests_only.admit("m", 1)
    assert rejected.error is not None
    assert rejected.error.error_type == "requests"
    assert "on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in 750ms." in str(
        rejected.error
    )
    assert rejected.error.headers["retry-after-ms"] == "750"
    assert rejected.headers["x-ratelimit-limit-tokens"] == StaticRateLimits().headers()["x-ratelimit-limit-tokens"]


def test_requests_above_the_minute_limit_are_too_large_and_big_ones_wait_for_a_full_bucket() -> None:
    clock = FakeClock()
    limits = TokenBucketLimits(rpm=0, tpm=6000, window_s=1.0, clock=clock)  # capacity 100 tokens
    too_large = limits.admit("m", 6001)
    assert too_large.error is not None
    assert too_large.error.message.startswith("Request too large for m in organization org-simulator on tokens")
    assert too_large.retry_after_s is None
    assert "retry-after-ms" not in too_large.error.headers

    assert limits.admit("m", 10).admitted
    big = limits.admit("m", 250)  # above capacity: waits until the bucket is full again
    assert big.retry_after_s == pytest.approx(0.1)
    clock.advance(0.1)
    assert limits.admit("m", 250).admitted  # ...then leaves it 150 in debt
    assert limits.headers("m")["x-ratelimit-remaining-tokens"] == "0"
    assert limits.headers("m")["x-ratelimit-reset-tokens"] == "2.5s"
    rejected = limits.admit("m", 1)
    assert rejected.retry_after_s == pytest.approx(1.51)


def test_headers_remaining_and_reset() -> None:
    clock = FakeClock()
    limits = TokenBucketLimits(rpm=60, tpm=600_000, window_s=6.0, clock=clock)  # 6 requests, 60000 tokens
    fresh = limits.headers("never-seen")
    assert fresh["x-ratelimit-remaining-requests"] == "6"
    assert fresh["x-ratelimit-remaining-tokens"] == "60000"
    assert fresh["x-ratelimit-reset-requests"] == fresh["x-ratelimit-reset-tokens"] == "0s"
    remaining = []
    for _ in range(3):
        admitted = limits.admit("m", 12_345)
        remaining.append(header_ints(admitted.headers))
        assert admitted.headers["x-ratelimit-reset-requests"] == f"{len(remaining)}s"
    assert [r["x-ratelimit-remaining-requests"] for r in remaining] == [5, 4, 3]
    assert [r["x-ratelimit-remaining-tokens"] for r in remaining] == [47_655, 35_310, 22_965]
    assert limits.headers("m")["x-ratelimit-reset-tokens"] == "3.704s"  # 37035 tokens at 10000/s, rounded up
    clock.advance(1.5)
    assert limits.headers("m")["x-ratelimit-remaining-requests"] == "4"
    assert limits.headers("m")["x-ratelimit-reset-requests"] == "1.5s"


arrivals = st.lists(
    st.tuples(st.integers(min_value=0, max_value=1_500_000), st.integers(min_value=1, max_value=4000)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rpm=st.integers(min_value=1, max_value=3000),
    tpm=st.integers(min_value=1000, max_value=600_000),
    window_s=st.sampled_from([0.25, 0.5, 1.0, 2.0, 10.0]),
    sequence=arrivals,
)
def test_admissions_never_exceed_capacity_plus_refill(
    rpm: int, tpm: int, window_s: float, sequence: list[tuple[int, int]]
) -> None:
    """In every window [t_i, t_j] the admitted charge is at most capacity + rate * (t_j - t_i).

    Charges above a bucket's capacity wait for a full bucket and leave it in debt, so with those the
    bound is max(capacity, largest charge) + rate * elapsed. A rejection charges neither bucket.
    """
    clock = FakeClock()
    limits = TokenBucketLimits(rpm, tpm, window_s, clock)
    admitted: list[tuple[float, int]] = []
    for gap_us, charge in sequence:
        clock.advance(gap_us / 1e6)
        before = header_ints(limits.headers("m"))
        outcome = limits.admit("m", charge)
        after = header_ints(limits.headers("m"))
        if outcome.admitted:
            admitted.append((clock.now, charge))
        else:
            assert outcome.limited_by in ("requests", "tokens")
            assert before == after  # both or neither
    for bucket_limit, cost in ((rpm, lambda c: 1), (tpm, lambda c: c)):
        rate = bucket_limit / 60
        capacity = rate * window_s
        biggest = max((cost(c) for _, c in admitted), default=0)
        tolerance = 1e-6 * (1 + rate)
        for i in range(len(admitted)):
            total = 0
            for j in range(i, len(admitted)):
                total += cost(admitted[j][1])
                elapsed = admitted[j][0] - admitted[i][0]
                assert total <= max(capacity, biggest) + rate * elapsed + tolerance


@settings(max_examples=150, deadline=None)
@given(
    tpm=st.integers(min_value=600, max_value=1_000_000),
    rpm=st.integers(min_value=60, max_value=6000),
    sequence=arrivals,
    last=st.integers(min_value=1, max_value=4000),
)
def test_retry_after_ms_is_the_true_wait(rpm: int, tpm: int, sequence: list[tuple[int, int]], last: int) -> None:
    """A rejected request is admitted exactly ``retry-after-ms`` later, and not a millisecond sooner."""
    clock = FakeClock()
    limits = TokenBucketLimits(rpm, tpm, 1.0, clock)
    for gap_us, charge in sequence:
        clock.advance(gap_us / 1e6)
        limits.admit("m", charge)
    rejected = limits.admit("m", last)
    if rejected.admitted or rejected.retry_after_s is None:
        return
    wait_ms = int(rejected.headers["retry-after-ms"])
    assert wait_ms >= 1
    assert int(rejected.headers["retry-after"]) == max(1, math.ceil(wait_ms / 1000))
    start = clock.now
    clock.now = start + (wait_ms - 1) / 1000 - 1e-6
    assert not limits.admit("m", last).admitted
    clock.now = start + wait_ms / 1000
    assert limits.admit("m", last).admitted


# -- rate limits over HTTP ----------------------------------------------------------------------------------------


async def test_rate_limit_429_through_the_sdk(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    body = responses_body(DOC_A, max_output_tokens=100)
    charge = charge_of(body)
    tpm = charge * 2 * 60  # room for two requests per second
    async with running_simulator(SimulatorConfig(rpm=600, tpm=tpm, clock=clock)) as sim:
        client = new_client(sim)
        try:
            seen = []
            for _ in range(2):
                raw = await client.responses.with_raw_response.create(**body)
                validate_component("Response", orjson.loads(raw.content))
                seen.append(raw.headers)
            with pytest.raises(openai.RateLimitError) as caught:
                await call_responses(client, body)
            clock.advance(0.5)
            await call_responses(client, body)  # half a second refills one request's worth
        finally:
            await client.close()
        error = caught.value
        payload = orjson.loads(error.response.content)
        validate_component("ErrorResponse", payload)
        assert payload["error"]["type"] == "tokens"
        assert payload["error"]["code"] == "rate_limit_exceeded"
        assert f"Limit {tpm}, Used {tpm}, Requested {charge}. Please try again in 500ms." in payload["error"]["message"]
        headers = error.response.headers
        assert headers["retry-after-ms"] == "500"
        assert headers["retry-after"] == "1"
        assert headers["x-ratelimit-remaining-tokens"] == "0"
        assert headers["x-ratelimit-reset-tokens"] == "1s"
        assert headers["x-request-id"]
        assert [int(h["x-ratelimit-remaining-tokens"]) for h in seen] == [charge, 0]
        assert [int(h["x-ratelimit-remaining-requests"]) for h in seen] == [9, 8]
        assert [h["x-ratelimit-reset-tokens"] for h in seen] == ["500ms", "1s"]

        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
        assert ledger["requests"]["by_status"] == {"200": 3, "429": 1}
        assert ledger["rate_limit"] == {
            "rpm_limit": 600,
            "tpm_limit": tpm,
            "admitted_requests": 3,
            "admitted_tokens": 3 * charge,
            "rejected_429": {"requests": 0, "tokens": 1},
        }
        assert sum(ledger["per_input"].values()) == 3  # the 429 is not billed
        assert ledger["achieved"]["window_s"] == pytest.approx(0.5)
        assert ledger["achieved"]["requests_per_minute"] == pytest.approx(360)
        assert ledger["achieved"]["tokens_per_minute"] == pytest.approx(3 * charge * 120)


async def test_charge_uses_max_output_tokens_or_the_default(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    config = SimulatorConfig(rpm=6000, tpm=6_000_000, default_max_output_tokens=500, clock=clock)
    async with running_simulator(config) as sim:
        client = new_client(sim)
        try:
            bodies = [
                (call_responses, responses_body(DOC_A)),
                (call_responses, responses_body(DOC_A, max_output_tokens=300)),
                (call_chat, chat_body(DOC_B, max_completion_tokens=200)),
                (call_chat, chat_body(DOC_B, max_tokens=100)),
                (call_chat, chat_body(DOC_B)),
            ]
            spent = []
            for call, body in bodies:
                before = int(sim.state.rate_limits.headers("gpt-4o-mini")["x-ratelimit-remaining-tokens"])
                payload, _ = await call(client, body)
                after = int(sim.state.rate_limits.headers("gpt-4o-mini")["x-ratelimit-remaining-tokens"])
                spent.append((before - after, usage_of(payload)["input"]))
        finally:
            await client.close()
    assert [used - input_tokens for used, input_tokens in spent] == [500, 300, 200, 100, 500]


async def test_every_response_carries_rate_limit_headers(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with running_simulator(SimulatorConfig(rpm=600, tpm=60_000, clock=clock, require_api_key="k")) as sim:
        auth = {"Authorization": "Bearer k"}
        for url, payload, headers, status in (
            (f"{sim.base_url}/responses", responses_body(DOC_A), auth, 200),
            (f"{sim.base_url}/responses", responses_body(DOC_A, max_output_tokens=0), auth, 400),
            (f"{sim.base_url}/responses", responses_body(DOC_A), {}, 401),
            (f"{sim.base_url}/embeddings", {}, auth, 404),
        ):
            async with http.post(url, json=payload, headers=headers) as response:
                assert response.status == status
                for name in RATE_HEADERS:
                    assert response.headers[name], name
                assert response.headers["x-ratelimit-limit-requests"] == "600"
                assert response.headers["x-ratelimit-limit-tokens"] == "60000"
                assert GO_DURATION.match(response.headers["x-ratelimit-reset-tokens"])
                if status == 400:  # the model is known: its (charged) bucket is reported
                    assert response.headers["x-ratelimit-remaining-requests"] == "9"
        async with http.get(f"{sim.url}/_sim/ledger") as response:
            assert response.headers["x-ratelimit-limit-requests"] == "600"


@pytest.fixture
async def sim_unlimited() -> AsyncIterator[RunningSimulator]:
    async with running_simulator(SimulatorConfig()) as running:
        yield running


async def test_without_limits_headers_stay_static(sim_unlimited: RunningSimulator, http: aiohttp.ClientSession) -> None:
    for _ in range(2):
        async with http.post(f"{sim_unlimited.base_url}/responses", json=responses_body(DOC_A)) as response:
            assert response.status == 200
            assert {name: response.headers[name] for name in RATE_HEADERS} == StaticRateLimits().headers()


# -- seeded faults ------------------------------------------------------------------------------------------------


def _decisions(book: FaultBook, order: list[tuple[str, str]]) -> dict[tuple[str, int], FaultKind | None]:
    outcome = {}
    for text, key in order:
        decision = book.decide(text, key)
        outcome[(key, decision.attempt)] = decision.fault
    return outcome


def test_rate_faults_are_deterministic_whatever_the_order() -> None:
    rates = {FaultKind.HTTP_500: 0.2, FaultKind.REFUSAL: 0.2, FaultKind.DROPPED_CONNECTION: 0.1}
    requests = [(f"doc {i}", f"key-{i}") for i in range(200) for _ in range(3)]
    forward = _decisions(FaultBook(rates=rates, seed=7, max_per_input=2), requests)
    backward = _decisions(FaultBook(rates=rates, seed=7, max_per_input=2), requests[::-1])
    assert forward == backward
    other_seed = _decisions(FaultBook(rates=rates, seed=8, max_per_input=2), requests)
    assert other_seed != forward

    fired = Counter(fault for fault in forward.values() if fault is not None)
    first_attempts = [forward[(f"key-{i}", 0)] for i in range(200)]
    share = sum(fault is not None for fault in first_attempts) / 200
    assert 0.38 <= share <= 0.62  # 0.5 expected
    assert set(fired) == {FaultKind.HTTP_500, FaultKind.REFUSAL, FaultKind.DROPPED_CONNECTION}


def test_rate_faults_are_capped_per_input_and_rules_come_first() -> None:
    book = FaultBook(
        [FaultRule(match="special", fault=FaultKind.HTTP_400, times=2)],
        rates={FaultKind.HTTP_503: 1.0},
        max_per_input=2,
    )
    faults = [book.decide("plain", "a").fault for _ in range(4)]
    assert faults == [FaultKind.HTTP_503, FaultKind.HTTP_503, None, None]
    special = [book.decide("special", "b").fault for _ in range(5)]
    assert special == [FaultKind.HTTP_400, FaultKind.HTTP_400, FaultKind.HTTP_503, FaultKind.HTTP_503, None]
    assert book.settings_snapshot()["rate_fired"] == {"http_503": 4}
    assert book.settings_snapshot()["faulted_inputs"] == 2
    assert FaultBook(rates={FaultKind.REFUSAL: 1.0}, max_per_input=0).decide("x", "k").fault is None


@pytest.mark.parametrize(
    "rates",
    [{"http_400": 0.1}, {"http_429": 0.1}, {"refusal": 1.5}, {"refusal": -0.1}, {"refusal": 0.6, "http_500": 0.5}],
)
def test_bad_rates_are_rejected(rates: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"."):
        check_rates(rates)
    with pytest.raises(ValueError, match=r"."):
        SimulatorConfig(fault_rates=rates)  # type: ignore[arg-type]


def test_input_key_is_the_document_not_the_repair_turn() -> None:
    first = parse_request("responses", responses_body(DOC_A))
    repair_input = [
        *responses_body(DOC_A)["input"],
        {"type": "message", "role": "assistant", "content": "{}"},
        {"type": "message", "role": "user", "content": "Your previous answer did not validate; answer again."},
    ]
    repair = parse_request("responses", responses_body(DOC_A, input=repair_input))
    chat = parse_request("chat.completions", chat_body(DOC_A))
    assert first.input_key() == repair.input_key() == chat.input_key()
    assert first.fingerprint() != repair.fingerprint()
    assert parse_request("responses", responses_body(DOC_B)).input_key() != first.input_key()
    assert parse_request("responses", responses_body(DOC_A, model="gpt-4o")).input_key() != first.input_key()


def test_latency_jitter_is_seeded_per_input_and_attempt() -> None:
    config = SimulatorConfig(latency_ms=100, latency_jitter_ms=50, seed=3)
    one, two = SimulatorState.from_config(config), SimulatorState.from_config(config)
    delays = [one.base_delay_s("key", attempt) for attempt in range(20)]
    assert delays == [two.base_delay_s("key", attempt) for attempt in range(20)]
    assert all(0.05 <= delay <= 0.15 for delay in delays)
    assert len(set(delays)) == 20
    other = SimulatorState.from_config(SimulatorConfig(latency_ms=100, latency_jitter_ms=50, seed=4))
    assert other.base_delay_s("key", 0) != delays[0]


@pytest.mark.parametrize("kind", ["http_500", "http_503", "invalid_output", "truncation", "refusal"])
async def test_each_rate_fault_kind_fires_once_per_input(http: aiohttp.ClientSession, kind: str) -> None:
    async with running_simulator(SimulatorConfig(fault_rates={FaultKind(kind): 1.0})) as sim:
        client = new_client(sim)
        try:
            if kind.startswith("http_"):
                with pytest.raises(openai.InternalServerError) as caught:
                    await call_responses(client, responses_body(DOC_A))
                validate_component("ErrorResponse", orjson.loads(caught.value.response.content))
                if kind == "http_503":
                    assert caught.value.response.headers["retry-after"] == "1"
                assert caught.value.response.headers["x-ratelimit-limit-requests"]
            else:
                payload, _ = await call_responses(client, responses_body(DOC_A))
                validate_component("Response", payload)
                message = payload["output"][-1]["content"][0]
                if kind == "refusal":
                    assert message["type"] == "refusal"
                elif kind == "truncation":
                    assert payload["status"] == "incomplete"
                else:
                    assert not is_valid(INVOICE_SCHEMA, orjson.loads(message["text"]))
            again, _ = await call_responses(client, responses_body(DOC_A))  # max_faults_per_input=1: now normal
            assert is_valid(INVOICE_SCHEMA, orjson.loads(response_text(again)))
        finally:
            await client.close()
        faults = await get_json(http, f"{sim.url}/_sim/faults?full=1")
    assert faults["rate_fired"] == {kind: 1}
    assert faults["faulted_inputs"] == 1


@pytest.mark.parametrize("kind", ["http_500", "http_503"])
async def test_http_rate_faults_hit_every_new_document(http: aiohttp.ClientSession, kind: str) -> None:
    async with running_simulator(SimulatorConfig(fault_rates={FaultKind(kind): 1.0})) as sim:
        client = new_client(sim)
        try:
            for doc in (DOC_A, DOC_B):
                with pytest.raises(openai.InternalServerError):
                    await call_chat(client, chat_body(doc))
                await call_chat(client, chat_body(doc))
        finally:
            await client.close()
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["requests"]["by_status"] == {kind.removeprefix("http_"): 2, "200": 2}
    assert sorted(ledger["ok_per_input"].values()) == [1, 1]


async def test_rate_faults_are_reproducible_over_http_whatever_the_order(http: aiohttp.ClientSession) -> None:
    docs = [f"Invoice INV-{n} issued to customer number {n} for {n} widgets." for n in range(12)]
    rates = {FaultKind.HTTP_500: 0.3, FaultKind.REFUSAL: 0.3}

    async def outcomes(sim: RunningSimulator, order: list[str]) -> dict[str, list[str]]:
        client = new_client(sim)

        async def two_calls(doc: str) -> tuple[str, list[str]]:
            seen = []
            for _ in range(2):
                try:
                    payload, _ = await call_responses(client, responses_body(doc))
                except openai.InternalServerError:
                    seen.append("500")
                else:
                    seen.append(payload["output"][-1]["content"][0]["type"])
            return doc, seen

        try:
            return dict(await asyncio.gather(*(two_calls(doc) for doc in order)))
        finally:
            await client.close()

    results = []
    for seed, order in ((11, docs), (11, docs[::-1]), (12, docs)):
        async with running_simulator(SimulatorConfig(fault_rates=rates, fault_seed=seed)) as sim:
            results.append(await outcomes(sim, order))
    assert results[0] == results[1]
    assert results[0] != results[2]
    for seen in results[0].values():
        assert seen.count("output_text") >= 1  # at most one fault per input (the default cap)
    assert {outcome for seen in results[0].values() for outcome in seen} == {"500", "refusal", "output_text"}


async def test_dropped_connection_is_a_connection_error(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    config = SimulatorConfig(fault_rates={FaultKind.DROPPED_CONNECTION: 1.0}, max_faults_per_input=2)
    async with running_simulator(config) as sim:
        client = new_client(sim)
        plain = openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-test", max_retries=0)  # httpx2's own transport
        try:
            with pytest.raises(openai.APIConnectionError):
                await call_responses(client, responses_body(DOC_A))
            with pytest.raises(openai.APIConnectionError) as caught:
                await call_chat(plain, chat_body(DOC_A))
            assert not isinstance(caught.value, openai.APITimeoutError)
            payload, _ = await call_responses(client, responses_body(DOC_A))  # the input's 2 faults are spent
        finally:
            await client.close()
            await plain.close()
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
        log = await get_json(http, f"{sim.url}/_sim/requests")
    assert ledger["requests"]["by_status"] == {"dropped": 2, "200": 1}
    assert ledger["billed"]["total_tokens"] == usage_of(payload)["total"]  # dropped requests are not billed
    assert ledger["rate_limit"]["admitted_requests"] == 3
    assert [entry["status"] for entry in log] == ["dropped", "dropped", 200]
    noisy = [record for record in caplog.records if record.levelno >= logging.WARNING or record.exc_info]
    assert noisy == []


async def test_slow_response_times_out_and_is_billed_as_abandoned(http: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(fault_rates={FaultKind.SLOW_RESPONSE: 1.0}, slow_response_ms=600)
    async with running_simulator(config) as sim:
        client = new_client(sim).with_options(timeout=0.15)
        try:
            started = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                await call_responses(client, responses_body(DOC_A))
            assert time.monotonic() - started < 0.5
            await wait_for(lambda: sim.state.ledger.abandoned == 1)
            payload, _ = await call_responses(client, responses_body(DOC_A))  # fault spent: fast again
        finally:
            await client.close()
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["abandoned"] == 1
    assert ledger["requests"]["by_status"] == {"200": 2}
    assert ledger["billed"]["total_tokens"] == 2 * usage_of(payload)["total"]  # the abandoned one is billed too
    assert list(ledger["ok_per_input"].values()) == [2]  # ...and shows up as a paid duplicate


async def test_slow_response_arrives_for_a_patient_client(http: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(faults=[FaultRule(fault=FaultKind.SLOW_RESPONSE)], slow_response_ms=200)
    async with running_simulator(config) as sim:
        client = new_client(sim)
        try:
            started = time.monotonic()
            payload, _ = await call_responses(client, responses_body(DOC_A))
            assert time.monotonic() - started >= 0.2
        finally:
            await client.close()
        assert sim.state.ledger.abandoned == 0
    validate_component("Response", payload)


# -- ledger -------------------------------------------------------------------------------------------------------


async def test_ledger_series_and_achieved_rates_are_exact(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with running_simulator(SimulatorConfig(rpm=120, clock=clock)) as sim:  # 2 requests/s, bucket of 2
        client = new_client(sim)
        body = responses_body(DOC_A, max_output_tokens=50)
        charge = charge_of(body)
        billed: list[int] = []
        rejections: list[str] = []
        try:
            for step, calls in ((0.0, 3), (1.5, 1), (1.7, 1)):
                clock.advance(step)
                for _ in range(calls):
                    try:
                        payload, _ = await call_responses(client, body)
                    except openai.RateLimitError as exc:
                        rejections.append(orjson.loads(exc.response.content)["error"]["type"])
                    else:
                        billed.append(usage_of(payload)["total"])
        finally:
            await client.close()
        plain = await get_json(http, f"{sim.url}/_sim/ledger")
        ledger = await get_json(http, f"{sim.url}/_sim/ledger?series=1")
    assert rejections == ["requests"]
    assert "series" not in plain
    assert ledger["series"] == [
        {"t": 0, "admitted": 2, "admitted_tokens": 2 * charge, "billed_tokens": sum(billed[:2]), "rejected_429": 1},
        {"t": 1, "admitted": 1, "admitted_tokens": charge, "billed_tokens": billed[2], "rejected_429": 0},
        {"t": 2, "admitted": 0, "admitted_tokens": 0, "billed_tokens": 0, "rejected_429": 0},
        {"t": 3, "admitted": 1, "admitted_tokens": charge, "billed_tokens": billed[3], "rejected_429": 0},
    ]
    assert ledger["requests"]["by_status"] == {"200": 4, "429": 1}
    assert ledger["rate_limit"]["rejected_429"] == {"requests": 1, "tokens": 0}
    assert ledger["achieved"] == {
        "window_s": pytest.approx(3.2),
        "requests_per_minute": pytest.approx(4 * 60 / 3.2),
        "tokens_per_minute": pytest.approx(4 * charge * 60 / 3.2),
        "billed_tokens_per_minute": pytest.approx(sum(billed) * 60 / 3.2),
    }


async def test_ok_per_input_counts_a_documents_repairs_and_retries(http: aiohttp.ClientSession) -> None:
    async with running_simulator(SimulatorConfig()) as sim:
        client = new_client(sim)
        repair = [
            {"type": "message", "role": "user", "content": DOC_A},
            {"type": "message", "role": "assistant", "content": "{}"},
            {"type": "message", "role": "user", "content": "Your previous answer did not validate."},
        ]
        try:
            await call_responses(client, responses_body(DOC_A))
            await call_responses(client, responses_body(DOC_A, input=repair))
            await call_chat(client, chat_body(DOC_A))
            await call_chat(client, chat_body(DOC_B))
        finally:
            await client.close()
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert sorted(ledger["ok_per_input"].values()) == [1, 3]
    assert sorted(ledger["per_input"].values()) == [1, 1, 1, 1]  # exact-request fingerprints, as before


# -- control endpoint and CLI -------------------------------------------------------------------------------------


async def test_faults_endpoint_accepts_rates_and_settings(http: aiohttp.ClientSession) -> None:
    async with running_simulator(SimulatorConfig()) as sim:
        url = f"{sim.url}/_sim/faults"
        settings_doc = await post_json(
            http, url, {"rates": {"refusal": 1.0}, "seed": 5, "max_per_input": 2, "slow_response_ms": 100}
        )
        assert settings_doc == {
            "rules": [],
            "rates": {"refusal": 1.0},
            "seed": 5,
            "max_per_input": 2,
            "slow_response_ms": 100.0,
            "rate_fired": {},
            "faulted_inputs": 0,
        }
        rules = await post_json(http, url, [{"match": "Contoso", "fault": "http_500", "times": 1}])  # list: rules only
        assert rules == [{"match": "Contoso", "fault": "http_500", "times": 1, "fired": 0, "remaining": 1}]
        assert await get_json(http, url) == rules
        for bad in (
            {"rates": {"http_400": 0.5}},
            {"rates": {"refusal": 0.7, "http_500": 0.7}},
            {"rates": {"meteor": 0.1}},
            {"max_per_input": -1},
            {"unknown": 1},
            [{"fault": "meteor_strike"}],
        ):
            async with http.post(url, json=bad) as response:
                assert response.status == 400, bad
                validate_component("ErrorResponse", await response.json())
        async with http.post(url, data=b"{not json") as response:
            assert response.status == 400

        client = new_client(sim)
        try:
            kinds = []
            for _ in range(3):
                payload, _ = await call_responses(client, responses_body(DOC_A))
                kinds.append(payload["output"][-1]["content"][0]["type"])
            with pytest.raises(openai.InternalServerError):  # the rule comes first
                await call_responses(client, responses_body(DOC_B))
        finally:
            await client.close()
        assert kinds == ["refusal", "refusal", "output_text"]
        full = await get_json(http, f"{url}?full=1")
        assert full["rules"][0]["fired"] == 1
        assert full["rate_fired"] == {"refusal": 2}
        assert full["faulted_inputs"] == 1

        async with http.post(f"{sim.url}/_sim/reset") as response:
            assert response.status == 200
        full = await get_json(http, f"{url}?full=1")
        assert (full["rate_fired"], full["faulted_inputs"], full["rates"]) == ({}, 0, {"refusal": 1.0})


def test_cli_flags() -> None:
    args = parse_args(
        [
            "--port",
            "8123",
            "--rpm",
            "500",
            "--tpm",
            "200000",
            "--limit-window-s",
            "2.5",
            "--default-max-output-tokens",
            "256",
            "--latency-ms",
            "40",
            "--latency-jitter-ms",
            "10",
            "--ms-per-output-token",
            "0.5",
            "--fault-rate",
            "http_500=0.02",
            "--fault-rate",
            "dropped_connection=0.01",
            "--fault-rate",
            "slow_response=0",
            "--fault-seed",
            "9",
            "--max-faults-per-input",
            "3",
            "--slow-response-ms",
            "1500",
            "--fault",
            "refusal:Contoso:2",
            "--require-api-key",
            "sk-x",
        ]
    )
    config = config_from_args(args)
    assert args.port == 8123
    assert (config.rpm, config.tpm, config.limit_window_s, config.default_max_output_tokens) == (500, 200000, 2.5, 256)
    assert (config.latency_ms, config.latency_jitter_ms, config.ms_per_output_token) == (40, 10, 0.5)
    assert config.fault_rates == {
        FaultKind.HTTP_500: 0.02,
        FaultKind.DROPPED_CONNECTION: 0.01,
        FaultKind.SLOW_RESPONSE: 0.0,
    }
    assert (config.fault_seed, config.max_faults_per_input, config.slow_response_ms) == (9, 3, 1500)
    assert config.faults == [FaultRule(fault=FaultKind.REFUSAL, match="Contoso", times=2)]
    assert config.require_api_key == "sk-x"

    defaults = config_from_args(parse_args([]))
    assert (defaults.rpm, defaults.tpm, defaults.limit_window_s, defaults.default_max_output_tokens) == (0, 0, 1, 1024)
    assert (defaults.fault_rates, defaults.max_faults_per_input, defaults.slow_response_ms) == ({}, 1, 30000)


@pytest.mark.parametrize("spec", ["http_500", "http_500=x", "http_500=1.5", "http_400=0.1", "meteor=0.1"])
def test_cli_rejects_bad_fault_rates(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--fault-rate", spec])
    assert "bad fault rate" in capsys.readouterr().err


def test_cli_rejects_rates_adding_up_above_one() -> None:
    with pytest.raises(ValueError, match="add up to at most 1"):
        config_from_args(parse_args(["--fault-rate", "refusal=0.6", "--fault-rate", "http_503=0.6"]))


def test_rate_fault_kinds_are_the_documented_ones() -> None:
    assert {str(kind) for kind in RATE_FAULT_KINDS} == {
        "http_500",
        "http_503",
        "dropped_connection",
        "slow_response",
        "invalid_output",
        "truncation",
        "refusal",
    }


async def test_cli_process_limits_and_drops_quietly(http: aiohttp.ClientSession) -> None:
    """As a separate process: a dropped connection leaves no traceback on stderr; a 429 follows the RPM limit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        "--port",
        "0",
        "--rpm",
        "6",  # a bucket of 0.1 requests: one request, then 10 s of 429s
        "--fault-rate",
        "dropped_connection=1",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        url = line.split(" on ", 1)[1].strip()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with http.post(f"{url}/v1/chat/completions", json=chat_body(DOC_A)):
                pass  # pragma: no cover - no response ever comes
        async with http.post(f"{url}/v1/chat/completions", json=chat_body(DOC_A)) as response:
            assert response.status == 429
            assert (await response.json())["error"]["type"] == "requests"
            assert response.headers["x-ratelimit-limit-requests"] == "6"
            assert 9000 <= int(response.headers["retry-after-ms"]) <= 10000
        ledger = await get_json(http, f"{url}/_sim/ledger")
        assert ledger["requests"]["by_status"] == {"dropped": 1, "429": 1}
        process.send_signal(signal.SIGTERM)
        rest, errors = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 0, errors.decode()
    assert rest == b""
    assert errors == b""
