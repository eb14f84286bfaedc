"""The one classify step: the facts of a failed call, and every decision taken on them."""

from __future__ import annotations

import pytest

from schemas.results import ErrorType
from worker.adapters.errors import ApiCallError
from worker.classify import Settle, classify_call_error, wait_in_message
from worker.policy import Ending
from worker.retry import parse_duration_s

LIMITED = (
    "Rate limit reached for gpt-4o-mini in organization org-x on tokens per min (TPM): Limit 2000000, Used 1999000, "
    "Requested 1500. Please try again in 634ms. Visit https://platform.openai.com/account/rate-limits to learn more."
)
TOO_LARGE = (
    "Request too large for gpt-4o-mini in organization org-x on tokens per min (TPM): Limit 30000, Requested 45000. "
    "The input or output tokens must be reduced in order to run successfully."
)


def _error(status: int | None, message: str = "x", code: str | None = None, **headers: str) -> ApiCallError:
    return ApiCallError(
        message, status_code=status, code=code, headers={k.replace("_", "-"): v for k, v in headers.items()}
    )


def test_a_rate_limit_429_cools_the_scope_for_retry_after() -> None:
    verdict = classify_call_error(_error(429, LIMITED, "rate_limit_exceeded", retry_after_ms="250"))
    assert verdict.settle is Settle.LIMITED
    assert verdict.cooldown_s == 0.25
    assert verdict.ended is not None
    assert verdict.ended.ending is Ending.RATE_LIMITED
    assert verdict.final is None


def test_a_429_without_retry_after_takes_the_wait_from_its_message() -> None:
    verdict = classify_call_error(_error(429, LIMITED, "rate_limit_exceeded"))
    assert verdict.cooldown_s == pytest.approx(0.634)
    assert verdict.ended is not None
    assert verdict.ended.retry_after_s == pytest.approx(0.634)


def test_request_too_large_fails_at_once_with_its_numbers() -> None:
    verdict = classify_call_error(_error(429, TOO_LARGE, "rate_limit_exceeded"))
    assert verdict.final is not None
    assert verdict.final.error_type is ErrorType.INPUT_TOO_LARGE
    assert "Limit 30000, Requested 45000" in verdict.final.message
    assert verdict.settle is Settle.UNAVAILABLE  # unbilled: the reservation comes back
    assert verdict.cooldown_s is None


def test_resource_unavailable_backs_the_line_off_without_cooling_the_scope() -> None:
    verdict = classify_call_error(_error(429, "Resource unavailable", "resource_unavailable", retry_after="2"))
    assert verdict.settle is Settle.UNAVAILABLE
    assert verdict.cooldown_s is None
    assert verdict.ended is not None
    assert (verdict.ended.ending, verdict.ended.retry_after_s) == (Ending.RATE_LIMITED, 2.0)


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, ErrorType.INVALID_REQUEST),
        (401, ErrorType.AUTHENTICATION),
        (403, ErrorType.PERMISSION),
        (404, ErrorType.NOT_FOUND),
        (422, ErrorType.INVALID_REQUEST),
        (418, ErrorType.INVALID_REQUEST),
    ],
)
def test_client_errors_fail_at_once(status: int, error_type: ErrorType) -> None:
    verdict = classify_call_error(_error(status))
    assert verdict.final is not None
    assert (verdict.final.error_type, verdict.final.status_code) == (error_type, status)
    assert verdict.settle is Settle.FAILED


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503])
def test_server_errors_are_transient_and_keep_their_charge(status: int) -> None:
    verdict = classify_call_error(_error(status, retry_after="3"))
    assert verdict.ended is not None
    assert (verdict.ended.ending, verdict.ended.retry_after_s) == (Ending.TRANSIENT, 3.0)
    assert verdict.settle is Settle.FAILED
    assert not verdict.possibly_billed


@pytest.mark.parametrize("kind", ["timeout", "connection"])
def test_no_answer_is_transient_and_possibly_billed(kind: str) -> None:
    verdict = classify_call_error(ApiCallError("gone", no_answer=kind))  # type: ignore[arg-type]
    assert verdict.ended is not None
    assert verdict.ended.ending is Ending.TRANSIENT
    assert verdict.possibly_billed


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20ms", 0.02),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("6m0s", 360.0),
        ("1h2m3.5s", 3723.5),
        ("0s", 0.0),
        ("", None),
        ("soon", None),
        ("5 s", None),
    ],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    assert parse_duration_s(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_the_wait_in_a_message() -> None:
    assert wait_in_message("... Please try again in 1.5s. Visit ...") == 1.5
    assert wait_in_message("Try again in 20s") == 20
    assert wait_in_message("no hint here") is None
