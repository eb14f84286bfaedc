"""The one retry policy, without I/O: when to stop and how long to wait, for every way a try can end."""

from __future__ import annotations

import random

import pytest

from schemas.results import ErrorType
from worker.policy import Ending, GiveUp, History, Limits, RetryIn, TryEnded, decide

LIMITS = Limits(
    max_tries=5, retry_horizon_s=60, max_deferrals=10, max_internal_errors=3, backoff_base_s=1, backoff_cap_s=30
)
NOW = 1_000_000


def _decide(ending: Ending, history: History, **extra) -> RetryIn | GiveUp:
    return decide(LIMITS, TryEnded(ending, "why", **extra), history, now_ms=NOW, rng=random.Random(1))


@pytest.mark.parametrize("ending", [Ending.TRANSIENT, Ending.TIMEOUT])
def test_errors_retry_with_backoff_until_the_budget_is_spent(ending: Ending) -> None:
    assert isinstance(_decide(ending, History(errors=4, first_error_ms=NOW)), RetryIn)
    spent = _decide(ending, History(errors=5, first_error_ms=NOW))
    assert isinstance(spent, GiveUp)
    assert spent.error_type is (ErrorType.TIMEOUT if ending is Ending.TIMEOUT else ErrorType.RETRIES_EXHAUSTED)
    assert "last error: why" in spent.message


def test_the_horizon_ends_every_kind_of_error_but_waiting() -> None:
    late = History(errors=1, internal=1, waits=1, first_error_ms=NOW - 61_000)
    for ending in (Ending.TRANSIENT, Ending.RATE_LIMITED, Ending.TIMEOUT, Ending.INTERNAL):
        assert isinstance(_decide(ending, late), GiveUp), ending
    assert isinstance(_decide(Ending.WAITING, late, wait_s=2.0), RetryIn)


def test_a_429_does_not_use_up_the_error_budget() -> None:
    decision = _decide(Ending.RATE_LIMITED, History(errors=50, first_error_ms=NOW), retry_after_s=2.0)
    assert isinstance(decision, RetryIn)
    assert 2.0 <= decision.delay_s <= 2.0 * 1.1 + 0.05  # retry-after wins, with a little jitter


def test_waiting_waits_exactly_as_told_until_its_own_budget_is_spent() -> None:
    assert _decide(Ending.WAITING, History(waits=10), wait_s=3.5) == RetryIn(3.5)
    spent = _decide(Ending.WAITING, History(waits=11), wait_s=3.5)
    assert isinstance(spent, GiveUp)
    assert spent.error_type is ErrorType.RETRIES_EXHAUSTED


def test_internal_errors_fail_as_internal_error_after_their_budget() -> None:
    assert isinstance(_decide(Ending.INTERNAL, History(internal=2, first_error_ms=NOW)), RetryIn)
    spent = _decide(Ending.INTERNAL, History(internal=3, first_error_ms=NOW))
    assert isinstance(spent, GiveUp)
    assert spent.error_type is ErrorType.INTERNAL_ERROR


def test_backoff_grows_with_the_errors_and_is_capped() -> None:
    limits = Limits(
        max_tries=100, retry_horizon_s=600, max_deferrals=10, max_internal_errors=3, backoff_base_s=1, backoff_cap_s=30
    )

    def ceiling(errors: int) -> float:
        delays = []
        for seed in range(200):
            decision = decide(
                limits,
                TryEnded(Ending.TRANSIENT, "x"),
                History(errors=errors, first_error_ms=NOW),
                now_ms=NOW,
                rng=random.Random(seed),
            )
            assert isinstance(decision, RetryIn)
            delays.append(decision.delay_s)
        return max(delays)

    assert ceiling(1) <= 1 < ceiling(2) <= 2 < ceiling(3) <= 4
    assert 16 < ceiling(20) <= 30


def test_the_counts_of_one_kind_do_not_stop_another() -> None:
    """Many waits and 429s do not make a 5xx give up early; internal errors have their own budget."""
    history = History(errors=1, internal=2, waits=10, first_error_ms=NOW)
    assert isinstance(_decide(Ending.TRANSIENT, history), RetryIn)
    assert isinstance(_decide(Ending.WAITING, history, wait_s=1), RetryIn)
