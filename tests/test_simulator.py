"""Tests for the OpenAI-compatible simulator.

They talk to a real simulator over real HTTP (port 0) with the real ``openai``
SDK, and check bodies against the official OpenAPI spec, because the point of
the simulator is that code tested against it behaves the same against OpenAI.
"""

from __future__ import annotations

import ast
import asyncio
import math
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import openai
import orjson
import pydantic
import pytest

from simulator import FaultKind, FaultRule, RunningSimulator, SimulatorConfig, SimulatorState, running_simulator
from simulator.corrupt import INVALID_MARKER, violate
from simulator.generate import document_words, generate_instance
from tests.openapi_spec import validate_component

REPO_ROOT = Path(__file__).resolve().parents[1]

INVOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "invoice_number": {"type": "string"},
        "issue_date": {"type": "string", "format": "date"},
        "customer": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "email": {"anyOf": [{"type": "string", "format": "email"}, {"type": "null"}]},
            },
            "required": ["name", "email"],
            "additionalProperties": False,
        },
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
        "total": {"type": "number", "minimum": 0},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"description": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
                "required": ["description", "quantity"],
                "additionalProperties": False,
            },
        },
        "paid": {"type": "boolean"},
    },
    "required": ["invoice_number", "issue_date", "customer", "currency", "total", "lines", "paid"],
    "additionalProperties": False,
}

DOC_A = "Invoice INV-1001 issued to Northwind Traders for forty widgets, payable within thirty days."
DOC_B = "Invoice INV-2002 issued to Contoso Pharmaceuticals for consulting hours in Rotterdam."
SYSTEM = "Extract the invoice fields from the user's document."
LONG_SYSTEM = "Follow the extraction policy carefully and never invent values. " * 120  # ~7.7 kB, ~1900 tokens
RATE_LIMIT_HEADERS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


# -- helpers ------------------------------------------------------------------------------------------------------


def responses_body(
    doc: str, *, model: str = "gpt-4o-mini", schema: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "instructions": SYSTEM,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": doc}]}],
        "text": {
            "format": {"type": "json_schema", "name": "invoice", "schema": schema or INVOICE_SCHEMA, "strict": True}
        },
        "store": False,
    }
    body.update(extra)
    return body


def chat_body(
    doc: str, *, model: str = "gpt-4o-mini", schema: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": doc}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "invoice", "schema": schema or INVOICE_SCHEMA, "strict": True},
        },
    }
    body.update(extra)
    return body


def new_client(sim: RunningSimulator, api_key: str = "sk-test") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=api_key, http_client=openai.DefaultAioHttpClient(), max_retries=0
    )


async def call_responses(client: openai.AsyncOpenAI, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Create a response; return the raw JSON body and the SDK's parsed object."""
    raw = await client.responses.with_raw_response.create(**body)
    return orjson.loads(raw.content), raw.parse()


async def call_chat(client: openai.AsyncOpenAI, body: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    raw = await client.chat.completions.with_raw_response.create(**body)
    return orjson.loads(raw.content), raw.parse()


def response_text(payload: dict[str, Any]) -> str:
    message = payload["output"][-1]
    assert message["type"] == "message"
    return str(message["content"][0]["text"])


def assert_valid(schema: dict[str, Any], instance: object) -> None:
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).validate(
        instance
    )


def is_valid(schema: dict[str, Any], instance: object) -> bool:
    return bool(jsonschema.Draft202012Validator(schema).is_valid(instance))


def usage_of(payload: dict[str, Any]) -> dict[str, int]:
    """Normalised usage of either API's body."""
    usage = payload["usage"]
    if "input_tokens" in usage:
        return {
            "input": usage["input_tokens"],
            "cached": usage["input_tokens_details"]["cached_tokens"],
            "output": usage["output_tokens"],
            "reasoning": usage["output_tokens_details"]["reasoning_tokens"],
            "total": usage["total_tokens"],
        }
    return {
        "input": usage["prompt_tokens"],
        "cached": usage["prompt_tokens_details"]["cached_tokens"],
        "output": usage["completion_tokens"],
        "reasoning": usage["completion_tokens_details"]["reasoning_tokens"],
        "total": usage["total_tokens"],
    }


def tokens(text: str) -> int:
    return math.ceil(len(text.encode()) / 4)


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    async with running_simulator(SimulatorConfig(), port=0) as running:
        yield running


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[openai.AsyncOpenAI]:
    async_client = new_client(sim)
    yield async_client
    await async_client.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200
        return await response.json()


async def set_faults(http: aiohttp.ClientSession, sim: RunningSimulator, rules: list[dict[str, Any]]) -> None:
    async with http.post(f"{sim.url}/_sim/faults", json=rules) as response:
        assert response.status == 200, await response.text()


# -- the two APIs, against the spec and the SDK -------------------------------------------------------------------


async def test_responses_api_roundtrip_matches_spec(sim: RunningSimulator, client: openai.AsyncOpenAI) -> None:
    body = responses_body(DOC_A, max_output_tokens=4000, temperature=0.2, prompt_cache_key="invoices")
    validate_component("CreateResponse", body)
    raw = await client.responses.with_raw_response.create(**body)
    payload = orjson.loads(raw.content)
    validate_component("Response", payload)
    for header in ("x-request-id", "openai-processing-ms", *RATE_LIMIT_HEADERS):
        assert raw.headers.get(header), header

    parsed = raw.parse()
    assert parsed.id.startswith("resp_")
    assert parsed.status == "completed"
    assert [item.type for item in parsed.output] == ["message"]
    assert_valid(INVOICE_SCHEMA, orjson.loads(parsed.output_text))
    assert parsed.usage is not None
    assert parsed.usage.total_tokens == parsed.usage.input_tokens + parsed.usage.output_tokens
    assert parsed.usage.output_tokens == tokens(parsed.output_text)
    assert parsed.usage.output_tokens_details.reasoning_tokens == 0

    sent = sim.state.requests.snapshot()[-1]
    assert sent["endpoint"] == "responses"
    validate_component("CreateResponse", sent["body"])  # what the SDK put on the wire


async def test_chat_completions_roundtrip_matches_spec(sim: RunningSimulator, client: openai.AsyncOpenAI) -> None:
    body = chat_body(DOC_A, max_completion_tokens=4000, temperature=0)
    validate_component("CreateChatCompletionRequest", body)
    payload, parsed = await call_chat(client, body)
    validate_component("CreateChatCompletionResponse", payload)

    assert parsed.id.startswith("chatcmpl-")
    choice = parsed.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.refusal is None
    assert_valid(INVOICE_SCHEMA, orjson.loads(choice.message.content))
    assert parsed.usage.total_tokens == parsed.usage.prompt_tokens + parsed.usage.completion_tokens
    assert payload["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert payload["service_tier"] == "default"
    assert payload["system_fingerprint"]

    sent = sim.state.requests.snapshot()[-1]
    assert sent["endpoint"] == "chat.completions"
    validate_component("CreateChatCompletionRequest", sent["body"])


class Line(pydantic.BaseModel):
    description: str
    quantity: int


class Invoice(pydantic.BaseModel):
    invoice_number: str
    customer: str | None
    lines: list[Line]


async def test_sdk_structured_output_helpers_parse(client: openai.AsyncOpenAI) -> None:
    """The SDK's ``parse`` helpers send their own strict schema; the simulator must accept and satisfy it."""
    response = await client.responses.parse(model="gpt-4o", instructions=SYSTEM, input=DOC_A, text_format=Invoice)
    assert isinstance(response.output_parsed, Invoice)
    chat = await client.chat.completions.parse(
        model="gpt-4o", messages=[{"role": "user", "content": DOC_A}], response_format=Invoice
    )
    assert isinstance(chat.choices[0].message.parsed, Invoice)


@pytest.mark.parametrize("model", ["o4-mini", "gpt-5-mini"])
async def test_reasoning_models_bill_reasoning_tokens(client: openai.AsyncOpenAI, model: str) -> None:
    payload, _ = await call_responses(client, responses_body(DOC_A, model=model))
    validate_component("Response", payload)
    assert [item["type"] for item in payload["output"]] == ["reasoning", "message"]
    assert payload["output"][0]["id"].startswith("rs_")
    usage = usage_of(payload)
    assert 0 < usage["reasoning"] < usage["output"]
    assert usage["output"] == usage["reasoning"] + tokens(response_text(payload))

    chat_payload, _ = await call_chat(client, chat_body(DOC_A, model=model))
    validate_component("CreateChatCompletionResponse", chat_payload)
    assert usage_of(chat_payload)["reasoning"] == usage["reasoning"]


async def test_output_is_deterministic_and_document_dependent(client: openai.AsyncOpenAI) -> None:
    first, _ = await call_responses(client, responses_body(DOC_A))
    second, _ = await call_responses(client, responses_body(DOC_A))
    other, _ = await call_responses(client, responses_body(DOC_B))
    chat, _ = await call_chat(client, chat_body(DOC_A))
    assert response_text(first) == response_text(second)
    assert response_text(first) != response_text(other)
    # Same model, schema and text through the other API: same answer.
    assert chat["choices"][0]["message"]["content"] == response_text(first)
    # Strings are made of the document's own words.
    customer = orjson.loads(response_text(first))["customer"]["name"]
    assert set(customer.split()) <= set(document_words(f"{SYSTEM}\n{DOC_A}"))


async def test_seed_changes_output() -> None:
    texts = []
    for seed in (0, 1):
        async with running_simulator(SimulatorConfig(seed=seed)) as sim:
            client = new_client(sim)
            try:
                payload, _ = await call_responses(client, responses_body(DOC_A))
            finally:
                await client.close()
            texts.append(response_text(payload))
    assert texts[0] != texts[1]


# -- token accounting ---------------------------------------------------------------------------------------------


async def test_input_tokens_follow_the_documented_rule(client: openai.AsyncOpenAI) -> None:
    """Schema JSON + every message (instructions included) at ceil(bytes/4), min 1, + 4 per message."""
    payload, _ = await call_responses(client, responses_body(DOC_A))
    schema_json = orjson.dumps(INVOICE_SCHEMA, option=orjson.OPT_SORT_KEYS).decode()
    expected = tokens(schema_json) + (tokens(SYSTEM) + 4) + (tokens(DOC_A) + 4)
    assert usage_of(payload)["input"] == expected

    chat_payload, _ = await call_chat(client, chat_body(DOC_A))
    assert usage_of(chat_payload)["input"] == expected


async def test_prompt_cache_hits_on_repeated_long_prefix(client: openai.AsyncOpenAI) -> None:
    schema_json = orjson.dumps(INVOICE_SCHEMA, option=orjson.OPT_SORT_KEYS).decode()
    prefix_tokens = tokens(schema_json) + tokens(LONG_SYSTEM) + 4
    assert prefix_tokens >= 1024

    def body(doc: str, key: str) -> dict[str, Any]:
        return responses_body(doc, instructions=LONG_SYSTEM, prompt_cache_key=key)

    first, _ = await call_responses(client, body(DOC_A, "tenant-1"))
    assert usage_of(first)["cached"] == 0
    second, _ = await call_responses(client, body(DOC_B, "tenant-1"))  # same prefix, other document
    cached = usage_of(second)["cached"]
    assert cached == prefix_tokens // 128 * 128
    assert cached % 128 == 0
    assert 1024 <= cached <= usage_of(second)["input"]
    other_key, _ = await call_responses(client, body(DOC_B, "tenant-2"))
    assert usage_of(other_key)["cached"] == 0

    # Chat: the long system message is the shared prefix; no key given, so routing uses the prompt head.
    chat_messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": DOC_A}]
    chat_first, _ = await call_chat(client, chat_body(DOC_A, messages=chat_messages))
    chat_messages[1]["content"] = DOC_B
    chat_second, _ = await call_chat(client, chat_body(DOC_B, messages=chat_messages))
    assert usage_of(chat_first)["cached"] == 0
    assert usage_of(chat_second)["cached"] == prefix_tokens // 128 * 128

    # Short prompts are never cached.
    short_first, _ = await call_responses(client, responses_body(DOC_A, prompt_cache_key="short"))
    short_second, _ = await call_responses(client, responses_body(DOC_A, prompt_cache_key="short"))
    assert usage_of(short_first)["cached"] == usage_of(short_second)["cached"] == 0


async def test_max_output_tokens_truncates(client: openai.AsyncOpenAI) -> None:
    payload, parsed = await call_responses(client, responses_body(DOC_A, max_output_tokens=16))
    validate_component("Response", payload)
    assert parsed.status == "incomplete"
    assert parsed.incomplete_details is not None
    assert parsed.incomplete_details.reason == "max_output_tokens"
    assert usage_of(payload)["output"] == 16
    with pytest.raises(ValueError, match=r"."):
        orjson.loads(response_text(payload))

    chat_payload, chat = await call_chat(client, chat_body(DOC_A, max_completion_tokens=16))
    validate_component("CreateChatCompletionResponse", chat_payload)
    assert chat.choices[0].finish_reason == "length"
    assert usage_of(chat_payload)["output"] == 16
    legacy, _ = await call_chat(client, chat_body(DOC_A, max_tokens=16))
    assert legacy["choices"][0]["finish_reason"] == "length"


async def test_ledger_bills_exactly_the_successful_usage(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await set_faults(
        http,
        sim,
        [
            {"match": "Contoso", "fault": "refusal", "times": 1},
            {"match": "Contoso", "fault": "http_500", "times": 1},
        ],
    )
    usages = []
    for body in (responses_body(DOC_A), responses_body(DOC_A, model="o3"), responses_body(DOC_B)):
        payload, _ = await call_responses(client, body)
        usages.append(usage_of(payload))
    with pytest.raises(openai.InternalServerError):
        await call_chat(client, chat_body(DOC_B))
    payload, _ = await call_chat(client, chat_body(DOC_B, max_completion_tokens=10))
    usages.append(usage_of(payload))

    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["requests"] == {
        "total": 5,
        "by_status": {"200": 4, "500": 1},
        "by_endpoint": {"responses": 3, "chat.completions": 2},
    }
    assert ledger["billed"] == {
        "input_tokens": sum(u["input"] for u in usages),
        "cached_input_tokens": sum(u["cached"] for u in usages),
        "output_tokens": sum(u["output"] for u in usages),
        "reasoning_tokens": sum(u["reasoning"] for u in usages),
        "total_tokens": sum(u["total"] for u in usages),
    }
    # Fingerprints cover endpoint, model, messages and schema: four distinct paid inputs so far...
    assert sorted(ledger["per_input"].values()) == [1, 1, 1, 1]
    await call_responses(client, responses_body(DOC_A))  # ...and a paid duplicate stands out
    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert sorted(ledger["per_input"].values()) == [1, 1, 1, 2]


# -- faults -------------------------------------------------------------------------------------------------------


async def test_invalid_output_fault_fires_exactly_times(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await set_faults(http, sim, [{"match": "Northwind", "fault": "invalid_output", "times": 2}])
    outputs = []
    for _ in range(3):
        payload, _ = await call_responses(client, responses_body(DOC_A))
        validate_component("Response", payload)
        outputs.append(orjson.loads(response_text(payload)))  # still JSON, just not schema-valid
    chat_payload, _ = await call_chat(client, chat_body(DOC_B))
    assert [is_valid(INVOICE_SCHEMA, output) for output in outputs] == [False, False, True]
    assert is_valid(INVOICE_SCHEMA, orjson.loads(chat_payload["choices"][0]["message"]["content"]))

    faults = await get_json(http, f"{sim.url}/_sim/faults")
    assert faults == [{"match": "Northwind", "fault": "invalid_output", "times": 2, "fired": 2, "remaining": 0}]
    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["requests"]["by_status"] == {"200": 4}


async def test_refusal_fault(sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession) -> None:
    await set_faults(http, sim, [{"match": "", "fault": "refusal", "times": 2}])
    payload, parsed = await call_responses(client, responses_body(DOC_A))
    validate_component("Response", payload)
    assert payload["status"] == "completed"
    assert payload["output"][-1]["content"] == [{"type": "refusal", "refusal": "I'm sorry, I can't help with that."}]
    assert parsed.output_text == ""

    chat_payload, chat = await call_chat(client, chat_body(DOC_A))
    validate_component("CreateChatCompletionResponse", chat_payload)
    message = chat.choices[0].message
    assert message.content is None
    assert message.refusal == "I'm sorry, I can't help with that."
    assert chat.choices[0].finish_reason == "stop"

    third, _ = await call_chat(client, chat_body(DOC_A))
    assert third["choices"][0]["message"]["refusal"] is None
    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["billed"]["output_tokens"] == sum(usage_of(p)["output"] for p in (payload, chat_payload, third))


async def test_truncation_fault(sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession) -> None:
    await set_faults(http, sim, [{"match": "Northwind", "fault": "truncation", "times": 2}])
    payload, _ = await call_responses(client, responses_body(DOC_A))
    validate_component("Response", payload)
    assert payload["status"] == "incomplete"
    assert payload["incomplete_details"] == {"reason": "max_output_tokens"}
    assert payload["completed_at"] is None
    text = response_text(payload)
    assert text.startswith("{")
    with pytest.raises(ValueError, match=r"."):
        orjson.loads(text)
    assert usage_of(payload)["output"] == tokens(text)

    chat_payload, chat = await call_chat(client, chat_body(DOC_A))
    validate_component("CreateChatCompletionResponse", chat_payload)
    assert chat.choices[0].finish_reason == "length"
    assert chat.choices[0].message.content == text  # same cut of the same answer
    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["billed"]["output_tokens"] == usage_of(payload)["output"] + usage_of(chat_payload)["output"]


@pytest.mark.parametrize(
    ("kind", "status", "exc_type", "error_type", "code", "header"),
    [
        ("http_500", 500, openai.InternalServerError, "server_error", None, None),
        ("http_503", 503, openai.InternalServerError, "server_error", None, "retry-after"),
        ("http_429", 429, openai.RateLimitError, "requests", "rate_limit_exceeded", "retry-after-ms"),
        ("http_400", 400, openai.BadRequestError, "invalid_request_error", None, None),
    ],
)
async def test_http_faults_are_unbilled_errors(
    sim: RunningSimulator,
    client: openai.AsyncOpenAI,
    http: aiohttp.ClientSession,
    kind: str,
    status: int,
    exc_type: type[openai.APIStatusError],
    error_type: str,
    code: str | None,
    header: str | None,
) -> None:
    await set_faults(http, sim, [{"match": "Northwind", "fault": kind, "times": 2}])
    for call, body in ((call_responses, responses_body(DOC_A)), (call_chat, chat_body(DOC_A))):
        with pytest.raises(exc_type) as caught:
            await call(client, body)
        error = caught.value
        assert error.status_code == status
        payload = orjson.loads(error.response.content)
        validate_component("ErrorResponse", payload)
        assert payload["error"]["type"] == error_type
        assert payload["error"]["code"] == code
        assert error.response.headers.get("x-request-id")
        if header is not None:
            assert error.response.headers[header]
    payload, _ = await call_responses(client, responses_body(DOC_A))  # the rule is spent
    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["requests"]["by_status"] == {str(status): 2, "200": 1}
    assert ledger["billed"]["total_tokens"] == usage_of(payload)["total"]


async def test_rate_limit_fault_is_retried_by_the_sdk(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    await set_faults(http, sim, [{"match": "", "fault": "http_429", "times": 1}])
    client = openai.AsyncOpenAI(
        base_url=sim.base_url, api_key="sk-test", http_client=openai.DefaultAioHttpClient(), max_retries=2
    )
    try:
        started = time.monotonic()
        payload, _ = await call_responses(client, responses_body(DOC_A))
    finally:
        await client.close()
    assert payload["status"] == "completed"
    assert time.monotonic() - started < 5  # retry-after-ms keeps the retry quick
    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["requests"]["by_status"] == {"429": 1, "200": 1}


async def test_fault_rules_control_endpoint(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.url}/_sim/faults", json=[{"fault": "meteor_strike"}]) as response:
        assert response.status == 400
        validate_component("ErrorResponse", await response.json())
    await set_faults(http, sim, [{"fault": "refusal"}, {"match": "x", "fault": "http_503", "times": None}])
    assert await get_json(http, f"{sim.url}/_sim/faults") == [
        {"match": "", "fault": "refusal", "times": 1, "fired": 0, "remaining": 1},
        {"match": "x", "fault": "http_503", "times": None, "fired": 0, "remaining": None},
    ]


def test_fault_cli_spec() -> None:
    assert FaultRule.parse_cli("refusal::1") == FaultRule(fault=FaultKind.REFUSAL, match="", times=1)
    assert FaultRule.parse_cli("http_500:id:42:3") == FaultRule(fault=FaultKind.HTTP_500, match="id:42", times=3)
    assert FaultRule.parse_cli("truncation:doc:*").times is None
    for bad in ("refusal", "refusal:1", "nonsense::1", "refusal::0"):
        with pytest.raises(ValueError, match=r"."):
            FaultRule.parse_cli(bad)


def test_config_faults_apply_from_start() -> None:
    config = SimulatorConfig(faults=[FaultRule(fault=FaultKind.REFUSAL)])
    state = SimulatorState.from_config(config)
    assert state.faults.take("anything") is FaultKind.REFUSAL
    assert state.faults.take("anything") is None
    assert "require_api_key" not in repr(SimulatorConfig(require_api_key="sk-hidden"))


# -- auth, malformed requests, unknown paths ----------------------------------------------------------------------


async def test_wrong_api_key_is_rejected_and_never_recorded(http: aiohttp.ClientSession) -> None:
    right, wrong = "sk-right-0123456789", "sk-wrong-9876543210"
    async with running_simulator(SimulatorConfig(require_api_key=right)) as sim:
        bad_client, good_client = new_client(sim, api_key=wrong), new_client(sim, api_key=right)
        try:
            with pytest.raises(openai.AuthenticationError) as caught:
                await call_responses(bad_client, responses_body(DOC_A))
            payload, _ = await call_chat(good_client, chat_body(DOC_A))
        finally:
            await bad_client.close()
            await good_client.close()
        error = orjson.loads(caught.value.response.content)
        validate_component("ErrorResponse", error)
        assert error["error"]["code"] == "invalid_api_key"
        assert wrong not in caught.value.response.text
        assert payload["object"] == "chat.completion"
        async with http.post(f"{sim.base_url}/responses", json=responses_body(DOC_A)) as response:
            assert response.status == 401  # no Authorization header at all

        ledger = await get_json(http, f"{sim.url}/_sim/ledger")
        assert ledger["requests"]["by_status"] == {"401": 2, "200": 1}
        async with http.get(f"{sim.url}/_sim/requests") as response:
            log_text = await response.text()
        log = orjson.loads(log_text)
        assert [entry["status"] for entry in log] == [401, 200, 401]
        assert all("authorization" not in entry["headers"] for entry in log)
        for secret in (right, wrong):
            assert secret not in log_text
            assert secret not in orjson.dumps(ledger).decode()


MALFORMED = {
    "missing model": ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}}}, "model"),
    "no format": ({"model": "gpt-4o", "input": "x"}, "text.format"),
    "text format": ({"model": "gpt-4o", "input": "x", "text": {"format": {"type": "text"}}}, "text.format"),
    "schema not an object": (
        {"model": "gpt-4o", "input": "x", "text": {"format": {"type": "json_schema", "name": "n", "schema": [1]}}},
        "text.format.schema",
    ),
    "invalid json schema": (
        {
            "model": "gpt-4o",
            "input": "x",
            "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": 5}}},
        },
        "text.format.schema",
    ),
    "strict without additionalProperties": (
        responses_body(DOC_A, schema={"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
        "text.format.schema",
    ),
    "missing input": (
        {"model": "gpt-4o", "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}}},
        "input",
    ),
    "bad max_output_tokens": (responses_body(DOC_A, max_output_tokens=0), "max_output_tokens"),
    # Strict servers (llama.cpp's llama-server) cannot tell what an item without a type is; neither can we.
    "input item without a type": (responses_body(DOC_A, input=[{"role": "user", "content": DOC_A}]), "input[0].type"),
    "streaming": (responses_body(DOC_A, stream=True), "stream"),
}


@pytest.mark.parametrize(("body", "param"), list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_responses_request_is_a_400(
    sim: RunningSimulator, http: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    async with http.post(f"{sim.base_url}/responses", json=body) as response:
        assert response.status == 400
        assert response.headers["x-request-id"]
        payload = await response.json()
    validate_component("ErrorResponse", payload)
    assert payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["param"] == param
    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["requests"]["by_status"] == {"400": 1}
    assert ledger["billed"]["total_tokens"] == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, "response_format"),
        (chat_body(DOC_A, messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (
            {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema"},
            },
            "response_format.json_schema.name",
        ),
    ],
)
async def test_malformed_chat_request_is_a_400(
    sim: RunningSimulator, http: aiohttp.ClientSession, body: dict[str, Any], param: str
) -> None:
    async with http.post(f"{sim.base_url}/chat/completions", json=body) as response:
        assert response.status == 400
        payload = await response.json()
    validate_component("ErrorResponse", payload)
    assert payload["error"]["param"] == param


async def test_non_json_body_is_a_400(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.base_url}/chat/completions", data=b"{not json") as response:
        assert response.status == 400
        payload = await response.json()
    validate_component("ErrorResponse", payload)
    assert sim.state.requests.snapshot()[-1]["body"] == "{not json"


async def test_unknown_api_path_is_a_404(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.base_url}/embeddings", json={}) as response:
        assert response.status == 404
        for header in ("x-request-id", "openai-processing-ms", *RATE_LIMIT_HEADERS):
            assert response.headers.get(header), header
        payload = await response.json()
    validate_component("ErrorResponse", payload)
    assert payload["error"]["message"] == "Invalid URL (POST /v1/embeddings)"
    ledger = await get_json(http, f"{sim.url}/_sim/ledger")
    assert ledger["requests"] == {"total": 1, "by_status": {"404": 1}, "by_endpoint": {}}


# -- control endpoints, latency -----------------------------------------------------------------------------------


async def test_requests_log_is_bounded_and_reset_clears_everything(http: aiohttp.ClientSession) -> None:
    async with running_simulator(SimulatorConfig(request_log_size=3)) as sim:
        sdk = new_client(sim)
        try:
            await set_faults(http, sim, [{"match": "Contoso", "fault": "refusal", "times": 1}])
            long_body = responses_body(DOC_A, instructions=LONG_SYSTEM, prompt_cache_key="k")
            for body in (long_body, responses_body(DOC_B), long_body, responses_body(DOC_A)):
                await call_responses(sdk, body)
            log = await get_json(http, f"{sim.url}/_sim/requests")
            assert len(log) == 3
            assert [entry["endpoint"] for entry in log] == ["responses"] * 3
            assert log[-1]["body"] == responses_body(DOC_A)
            assert log[-1]["headers"]["content-type"] == "application/json"
            assert sim.state.ledger.billed["cached_input_tokens"] > 0

            async with http.post(f"{sim.url}/_sim/reset") as response:
                assert response.status == 200
            ledger = await get_json(http, f"{sim.url}/_sim/ledger")
            assert ledger == {
                "requests": {"total": 0, "by_status": {}, "by_endpoint": {}},
                "billed": dict.fromkeys(
                    ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens"), 0
                ),
                "per_input": {},
                "ok_per_input": {},
                "abandoned": 0,
                "rate_limit": {
                    "rpm_limit": 0,
                    "tpm_limit": 0,
                    "admitted_requests": 0,
                    "admitted_tokens": 0,
                    "output_charged_tokens": 0,
                    "rejected_429": {"requests": 0, "tokens": 0},
                },
                "achieved": {
                    "window_s": 0.0,
                    "requests_per_minute": None,
                    "tokens_per_minute": None,
                    "billed_tokens_per_minute": None,
                },
            }
            assert await get_json(http, f"{sim.url}/_sim/requests") == []
            assert (await get_json(http, f"{sim.url}/_sim/faults"))[0]["remaining"] == 1  # re-armed
            payload, _ = await call_responses(sdk, long_body)
            assert usage_of(payload)["cached"] == 0  # prompt cache forgotten
            refused, _ = await call_responses(sdk, responses_body(DOC_B))
            assert refused["output"][-1]["content"][0]["type"] == "refusal"
        finally:
            await sdk.close()


async def test_latency_is_simulated(http: aiohttp.ClientSession) -> None:
    async with running_simulator(SimulatorConfig(latency_ms=80, latency_jitter_ms=10, ms_per_output_token=1)) as sim:
        started = time.monotonic()
        async with http.post(f"{sim.base_url}/chat/completions", json=chat_body(DOC_A)) as response:
            assert response.status == 200
            payload = await response.json()
            processing_ms = int(response.headers["openai-processing-ms"])
        elapsed_ms = (time.monotonic() - started) * 1000
    minimum_ms = 70 + usage_of(payload)["output"]
    assert processing_ms >= minimum_ms
    assert elapsed_ms >= minimum_ms


async def test_control_endpoints_answer_with_headers(sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.url}/_sim/ledger") as response:
        assert response.headers["x-request-id"].startswith("req_")
    async with http.get(f"{sim.url}/_sim/nothing") as response:
        assert response.status == 404


# -- generation (no server) ---------------------------------------------------------------------------------------

TRICKY_SCHEMAS: dict[str, dict[str, Any]] = {
    "invoice": INVOICE_SCHEMA,
    "nested objects": {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "properties": {"b": {"type": "object", "properties": {"c": {"type": "integer", "maximum": -5}}}},
            }
        },
        "required": ["a"],
        "additionalProperties": False,
    },
    "arrays of objects with bounds": {
        "type": "object",
        "properties": {
            "rows": {
                "type": "array",
                "minItems": 4,
                "maxItems": 5,
                "items": {
                    "type": "object",
                    "properties": {"k": {"type": "string", "minLength": 3, "maxLength": 5}, "v": {"type": "number"}},
                    "required": ["k", "v"],
                    "additionalProperties": False,
                },
            },
            "empty": {"type": "array", "maxItems": 0},
            "pair": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
            "unique": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True, "minItems": 2},
        },
        "required": ["rows", "empty", "pair", "unique"],
        "additionalProperties": False,
    },
    "enums, consts and formats": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["draft", "sent", "paid"]},
            "level": {"enum": [1, 2, 3]},
            "kind": {"const": "invoice"},
            "when": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "mail": {"type": "string", "format": "email"},
            "site": {"type": "string", "format": "uri"},
            "id": {"type": "string", "format": "uuid"},
            "code": {"type": "string", "pattern": "^[A-Z]+-\\d+$"},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "step": {"type": "integer", "minimum": 10, "maximum": 50, "multipleOf": 7},
            "half": {"type": "number", "multipleOf": 0.5, "minimum": 1, "maximum": 3},
        },
        "required": ["status", "level", "kind", "when", "day", "mail", "site", "id", "ratio", "step", "half"],
        "additionalProperties": False,
    },
    "nullable via anyOf and type lists": {
        "type": "object",
        "properties": {
            "maybe": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "list_type": {"type": ["integer", "null"], "minimum": 3, "maximum": 3},
            "one": {"oneOf": [{"type": "integer"}, {"type": "string", "maxLength": 2}]},
            "all": {"allOf": [{"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}]},
        },
        "required": ["maybe", "list_type", "one", "all"],
        "additionalProperties": False,
    },
    "$defs with $ref": {
        "$defs": {
            "address": {
                "type": "object",
                "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                "required": ["street", "city"],
                "additionalProperties": False,
            }
        },
        "type": "object",
        "properties": {"billing": {"$ref": "#/$defs/address"}, "shipping": {"$ref": "#/$defs/address"}},
        "required": ["billing", "shipping"],
        "additionalProperties": False,
    },
    "definitions (draft-07 style)": {
        "definitions": {
            "money": {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]}
        },
        "type": "object",
        "properties": {"price": {"$ref": "#/definitions/money"}},
        "required": ["price"],
    },
    "recursive tree": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {
                    "label": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
                },
                "required": ["label", "children"],
                "additionalProperties": False,
            }
        },
        "$ref": "#/$defs/node",
    },
    "recursive linked list": {
        "type": "object",
        "properties": {"value": {"type": "integer"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}},
        "required": ["value", "next"],
        "additionalProperties": False,
    },
}


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("schema", list(TRICKY_SCHEMAS.values()), ids=list(TRICKY_SCHEMAS))
def test_generated_instances_validate(schema: dict[str, Any]) -> None:
    words = document_words(DOC_A + " ACME-42 " + DOC_B)
    for seed in range(25):
        instance = generate_instance(schema, seed, words)
        assert_valid(schema, instance)
        assert _depth(instance) < 20
        assert generate_instance(schema, seed, words) == instance  # deterministic


def test_generation_handles_degenerate_schemas() -> None:
    words = document_words("")
    assert generate_instance({}, 0, words) is not None
    assert generate_instance({"type": "object"}, 0, words) == {}
    assert isinstance(generate_instance({"type": "string", "pattern": "^\\d{5}$"}, 0, words), str)  # no crash
    impossible = {"type": "integer", "minimum": 5, "maximum": 1}
    assert isinstance(generate_instance(impossible, 0, words), int)


@pytest.mark.parametrize("schema", list(TRICKY_SCHEMAS.values()), ids=list(TRICKY_SCHEMAS))
def test_violate_breaks_the_schema(schema: dict[str, Any]) -> None:
    instance = generate_instance(schema, 0, document_words(DOC_A))
    broken = violate(schema, instance)
    assert not is_valid(schema, broken)
    orjson.dumps(broken)  # still serialisable JSON


def test_violate_falls_back_to_marker() -> None:
    assert violate({}, {"anything": 1}) == {INVALID_MARKER: True}


# -- packaging: CLI and isolation ---------------------------------------------------------------------------------


async def test_cli_serves_and_stops_on_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulator",
        "--port",
        "0",
        "--fault",
        "refusal::1",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].strip()
        async with http.post(f"{url}/v1/chat/completions", json=chat_body(DOC_A)) as response:
            assert response.status == 200
            assert (await response.json())["choices"][0]["message"]["refusal"]
        async with http.post(f"{url}/v1/chat/completions", json=chat_body(DOC_A)) as response:
            assert (await response.json())["choices"][0]["message"]["refusal"] is None
        process.send_signal(signal.SIGTERM)
        rest, errors = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 0, errors.decode()
    assert rest == b""
    assert b"Traceback" not in errors


def test_simulator_imports_nothing_of_ours() -> None:
    forbidden = {"schemas", "worker", "producer", "tests", "bench"}
    for path in (REPO_ROOT / "simulator").glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
