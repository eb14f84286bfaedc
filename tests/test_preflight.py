"""Preflight at submit: an empty model is a usage error, an unpriced model a warning, and a document over the byte
limit or the model's context window is reported with its line number like any bad line. The simulator enforces a
context window as the real API does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from click.testing import CliRunner, Result
from redis import Redis as SyncRedis

from producer.cli import main
from producer.errors import EXIT_INVALID_INPUT
from producer.input.readers import FileSource
from producer.submit.submit import SubmitOptions, build_spec, document_check
from schemas.input_limits import (
    DEFAULT_CONTEXT_WINDOWS,
    context_window,
    estimate_input_tokens,
    input_too_large,
)
from schemas.jobs import DEFAULT_INSTRUCTIONS, BatchSpec, GenerationParams
from schemas.registry import resolve_schema
from schemas.results import ErrorType, Status
from schemas.settings import Settings
from simulator import SimulatorConfig
from simulator.context_window import context_window_for
from store.keys import Keys
from tests.conftest import API_KEY
from tests.helpers import results_by_id, sim_get

KEYS = Keys("test:")
SENTENCE = "Invoice 2026-17 from ACME Corp: 3 widgets at 10.00 EUR, due 2026-04-30. "
"""About 30 cl100k tokens in 75 bytes: a document of English prose, not a run of one repeated character."""


def _write(tmp_path: Path, *texts: str) -> Path:
    path = tmp_path / "input.jsonl"
    lines = [orjson.dumps({"custom_id": f"d{n}", "text": text}) for n, text in enumerate(texts, start=1)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _submit(path: Path, *extra: str, model: str = "gpt-4o-mini") -> Result:
    args = ["submit", str(path), "--schema", "invoice", "--model", model, "--batch-id", "pre", *extra]
    return CliRunner().invoke(main, args)


def _nothing_written(client: SyncRedis) -> bool:
    return client.zcard(KEYS.queue) == 0 and not client.exists(KEYS.batch("pre").record)


def _spec(model: str = "gpt-4o-mini") -> BatchSpec:
    return build_spec(
        SubmitOptions(
            batch_id="pre",
            api="responses",
            model=model,
            schema=resolve_schema("invoice"),
            instructions=DEFAULT_INSTRUCTIONS,
            params=GenerationParams(),
        )
    )


# -- the model ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["", "   "])
def test_an_empty_model_is_a_one_line_usage_error(cli_env, tmp_path, model) -> None:
    result = _submit(_write(tmp_path, "Invoice 1"), model=model)
    assert result.exit_code == EXIT_INVALID_INPUT
    assert result.stderr.strip().splitlines() == [
        "error: --model is empty: name a model, e.g. gpt-4o-mini (or set EXTRACT_MODEL)"
    ]
    assert _nothing_written(cli_env)


def test_an_empty_model_from_the_environment_is_refused_too(cli_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXTRACT_MODEL", "")
    path = _write(tmp_path, "Invoice 1")
    result = CliRunner().invoke(main, ["submit", str(path), "--schema", "invoice", "--batch-id", "pre"])
    assert result.exit_code == EXIT_INVALID_INPUT
    assert "--model is empty" in result.stderr
    assert _nothing_written(cli_env)


def test_a_model_without_a_price_is_warned_about_and_submitted(cli_env, tmp_path) -> None:
    """gpt-4-turbo has a known context window but no price in the table: one warning line, and the batch goes in."""
    result = _submit(_write(tmp_path, "Invoice 1"), model="gpt-4-turbo")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert warnings == [
        "warning: no price is configured for model 'gpt-4-turbo': costs will show as n/a (add it to EXTRACT_PRICES)"
    ]
    assert cli_env.zcard(KEYS.queue) == 1


def test_a_priced_model_with_a_known_window_gets_no_warning(cli_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXTRACT_PRICES", '{"gpt-4-turbo": {"input": 10, "cached_input": 5, "output": 30}}')
    result = _submit(_write(tmp_path, "Invoice 1"), model="gpt-4-turbo")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_an_unknown_model_is_warned_about_price_and_window(cli_env, tmp_path) -> None:
    result = _submit(_write(tmp_path, "Invoice 1"), model="my-finetune")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 2
    assert "no price is configured for model 'my-finetune'" in warnings[0]
    assert "no context window is known for model 'my-finetune'" in warnings[1]
    assert "EXTRACT_CONTEXT_WINDOWS" in warnings[1]


# -- the documents --------------------------------------------------------------------------------------------------


def test_a_document_over_the_context_window_is_reported_with_its_line_number(cli_env, tmp_path) -> None:
    """With the default table (gpt-4o-mini: 128,000 tokens), a 450 KB document of prose (under the 1 MB byte limit)
    is about 180,000 tokens: refused like a bad line, exit 2, nothing written."""
    big = SENTENCE * 6000
    assert len(big.encode()) < Settings().max_document_bytes
    path = _write(tmp_path, "Invoice 1", big, "Invoice 3")
    result = _submit(path)
    assert result.exit_code == EXIT_INVALID_INPUT
    expected_tokens = estimate_input_tokens(big, instructions=DEFAULT_INSTRUCTIONS, json_schema=_spec().json_schema)
    assert expected_tokens > 128_000
    assert (
        f"{path}:2: document is about {expected_tokens:,} input tokens with the instructions and schema, over the "
        "128,000-token context window of gpt-4o-mini (EXTRACT_CONTEXT_WINDOWS)"
    ) in result.stderr
    assert ":1:" not in result.stderr
    assert ":3:" not in result.stderr
    assert "1 invalid line(s); nothing was enqueued" in result.stderr
    assert _nothing_written(cli_env)


def test_the_same_document_fits_a_larger_window(cli_env, tmp_path) -> None:
    """gpt-4.1's window is 1,047,576 tokens: the same document goes in."""
    result = _submit(_write(tmp_path, "Invoice 1", SENTENCE * 6000), model="gpt-4.1")
    assert result.exit_code == 0, result.output
    assert cli_env.zcard(KEYS.queue) == 2


def test_a_document_over_the_byte_limit_is_reported(cli_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXTRACT_MAX_DOCUMENT_BYTES", "100")
    path = _write(tmp_path, "Invoice 1", "é" * 60, "x" * 100)
    result = _submit(path)
    assert result.exit_code == EXIT_INVALID_INPUT
    assert f"{path}:2: document is 120 bytes, over the limit of 100 bytes (EXTRACT_MAX_DOCUMENT_BYTES)" in result.stderr
    assert ":3:" not in result.stderr  # exactly at the limit is fine
    assert _nothing_written(cli_env)


def test_skip_invalid_enqueues_the_lines_that_fit(cli_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXTRACT_MAX_DOCUMENT_BYTES", "50")
    path = _write(tmp_path, "Invoice 1", "y" * 51, "Invoice 3")
    result = _submit(path, "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert f"{path}:2: document is 51 bytes" in result.stderr
    assert cli_env.zcard(KEYS.queue) == 2


def test_the_context_window_table_is_overridable(cli_env, tmp_path, monkeypatch) -> None:
    """EXTRACT_CONTEXT_WINDOWS is merged over the table: a smaller window refuses a 7 KB document; 0 turns the check
    off for that model."""
    path = _write(tmp_path, SENTENCE * 100)
    monkeypatch.setenv("EXTRACT_CONTEXT_WINDOWS", '{"gpt-4o-mini": 2000}')
    result = _submit(path)
    assert result.exit_code == EXIT_INVALID_INPUT
    assert "over the 2,000-token context window of gpt-4o-mini" in result.stderr
    monkeypatch.setenv("EXTRACT_CONTEXT_WINDOWS", '{"gpt-4o-mini": 0}')
    result = _submit(path)
    assert result.exit_code == 0, result.output
    assert "context window" not in result.stderr


def test_duplicate_detection_ignores_a_refused_line(tmp_path) -> None:
    """A refused line is invalid like any other: a later line with its id is not a duplicate of it."""
    path = tmp_path / "in.jsonl"
    path.write_text('{"custom_id": "a", "text": "' + "z" * 80 + '"}\n{"custom_id": "a", "text": "ok"}\n')
    settings = Settings(max_document_bytes=50)
    source = FileSource.open(path, check=document_check(_spec(), settings))
    reason = "document is 80 bytes, over the limit of 50 bytes (EXTRACT_MAX_DOCUMENT_BYTES)"
    assert [str(e) for e in source.scan.errors] == [f"line 1: {reason}"]
    assert [(line.line, line.custom_id) for line in source.lines()] == [(2, "a")]


# -- the pure functions the worker calls too ------------------------------------------------------------------------


def test_input_too_large_reasons_and_the_cheap_path() -> None:
    settings = Settings()
    spec = _spec()
    assert input_too_large(spec, "Invoice 1", settings) is None
    assert input_too_large("gpt-4o-mini", "Invoice 1", settings) is None
    assert input_too_large("unknown-model", SENTENCE * 6000, settings) is None  # no window known: bytes only
    reason = input_too_large("unknown-model", "x" * 1_000_001, settings)
    assert reason == "document is 1,000,001 bytes, over the limit of 1,000,000 bytes (EXTRACT_MAX_DOCUMENT_BYTES)"
    model_only = input_too_large("gpt-4o-mini", SENTENCE * 6000, settings)
    assert model_only is not None
    assert "with the message overhead, over the 128,000-token context window" in model_only
    # Without a byte limit, the window still applies (a run of one character: about 8 bytes a token).
    no_bytes = input_too_large(spec, "x" * 2_000_000, Settings(max_document_bytes=0))
    assert no_bytes is not None
    assert "context window of gpt-4o-mini" in no_bytes


def test_limits_can_be_turned_off() -> None:
    off = Settings(max_document_bytes=0, context_windows={"gpt-4o-mini": 0})
    assert input_too_large(_spec(), "x" * 3_000_000, off) is None


def test_context_windows_match_families_and_snapshots() -> None:
    settings = Settings(context_windows={"my-ft": 32_000, "gpt-5": 300_000})
    expected = {
        "gpt-4o-mini": 128_000,
        "gpt-4o-mini-2024-07-18": 128_000,
        "gpt-4o-2024-08-06": 128_000,
        "gpt-4.1-nano": 1_047_576,
        "o3": 200_000,
        "o4-mini-2025-04-16": 200_000,
        "gpt-5-mini": 300_000,  # the override replaces the table's family entry
        "gpt-5.2": 300_000,
        "gpt-5-chat-latest": 128_000,
        "gpt-5.4": 1_050_000,
        "gpt-5.4-mini": 400_000,
        "my-ft": 32_000,
        "my-ft-v2": 32_000,
        "unknown": None,
    }
    assert {model: context_window(model, settings) for model in expected} == expected
    assert context_window("gpt-5-mini", Settings()) == DEFAULT_CONTEXT_WINDOWS["gpt-5"] == 400_000


# -- the simulator's context window ---------------------------------------------------------------------------------


def _body(endpoint: str, text: str, model: str = "gpt-4o-mini") -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    if endpoint == "responses":
        return {
            "model": model,
            "input": text,
            "text": {"format": {"type": "json_schema", "name": "s", "schema": schema, "strict": True}},
        }
    return {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": True}},
    }


async def _post(sim: Any, endpoint: str, body: dict[str, Any]) -> tuple[int, Any]:
    path = "/responses" if endpoint == "responses" else "/chat/completions"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http, http.post(f"{sim.base_url}{path}", json=body, headers=headers) as r:
        return r.status, await r.json()


@pytest.mark.parametrize(
    "sim_config", [SimulatorConfig(require_api_key=API_KEY, context_windows={"gpt-4o-mini": 1000})], indirect=True
)
async def test_simulator_refuses_an_input_over_the_context_window(sim) -> None:
    """OpenAI's 400 context_length_exceeded, in each endpoint's words; unbilled; a smaller input is answered."""
    status, body = await _post(sim, "responses", _body("responses", "word " * 1000))
    assert status == 400
    assert body == {
        "error": {
            "message": "Your input exceeds the context window of this model. Please adjust your input and try again.",
            "type": "invalid_request_error",
            "param": "input",
            "code": "context_length_exceeded",
        }
    }
    status, body = await _post(sim, "chat", _body("chat", "word " * 1000))
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"
    assert body["error"]["param"] == "messages"
    assert body["error"]["message"].startswith("This model's maximum context length is 1000 tokens. However, your ")
    assert body["error"]["message"].endswith(" tokens. Please reduce the length of the messages.")

    status, _ = await _post(sim, "responses", _body("responses", "word " * 100))
    assert status == 200
    status, _ = await _post(sim, "responses", _body("responses", "word " * 1000, model="gpt-4.1"))  # a larger window
    assert status == 200
    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["by_status"] == {"400": 2, "200": 2}


def test_simulator_windows_follow_the_families() -> None:
    assert context_window_for("gpt-4o-mini-2024-07-18", {}) == 128_000
    assert context_window_for("gpt-5.2", {}) == 400_000
    assert context_window_for("gpt-4.1-mini", {"gpt-4.1": 0}) is None  # 0 = unlimited
    assert context_window_for("local-llama", {}) is None


async def test_simulator_default_window_refuses_a_huge_document(sim) -> None:
    """The issue's 20 MB document: no longer answered with 5 million input tokens."""
    status, body = await _post(sim, "responses", _body("responses", "x" * 600_000))  # 150,000 simulator tokens
    assert status == 400
    assert body["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize(
    "sim_config", [SimulatorConfig(require_api_key=API_KEY, context_windows={"gpt-4o-mini": 2000})], indirect=True
)
async def test_a_line_the_api_refuses_for_its_context_window_fails_without_retries(
    sim, redis, keys, submit_batch, run_worker
) -> None:
    """Past the preflight (the worker's window is OpenAI's, the provider's smaller), the 400 fails the line at once:
    one call, no retry; the other line succeeds."""
    await submit_batch({"small": "Invoice 1 from ACME, total 10 EUR.", "big": SENTENCE * 120})
    await run_worker()
    results = await results_by_id(redis, keys, "b1")
    assert results["small"].status is Status.SUCCEEDED
    big = results["big"]
    assert big.status is Status.FAILED
    assert big.error is not None
    assert big.error.type is ErrorType.INVALID_REQUEST
    assert big.error.status_code == 400
    assert "context window" in big.error.message
    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["by_status"] == {"200": 1, "400": 1}


async def test_a_document_over_the_workers_limit_fails_as_input_too_large_without_a_call(
    redis, keys, sim, submit_batch, run_worker
) -> None:
    """A line enqueued under other limits (an older submit, another config) is checked again where it runs."""
    await submit_batch({"small": "Invoice 1, total 5 EUR.", "big": "Invoice 2. " + "line item, 1.00 EUR; " * 200})
    await run_worker(max_document_bytes=1000)
    results = await results_by_id(redis, keys, "b1")
    assert results["small"].status is Status.SUCCEEDED
    big = results["big"]
    assert big.status is Status.FAILED
    assert big.error is not None
    assert big.error.type is ErrorType.INPUT_TOO_LARGE
    assert big.attempts == 0
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 1  # only the small one was sent
