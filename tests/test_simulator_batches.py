"""The simulator's Batch API (``/v1/batches``), driven by the real ``openai`` SDK over real HTTP.

Every Batch object the simulator sends is checked against the official OpenAPI spec's ``Batch`` schema, its errors
against ``ErrorResponse``, and each line's answer against the synchronous endpoint's own answer for the same body.
Timings are not asserted: the time constants are small and tests poll with a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jsonschema
import openai
import orjson
import pytest

from simulator import RunningSimulator, SimulatorConfig
from simulator.__main__ import config_from_args, parse_args
from tests.conftest import API_KEY
from tests.openapi_spec import validate_component

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "vendor": {"type": "string"},
        "total": {"type": "number"},
        "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
    },
    "required": ["vendor", "total", "currency"],
    "additionalProperties": False,
}
DOCS = (
    "Invoice 1 from ACME Corp, 3 widgets, total 30.00 USD.",
    "Invoice 2 from Globex, consulting, total 357 EUR.",
    "Invoice 3 from Initech GmbH, one licence, 499 EUR.",
    "Invoice 4 from Umbrella Ltd, gloves, 45.00 GBP.",
    "Invoice 5 from Stark Industries, service visit, 1200 USD.",
)
RESPONSES = "/v1/responses"
CHAT = "/v1/chat/completions"
FINAL = ("completed", "failed", "expired", "cancelled")
DEADLINE_S = 20.0


# -- helpers ------------------------------------------------------------------------------------------------------


def body_for(endpoint: str, doc: str, *, model: str = "gpt-4o-mini") -> dict[str, Any]:
    if endpoint == RESPONSES:
        return {
            "model": model,
            "instructions": "Extract the invoice fields.",
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": doc}]}],
            "text": {"format": {"type": "json_schema", "name": "invoice", "schema": SCHEMA, "strict": True}},
        }
    return {
        "model": model,
        "messages": [{"role": "system", "content": "Extract the invoice fields."}, {"role": "user", "content": doc}],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "invoice", "schema": SCHEMA, "strict": True},
        },
    }


def request_line(custom_id: str, body: dict[str, Any], url: str = RESPONSES, method: str = "POST") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": method, "url": url, "body": body}


def jsonl(items: list[Any]) -> bytes:
    return b"".join(orjson.dumps(item) + b"\n" for item in items)


def doc_lines(endpoint: str, count: int) -> list[dict[str, Any]]:
    return [
        request_line(f"doc-{n}", body_for(endpoint, DOCS[n % len(DOCS)] + f" #{n}"), endpoint) for n in range(count)
    ]


def answer_text(body: dict[str, Any]) -> str:
    if body["object"] == "response":
        return str(body["output"][-1]["content"][0]["text"])
    return str(body["choices"][0]["message"]["content"])


def usage_of(body: dict[str, Any]) -> dict[str, int]:
    usage = body["usage"]
    if "input_tokens" in usage:
        return {
            "input": usage["input_tokens"],
            "cached": usage["input_tokens_details"]["cached_tokens"],
            "output": usage["output_tokens"],
            "reasoning": usage["output_tokens_details"]["reasoning_tokens"],
        }
    return {
        "input": usage["prompt_tokens"],
        "cached": usage["prompt_tokens_details"]["cached_tokens"],
        "output": usage["completion_tokens"],
        "reasoning": usage["completion_tokens_details"]["reasoning_tokens"],
    }


def schema_valid(text: str) -> bool:
    return bool(jsonschema.Draft202012Validator(SCHEMA).is_valid(orjson.loads(text)))


async def upload(client: openai.AsyncOpenAI, data: bytes, purpose: Any = "batch") -> str:
    return (await client.files.create(file=("input.jsonl", data), purpose=purpose)).id


async def create(client: openai.AsyncOpenAI, file_id: str, endpoint: Any = RESPONSES, **extra: Any) -> dict[str, Any]:
    raw = await client.batches.with_raw_response.create(
        input_file_id=file_id, endpoint=endpoint, completion_window="24h", **extra
    )
    batch: dict[str, Any] = orjson.loads(raw.content)
    validate_component("Batch", batch)
    assert raw.parse().id == batch["id"]
    return batch


async def submit(client: openai.AsyncOpenAI, lines: list[Any], endpoint: Any = RESPONSES, **extra: Any) -> str:
    return str((await create(client, await upload(client, jsonl(lines)), endpoint, **extra))["id"])


async def retrieve(client: openai.AsyncOpenAI, batch_id: str) -> dict[str, Any]:
    raw = await client.batches.with_raw_response.retrieve(batch_id)
    batch: dict[str, Any] = orjson.loads(raw.content)
    validate_component("Batch", batch)
    return batch


async def wait_for(client: openai.AsyncOpenAI, batch_id: str, done: Any = None) -> dict[str, Any]:
    """Poll until ``done(batch)`` (default: a final status); every object seen is checked against the spec."""
    check = done or (lambda batch: batch["status"] in FINAL)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while True:
        batch = await retrieve(client, batch_id)
        if check(batch):
            return batch
        assert loop.time() < deadline, f"batch never got there: {batch}"
        await asyncio.sleep(0.01)


async def file_lines(client: openai.AsyncOpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    content = await client.files.content(file_id)
    return [orjson.loads(line) for line in content.content.splitlines() if line.strip()]


async def sim_get(http: aiohttp.ClientSession, sim: RunningSimulator, path: str) -> Any:
    async with http.get(f"{sim.url}{path}") as response:
        assert response.status == 200
        return await response.json()


async def set_batches(http: aiohttp.ClientSession, sim: RunningSimulator, **settings: Any) -> dict[str, Any]:
    async with http.post(f"{sim.url}/_sim/batches", json=settings) as response:
        assert response.status == 200, await response.text()
        answer: dict[str, Any] = await response.json()
        return answer


async def api_post(http: aiohttp.ClientSession, sim: RunningSimulator, path: str, body: object) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with http.post(f"{sim.base_url}{path}", json=body, headers=headers) as response:
        return response.status, await response.json()


async def venues(http: aiohttp.ClientSession, sim: RunningSimulator) -> dict[str, Any]:
    ledger: dict[str, Any] = await sim_get(http, sim, "/_sim/ledger?venues=1")
    return dict(ledger["venues"])


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(
        require_api_key=API_KEY,
        batch_validating_s=0.01,
        batch_finalizing_s=0.01,
        batch_cancelling_s=0.01,
        batch_lines_per_s=1000,
    )


@pytest.fixture
async def client(sim: RunningSimulator) -> AsyncIterator[openai.AsyncOpenAI]:
    sdk = openai.AsyncOpenAI(
        base_url=sim.base_url, api_key=API_KEY, http_client=openai.DefaultAioHttpClient(), max_retries=0
    )
    yield sdk
    await sdk.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# -- the happy path -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [RESPONSES, CHAT])
async def test_a_batch_answers_each_line_as_the_synchronous_endpoint_does_at_half_the_price(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession, endpoint: str
) -> None:
    """Validating -> in_progress -> finalizing -> completed; every line is the sync answer, billed at half."""
    lines = doc_lines(endpoint, 4)
    sync: dict[str, dict[str, Any]] = {}
    for line in lines:
        if endpoint == RESPONSES:
            raw: Any = await client.responses.with_raw_response.create(**line["body"])
        else:
            raw = await client.chat.completions.with_raw_response.create(**line["body"])
        sync[line["custom_id"]] = orjson.loads(raw.content)
    paid_sync = await venues(http, sim)
    lines[0]["body"]["service_tier"] = "flex"  # ignored in a batch: batches are not served on a tier

    created = await create(
        client,
        await upload(client, jsonl(lines)),
        endpoint,
        metadata={"job": "nightly"},
        output_expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created["status"] == "validating"
    assert created["expires_at"] == created["created_at"] + 24 * 3600
    seen = {created["status"]}

    def final(batch: dict[str, Any]) -> bool:
        seen.add(batch["status"])
        return batch["status"] in FINAL

    batch = await wait_for(client, created["id"], final)
    assert batch["status"] == "completed", batch
    assert seen <= {"validating", "in_progress", "finalizing", "completed"}
    assert {"in_progress_at", "finalizing_at", "completed_at"} <= set(batch)
    assert batch["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    assert batch["model"] == "gpt-4o-mini"
    assert batch["metadata"] == {"job": "nightly"}
    assert "error_file_id" not in batch
    parsed = await client.batches.retrieve(batch["id"])
    assert parsed.output_file_id == batch["output_file_id"]
    assert parsed.error_file_id is None

    output = await file_lines(client, batch["output_file_id"])
    assert [record["custom_id"] for record in output] != [line["custom_id"] for line in lines]  # not input order
    assert sorted(record["custom_id"] for record in output) == sorted(sync)
    for record in output:
        assert record["id"].startswith("batch_req_")
        assert record["error"] is None
        response = record["response"]
        assert response["status_code"] == 200
        assert isinstance(response["request_id"], str)
        answer = response["body"]
        validate_component("Response" if endpoint == RESPONSES else "CreateChatCompletionResponse", answer)
        expected = sync[record["custom_id"]]
        assert answer_text(answer) == answer_text(expected)
        assert usage_of(answer) == usage_of(expected)
        assert answer["service_tier"] == "default"

    totals = {key: sum(usage_of(sync[cid])[key] for cid in sync) for key in ("input", "cached", "output", "reasoning")}
    assert batch["usage"] == {
        "input_tokens": totals["input"],
        "input_tokens_details": {"cached_tokens": totals["cached"]},
        "output_tokens": totals["output"],
        "output_tokens_details": {"reasoning_tokens": totals["reasoning"]},
        "total_tokens": totals["input"] + totals["output"],
    }
    paid = await venues(http, sim)
    assert paid["sync"] == paid_sync["sync"]
    assert paid["batch"]["ok"] == 4
    assert paid["batch"]["price_factor"] == 0.5
    assert paid["batch"]["billed"] == paid_sync["sync"]["billed"]  # the same tokens...
    assert paid["batch"]["billed_at_sync_price"] == {  # ... at half the price
        key: value / 2 for key, value in paid_sync["sync"]["billed_at_sync_price"].items()
    }
    ledger = await sim_get(http, sim, "/_sim/ledger")
    assert ledger["billed"]["total_tokens"] == 2 * paid_sync["sync"]["billed"]["total_tokens"]

    stored = await client.files.retrieve(batch["output_file_id"])
    assert stored.purpose == "batch_output"
    assert stored.expires_at == stored.created_at + 3600
    assert (await client.files.delete(stored.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await client.files.content(stored.id)


async def test_a_line_the_endpoint_refuses_gets_its_400_in_the_error_file_unbilled(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """A body the sync endpoint answers 400 is not a validation error: the batch completes, that line is in errors."""
    refused = body_for(RESPONSES, "no format")
    del refused["text"]
    lines = [*doc_lines(RESPONSES, 2), request_line("refused", refused)]
    batch = await wait_for(client, await submit(client, lines))
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    (error,) = await file_lines(client, batch["error_file_id"])
    assert error["custom_id"] == "refused"
    assert error["error"] is None
    assert error["response"]["status_code"] == 400
    validate_component("ErrorResponse", error["response"]["body"])
    assert len(await file_lines(client, batch["output_file_id"])) == 2
    assert (await venues(http, sim))["batch"]["ok"] == 2


# -- validation -----------------------------------------------------------------------------------------------------


def _invalid_files() -> list[Any]:
    good = [request_line(f"ok-{n}", body_for(RESPONSES, DOCS[n])) for n in range(2)]
    return [
        pytest.param(jsonl(good[:1]) + b"{not json\n", "invalid_json_line", 2, None, id="invalid_json_line"),
        pytest.param(jsonl([good[0], {**good[1], "custom_id": "ok-0"}]), "duplicate_custom_id", 2, "custom_id"),
        pytest.param(jsonl([good[0], {**good[1], "url": CHAT}]), "url_mismatch", 2, "url", id="url_mismatch"),
        pytest.param(
            jsonl([good[0], request_line("other", body_for(RESPONSES, DOCS[1], model="gpt-4.1-mini"))]),
            "model_mismatch",
            2,
            "body.model",
            id="model_mismatch",
        ),
        pytest.param(b"\n \n", "empty_file", None, None, id="empty_file"),
        pytest.param(jsonl([good[0], {**good[1], "method": "GET"}]), "invalid_value", 2, "method", id="method_get"),
        pytest.param(jsonl([good[0], {"custom_id": "x", "method": "POST", "url": RESPONSES}]), None, 2, "body"),
    ]


@pytest.mark.parametrize(("data", "code", "line", "param"), _invalid_files())
async def test_an_invalid_input_file_fails_the_batch_with_the_error_and_its_line(
    client: openai.AsyncOpenAI, data: bytes, code: str | None, line: int | None, param: str | None
) -> None:
    """The create succeeds; the batch then fails with errors.data[] naming code, line and param."""
    batch = await wait_for(client, (await create(client, await upload(client, data)))["id"])
    assert batch["status"] == "failed"
    assert "failed_at" in batch
    assert "output_file_id" not in batch
    assert "error_file_id" not in batch
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    (error,) = batch["errors"]["data"]
    assert error["code"] == (code or "missing_required_parameter")
    assert error["line"] == line
    assert error["param"] == param
    assert error["message"]
    parsed = await client.batches.retrieve(batch["id"])
    assert parsed.errors is not None
    assert parsed.errors.data is not None
    assert parsed.errors.data[0].code == error["code"]


async def test_more_than_50000_lines_is_too_many_tasks(client: openai.AsyncOpenAI) -> None:
    """The Batch API's 50,000 requests per file: one more fails the batch."""
    tiny = {"model": "gpt-4o-mini", "input": "x"}
    data = b"".join(
        orjson.dumps(request_line(f"c{n}", tiny)) + b"\n" for n in range(50_001)
    )  # ~4 MB: the real limit, not a lowered one
    batch = await wait_for(client, (await create(client, await upload(client, data)))["id"])
    assert batch["status"] == "failed"
    assert [(e["code"], e["line"]) for e in batch["errors"]["data"]] == [("too_many_tasks", None)]


async def test_an_input_file_over_the_size_limit_fails_the_batch(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """Over max_input_bytes (200 MB by default; lowered here), with OpenAI's message naming the model."""
    await set_batches(http, sim, max_input_bytes=100)
    batch = await wait_for(client, await submit(client, doc_lines(RESPONSES, 2)))
    assert batch["status"] == "failed"
    (error,) = batch["errors"]["data"]
    assert error["code"] == "file_too_large"
    assert error["message"].startswith("The batch input file is larger than the 100 maximum for the gpt-4o-mini model")


async def test_create_refuses_bad_parameters_synchronously(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """Endpoint, window, metadata, expiry and the input file are checked by the create itself (400 / 404)."""
    file_id = await upload(client, jsonl(doc_lines(RESPONSES, 1)))
    user_file = await upload(client, b"just text", purpose="user_data")
    base = {"input_file_id": file_id, "endpoint": RESPONSES, "completion_window": "24h"}
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({**base, "endpoint": "/v1/embeddings"}, 400, "endpoint"),
        ({**base, "completion_window": "48h"}, 400, "completion_window"),
        ({**base, "metadata": {f"k{n}": "v" for n in range(17)}}, 400, "metadata"),
        ({**base, "metadata": {"k" * 65: "v"}}, 400, "metadata"),
        ({**base, "metadata": {"k": "v" * 513}}, 400, "metadata.k"),
        (
            {**base, "output_expires_after": {"anchor": "created_at", "seconds": 60}},
            400,
            "output_expires_after.seconds",
        ),
        ({**base, "input_file_id": "file-nope"}, 404, "input_file_id"),
        ({**base, "input_file_id": user_file}, 400, "input_file_id"),
        ({"endpoint": RESPONSES, "completion_window": "24h"}, 400, "input_file_id"),
        ({**base, "priority": "high"}, 400, "priority"),
    ]
    for body, status, param in cases:
        got, error = await api_post(http, sim, "/batches", body)
        assert (got, error["error"]["param"]) == (status, param), body
        validate_component("ErrorResponse", error)
    ok, fine = await api_post(
        http,
        sim,
        "/batches",
        {**base, "metadata": {"k" * 64: "v" * 512}, "output_expires_after": {"anchor": "created_at", "seconds": 3600}},
    )
    assert ok == 200
    validate_component("Batch", fine)
    async with openai.AsyncOpenAI(base_url=sim.base_url, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(openai.AuthenticationError):
            await wrong.batches.retrieve(fine["id"])
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve("batch_unknown")
    with pytest.raises(openai.NotFoundError):
        await client.batches.cancel("batch_unknown")


# -- endings that keep what was done ------------------------------------------------------------------------------


async def test_an_expired_batch_keeps_its_answered_lines_and_lists_the_rest_as_expired(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """expire_after_lines: those lines are in the output (billed), the others in the error file as batch_expired."""
    await set_batches(http, sim, expire_after_lines=2)
    batch = await wait_for(client, await submit(client, doc_lines(RESPONSES, 5)))
    assert batch["status"] == "expired"
    assert "expired_at" in batch
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 0}
    output = await file_lines(client, batch["output_file_id"])
    errors = await file_lines(client, batch["error_file_id"])
    assert len(output) == 2
    assert all(record["response"]["status_code"] == 200 for record in output)
    assert len(errors) == 3
    for record in errors:
        assert record["response"] is None
        assert record["error"]["code"] == "batch_expired"
        assert record["error"]["message"]
    assert {r["custom_id"] for r in output} | {r["custom_id"] for r in errors} == {f"doc-{n}" for n in range(5)}
    assert (await venues(http, sim))["batch"]["ok"] == 2


async def test_a_cancelled_batch_keeps_its_answered_lines_billed_and_lists_the_rest_as_cancelled(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """cancel -> cancelling -> cancelled; lines answered before the cancel are in the output and paid for."""
    await set_batches(http, sim, batch_lines_per_s=10)
    batch_id = await submit(client, doc_lines(RESPONSES, 40))
    await wait_for(client, batch_id, lambda b: b["request_counts"]["completed"] >= 2)
    await set_batches(http, sim, hold=True)  # no further line: what was answered is what the cancel keeps
    raw = await client.batches.with_raw_response.cancel(batch_id)
    cancelling = orjson.loads(raw.content)
    validate_component("Batch", cancelling)
    assert cancelling["status"] == "cancelling"
    assert "cancelling_at" in cancelling
    batch = await wait_for(client, batch_id)
    assert batch["status"] == "cancelled"
    assert "cancelled_at" in batch
    answered = batch["request_counts"]["completed"]
    assert 2 <= answered < 40
    output = await file_lines(client, batch["output_file_id"])
    errors = await file_lines(client, batch["error_file_id"])
    assert len(output) == answered
    assert len(errors) == 40 - answered
    assert {record["error"]["code"] for record in errors} == {"batch_cancelled"}
    assert all(record["response"] is None for record in errors)
    assert (await venues(http, sim))["batch"]["ok"] == answered
    assert (await client.batches.cancel(batch_id)).status == "cancelled"  # cancelling again changes nothing


async def test_cancel_while_validating_cancels_with_no_files_and_a_finished_batch_cannot_be_cancelled(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await set_batches(http, sim, batch_validating_s=30)
    validating = await submit(client, doc_lines(RESPONSES, 2))
    assert (await client.batches.cancel(validating)).status == "cancelling"
    batch = await wait_for(client, validating)
    assert batch["status"] == "cancelled"
    assert "output_file_id" not in batch
    assert "error_file_id" not in batch
    await set_batches(http, sim, batch_validating_s=0.01)
    done = await wait_for(client, await submit(client, doc_lines(RESPONSES, 1)))
    assert done["status"] == "completed"
    with pytest.raises(openai.ConflictError) as raised:
        await client.batches.cancel(done["id"])
    validate_component("ErrorResponse", orjson.loads(raised.value.response.content))


# -- line faults --------------------------------------------------------------------------------------------------


async def test_server_error_share_puts_those_lines_in_the_error_file_as_http_500s(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await set_batches(http, sim, server_error_share=0.5)
    batch = await wait_for(client, await submit(client, doc_lines(RESPONSES, 4)))
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    errors = await file_lines(client, batch["error_file_id"])
    assert len(errors) == 2
    for record in errors:
        assert record["error"] is None
        assert record["response"]["status_code"] == 500
        validate_component("ErrorResponse", record["response"]["body"])
        assert record["response"]["body"]["error"]["type"] == "server_error"
    assert len(await file_lines(client, batch["output_file_id"])) == 2
    assert (await venues(http, sim))["batch"]["ok"] == 2  # a 500 is not billed


async def test_invalid_answer_share_answers_that_share_with_json_that_fails_the_schema(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await set_batches(http, sim, invalid_answer_share=0.5)
    batch = await wait_for(client, await submit(client, doc_lines(CHAT, 4), CHAT))
    assert batch["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    output = await file_lines(client, batch["output_file_id"])
    valid = [schema_valid(answer_text(record["response"]["body"])) for record in output]
    assert sorted(valid) == [False, False, True, True]
    assert (await venues(http, sim))["batch"]["ok"] == 4  # billed like any answer


async def test_dropped_lines_are_in_neither_file_though_counted_and_billed(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await set_batches(http, sim, drop_lines=2)
    batch = await wait_for(client, await submit(client, doc_lines(RESPONSES, 5)))
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert "error_file_id" not in batch
    assert len(await file_lines(client, batch["output_file_id"])) == 3
    assert (await venues(http, sim))["batch"]["ok"] == 5


async def test_no_output_file_completes_with_only_an_error_file(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """As a real batch did: completed, output_file_id null, the answered lines nowhere, the failed one in errors."""
    await set_batches(http, sim, no_output_file=True)
    refused = body_for(RESPONSES, "no format")
    del refused["text"]
    batch = await wait_for(client, await submit(client, [*doc_lines(RESPONSES, 2), request_line("bad", refused)]))
    assert batch["status"] == "completed"
    assert "output_file_id" not in batch
    assert (await client.batches.retrieve(batch["id"])).output_file_id is None
    assert batch["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    assert [record["custom_id"] for record in await file_lines(client, batch["error_file_id"])] == ["bad"]


async def test_line_faults_are_those_in_force_when_the_batch_was_created(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await set_batches(http, sim, hold=True)
    batch_id = await submit(client, doc_lines(RESPONSES, 3))
    await set_batches(http, sim, drop_lines=3, hold=False)
    batch = await wait_for(client, batch_id)
    assert len(await file_lines(client, batch["output_file_id"])) == 3


# -- limits -------------------------------------------------------------------------------------------------------


async def _input_tokens(http: aiohttp.ClientSession, sim: RunningSimulator, body: dict[str, Any]) -> int:
    status, counted = await api_post(http, sim, "/responses/input_tokens", body)
    assert status == 200
    return int(counted["input_tokens"])


async def test_a_batch_past_the_enqueued_token_limit_fails_token_limit_exceeded(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    """Pending batches of a model hold its queue; one that would pass the limit is created, then fails."""
    first, second, third = (doc_lines(RESPONSES, 2) for _ in range(3))
    tokens = sum([await _input_tokens(http, sim, line["body"]) for line in first])
    limit = tokens + tokens // 2
    await set_batches(http, sim, hold=True, enqueued_token_limit={"gpt-4o-mini": limit})
    held = await submit(client, first)
    await wait_for(client, held, lambda b: b["status"] == "in_progress")
    assert (await sim_get(http, sim, "/_sim/batches"))["enqueued_tokens"] == {"gpt-4o-mini": tokens}

    refused = await wait_for(client, await submit(client, second))
    assert refused["status"] == "failed"
    (error,) = refused["errors"]["data"]
    assert error["code"] == "token_limit_exceeded"
    assert error["message"] == (
        f"Enqueued token limit reached for gpt-4o-mini in organization org-sim. Limit: {limit:,} enqueued tokens. "
        "Please try again once some in_progress batches have been completed."
    )

    await set_batches(http, sim, hold=False)
    assert (await wait_for(client, held))["status"] == "completed"
    assert (await wait_for(client, await submit(client, third)))["status"] == "completed"
    assert (await sim_get(http, sim, "/_sim/batches"))["enqueued_tokens"] == {"gpt-4o-mini": 0}


async def test_creations_past_creates_per_hour_get_a_429(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    await set_batches(http, sim, creates_per_hour=2)
    file_id = await upload(client, jsonl(doc_lines(RESPONSES, 1)))
    for _ in range(2):
        await create(client, file_id)
    with pytest.raises(openai.RateLimitError) as raised:
        await create(client, file_id)
    assert raised.value.code == "rate_limit_exceeded"
    assert int(raised.value.response.headers["retry-after"]) > 0
    validate_component("ErrorResponse", orjson.loads(raised.value.response.content))
    assert (await sim_get(http, sim, "/_sim/batches"))["creates_last_hour"] == 2
    await set_batches(http, sim, creates_per_hour=0)  # 0 = unlimited
    await create(client, file_id)


# -- listing, the request log, control ---------------------------------------------------------------------------


async def test_batches_are_listed_newest_first_in_pages(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    file_id = await upload(client, jsonl(doc_lines(RESPONSES, 1)))
    ids = [(await create(client, file_id))["id"] for _ in range(5)]
    newest_first = ids[::-1]
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        query = "limit=2" + (f"&after={after}" if after else "")
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with http.get(f"{sim.base_url}/batches?{query}", headers=headers) as response:
            assert response.status == 200
            page = await response.json()
        validate_component("ListBatchesResponse", page)
        pages.append([batch["id"] for batch in page["data"]])
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert pages == [newest_first[:2], newest_first[2:4], newest_first[4:]]
    assert [batch.id async for batch in client.batches.list(limit=2)] == newest_first
    assert [batch.id for batch in (await client.batches.list()).data] == newest_first  # default limit 20
    for bad in ("0", "101", "x"):
        with pytest.raises(openai.BadRequestError):
            await client.batches.list(extra_query={"limit": bad})
    with pytest.raises(openai.NotFoundError):
        await client.batches.list(after="batch_unknown")


async def test_batch_calls_are_in_the_request_log(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    batch_id = await submit(client, doc_lines(RESPONSES, 1))
    await wait_for(client, batch_id)
    await client.batches.list()
    with pytest.raises(openai.ConflictError):
        await client.batches.cancel(batch_id)
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve("batch_unknown")
    log = await sim_get(http, sim, "/_sim/requests")
    calls = [(entry["endpoint"], entry["status"]) for entry in log if entry["endpoint"].startswith("batches.")]
    assert calls[0] == ("batches.create", 200)
    assert ("batches.retrieve", 200) in calls
    assert calls[-3:] == [("batches.list", 200), ("batches.cancel", 409), ("batches.retrieve", 404)]
    create_entry = next(entry for entry in log if entry["endpoint"] == "batches.create")
    assert create_entry["body"]["endpoint"] == RESPONSES
    assert create_entry["request_id"].startswith("req_")
    assert "authorization" not in create_entry["headers"]


async def test_the_control_endpoint_changes_only_what_it_names_and_reset_forgets_batches(
    sim: RunningSimulator, client: openai.AsyncOpenAI, http: aiohttp.ClientSession
) -> None:
    settings = (await sim_get(http, sim, "/_sim/batches"))["settings"]
    assert settings["batch_lines_per_s"] == 1000
    assert settings["creates_per_hour"] == 2000
    changed = await set_batches(http, sim, drop_lines=1)
    assert changed["settings"] == {**settings, "drop_lines": 1}
    for bad in ({"drop_lines": -1}, {"nope": 1}, {"server_error_share": 0.6, "invalid_answer_share": 0.6}, [1]):
        async with http.post(f"{sim.url}/_sim/batches", json=bad) as response:
            assert response.status == 400
            validate_component("ErrorResponse", await response.json())
    assert (await sim_get(http, sim, "/_sim/batches"))["settings"]["drop_lines"] == 1
    batch_id = await submit(client, doc_lines(RESPONSES, 1))
    async with http.post(f"{sim.url}/_sim/reset") as response:
        assert response.status == 200
    with pytest.raises(openai.NotFoundError):
        await client.batches.retrieve(batch_id)
    assert (await sim_get(http, sim, "/_sim/batches"))["batches"] == []


def test_the_batch_flags_set_the_batch_settings() -> None:
    config = config_from_args(
        parse_args(
            [
                "--batch-validating-s=0.1",
                "--batch-lines-per-s=50",
                "--batch-finalizing-s=0.2",
                "--batch-cancelling-s=0.3",
                "--batch-creates-per-hour=7",
                "--batch-enqueued-token-limit=gpt-4o-mini=1000",
                "--batch-max-input-bytes=1000",
                "--batch-max-lines=10",
                "--batch-hold",
                "--batch-expire-after-lines=3",
                "--batch-server-error-share=0.1",
                "--batch-invalid-answer-share=0.2",
                "--batch-drop-lines=1",
                "--batch-no-output-file",
            ]
        )
    )
    assert config.batch_settings().model_dump() == {
        "batch_validating_s": 0.1,
        "batch_lines_per_s": 50.0,
        "batch_finalizing_s": 0.2,
        "batch_cancelling_s": 0.3,
        "creates_per_hour": 7,
        "enqueued_token_limit": {"gpt-4o-mini": 1000},
        "max_input_bytes": 1000,
        "max_lines": 10,
        "hold": True,
        "expire_after_lines": 3,
        "server_error_share": 0.1,
        "invalid_answer_share": 0.2,
        "drop_lines": 1,
        "no_output_file": True,
        "fail_validation": None,  # set at runtime only (POST /_sim/batches), as is the next
        "create_answer_delay_s": 0.0,
    }
    assert SimulatorConfig().batch_settings().batch_validating_s == 0.5
    with pytest.raises(ValueError, match="must add up to at most 1"):
        SimulatorConfig(batch_server_error_share=0.7, batch_invalid_answer_share=0.7)
