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
from simulator.ratelimit import (
    AZURE_RATE_HEADERS,
    ChargeOutput,
    LimitHeaders,
    StaticRateLimits,
    TokenBucketLimits,
    ceil_ms,
    format_duration,
)
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


def charge_of(
    body: dict[str, Any], endpoint: str = "responses", default_max: int = 1024, charge_output: ChargeOutput = "max"
) -> int:
    """The admission charge the simulator computes: input tokens + max output tokens (or the default, or 0)."""
    parsed = parse_request("responses" if endpoint == "responses" else "chat.completions", body)
    return rate_limit_charge(parsed, default_max, charge_output)


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
            "output_charged_tokens": 0,
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


# -- provider behaviours the worker was not written for -----------------------------------------------------------

API_COMPONENTS = {"responses": "Response", "chat/completions": "CreateChatCompletionResponse"}
MODEL = "gpt-4o-mini"


async def api_call(
    http: aiohttp.ClientSession, sim: RunningSimulator, body: object, path: str = "responses"
) -> tuple[int, Mapping[str, str], Any]:
    """POST an API call; return its status, headers and JSON body (checked against the OpenAPI spec)."""
    async with http.post(f"{sim.base_url}/{path}", json=body) as response:
        payload = await response.json()
        validate_component(API_COMPONENTS[path] if response.status == 200 else "ErrorResponse", payload)
        return response.status, response.headers, payload


async def bucket_headers(http: aiohttp.ClientSession, sim: RunningSimulator) -> Mapping[str, str]:
    """The model's bucket as a client sees it, without charging: the headers of a request refused as invalid."""
    status, headers, _ = await api_call(http, sim, responses_body(DOC_A, max_output_tokens=0))
    assert status == 400
    return headers


def rate_headers_of(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items() if name.lower().startswith("x-ratelimit-")}


async def test_actual_mode_charges_the_input_on_admission_and_the_output_after_the_answer(
    http: aiohttp.ClientSession,
) -> None:
    clock = FakeClock()
    config = SimulatorConfig(rpm=6000, tpm=600_000, charge_output="actual", latency_ms=600, clock=clock)
    body = responses_body(DOC_A)  # no max output tokens
    input_tokens = charge_of(body, charge_output="actual")
    capacity = 10_000  # 600000 / 60 * 1 s
    async with running_simulator(config) as sim:
        answer = asyncio.create_task(api_call(http, sim, body))
        await wait_for(lambda: sim.state.ledger.admitted_requests == 1)  # admitted, answer not generated yet
        in_flight = await get_json(http, f"{sim.url}/_sim/ledger")
        during = await bucket_headers(http, sim)
        assert not answer.done()
        status, headers, payload = await answer
        after = await bucket_headers(http, sim)
        ledger = await get_json(http, f"{sim.url}/_sim/ledger?series=1")
    usage = usage_of(payload)
    output = usage["output"]
    assert status == 200
    assert usage["input"] == input_tokens
    assert output > 0
    assert int(during["x-ratelimit-remaining-tokens"]) == capacity - input_tokens  # only the input so far
    assert (in_flight["rate_limit"]["admitted_tokens"], in_flight["rate_limit"]["output_charged_tokens"]) == (
        input_tokens,
        0,
    )
    # The 200 reports the bucket as of the response, after its output was charged.
    assert int(headers["x-ratelimit-remaining-tokens"]) == capacity - input_tokens - output
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert int(after["x-ratelimit-remaining-tokens"]) == capacity - input_tokens - output
    assert ledger["rate_limit"]["admitted_tokens"] == input_tokens + output
    assert ledger["rate_limit"]["output_charged_tokens"] == output
    assert ledger["series"] == [
        {
            "t": 0,
            "admitted": 1,
            "admitted_tokens": input_tokens + output,
            "billed_tokens": usage["total"],
            "rejected_429": 0,
        }
    ]


@pytest.mark.parametrize("charge_output", ["max", "actual"])
async def test_a_request_with_a_max_is_charged_the_max_up_front_in_both_modes(
    http: aiohttp.ClientSession, charge_output: ChargeOutput
) -> None:
    clock = FakeClock()  # frozen: no refill, so every header difference is a charge
    config = SimulatorConfig(
        rpm=6000, tpm=600_000, default_max_output_tokens=500, charge_output=charge_output, clock=clock
    )
    cases: list[tuple[str, dict[str, Any], int | None]] = [
        ("responses", responses_body(DOC_A, max_output_tokens=300), 300),
        ("chat/completions", chat_body(DOC_B, max_completion_tokens=200), 200),
        ("chat/completions", chat_body(DOC_B, max_tokens=100), 100),
        ("responses", responses_body(DOC_A), None),
        ("chat/completions", chat_body(DOC_B), None),
    ]
    spent: list[int] = []
    expected: list[int] = []
    outputs_charged = 0
    async with running_simulator(config) as sim:
        level = 10_000
        for path, body, max_output in cases:
            status, headers, payload = await api_call(http, sim, body, path)
            assert status == 200
            usage = usage_of(payload)
            remaining = int(headers["x-ratelimit-remaining-tokens"])
            spent.append(level - remaining)
            level = remaining
            if max_output is not None:
                expected.append(usage["input"] + max_output)
            elif charge_output == "max":
                expected.append(usage["input"] + 500)
            else:
                expected.append(usage["input"] + usage["output"])
                outputs_charged += usage["output"]
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert spent == expected
    assert ledger["rate_limit"]["admitted_tokens"] == sum(expected)
    assert ledger["rate_limit"]["output_charged_tokens"] == outputs_charged
    assert (outputs_charged > 0) is (charge_output == "actual")


async def test_actual_output_charge_can_leave_the_token_bucket_in_debt(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    body = responses_body(DOC_A)
    input_tokens = charge_of(body, charge_output="actual")
    rate = input_tokens + 10  # tokens per second; the bucket holds one second's worth
    tpm = rate * 60
    async with running_simulator(SimulatorConfig(tpm=tpm, charge_output="actual", clock=clock)) as sim:
        status, headers, payload = await api_call(http, sim, body)
        output = usage_of(payload)["output"]
        assert status == 200
        assert output > 10
        assert headers["x-ratelimit-remaining-tokens"] == "0"
        debt = output - 10
        assert headers["x-ratelimit-reset-tokens"] == format_duration((debt + rate) / rate)
        status, headers, error = await api_call(http, sim, body)  # must wait for the debt, then its input
        wait_s = (debt + input_tokens) / rate
        assert status == 429
        assert headers["retry-after-ms"] == str(ceil_ms(wait_s))
        assert (
            f"Limit {tpm}, Used {tpm}, Requested {input_tokens}. Please try again in {format_duration(wait_s)}."
            in error["error"]["message"]
        )
        clock.advance(ceil_ms(wait_s) / 1000)
        status, _, _ = await api_call(http, sim, body)
        assert status == 200


async def test_actual_mode_charges_no_output_without_a_billed_answer(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    faults = [FaultRule(fault=FaultKind.HTTP_500), FaultRule(fault=FaultKind.DROPPED_CONNECTION)]
    config = SimulatorConfig(tpm=600_000, charge_output="actual", faults=faults, clock=clock)
    body = responses_body(DOC_A)
    input_tokens = charge_of(body, charge_output="actual")
    async with running_simulator(config) as sim:
        status, headers, _ = await api_call(http, sim, body)
        assert status == 500
        assert int(headers["x-ratelimit-remaining-tokens"]) == 10_000 - input_tokens
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await api_call(http, sim, body)
        assert int((await bucket_headers(http, sim))["x-ratelimit-remaining-tokens"]) == 10_000 - 2 * input_tokens
        status, headers, payload = await api_call(http, sim, body)
        assert status == 200
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    output = usage_of(payload)["output"]
    assert int(headers["x-ratelimit-remaining-tokens"]) == 10_000 - 3 * input_tokens - output
    assert ledger["requests"]["by_status"] == {"500": 1, "dropped": 1, "400": 1, "200": 1}
    assert ledger["rate_limit"]["admitted_tokens"] == 3 * input_tokens + output
    assert ledger["rate_limit"]["output_charged_tokens"] == output


def test_set_limits_keeps_levels_clipped_to_the_new_capacity() -> None:
    clock = FakeClock()
    limits = TokenBucketLimits(rpm=600, tpm=6000, window_s=1.0, clock=clock)  # 10 requests, 100 tokens
    assert limits.admit("m", 30).admitted
    clock.advance(0.1)  # at the old rates: requests back to 10, tokens 70 -> 80
    limits.set_limits(tpm=60_000)  # 1000 tokens/s, capacity 1000: the level stays 80, it is not refilled
    assert header_ints(limits.headers("m")) == {
        "x-ratelimit-limit-requests": 600,
        "x-ratelimit-remaining-requests": 10,
        "x-ratelimit-limit-tokens": 60_000,
        "x-ratelimit-remaining-tokens": 80,
    }
    clock.advance(0.01)  # 10 ms at the new rate
    assert limits.headers("m")["x-ratelimit-remaining-tokens"] == "90"
    limits.set_limits(tpm=3000)  # 50 tokens/s, capacity 50: clipped
    assert limits.headers("m")["x-ratelimit-remaining-tokens"] == "50"
    assert limits.headers("m")["x-ratelimit-reset-tokens"] == "0s"
    limits.charge("m", 120)  # 70 in debt
    assert limits.headers("m")["x-ratelimit-reset-tokens"] == "2.4s"
    limits.set_limits(tpm=6000)  # the debt is kept: 20 tokens need 90 more at 100/s
    assert limits.admit("m", 20).retry_after_s == pytest.approx(0.9)
    assert limits.limits() == {"rpm": 600, "tpm": 6000, "window_s": 1.0}

    limits.set_limits(rpm=0, tpm=0)  # unlimited: static headers, never a 429
    assert limits.headers("m") == limits.headers() == StaticRateLimits().headers()
    assert all(limits.admit("m", 10**9).admitted for _ in range(5))
    limits.set_limits(rpm=60)  # limited again: a fresh, full bucket of one request
    assert limits.admit("m", 10**9).admitted
    assert limits.admit("m", 1).limited_by == "requests"
    assert limits.headers("m")["x-ratelimit-limit-tokens"] == StaticRateLimits().headers()["x-ratelimit-limit-tokens"]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="rpm must be an integer"):
            limits.set_limits(rpm=bad)  # type: ignore[arg-type]
    assert limits.limits() == {"rpm": 60, "tpm": 0, "window_s": 1.0}


async def test_limits_route_raises_and_lowers_the_limits_mid_run(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    body = responses_body(DOC_A, max_output_tokens=16)
    charge = charge_of(body)
    tpm = charge * 4 * 60  # four charges per second
    async with running_simulator(SimulatorConfig(rpm=120, tpm=tpm, clock=clock)) as sim:  # 2 requests/s, bucket 2
        url = f"{sim.url}/_sim/limits"
        assert await get_json(http, url) == {"rpm": 120, "tpm": tpm, "window_s": 1.0}
        assert [(await api_call(http, sim, body))[0] for _ in range(3)] == [200, 200, 429]

        # Up a tier: 10 requests/s. The empty request bucket stays empty, then refills five times faster.
        assert await post_json(http, url, {"rpm": 600}) == {"rpm": 600, "tpm": tpm, "window_s": 1.0}
        probe = await bucket_headers(http, sim)
        assert header_ints(probe) == {
            "x-ratelimit-limit-requests": 600,
            "x-ratelimit-remaining-requests": 0,
            "x-ratelimit-limit-tokens": tpm,
            "x-ratelimit-remaining-tokens": 2 * charge,
        }
        clock.advance(0.1)  # one request's worth at the new rate (the old one needed 0.5 s)
        status, headers, _ = await api_call(http, sim, body)
        assert status == 200
        assert headers["x-ratelimit-limit-requests"] == "600"
        assert headers["x-ratelimit-remaining-requests"] == "0"
        status, headers, error = await api_call(http, sim, body)
        assert (status, error["error"]["type"], headers["retry-after-ms"]) == (429, "requests", "100")
        assert "on requests per min (RPM): Limit 600, Used 600, Requested 1. Please try again in 100ms." in str(error)

        # Down a tier: 1 request and 1 charge per second; full buckets are clipped to the new capacity.
        clock.advance(5)
        lowered = {"rpm": 60, "tpm": charge * 60}
        assert await post_json(http, url, lowered) == {**lowered, "window_s": 1.0}
        assert header_ints(await bucket_headers(http, sim)) == {
            "x-ratelimit-limit-requests": 60,
            "x-ratelimit-remaining-requests": 1,
            "x-ratelimit-limit-tokens": charge * 60,
            "x-ratelimit-remaining-tokens": charge,
        }
        status, headers, _ = await api_call(http, sim, body)
        assert status == 200
        assert (headers["x-ratelimit-remaining-requests"], headers["x-ratelimit-remaining-tokens"]) == ("0", "0")
        assert headers["x-ratelimit-reset-requests"] == headers["x-ratelimit-reset-tokens"] == "1s"
        status, headers, error = await api_call(http, sim, body)
        assert (status, headers["retry-after-ms"]) == (429, "1000")
        clock.advance(1)
        assert (await api_call(http, sim, body))[0] == 200
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert (ledger["rate_limit"]["rpm_limit"], ledger["rate_limit"]["tpm_limit"]) == (60, charge * 60)
    assert ledger["rate_limit"]["admitted_requests"] == 5
    assert ledger["rate_limit"]["rejected_429"] == {"requests": 3, "tokens": 0}


async def test_limits_route_goes_from_unlimited_to_limited_and_back(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    body = responses_body(DOC_A)
    charge = charge_of(body)
    static = StaticRateLimits().headers()
    async with running_simulator(SimulatorConfig(clock=clock)) as sim:
        url = f"{sim.url}/_sim/limits"
        assert await get_json(http, url) == {"rpm": 0, "tpm": 0, "window_s": 1.0}
        status, headers, _ = await api_call(http, sim, body)
        assert (status, rate_headers_of(headers)) == (200, static)

        assert await post_json(http, url, {"rpm": 60, "tpm": 600_000}) == {"rpm": 60, "tpm": 600_000, "window_s": 1.0}
        status, headers, _ = await api_call(http, sim, body)  # a model seen before gets fresh, full buckets
        assert status == 200
        assert header_ints(headers) == {
            "x-ratelimit-limit-requests": 60,
            "x-ratelimit-remaining-requests": 0,
            "x-ratelimit-limit-tokens": 600_000,
            "x-ratelimit-remaining-tokens": 10_000 - charge,
        }
        status, headers, _ = await api_call(http, sim, body)
        assert (status, headers["retry-after-ms"]) == (429, "1000")

        async with http.post(f"{sim.url}/_sim/reset") as response:
            assert response.status == 200
        assert await get_json(http, url) == {"rpm": 60, "tpm": 600_000, "window_s": 1.0}  # reset keeps the limits
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
        assert (ledger["rate_limit"]["rpm_limit"], ledger["rate_limit"]["tpm_limit"]) == (60, 600_000)
        assert (await api_call(http, sim, body))[0] == 429  # ...and the buckets, which only refill with time

        assert await post_json(http, url, {"rpm": 0, "tpm": 0}) == {"rpm": 0, "tpm": 0, "window_s": 1.0}
        for _ in range(3):
            status, headers, _ = await api_call(http, sim, body)
            assert (status, rate_headers_of(headers)) == (200, static)

        assert await post_json(http, url, {"tpm": 600_000}) == {"rpm": 0, "tpm": 600_000, "window_s": 1.0}
        status, headers, _ = await api_call(http, sim, body)
        assert status == 200
        assert headers["x-ratelimit-limit-requests"] == static["x-ratelimit-limit-requests"]
        assert headers["x-ratelimit-limit-tokens"] == "600000"
        assert headers["x-ratelimit-remaining-tokens"] == str(10_000 - charge)
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert (ledger["rate_limit"]["rpm_limit"], ledger["rate_limit"]["tpm_limit"]) == (0, 600_000)


async def test_limits_route_rejects_bad_values(http: aiohttp.ClientSession) -> None:
    async with running_simulator(SimulatorConfig(rpm=60, clock=FakeClock())) as sim:
        url = f"{sim.url}/_sim/limits"
        bad_bodies: list[object] = [
            {"rpm": -1},
            {"tpm": -5},
            {"rpm": 1.5},
            {"rpm": "60"},
            {"rpm": True},
            {"rpm": None},
            {"tpm": 2**60},
            {"window_s": 2},
            {"burst": 3},
            [60],
            60,
        ]
        for bad in bad_bodies:
            async with http.post(url, json=bad) as response:
                assert response.status == 400, bad
                error = await response.json()
            validate_component("ErrorResponse", error)
            assert error["error"]["type"] == "invalid_request_error"
            assert error["error"]["message"].startswith("Invalid rate limits")
        for raw in (b"{not json", b""):
            async with http.post(url, data=raw) as response:
                assert response.status == 400
                validate_component("ErrorResponse", await response.json())
        assert await get_json(http, url) == {"rpm": 60, "tpm": 0, "window_s": 1.0}
        assert await post_json(http, url, {}) == {
            "rpm": 60,
            "tpm": 0,
            "window_s": 1.0,
        }  # nothing named, nothing changed


async def test_no_limit_headers_mode_sends_none_but_still_limits(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    config = SimulatorConfig(
        rpm=60,
        tpm=600_000,
        limit_headers="none",
        faults=[FaultRule(fault=FaultKind.HTTP_429, match="Contoso")],
        clock=clock,
    )
    async with running_simulator(config) as sim:
        answers = [
            await api_call(http, sim, responses_body(DOC_A)),
            await api_call(http, sim, responses_body(DOC_A)),  # the bucket of one request is empty
        ]
        clock.advance(1)
        answers.append(await api_call(http, sim, chat_body(DOC_B), "chat/completions"))  # an injected 429
        answers.append(await api_call(http, sim, responses_body(DOC_A, max_output_tokens=0)))
        others = []
        for method, path in (("GET", "/_sim/ledger"), ("GET", "/_sim/limits"), ("POST", "/v1/embeddings")):
            async with http.request(method, f"{sim.url}{path}", json={}) as response:
                others.append(response.headers)
    assert [status for status, _, _ in answers] == [200, 429, 429, 400]
    for headers in [headers for _, headers, _ in answers] + others:
        assert rate_headers_of(headers) == {}
    _, limited, error = answers[1]
    assert (limited["retry-after-ms"], limited["retry-after"]) == ("1000", "1")
    assert "on requests per min (RPM): Limit 60, Used 60, Requested 1. Please try again in 1s." in str(error)
    _, injected, _ = answers[2]
    assert (injected["retry-after-ms"], injected["retry-after"]) == ("100", "1")


async def test_azure_headers_mode_sends_placeholders_and_429s_without_retry_after(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    body = responses_body(DOC_A, max_output_tokens=100)
    charge = charge_of(body)
    tpm = charge * 2 * 60  # room for two requests per second
    config = SimulatorConfig(
        rpm=600,
        tpm=tpm,
        limit_headers="azure",
        faults=[FaultRule(fault=FaultKind.HTTP_429, match="Contoso")],
        clock=clock,
    )
    async with running_simulator(config) as sim:
        client = new_client(sim)
        try:
            seen = []
            for _ in range(2):
                raw = await client.responses.with_raw_response.create(**body)
                validate_component("Response", orjson.loads(raw.content))
                seen.append(raw.headers)
            with pytest.raises(openai.RateLimitError) as limited:
                await call_responses(client, body)
            clock.advance(0.5)
            await call_responses(client, body)
            clock.advance(1)
            with pytest.raises(openai.RateLimitError) as injected:
                await call_chat(client, chat_body(DOC_B))
        finally:
            await client.close()
        async with http.get(f"{sim.url}/_sim/ledger") as response:
            seen.append(response.headers)
            ledger = await response.json()
    async with running_simulator(SimulatorConfig(limit_headers="azure")) as unlimited:
        status, headers, _ = await api_call(http, unlimited, responses_body(DOC_A))
        assert status == 200
        seen.append(headers)
    for error in (limited.value, injected.value):
        seen.append(error.response.headers)
        assert "retry-after" not in error.response.headers
        assert "retry-after-ms" not in error.response.headers
        validate_component("ErrorResponse", orjson.loads(error.response.content))
    for headers in seen:
        assert rate_headers_of(headers) == AZURE_RATE_HEADERS
    assert AZURE_RATE_HEADERS == {
        "x-ratelimit-limit-requests": "-1",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-limit-tokens": "-1",
        "x-ratelimit-remaining-tokens": "0",
    }
    message = orjson.loads(limited.value.response.content)["error"]["message"]
    assert f"Limit {tpm}, Used {tpm}, Requested {charge}. Please try again in 500ms." in message
    assert re.search(r"Please try again in (\d+)ms\.", message) is not None  # where the wait is to be read from
    assert "Please try again in 100ms." in orjson.loads(injected.value.response.content)["error"]["message"]
    assert ledger["requests"]["by_status"] == {"200": 3, "429": 2}


@pytest.mark.parametrize("with_max", [False, True])
@pytest.mark.parametrize("limit_headers", ["openai", "none", "azure"])
@pytest.mark.parametrize("charge_output", ["max", "actual"])
async def test_request_too_large_in_every_mode(
    http: aiohttp.ClientSession, charge_output: ChargeOutput, limit_headers: LimitHeaders, with_max: bool
) -> None:
    body = responses_body(DOC_A, max_output_tokens=400) if with_max else responses_body(DOC_A)
    charge = charge_of(body, charge_output=charge_output)  # "actual", no max: the input alone is too much
    tpm = charge - 1
    config = SimulatorConfig(tpm=tpm, charge_output=charge_output, limit_headers=limit_headers, clock=FakeClock())
    async with running_simulator(config) as sim:
        client = new_client(sim)
        try:
            with pytest.raises(openai.RateLimitError) as caught:
                await call_responses(client, body)
        finally:
            await client.close()
        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    payload = orjson.loads(caught.value.response.content)
    validate_component("ErrorResponse", payload)
    assert payload == {
        "error": {
            "message": f"Request too large for {MODEL} in organization org-simulator on tokens per min (TPM): "
            f"Limit {tpm}, Requested {charge}. The input or output tokens must be reduced in order to run "
            "successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }
    headers = caught.value.response.headers
    assert "retry-after" not in headers  # waiting cannot help
    assert "retry-after-ms" not in headers
    rate_headers = rate_headers_of(headers)
    if limit_headers == "openai":
        tokens = tuple(rate_headers[f"x-ratelimit-{what}-tokens"] for what in ("limit", "remaining", "reset"))
        assert tokens == (str(tpm), str(tpm // 60), "0s")  # nothing was charged
    else:
        assert rate_headers == ({} if limit_headers == "none" else AZURE_RATE_HEADERS)
    assert ledger["rate_limit"]["rejected_429"] == {"requests": 0, "tokens": 1}
    assert (ledger["rate_limit"]["admitted_tokens"], ledger["billed"]["total_tokens"]) == (0, 0)


def test_config_rejects_unknown_modes() -> None:
    with pytest.raises(ValueError, match="charge_output"):
        SimulatorConfig(charge_output="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limit_headers"):
        SimulatorConfig(limit_headers="aws")  # type: ignore[arg-type]


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
            "--charge-output",
            "actual",
            "--azure-headers",
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
    assert (config.charge_output, config.limit_headers) == ("actual", "azure")
    assert config_from_args(parse_args(["--no-limit-headers"])).limit_headers == "none"

    defaults = config_from_args(parse_args([]))
    assert (defaults.rpm, defaults.tpm, defaults.limit_window_s, defaults.default_max_output_tokens) == (0, 0, 1, 1024)
    assert (defaults.fault_rates, defaults.max_faults_per_input, defaults.slow_response_ms) == ({}, 1, 30000)
    assert (defaults.charge_output, defaults.limit_headers) == ("max", "openai")


@pytest.mark.parametrize(
    "argv", [["--no-limit-headers", "--azure-headers"], ["--charge-output", "later"], ["--charge-output"]]
)
def test_cli_rejects_bad_limit_modes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(argv)
    assert "error:" in capsys.readouterr().err


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
