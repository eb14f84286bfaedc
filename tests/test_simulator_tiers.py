"""The simulator's service tiers, reasoning models and request ids, over real HTTP.

What is checked, and against what (the sources are in ``simulator/model_families.py`` and ``simulator/tiers.py``):

* ``service_tier``: each value of the spec's enums answered, the served tier reported in the body, logged per
  request and totalled per tier in ``GET /_sim/ledger?tiers=1`` (so a bill can be priced per tier); flex or
  priority on a model without it refused; a flex ``429 resource_unavailable`` storm at a configured rate,
  reproducible, unbilled, not taken from the rate-limit buckets, with ``retry-after``;
* reasoning models: ``temperature``/``top_p`` refused (except gpt-5.1+ at effort ``none``), ``max_tokens``
  refused on Chat, the efforts each family takes and its default, reasoning tokens that scale with the effort,
  are billed as output and count against the output cap (down to an answer with nothing visible);
* ``x-request-id`` on every response, unique, and in the request log.

Every request body sent is first checked against the spec's request schema (those meant to be refused for a
value outside the enum are checked to be invalid there too), and every answer against the response schema.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import jsonschema
import openai
import pytest

from simulator import RunningSimulator, SimulatorConfig, running_simulator
from simulator.__main__ import config_from_args, parse_args
from simulator.faults import fault_uniform
from simulator.model_families import MODEL_FAMILIES, model_family, reasoning_tokens
from simulator.request import parse_request
from tests.openapi_spec import validate_component
from tests.test_simulator import DOC_A, DOC_B, chat_body, responses_body, tokens, usage_of

API_KEY = "sk-tiers-test"
PATHS = {"responses": "responses", "chat": "chat/completions"}
REQUEST_COMPONENTS = {"responses": "CreateResponse", "chat": "CreateChatCompletionRequest"}
RESPONSE_COMPONENTS = {"responses": "Response", "chat": "CreateChatCompletionResponse"}
ENDPOINTS = ("responses", "chat")


class FakeClock:
    """A monotonic clock that only moves when told to (rate-limit buckets then never refill by themselves)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def body_for(endpoint: str, doc: str = DOC_A, /, **extra: Any) -> dict[str, Any]:
    """A structured-output body for ``endpoint`` (``model`` gpt-4o-mini unless given); ``effort`` goes where that
    API wants it (``reasoning.effort`` or ``reasoning_effort``)."""
    model = extra.pop("model", "gpt-4o-mini")
    effort = extra.pop("effort", None)
    if effort is not None:
        extra["reasoning" if endpoint == "responses" else "reasoning_effort"] = (
            {"effort": effort} if endpoint == "responses" else effort
        )
    maker = responses_body if endpoint == "responses" else chat_body
    return maker(doc, model=model, **extra)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with running_simulator(SimulatorConfig()) as running:
        yield running


async def call(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    endpoint: str,
    body: dict[str, Any],
    *,
    spec_valid: bool = True,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """POST ``body`` (checked against the spec's request schema first); status, headers and the checked answer.

    ``spec_valid=False``: the body is meant to be outside the spec (a value no enum has), and must be.
    """
    if spec_valid:
        validate_component(REQUEST_COMPONENTS[endpoint], body)
    else:
        with pytest.raises(jsonschema.ValidationError):
            validate_component(REQUEST_COMPONENTS[endpoint], body)
    async with http.post(f"{sim.base_url}/{PATHS[endpoint]}", json=body, headers=headers) as response:
        payload = await response.json()
        status, response_headers = response.status, response.headers
    validate_component(RESPONSE_COMPONENTS[endpoint] if status == 200 else "ErrorResponse", payload)
    return status, response_headers, payload


async def ok(http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str, body: dict[str, Any]) -> Any:
    status, _, payload = await call(http, sim, endpoint, body)
    assert status == 200, payload
    return payload


async def refused(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str, body: dict[str, Any], *, spec_valid: bool = True
) -> dict[str, Any]:
    """The error object of a 400 answer to ``body``."""
    status, _, payload = await call(http, sim, endpoint, body, spec_valid=spec_valid)
    assert status == 400, payload
    error: dict[str, Any] = payload["error"]
    assert error["type"] == "invalid_request_error"
    return error


async def sim_get(http: aiohttp.ClientSession, sim: RunningSimulator, path: str) -> Any:
    async with http.get(f"{sim.url}{path}") as response:
        assert response.status == 200
        return await response.json()


def visible_text(endpoint: str, payload: dict[str, Any]) -> str:
    if endpoint == "chat":
        return str(payload["choices"][0]["message"]["content"])
    messages = [item for item in payload["output"] if item["type"] == "message"]
    return "".join(part.get("text", "") for message in messages for part in message["content"])


# -- service tiers ------------------------------------------------------------------------------------------------

TIER_CASES = [
    (None, "gpt-4o-mini", "default"),
    ("auto", "gpt-4o-mini", "default"),
    ("default", "gpt-5", "default"),
    ("scale", "gpt-4o", "default"),
    ("flex", "gpt-5-mini", "flex"),
    ("flex", "o3", "flex"),
    ("flex", "o4-mini", "flex"),
    ("flex", "gpt-5.4-mini-2026-03-17", "flex"),
    ("priority", "gpt-4o", "priority"),
    ("priority", "gpt-5", "priority"),
    ("fast", "gpt-5.6-sol", "priority"),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_each_tier_is_answered_reported_logged_and_billed_per_tier(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str
) -> None:
    """The body reports the tier that served it; the log and the per-tier ledger agree, priced per tier."""
    served_usage: dict[str, Counter[str]] = {}
    for requested, model, served in TIER_CASES:
        extra = {} if requested is None else {"service_tier": requested}
        payload = await ok(http, sim, endpoint, body_for(endpoint, model=model, **extra))
        assert payload["service_tier"] == served, (requested, model)
        entry = (await sim_get(http, sim, "/_sim/requests"))[-1]
        assert (entry["status"], entry["service_tier"]) == (200, served)
        usage = usage_of(payload)
        served_usage.setdefault(served, Counter()).update(
            {"input_tokens": usage["input"], "output_tokens": usage["output"], "total_tokens": usage["total"]}
        )

    ledger = await sim_get(http, sim, "/_sim/ledger?tiers=1")
    tiers = ledger["tiers"]
    assert tiers["ok"] == dict(Counter(served for _, _, served in TIER_CASES))
    assert tiers["resource_unavailable_429"] == 0
    for tier, usage in served_usage.items():
        for key, value in usage.items():
            assert tiers["billed"][tier][key] == value, (tier, key)
    for key in ledger["billed"]:  # the per-tier totals add up to the overall bill
        assert sum(billed[key] for billed in tiers["billed"].values()) == ledger["billed"][key]
    assert "tiers" not in await sim_get(http, sim, "/_sim/ledger")  # opt-in: the default shape is unchanged

    # A bill at per-tier prices (USD per 1M tokens, made up), from the ledger alone, equals the sum per response.
    prices = {"default": (1.0, 4.0), "flex": (0.5, 2.0), "priority": (2.0, 8.0)}

    def bill(per_tier: Mapping[str, Mapping[str, int]]) -> float:
        return sum(
            (usage["input_tokens"] * prices[tier][0] + usage["output_tokens"] * prices[tier][1]) / 1e6
            for tier, usage in per_tier.items()
        )

    assert bill(tiers["billed"]) == pytest.approx(bill(served_usage))


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(
    ("tier", "model"),
    [
        ("flex", "gpt-4o"),
        ("flex", "gpt-4o-mini"),
        ("flex", "gpt-4.1-mini"),
        ("flex", "o1"),
        ("flex", "o3-mini"),
        ("flex", "gpt-5-chat-latest"),
        ("flex", "gpt-5-pro"),
        ("priority", "gpt-5-nano"),
        ("fast", "o3-mini"),
        ("priority", "some-local-model"),
    ],
)
async def test_a_tier_the_model_does_not_offer_is_a_400(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str, tier: str, model: str
) -> None:
    """No silent fallback to another tier: a 400 naming ``service_tier``, unbilled."""
    error = await refused(http, sim, endpoint, body_for(endpoint, model=model, service_tier=tier))
    assert error == {
        "message": f"Unsupported service_tier: {tier}",
        "type": "invalid_request_error",
        "param": "service_tier",
        "code": "unsupported_value",
    }
    ledger = await sim_get(http, sim, "/_sim/ledger?tiers=1")
    assert ledger["billed"]["total_tokens"] == 0
    assert ledger["tiers"]["billed"] == {}


async def test_a_tier_outside_the_enum_is_a_400_like_the_apis(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    """Values outside each endpoint's enum (``ultrafast`` is a Responses value only) get the generic 400."""
    for endpoint, tier in (("responses", "turbo"), ("chat", "turbo"), ("chat", "ultrafast"), ("chat", "Flex")):
        error = await refused(
            http, sim, endpoint, body_for(endpoint, model="gpt-5", service_tier=tier), spec_valid=False
        )
        assert (error["param"], error["code"]) == ("service_tier", "invalid_value")
        assert error["message"].startswith(f"Invalid value: '{tier}'. Supported values are: 'auto', 'default', ")
        supported = error["message"].partition("Supported values are: ")[2]
        assert ("'ultrafast'" in supported) is (endpoint == "responses")
    # ``ultrafast`` is in the Responses enum but access-controlled: refused like a tier the model lacks.
    error = await refused(http, sim, "responses", body_for("responses", model="gpt-5.6-sol", service_tier="ultrafast"))
    assert (error["param"], error["code"]) == ("service_tier", "unsupported_value")


def flex_refusals(bodies: list[dict[str, Any]], seed: int, rate: float) -> list[bool]:
    """Which of these first-time flex requests the simulator refuses: its documented draw, recomputed."""
    return [fault_uniform(seed, parse_request("responses", body).input_key(), 0, "flex") < rate for body in bodies]


async def test_a_flex_storm_is_unbilled_unadmitted_reproducible_and_asks_to_retry(http: aiohttp.ClientSession) -> None:
    """At ``flex_unavailable_rate`` the documented share of flex requests gets the 429, and nothing else does."""
    rate, seed = 0.4, 11
    docs = [f"Invoice INV-{n:04d} issued to Tailspin Toys for {n} crates of bolts." for n in range(40)]
    bodies = [body_for("responses", doc, model="gpt-5-mini", service_tier="flex") for doc in docs]
    expected = flex_refusals(bodies, seed, rate)
    assert 5 < sum(expected) < 35  # a storm, not all or nothing

    clock = FakeClock()  # frozen: the buckets only move when requests are admitted
    config = SimulatorConfig(rpm=10_000, tpm=100_000_000, clock=clock, flex_unavailable_rate=rate, fault_seed=seed)
    async with running_simulator(config) as sim:
        refusals, usages = [], []
        for body in bodies:
            status, headers, payload = await call(http, sim, "responses", body)
            refusals.append(status == 429)
            if status == 429:
                assert payload["error"] == {
                    "message": payload["error"]["message"],
                    "type": "resource_unavailable",
                    "param": None,
                    "code": "resource_unavailable",
                }
                assert "Resource unavailable" in payload["error"]["message"]
                assert (headers["retry-after"], headers["retry-after-ms"]) == ("1", "1000")
                assert headers["x-request-id"].startswith("req_")
            else:
                assert status == 200, payload
                assert payload["service_tier"] == "flex"
                usages.append(usage_of(payload))
        assert refusals == expected

        # Refused requests took nothing from the buckets: one request admitted per 200, none per 429.
        _, headers, _ = await call(http, sim, "responses", body_for("responses", DOC_B, model="gpt-5-mini"))
        assert int(headers["x-ratelimit-remaining-requests"]) == 10_000 // 60 - len(usages) - 1
        ledger = await sim_get(http, sim, "/_sim/ledger?tiers=1")
        log = await sim_get(http, sim, "/_sim/requests")

    assert ledger["requests"]["by_status"] == {"200": len(usages) + 1, "429": sum(expected)}
    assert ledger["rate_limit"]["admitted_requests"] == len(usages) + 1
    assert ledger["rate_limit"]["rejected_429"] == {"requests": 0, "tokens": 0}
    assert ledger["tiers"]["resource_unavailable_429"] == sum(expected)
    assert ledger["tiers"]["ok"] == {"flex": len(usages), "default": 1}
    assert ledger["tiers"]["billed"]["flex"]["total_tokens"] == sum(usage["total"] for usage in usages)
    assert [entry["service_tier"] for entry in log[:-1]] == [None if r else "flex" for r in refusals]


async def test_flex_retries_draw_afresh_and_auto_falls_back(http: aiohttp.ClientSession) -> None:
    """A refused document is served on a later flex try, or at once with ``auto``; other tiers never see 429s."""
    async with running_simulator(SimulatorConfig(flex_unavailable_rate=0.5, fault_seed=3)) as sim:
        flex = body_for("chat", model="o4-mini", service_tier="flex")
        statuses = [(await call(http, sim, "chat", flex))[0] for _ in range(30)]
        assert 429 in statuses
        assert 200 in statuses
        assert set(statuses) == {200, 429}
        assert (await ok(http, sim, "chat", body_for("chat", model="o4-mini", service_tier="auto")))[
            "service_tier"
        ] == "default"

        sim.state.flex.unavailable_rate = 1.0  # a storm that never ends, changed on the running simulator
        for tier in ("auto", "default", "priority"):
            payload = await ok(http, sim, "responses", body_for("responses", model="o3", service_tier=tier))
            assert payload["service_tier"] == ("priority" if tier == "priority" else "default")
        client = openai.AsyncOpenAI(
            base_url=sim.base_url, api_key=API_KEY, http_client=openai.DefaultAioHttpClient(), max_retries=0
        )
        try:
            with pytest.raises(openai.RateLimitError) as caught:
                await client.responses.create(**body_for("responses", model="o3", service_tier="flex"))
        finally:
            await client.close()
        assert caught.value.code == "resource_unavailable"
        assert caught.value.response.headers["retry-after"] == "1"


def test_the_flex_rate_is_a_config_knob_and_a_flag() -> None:
    assert config_from_args(parse_args(["--flex-unavailable-rate", "0.25"])).flex_unavailable_rate == 0.25
    assert config_from_args(parse_args([])).flex_unavailable_rate == 0.0
    for bad in ("1.5", "-0.1", "nan", "x"):
        with pytest.raises(SystemExit):
            parse_args(["--flex-unavailable-rate", bad])
    with pytest.raises(ValueError, match="flex_unavailable_rate"):
        SimulatorConfig(flex_unavailable_rate=2.0)


# -- reasoning models: sampling parameters and max_tokens ---------------------------------------------------------

REASONING_MODELS = ["o1", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5-mini-2025-08-07"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("model", REASONING_MODELS)
async def test_temperature_and_top_p_are_refused_by_reasoning_models(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str, model: str
) -> None:
    for name, value in (("temperature", 0.2), ("temperature", 1), ("top_p", 0.9)):
        error = await refused(http, sim, endpoint, body_for(endpoint, model=model, **{name: value}))
        assert error == {
            "message": f"Unsupported parameter: '{name}' is not supported with this model.",
            "type": "invalid_request_error",
            "param": name,
            "code": "unsupported_parameter",
        }


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_temperature_is_accepted_without_reasoning(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str
) -> None:
    """gpt-4o (and the other non-reasoning models) take it; gpt-5.1 and later only at effort ``none``."""
    for model, effort in (
        ("gpt-4o", None),
        ("gpt-4.1-mini", None),
        ("gpt-5-chat-latest", None),
        ("gpt-5.1", "none"),
        ("gpt-5.1", None),  # none is gpt-5.1's default
        ("gpt-5.2", "none"),
        ("gpt-5.6-terra", None),
    ):
        body = body_for(endpoint, model=model, temperature=0.2, top_p=0.5, effort=effort)
        payload = await ok(http, sim, endpoint, body)
        assert usage_of(payload)["reasoning"] == 0
        if endpoint == "responses":
            assert payload["temperature"] == 0.2

    for model, effort in (("gpt-5.1", "low"), ("gpt-5.2", "high"), ("gpt-5.4", "medium"), ("gpt-5.6-sol", "max")):
        error = await refused(http, sim, endpoint, body_for(endpoint, model=model, temperature=0.2, effort=effort))
        assert (error["param"], error["code"]) == ("temperature", "unsupported_parameter")


@pytest.mark.parametrize("model", ["o1", "o3-mini", "o4-mini", "gpt-5", "gpt-5-nano", "gpt-5.1", "gpt-5.4-mini"])
async def test_max_tokens_is_refused_on_chat_for_reasoning_models(
    http: aiohttp.ClientSession, sim: RunningSimulator, model: str
) -> None:
    error = await refused(http, sim, "chat", body_for("chat", model=model, max_tokens=2000))
    assert error == {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
    payload = await ok(http, sim, "chat", body_for("chat", model=model, max_completion_tokens=2000))
    assert payload["choices"][0]["finish_reason"] == "stop"


async def test_max_tokens_and_max_completion_tokens_work_without_reasoning(
    http: aiohttp.ClientSession, sim: RunningSimulator
) -> None:
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5-chat-latest"):
        for key in ("max_tokens", "max_completion_tokens"):
            payload = await ok(http, sim, "chat", body_for("chat", model=model, **{key: 16}))
            assert payload["choices"][0]["finish_reason"] == "length"
            assert usage_of(payload)["output"] == 16


# -- reasoning effort ---------------------------------------------------------------------------------------------

EFFORT_CASES = [
    # (model, accepted efforts, refused efforts, default)
    ("o1", ("low", "medium", "high"), ("none", "minimal", "xhigh"), "medium"),
    ("o3", ("low", "medium", "high"), ("none", "minimal", "xhigh", "max"), "medium"),
    ("o3-mini-2025-01-31", ("low", "medium", "high"), ("minimal",), "medium"),
    ("o4-mini", ("low", "medium", "high"), ("none", "minimal"), "medium"),
    ("gpt-5", ("minimal", "low", "medium", "high"), ("none", "xhigh"), "medium"),
    ("gpt-5-mini", ("minimal", "low", "medium", "high"), ("none", "xhigh"), "medium"),
    ("gpt-5-nano", ("minimal", "low", "medium", "high"), ("none", "max"), "medium"),
    ("gpt-5-pro", ("high",), ("medium", "low"), "high"),
    ("gpt-5.1", ("none", "low", "medium", "high"), ("minimal", "xhigh"), "none"),
    ("gpt-5.2", ("none", "low", "medium", "high", "xhigh"), ("minimal", "max"), "none"),
    ("gpt-5.4-nano", ("none", "low", "medium", "high", "xhigh"), ("minimal",), "none"),
    ("gpt-5.5", ("none", "xhigh"), ("minimal", "max"), "none"),
    ("gpt-5.6-luna", ("none", "low", "xhigh", "max"), ("minimal",), "none"),
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize(("model", "accepted", "rejected", "default"), EFFORT_CASES)
async def test_efforts_per_family(
    http: aiohttp.ClientSession,
    sim: RunningSimulator,
    endpoint: str,
    model: str,
    accepted: tuple[str, ...],
    rejected: tuple[str, ...],
    default: str,
) -> None:
    """Each family takes its own efforts (the rest a 400 listing them) and reasons at its default when none is sent."""
    param = "reasoning.effort" if endpoint == "responses" else "reasoning_effort"
    for effort in accepted:
        payload = await ok(http, sim, endpoint, body_for(endpoint, model=model, effort=effort))
        assert (await sim_get(http, sim, "/_sim/requests"))[-1]["reasoning_effort"] == effort
        if endpoint == "responses":
            assert payload["reasoning"]["effort"] == effort
    supported = model_family(model).efforts
    for effort in rejected:
        error = await refused(http, sim, endpoint, body_for(endpoint, model=model, effort=effort))
        assert (error["param"], error["code"]) == (param, "unsupported_value")
        assert error["message"].startswith(f"Unsupported value: '{effort}' is not supported with the '{model}' model.")
        assert all(f"'{value}'" in error["message"] for value in supported)

    payload = await ok(http, sim, endpoint, body_for(endpoint, model=model))
    assert (await sim_get(http, sim, "/_sim/requests"))[-1]["reasoning_effort"] == default
    if endpoint == "responses":
        assert payload["reasoning"]["effort"] == default
        kinds = [item["type"] for item in payload["output"]]
        assert kinds == (["message"] if default == "none" else ["reasoning", "message"])


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_effort_on_a_model_that_takes_none_and_values_outside_the_enum(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str
) -> None:
    param = "reasoning.effort" if endpoint == "responses" else "reasoning_effort"
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5-chat-latest", "o1-mini"):
        error = await refused(http, sim, endpoint, body_for(endpoint, model=model, effort="low"))
        assert error == {
            "message": f"Unsupported parameter: '{param}' is not supported with this model.",
            "type": "invalid_request_error",
            "param": param,
            "code": "unsupported_parameter",
        }
    error = await refused(http, sim, endpoint, body_for(endpoint, model="gpt-5", effort="extreme"), spec_valid=False)
    assert (error["param"], error["code"]) == (param, "invalid_value")
    assert error["message"] == (
        "Invalid value: 'extreme'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', 'xhigh', "
        "and 'max'."
    )
    # A non-reasoning model without an effort reports none (Responses: ``reasoning.effort`` null, no item).
    payload = await ok(http, sim, endpoint, body_for(endpoint, model="gpt-4o"))
    assert usage_of(payload)["reasoning"] == 0
    if endpoint == "responses":
        assert payload["reasoning"]["effort"] is None
        assert [item["type"] for item in payload["output"]] == ["message"]
    if endpoint == "responses":  # a summary-only ``reasoning`` object carries no effort: gpt-4o takes it
        await ok(http, sim, endpoint, body_for(endpoint, model="gpt-4o", reasoning={"summary": "auto"}))


# -- reasoning tokens ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_reasoning_tokens_scale_with_effort_and_are_billed_as_output(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str
) -> None:
    """``multiplier(effort) * (32 + visible tokens)``, inside the output tokens; the same answer at every effort."""
    runs = [
        ("gpt-5", "minimal", 0),
        ("gpt-5", "low", 1),
        ("gpt-5", "medium", 2),
        ("gpt-5", None, 2),
        ("gpt-5", "high", 4),
        ("gpt-5.2", "none", 0),
        ("gpt-5.2", "xhigh", 8),
        ("gpt-5.6", "max", 16),
        ("o3", "high", 4),
    ]
    texts: dict[str, set[str]] = {}
    usages = []
    for model, effort, multiplier in runs:
        payload = await ok(http, sim, endpoint, body_for(endpoint, model=model, effort=effort))
        text = visible_text(endpoint, payload)
        texts.setdefault(model, set()).add(text)
        usage = usage_of(payload)
        usages.append(usage)
        assert usage["reasoning"] == multiplier * (32 + tokens(text)), (model, effort)
        assert usage["output"] == tokens(text) + usage["reasoning"]
        assert usage["total"] == usage["input"] + usage["output"]
    assert all(len(seen) == 1 for seen in texts.values())  # effort changes the thinking, not the answer
    by_effort = [usage["reasoning"] for usage in usages[:5]]  # gpt-5: minimal, low, medium, default, high
    assert by_effort == sorted(by_effort)
    assert by_effort[0] == 0 < by_effort[1] < by_effort[2] < by_effort[4]

    billed = (await sim_get(http, sim, "/_sim/ledger"))["billed"]
    assert billed["reasoning_tokens"] == sum(usage["reasoning"] for usage in usages)
    assert billed["output_tokens"] == sum(usage["output"] for usage in usages)


def test_the_reasoning_token_rule() -> None:
    assert [reasoning_tokens(effort, 100) for effort in ("none", "minimal", "low", "medium", "high", "xhigh")] == [
        0,
        0,
        132,
        264,
        528,
        1056,
    ]
    assert reasoning_tokens("max", 0) == 16 * 32
    assert reasoning_tokens(None, 100) == 0


@pytest.mark.parametrize("endpoint", ENDPOINTS)
async def test_reasoning_that_uses_up_the_cap_leaves_nothing_visible(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str
) -> None:
    """Reasoning counts against the cap first; all of it spent on reasoning: incomplete/length, no output text."""
    cap_key = "max_output_tokens" if endpoint == "responses" else "max_completion_tokens"
    full = await ok(http, sim, endpoint, body_for(endpoint, model="gpt-5-mini", effort="high"))
    reasoning = usage_of(full)["reasoning"]
    visible = usage_of(full)["output"] - reasoning
    assert reasoning > 100

    payload = await ok(http, sim, endpoint, body_for(endpoint, model="gpt-5-mini", effort="high", **{cap_key: 100}))
    usage = usage_of(payload)
    assert (usage["output"], usage["reasoning"]) == (100, 100)
    assert visible_text(endpoint, payload) == ""
    if endpoint == "responses":
        assert payload["status"] == "incomplete"
        assert payload["incomplete_details"] == {"reason": "max_output_tokens"}
        assert [item["type"] for item in payload["output"]] == ["reasoning"]
    else:
        choice = payload["choices"][0]
        assert (choice["finish_reason"], choice["message"]["content"], choice["message"]["refusal"]) == (
            "length",
            "",
            None,
        )

    # Room for the reasoning and part of the answer: the answer is cut, the reasoning is whole.
    cap = reasoning + visible // 2
    payload = await ok(http, sim, endpoint, body_for(endpoint, model="gpt-5-mini", effort="high", **{cap_key: cap}))
    usage = usage_of(payload)
    assert (usage["output"], usage["reasoning"]) == (cap, reasoning)
    cut = visible_text(endpoint, payload)
    assert cut
    assert visible_text(endpoint, full).startswith(cut)
    assert (payload["status"] if endpoint == "responses" else payload["choices"][0]["finish_reason"]) in (
        "incomplete",
        "length",
    )

    # The same cap without reasoning (gpt-5.1 at its default effort, none) is not reached.
    payload = await ok(http, sim, endpoint, body_for(endpoint, model="gpt-5.1", **{cap_key: 100}))
    assert usage_of(payload)["reasoning"] == 0
    assert (payload["status"] if endpoint == "responses" else payload["choices"][0]["finish_reason"]) in (
        "completed",
        "stop",
    )


async def test_the_sdk_reads_an_answer_with_only_reasoning(sim: RunningSimulator) -> None:
    client = openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=API_KEY, http_client=openai.DefaultAioHttpClient(), max_retries=0
    )
    try:
        response = await client.responses.create(
            **body_for("responses", model="o4-mini", effort="high", max_output_tokens=64)
        )
        chat = await client.chat.completions.create(
            **body_for("chat", model="o4-mini", effort="high", max_completion_tokens=64)
        )
    finally:
        await client.close()
    assert response.status == "incomplete"
    assert response.output_text == ""
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 64
    assert chat.choices[0].finish_reason == "length"
    assert chat.usage is not None
    assert chat.usage.completion_tokens_details is not None
    assert chat.usage.completion_tokens_details.reasoning_tokens == 64


def test_the_family_table_resolves_snapshots_and_later_releases() -> None:
    assert model_family("gpt-5-mini-2025-08-07").name == "gpt-5-mini"
    assert model_family("gpt-5-chat-latest").reasoning is False
    assert model_family("gpt-5.6-sol").name == "gpt-5.6"
    assert model_family("gpt-5.4-mini-2026-03-17").name == "gpt-5.4-mini"
    assert model_family("gpt-5.3-codex").name == "gpt-5.2"  # an unlisted 5.x: the closest listed one before it
    assert model_family("gpt-5.9").name == "gpt-5.6"
    assert model_family("o3-2025-04-16").name == "o3"
    assert model_family("o7-mini").name == "o-series"
    assert model_family("gpt-4o-2024-08-06").name == "gpt-4o"
    assert model_family("mistral-small").reasoning is False
    reasoning = {name for name, family in MODEL_FAMILIES.items() if family.reasoning}
    assert {"o1", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5.1", "gpt-5.2"} <= reasoning
    assert not {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-5-chat-latest"} & reasoning


# -- request ids --------------------------------------------------------------------------------------------------


async def test_every_response_carries_a_unique_request_id_that_the_log_keeps(http: aiohttp.ClientSession) -> None:
    config = SimulatorConfig(require_api_key=API_KEY, rpm=120, clock=FakeClock(), flex_unavailable_rate=1.0)
    auth = {"Authorization": f"Bearer {API_KEY}"}
    ids: list[str] = []
    async with running_simulator(config) as sim:

        async def sent(method: str, path: str, **kwargs: Any) -> int:
            async with http.request(method, f"{sim.url}{path}", **kwargs) as response:
                await response.read()
                ids.append(response.headers["x-request-id"])
                return response.status

        statuses = [
            await sent("POST", "/v1/responses", json=body_for("responses"), headers=auth),
            await sent("POST", "/v1/chat/completions", json=body_for("chat"), headers=auth),
            await sent("POST", "/v1/responses", json=body_for("responses", model="gpt-5", temperature=0), headers=auth),
            await sent("POST", "/v1/responses", json=body_for("responses")),  # no key: 401
            await sent(
                "POST", "/v1/responses", json=body_for("responses", model="o3", service_tier="flex"), headers=auth
            ),
            await sent(
                "POST", "/v1/chat/completions", json=body_for("chat", DOC_B), headers=auth
            ),  # rpm 120 = 2 a second: 429
            await sent("POST", "/v1/responses/input_tokens", json=body_for("responses"), headers=auth),
            await sent("GET", "/v1/models", headers=auth),
            await sent("GET", "/v1/files/file-nope", headers=auth),
        ]
        form = aiohttp.FormData()
        form.add_field("purpose", "user_data")
        form.add_field("file", b"hello", filename="note.txt", content_type="text/plain")
        statuses.append(await sent("POST", "/v1/files", data=form, headers=auth))
        file_id = (await sim_get(http, sim, "/_sim/files"))["files"][0]["id"]
        statuses.append(await sent("GET", f"/v1/files/{file_id}/content", headers=auth))
        statuses.append(await sent("DELETE", f"/v1/files/{file_id}", headers=auth))
        statuses.append(await sent("GET", "/_sim/ledger"))
        log = await sim_get(http, sim, "/_sim/requests")

    assert statuses == [200, 200, 400, 401, 429, 429, 200, 404, 404, 200, 200, 200, 200]
    assert len(set(ids)) == len(ids)
    assert all(rid.startswith("req_") and len(rid) == 36 for rid in ids)
    logged = [(entry["endpoint"], entry["status"], entry["request_id"]) for entry in log]
    assert logged == [
        ("responses", 200, ids[0]),
        ("chat.completions", 200, ids[1]),
        ("responses", 400, ids[2]),
        ("responses", 401, ids[3]),
        ("responses", 429, ids[4]),
        ("chat.completions", 429, ids[5]),
        ("responses.input_tokens", 200, ids[6]),
        ("files.retrieve", 404, ids[8]),
        ("files.create", 200, ids[9]),
        ("files.content", 200, ids[10]),
        ("files.delete", 200, ids[11]),
    ]
