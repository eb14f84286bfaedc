"""One of each: one raw token count (``schemas.token_count``) that the producer's estimates and the worker's
calibrated reservations are built on, and one way to read the API key (``CommonSettings.api_key``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.input_limits import estimate_input_tokens
from schemas.settings import CommonSettings, ProducerSettings, Settings, WorkerSettings
from schemas.token_count import (
    PER_MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    count_tokens,
    prompt_tokens,
    raw_input_tokens,
    schema_json,
)
from tests.processes import invoice_spec
from worker.prompt import first_request, repair_request
from worker.tokens import raw_estimate

REPO = Path(__file__).resolve().parent.parent
OUR_PACKAGES = ("schemas", "store", "producer", "worker", "simulator")


def test_count_tokens_counts_cl100k_tokens_and_special_text_as_text() -> None:
    """The count is cl100k_base's; text that looks like a special token is counted, not refused."""
    assert count_tokens("") == 0
    assert count_tokens("hello") == 1
    assert count_tokens("special <|endoftext|> text") > count_tokens("special  text")


def test_a_request_counts_schema_instructions_messages_and_overheads() -> None:
    """The shared part once (schema, instructions, their message), then each message with its overhead, then the
    reply priming."""
    schema = {"type": "object", "b": 1, "a": 2}
    assert schema_json(schema) == '{"a":2,"b":1,"type":"object"}'
    assert schema_json(None) == schema_json({}) == ""
    prompt = prompt_tokens("Extract.", schema_json(schema))
    assert prompt == count_tokens(schema_json(schema)) + count_tokens("Extract.") + PER_MESSAGE_OVERHEAD
    messages = ["Invoice 7 from ACME", '{"total": 1}', "Answer again."]
    expected = prompt + sum(count_tokens(m) + PER_MESSAGE_OVERHEAD for m in messages) + REPLY_PRIMING
    assert raw_input_tokens(prompt, messages) == expected
    assert raw_input_tokens(0, []) == REPLY_PRIMING


@pytest.mark.parametrize("text", ["Invoice 1", "Invoice 2026-17 from ACME Corp. " * 50, "special <|endoftext|> text"])
def test_the_producer_and_the_worker_count_with_the_one_function(text: str) -> None:
    """``producer estimate``/the context-window check and the worker's raw estimate (first call and repair) are
    the one count, so they cannot drift apart."""
    spec = invoice_spec("one")
    prompt = prompt_tokens(spec.instructions, schema_json(spec.json_schema))
    assert estimate_input_tokens(text, instructions=spec.instructions, json_schema=spec.json_schema) == (
        raw_input_tokens(prompt, [text])
    )
    request = first_request(spec, text, store=False)
    assert raw_estimate(request) == raw_input_tokens(prompt, [text])
    repair = repair_request(request, '{"bad": true}', ["'total' is a required property"])
    assert raw_estimate(repair) == raw_input_tokens(prompt, [m.text for m in repair.messages[1:]])


def test_only_the_one_module_loads_the_tokenizer() -> None:
    """No second raw counter: ``tiktoken`` is imported by ``schemas.token_count`` alone."""
    importers = sorted(
        str(path.relative_to(REPO))
        for package in OUR_PACKAGES
        for path in (REPO / package).rglob("*.py")
        if "import tiktoken" in path.read_text() or "from tiktoken" in path.read_text()
    )
    assert importers == ["schemas/token_count.py"]


@pytest.mark.parametrize("settings_class", [Settings, WorkerSettings, ProducerSettings])
def test_the_api_key_is_read_one_way_and_empty_counts_as_none(settings_class: type[CommonSettings]) -> None:
    """``api_key()`` gives the key in plain text; unset and empty are both None."""
    assert settings_class().api_key() is None
    assert settings_class(openai_api_key="").api_key() is None
    assert settings_class(openai_api_key="sk-one").api_key() == "sk-one"


def test_the_worker_client_refuses_an_empty_key() -> None:
    """The client builder reads the key through ``api_key()``: an empty key is no key."""
    from worker.adapters.client import build_client

    with pytest.raises(ValueError, match="no API key"):
        build_client(WorkerSettings(openai_api_key=""))


def test_only_the_settings_read_the_api_key() -> None:
    """One way to read the key (``CommonSettings.api_key``): a second reader would be a second rule for "no key"."""
    readers = [
        str(path.relative_to(REPO))
        for package in ("producer", "worker", "store", "schemas", "simulator")
        for path in (REPO / package).rglob("*.py")
        if "openai_api_key" in path.read_text() and path != REPO / "schemas" / "settings.py"
    ]
    assert readers == []
