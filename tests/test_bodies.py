"""The HTTP path the worker calls through: the bodies it sends, the replies it reads, the errors it reports.

The worker no longer sends through ``client.responses.create`` (see ``worker.adapters.http``), so these tests hold it
to what the SDK would have done: the body on the wire equals what the SDK's own request transform makes of it, it
validates against the OpenAPI spec, it carries the SDK client's headers, and a reply read as JSON gives the same
answer and usage as the SDK's response models.
"""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
import httpx2
import openai
import orjson
import pytest
from openai._utils import maybe_transform
from openai.types.chat import ChatCompletion, completion_create_params
from openai.types.responses import Response, response_create_params

from schemas.jobs import ApiKind
from simulator import FaultKind, SimulatorConfig, running_simulator
from tests.openapi_spec import validate_component
from tests.processes import invoice_spec
from worker.adapters import ApiCallError, ChatAdapter, ResponsesAdapter
from worker.adapters.http import HttpAdapter, HttpSender
from worker.prompt import ModelRequest, first_request, prompt_cache_key, repair_request

API_KEY = "sk-bodies-test"
DOC = "Invoice INV-77 from ACME Corp, 3 widgets at 10.00 USD, total 30.00 USD, due 2026-04-01."
COMPONENT = {"responses": "CreateResponse", "chat": "CreateChatCompletionRequest"}
SDK_PARAMS: dict[ApiKind, Any] = {
    "responses": response_create_params.ResponseCreateParamsNonStreaming,
    "chat": completion_create_params.CompletionCreateParamsNonStreaming,
}


def _client(base_url: str, *, timeout: float = 30.0, api_key: str = API_KEY) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=httpx2.Timeout(timeout))


def _requests(api: ApiKind) -> list[ModelRequest]:
    spec = invoice_spec("bodies", max_output_tokens=300).model_copy(update={"api": api})
    first = first_request(spec, DOC, store=False, cache_key=prompt_cache_key(spec))
    repaired = repair_request(first, '{"vendor": 3}', ["$.vendor: 3 is not of type 'string'", "$: 'total' missing"])
    return [first, repaired, repair_request(repaired, "{}", ["$: 'vendor' is a required property"])]


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_bodies_equal_what_the_sdk_would_send_and_validate_against_the_spec(api: ApiKind) -> None:
    sender = HttpSender(_client("http://127.0.0.1:9/v1"), connections=1)
    adapter = adapter_for(api, sender)
    for request in _requests(api):
        body = adapter.build_body(request)
        # The SDK's own per-call transform finds nothing to change: skipping it loses nothing.
        assert maybe_transform(body, SDK_PARAMS[api]) == body
        validate_component(COMPONENT[api], body)
        assert body["prompt_cache_key"] == request.prompt_cache_key


def test_the_batch_computes_its_prompt_cache_key_once_and_the_line_reuses_it() -> None:
    spec = invoice_spec("bodies")
    assert first_request(spec, DOC, store=False).prompt_cache_key == prompt_cache_key(spec)
    assert first_request(spec, DOC, store=False, cache_key="extract-given").prompt_cache_key == "extract-given"


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_the_body_on_the_wire_is_the_built_body_with_the_sdk_clients_headers(api: ApiKind) -> None:
    config = SimulatorConfig(require_api_key=API_KEY)
    async with running_simulator(config) as sim:
        client = _client(sim.url + "/v1")
        sender = HttpSender(client, connections=4, secrets=(API_KEY,))
        adapter = adapter_for(api, sender)
        try:
            requests = _requests(api)
            replies = [await adapter.call(request) for request in requests]
            async with aiohttp.ClientSession() as http, http.get(sim.url + "/_sim/requests") as got:
                log = await got.json()
        finally:
            await sender.close()
            await client.close()
    assert [entry["body"] for entry in log] == [adapter.build_body(request) for request in requests]
    for entry in log:
        assert entry["status"] == 200
        assert entry["headers"]["user-agent"] == client.user_agent
        assert entry["headers"]["content-type"] == "application/json"
    assert all(reply.text for reply in replies)
    assert all(reply.usage.total_tokens > 0 for reply in replies)


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_a_reply_read_as_json_matches_the_sdk_models(api: ApiKind) -> None:
    async with running_simulator(SimulatorConfig()) as sim:
        client = _client(sim.url + "/v1")
        sender = HttpSender(client, connections=4)
        adapter = adapter_for(api, sender)
        try:
            request = _requests(api)[0]
            data, headers, latency_ms = await sender.post(adapter.path, orjson.dumps(adapter.build_body(request)))
        finally:
            await sender.close()
            await client.close()
    ours = adapter.read_reply(data, latency_ms=latency_ms, headers=headers)
    if api == "responses":
        sdk = Response.model_validate(data)
        assert ours.text == sdk.output_text
        assert sdk.usage is not None
        assert (ours.usage.input_tokens, ours.usage.output_tokens, ours.usage.total_tokens) == (
            sdk.usage.input_tokens,
            sdk.usage.output_tokens,
            sdk.usage.total_tokens,
        )
        assert ours.usage.cached_input_tokens == sdk.usage.input_tokens_details.cached_tokens
    else:
        completion = ChatCompletion.model_validate(data)
        assert ours.text == completion.choices[0].message.content
        assert completion.usage is not None
        assert (ours.usage.input_tokens, ours.usage.output_tokens) == (
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens,
        )
    assert ours.response_id == data["id"]
    assert "x-ratelimit-limit-requests" in ours.headers


def test_a_reply_with_missing_or_null_details_reads_as_zero() -> None:
    sender = HttpSender(_client("http://127.0.0.1:9/v1"), connections=1)
    reply = adapter_for("responses", sender).read_reply(
        {"id": "r1", "status": "completed", "output": [{"type": "reasoning"}, None], "usage": None},
        latency_ms=1,
        headers={},
    )
    assert (reply.text, reply.refusal, reply.truncated, reply.usage.total_tokens) == (None, None, False, 0)
    chat = adapter_for("chat", sender).read_reply(
        {"id": "c1", "choices": [{"message": {"content": "{}"}, "finish_reason": "length"}]},
        latency_ms=1,
        headers={},
    )
    assert (chat.text, chat.truncated, chat.usage.input_tokens) == ("{}", True, 0)


async def test_a_wrong_key_is_an_error_with_the_providers_facts_and_no_secret() -> None:
    wrong = "sk-wrong-key-that-must-not-leak"
    async with running_simulator(SimulatorConfig(require_api_key=API_KEY)) as sim:
        client = _client(sim.url + "/v1", api_key=wrong)
        sender = HttpSender(client, connections=1, secrets=(wrong,))
        try:
            with pytest.raises(ApiCallError) as caught:
                await adapter_for("responses", sender).call(_requests("responses")[0])
        finally:
            await sender.close()
            await client.close()
    error = caught.value
    assert error.status_code == 401
    assert error.code == "invalid_api_key"
    assert error.message.startswith("HTTP 401: ")
    assert wrong not in error.message
    assert error.no_answer is None


async def test_a_reply_slower_than_the_clients_timeout_is_a_timeout() -> None:
    config = SimulatorConfig(fault_rates={FaultKind.SLOW_RESPONSE: 1.0}, slow_response_ms=800)
    async with running_simulator(config) as sim:
        client = _client(sim.url + "/v1", timeout=0.2)
        sender = HttpSender(client, connections=1)
        try:
            with pytest.raises(ApiCallError) as caught:
                await adapter_for("chat", sender).call(_requests("chat")[0])
        finally:
            await sender.close()
            await client.close()
    assert (caught.value.no_answer, caught.value.status_code) == ("timeout", None)


async def test_nobody_listening_is_a_connection_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, and nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = _client(f"http://127.0.0.1:{port}/v1")
    sender = HttpSender(client, connections=1)
    try:
        with pytest.raises(ApiCallError) as caught:
            await adapter_for("responses", sender).call(_requests("responses")[0])
    finally:
        await sender.close()
        await client.close()
    assert (caught.value.no_answer, caught.value.status_code) == ("connection", None)
    assert "connection error" in caught.value.message


def adapter_for(api: ApiKind, sender: HttpSender) -> HttpAdapter:
    return ResponsesAdapter(sender) if api == "responses" else ChatAdapter(sender)
