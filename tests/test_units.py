"""Pure pieces: retry classification and backoff, pricing, prompts, fingerprints, settings, readers."""

from __future__ import annotations

import logging
import random

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.batch.collect import to_openai_batch
from producer.input.readers import batch_body_check, scan_input, valid_lines
from schemas.jobs import BatchSpec, Fingerprinter, GenerationParams
from schemas.pricing import ModelPrice, cost_usd
from schemas.results import Usage
from schemas.settings import Settings
from store.keys import InvalidIdError, Keys, check_batch_id
from worker.logs import RepeatSummary
from worker.prompt import first_request, prompt_cache_key, repair_request
from worker.retry import backoff_delay, is_retryable_status, parse_retry_after


def _spec(**overrides) -> BatchSpec:
    base = {
        "batch_id": "b",
        "api": "responses",
        "model": "gpt-4o-mini",
        "schema_ref": "invoice",
        "schema_name": "Invoice",
        "json_schema": {
            "type": "object",
            "properties": {"a": {"type": "string"}},
            "required": ["a"],
            "additionalProperties": False,
        },
        "source_schema": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        "created_at": "2026-11-22T00:00:00Z",
    }
    return BatchSpec.model_validate({**base, **overrides})


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 599])
def test_retryable_statuses(status: int) -> None:
    assert is_retryable_status(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    assert not is_retryable_status(status)


@given(attempt=st.integers(1, 30), seed=st.integers(0, 2**32))
def test_backoff_is_full_jitter_under_the_cap(attempt: int, seed: int) -> None:
    delay = backoff_delay(attempt, base_s=0.5, cap_s=20, rng=random.Random(seed))
    assert 0 <= delay <= min(20, 0.5 * 2 ** (attempt - 1))


def test_retry_after_wins_with_a_little_jitter_but_is_capped() -> None:
    delays = [backoff_delay(1, base_s=1, cap_s=60, retry_after_s=7.5, rng=random.Random(n)) for n in range(50)]
    assert all(7.5 <= d <= 7.5 * 1.1 + 0.05 for d in delays)
    assert len(set(delays)) > 1
    assert backoff_delay(1, base_s=1, cap_s=60, retry_after_s=600) == 60


def test_parse_retry_after_prefers_milliseconds() -> None:
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "3"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}) is None
    assert parse_retry_after({}) is None


def test_cost_charges_cached_input_at_the_cached_rate() -> None:
    usage = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000, total_tokens=1_100_000)
    price = ModelPrice(input=1.0, cached_input=0.5, output=4.0)
    assert cost_usd(usage, price) == pytest.approx(0.6 + 0.2 + 0.4)
    assert cost_usd(usage, None) is None


def test_price_table_overrides_and_snapshot_prefixes() -> None:
    settings = Settings(prices={"gpt-4o-mini": {"input": 9, "cached_input": 9, "output": 9}})
    assert settings.price_for("gpt-4o-mini") == ModelPrice(input=9, cached_input=9, output=9)
    assert settings.price_for("gpt-4.1-mini-2025-04-14") == Settings().price_for("gpt-4.1-mini")
    assert settings.price_for("unknown-model") is None


def test_prices_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXTRACT_PRICES", '{"my-ft": {"input": 3, "cached_input": 1.5, "output": 12}}')
    assert Settings().price_for("my-ft") == ModelPrice(input=3, cached_input=1.5, output=12)


def test_settings_env_twins_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("EXTRACT_CONCURRENCY", "7")
    settings = Settings.from_flags(concurrency=None, max_tries=9)
    assert settings.redis_url == "redis://example:6379/2"
    assert settings.concurrency == 7
    assert settings.max_tries == 9
    assert settings.openai_api_key is not None
    assert "sk-env" not in repr(settings)


def test_fingerprint_depends_on_everything_that_changes_the_answer_only() -> None:
    base = _spec()
    fp = Fingerprinter(base)("doc")
    assert fp == Fingerprinter(_spec(batch_id="other"))("doc")  # batch id is not part of it
    assert fp != Fingerprinter(base)("doc2")
    assert fp != Fingerprinter(_spec(model="gpt-4o"))("doc")
    assert fp != Fingerprinter(_spec(api="chat"))("doc")
    assert fp != Fingerprinter(_spec(instructions="other"))("doc")
    assert fp != Fingerprinter(_spec(params=GenerationParams(temperature=0.5)))("doc")


def test_prompt_puts_the_stable_part_first_and_repairs_append() -> None:
    spec = _spec()
    request = first_request(spec, "the document", store=False)
    assert [m.role for m in request.messages] == ["developer", "user"]
    assert request.messages[-1].text == "the document"
    assert request.prompt_cache_key == prompt_cache_key(_spec(batch_id="another batch"))
    repaired = repair_request(request, '{"a": 1}', ["a: Input should be a valid string"])
    assert repaired.messages[:2] == request.messages
    assert [m.role for m in repaired.messages[2:]] == ["assistant", "user"]
    assert "a: Input should be a valid string" in repaired.messages[-1].text
    assert repaired.prompt_cache_key == request.prompt_cache_key


def test_keys_share_the_prefix_and_job_ids_name_the_line_by_position() -> None:
    keys = Keys("p:")
    assert keys.queue == "p:queue"
    assert keys.batch("b").results == "p:batch:b:results"
    assert keys.job_id("b", 7) == "p:b:7"
    assert keys.job_id("b", 7, 2) == "p:b:7.2"
    assert Keys.job_ordinal(keys.job_id("b", 7, 2)) == 7
    assert all(key.startswith("p:batch:b") for key in keys.batch("b"))


@pytest.mark.parametrize("batch_id", ["", "cc:results", "a b", "x*", "-lead", "é", "a" * 129, "new\nline"])
def test_batch_ids_outside_the_alphabet_are_refused(batch_id: str) -> None:
    with pytest.raises(InvalidIdError):
        check_batch_id(batch_id)


@pytest.mark.parametrize("prefix", ["", "x", "a:b:", "arq:", "with space:", "*:"])
def test_prefixes_are_one_segment(prefix: str) -> None:
    with pytest.raises(InvalidIdError):
        Keys(prefix)


def test_reader_reports_every_error_with_its_line() -> None:
    raw = [b'{"custom_id": "a", "text": "t"}', b"", b'{"custom_id": true, "text": "t"}', b"3"]
    scan = scan_input(lambda: raw)
    assert [str(e) for e in scan.errors] == [
        "line 3: field 'custom_id' must be a string or an integer, got bool",
        "line 4: expected a JSON object, got int",
    ]
    assert scan.count == 1
    lines = valid_lines(raw, fmt=scan.format, skip=scan.invalid_lines)
    assert [line.line for line in lines] == [1]


def test_reader_confirms_duplicates_and_skips_them_consistently() -> None:
    raw = [b'{"custom_id": "a", "text": "1"}', b'{"custom_id": "b", "text": "2"}', b'{"custom_id": "a", "text": "3"}']
    scan = scan_input(lambda: raw)
    assert [str(e) for e in scan.errors] == ["line 3: duplicate id 'a' (first on line 1)"]
    assert scan.count == 2
    kept = valid_lines(raw, fmt=scan.format, skip=scan.invalid_lines)
    assert [(line.line, line.custom_id) for line in kept] == [(1, "a"), (2, "b")]


def test_a_key_collision_is_a_suspect_never_a_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ids whose 48-bit keys collide (here: every id, and keys that differ only above the low byte) are confirmed by
    the ids themselves: only the real repeat is reported."""
    import producer.input.readers as readers

    raw = [orjson.dumps({"custom_id": f"id-{n}", "text": str(n)}) for n in range(600)]
    raw.append(b'{"custom_id": "id-7", "text": "again"}')
    monkeypatch.setattr(readers, "_id_key", lambda custom_id: (len(custom_id) << 8) | 0x2A)
    scan = scan_input(lambda: raw)
    assert [str(e) for e in scan.errors] == ["line 601: duplicate id 'id-7' (first on line 8)"]
    assert scan.count == 600
    seen = readers._SeenIds()
    for key in (1 << 47 | 5, 5, 1 << 47 | 5, (1 << 48) - 1):
        seen.add(key)
    assert seen.repeated() == {1 << 47 | 5}


def test_token_estimates_start_conservative_and_learn_from_real_usage() -> None:
    from worker.tokens import INITIAL_RATIO, TokenEstimator, raw_estimate

    request = first_request(_spec(), "Invoice 7 from ACME, 3 widgets, total 30 USD.", store=False)
    raw = raw_estimate(request)
    estimator = TokenEstimator()
    first, reported_raw = estimator.estimate(request)
    assert reported_raw.total == raw
    assert first >= raw * INITIAL_RATIO  # before any reply: on the safe side
    for _ in range(30):
        estimator.observe(request.model, raw, int(raw * 1.1))  # the provider counts 10 % more
    calibrated, _ = estimator.estimate(request)
    assert calibrated == pytest.approx(raw * 1.1, rel=0.02)
    estimator.observe(request.model, raw, 10**9)  # absurd observations are clamped, not trusted
    assert estimator.ratios[request.model] <= 3.0


def test_openai_batch_output_gives_every_line_its_own_id() -> None:
    def result(custom_id: str) -> dict[str, object]:
        return {
            "custom_id": custom_id,
            "fingerprint": "sha256:" + "ab" * 32,  # the same document twice
            "status": "failed",
            "error": {"type": "refusal", "message": "no"},
        }

    first, second = to_openai_batch(result("a")), to_openai_batch(result("b"))
    assert first["id"] != second["id"]
    assert str(first["id"]).startswith("batch_req_")
    assert to_openai_batch(result("a"))["id"] == first["id"]  # stable across collects


def test_repeated_warnings_are_one_line_per_interval_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.repeats")
    repeats = RepeatSummary(log, interval_s=10)
    with caplog.at_level(logging.WARNING, logger="test.repeats"):
        said = [repeats.warning(("b", 503), t, "line %d failed", n) for n, t in enumerate([0, 1, 2, 3, 11, 12])]
        assert repeats.warning(("b", 429), 12, "other kind %s", "x")  # another kind is its own run
    assert said == [True, False, False, False, True, False]
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["line 0 failed", "line 4 failed (and 3 more like it in the last 11s)", "other kind x"]


def test_a_native_line_with_a_body_field_is_not_taken_for_a_batch_api_line() -> None:
    lines = [
        orjson.dumps({"custom_id": "t1", "text": "Printer on fire", "body": "a ticket's own body field"}),
        orjson.dumps({"custom_id": "t2", "text": "Login fails", "body": {"model": "gpt-4.1"}, "method": "GET"}),
    ]
    spec = _spec()
    scan = scan_input(lambda: iter(lines), batch_check=batch_body_check(spec))
    assert (scan.format, scan.count, scan.errors) == ("native", 2, [])
