"""The Batch API venue's pure parts and its store scripts, against real Redis: the one venue policy, the request
lines we upload (their bodies validated against the OpenAPI spec), reading output and error lines, and each line's
way through the store's states (stage, seal, deliver, resend, the enqueued-token reservations, the creation cap)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from producer.submit.submit import SubmitOptions, build_spec
from schemas.jobs import DEFAULT_INSTRUCTIONS, GenerationParams
from schemas.pricing import BATCH_TIER, price_for
from schemas.registry import resolve_schema
from schemas.results import Usage
from schemas.venues import COMPLETION_WINDOW_S, RECORD_MARGIN_S, choose_venue, parse_deadline
from store.keys import Keys
from store.provider_batches import Part, ProviderBatchStore
from tests.openapi_spec import validate_component
from worker.adapters import adapter_for
from worker.adapters.base import ModelReply
from worker.adapters.http import HttpSender
from worker.prompt import first_request
from worker.venue.lines import Answer, ReplayAdapter, ReplayHooks, Unanswered, read_result_line, request_line

NOW = 1_800_000_000.0
DAY = 24 * 3600.0


def test_parse_deadline_takes_durations_and_iso_times() -> None:
    assert parse_deadline("36h", now=NOW) == NOW + 36 * 3600
    assert parse_deadline("1d12h", now=NOW) == NOW + 36 * 3600
    assert parse_deadline("90m", now=NOW) == NOW + 5400
    assert parse_deadline("2026-12-05T18:00:00Z", now=NOW) == datetime(2026, 12, 5, 18, tzinfo=UTC).timestamp()
    assert parse_deadline("2026-12-05T18:00:00", now=NOW) == datetime(2026, 12, 5, 18, tzinfo=UTC).timestamp()
    for bad in ("", "soon", "36", "h", "12x"):
        with pytest.raises(ValueError, match="duration"):
            parse_deadline(bad, now=NOW)


def test_the_venue_policy() -> None:
    fits = NOW + COMPLETION_WINDOW_S + RECORD_MARGIN_S
    assert choose_venue("sync", model="gpt-5-mini", deadline_at=None, now=NOW) == "sync"
    assert choose_venue("batch-api", model="gpt-4o-mini", deadline_at=None, now=NOW) == "batch-api"
    assert choose_venue("batch-api", model="gpt-4o-mini", deadline_at=fits, now=NOW) == "batch-api"
    assert choose_venue("batch-api", model="gpt-4o-mini", deadline_at=fits - 1, now=NOW) == "sync"
    assert choose_venue("auto", model="gpt-5-mini", deadline_at=NOW + 2 * DAY, now=NOW) == "batch-api"
    assert choose_venue("auto", model="gpt-5-mini", deadline_at=NOW + 3600, now=NOW) == "flex"  # offers flex
    assert choose_venue("auto", model="gpt-4o-mini", deadline_at=NOW + 3600, now=NOW) == "sync"  # does not
    # A line its provider batches keep failing goes synchronously, whatever the setting.
    assert choose_venue("batch-api", model="gpt-4o-mini", deadline_at=None, now=NOW, provider_rounds=3) == "sync"
    # As time passes, a line sent on after an expiry goes synchronously once the window no longer fits.
    assert choose_venue("auto", model="gpt-4o-mini", deadline_at=NOW + 2 * DAY, now=NOW + DAY) == "sync"


def test_the_batch_price_is_half_of_every_rate() -> None:
    default, batch = price_for("gpt-4o-mini"), price_for("gpt-4o-mini", BATCH_TIER)
    assert default is not None
    assert batch is not None
    assert (batch.input, batch.cached_input, batch.output) == (
        default.input / 2,
        default.cached_input / 2,
        default.output / 2,
    )
    assert price_for("unknown-model", BATCH_TIER) is None


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_a_request_line_carries_the_synchronous_body_without_a_tier(api: str) -> None:
    spec = build_spec(
        SubmitOptions(
            batch_id="b",
            api=api,  # type: ignore[arg-type]
            model="gpt-5-mini",
            schema=resolve_schema("invoice"),
            instructions=DEFAULT_INSTRUCTIONS,
            params=GenerationParams(max_output_tokens=500),
            service_tier="flex",
        )
    )
    adapter = adapter_for(spec.api, HttpSender.__new__(HttpSender))
    request = first_request(spec, "Invoice 7 from ACME, total 12.50 EUR", store=False)
    line = orjson.loads(request_line(adapter, request, 41))
    assert line["custom_id"] == "l41"
    assert line["method"] == "POST"
    assert line["url"] == ("/v1/responses" if api == "responses" else "/v1/chat/completions")
    sync_body = adapter.build_body(request)
    assert sync_body.pop("service_tier") == "flex"
    assert line["body"] == sync_body  # the very body a synchronous call sends, less the tier
    validate_component("CreateResponse" if api == "responses" else "CreateChatCompletionRequest", line["body"])


def test_output_and_error_lines_are_read_by_their_shape() -> None:
    ok = {
        "id": "batch_req_1",
        "custom_id": "l3",
        "response": {"status_code": 200, "request_id": "r", "body": {"id": "resp_1"}},
        "error": None,
    }
    http = {"custom_id": "l4", "response": {"status_code": 500, "body": {"error": {"message": "boom"}}}, "error": None}
    expired = {"custom_id": "l5", "response": None, "error": {"code": "batch_expired", "message": "expired"}}
    assert read_result_line(orjson.dumps(ok), "batch_x") == (3, Answer("batch_x", 200, {"id": "resp_1"}, "r"))
    assert read_result_line(orjson.dumps(http), "batch_x") == (
        4,
        Answer("batch_x", 500, {"error": {"message": "boom"}}),
    )
    assert read_result_line(orjson.dumps(expired), "batch_x") == (5, Unanswered("batch_expired"))
    assert read_result_line(b"not json", "batch_x") is None
    assert read_result_line(orjson.dumps({"custom_id": "someone-else"}), "batch_x") is None


async def test_a_line_goes_through_the_store_states_once(redis: Redis, keys: Keys) -> None:
    store = ProviderBatchStore(redis, keys)
    batch = keys.batch("v1")
    await redis.hset(batch.record, "spec", "{}")  # type: ignore[misc]  # a batch record, as the scripts see it
    for ordinal in range(5):
        assert await store.stage(batch, ordinal, b'{"x":%d}' % ordinal, tokens=100, job_id=f"job-{ordinal}") == "staged"
    assert await store.stage(batch, 0, b"again", tokens=100, job_id="job-0") == "staged"  # not staged twice
    assert await store.claim_staging(lease_ms=60_000) == ["v1"]
    assert await store.claim_staging(lease_ms=60_000) == []  # held by the first claim
    template = Part(nonce="n1", endpoint="/v1/responses", model="m", scope="s")
    # Three staged lines of 100 tokens, a part of at most 250 tokens: two lines go.
    assert await store.seal(batch, template, max_lines=3, max_bytes=10_000, max_tokens=250, wait_ms=0) == 1
    part = await store.part(batch, 1)
    assert part is not None
    assert (part.lines, part.tokens, part.state, part.nonce) == (2, 200, "sealed", "n1")
    assert await store.part_ordinals(batch, 1) == [0, 1]
    assert (await store.line(batch, 0)).state == "sent"
    assert (await store.line(batch, 4)).state == "staged"
    assert await store.claim_parts(lease_ms=60_000) == [("v1", 1)]
    # Line 0 answered, line 1 expired; a second reading of the same file changes nothing.
    answer = Answer("batch_1", 200, {"output": []}).to_json()
    assert await store.deliver(batch, 1, [(0, answer)]) == 1
    assert await store.deliver(batch, 1, [(0, answer)]) == 0
    assert await store.resend(batch, 1, [1], "batch_expired") == 1
    assert await store.resend(batch, 1, [0, 1], "missing") == 0
    line0, line1 = await store.line(batch, 0), await store.line(batch, 1)
    assert (line0.state, line0.answer) == ("answered", orjson.loads(answer))
    assert (line1.state, line1.rounds, line1.why) == ("resend", 1, "batch_expired")
    assert await store.stage(batch, 1, b"again", tokens=100, job_id="job-1") == "staged"  # it goes on
    assert not await store.move_to_sync(batch, 0, rounds=0, why=None)  # an answered line is the job's to record
    assert await store.at_provider(batch, [0, 1, 2, 4]) == {0, 1, 2, 4}
    await store.forget(batch, 0)
    assert (await store.line(batch, 0)).state is None
    assert await store.line_states(batch) == {"staged": 4}


async def test_enqueued_tokens_are_reserved_per_part_and_released_once(redis: Redis, keys: Keys) -> None:
    store = ProviderBatchStore(redis, keys)
    assert await store.reserve("scope", "a:1", 600, configured=1000)
    assert await store.reserve("scope", "a:1", 600, configured=1000)  # held already: not twice
    assert not await store.reserve("scope", "a:2", 600, configured=1000)  # over the limit: waits
    assert await store.queue_state("scope") == (600, None)
    await store.release("scope", "a:1")
    await store.release("scope", "a:1")
    assert await store.queue_state("scope") == (0, None)
    assert await store.reserve("scope", "a:2", 5000, configured=1000)  # alone it goes, whatever its size
    await store.learn_limit("scope", 300)
    assert not await store.reserve("scope", "a:3", 100, configured=1000)  # the learned limit is lower
    assert await store.queue_state("scope") == (5000, 300)


async def test_creations_are_capped_per_hour(redis: Redis, keys: Keys) -> None:
    store = ProviderBatchStore(redis, keys)
    assert await store.create_slot("scope", cap=2, member="a") == 0
    assert await store.create_slot("scope", cap=2, member="b") == 0
    wait_ms = await store.create_slot("scope", cap=2, member="c")
    assert 3_500_000 < wait_ms <= 3_600_000


class _Calls:
    """Records what the hooks pass on (the real ``JobCalls`` needs Redis and admission: not what this test is about)."""

    def __init__(self) -> None:
        self.before: list[bool] = []
        self.after: list[bool] = []

    async def before_call(self, request: Any, *, first: bool) -> None:
        self.before.append(first)

    async def after_call(self, reply: Any, error: Any, *, repair: bool) -> None:
        self.after.append(repair)


class _Real:
    api = "responses"

    def build_body(self, request: Any) -> dict[str, Any]:
        return {}

    async def call(self, request: Any) -> Any:
        return "repair reply"

    def read_reply(self, data: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> Any:
        return ModelReply('{"a": 1}', None, False, Usage(input_tokens=5, output_tokens=2), "resp_1", 0)


@pytest.mark.parametrize("counted", [False, True])
async def test_a_replayed_answer_is_accounted_once_whatever_the_tries(counted: bool) -> None:
    calls, noted = _Calls(), []

    async def note() -> None:
        noted.append(True)

    adapter = ReplayAdapter(_Real(), Answer("batch_1", 200, {}), counted=counted, on_counted=note)  # type: ignore[arg-type]
    hooks = ReplayHooks(calls, adapter)
    await hooks.before_call(None, first=True)  # type: ignore[arg-type]
    reply = await adapter.call(None)  # type: ignore[arg-type]
    assert reply.service_tier == BATCH_TIER  # priced at the batch price
    await hooks.after_call(reply, None, repair=False)
    await hooks.before_call(None, first=False)  # type: ignore[arg-type]
    again: Any = await adapter.call(None)  # type: ignore[arg-type]
    assert again == "repair reply"  # a repair goes to the real API
    await hooks.after_call(None, None, repair=True)
    assert calls.before == [False]  # the replayed call waits for no admission; the repair does
    assert calls.after == ([True] if counted else [False, True])  # an earlier try counted it: not again
    assert noted == ([] if counted else [True])
