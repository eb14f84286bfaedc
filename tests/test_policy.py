"""The one retry policy, without I/O: when to stop and how long to wait, for every way a try can end."""

from __future__ import annotations

import random

import pytest

from schemas.results import ErrorType
from worker.policy import HELD_BASE_S, HELD_CAP_S, Ending, GiveUp, History, Limits, RetryIn, TryEnded, decide

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


def test_a_cut_off_below_the_cap_is_retried_then_fails_as_truncated() -> None:
    """Issue 19 item 9: a TRUNCATED ending retries with backoff until its own small budget (three cut-offs) is spent,
    then fails as ``truncated`` (not ``retries_exhausted``), saying how many times."""
    assert LIMITS.max_cut_offs == 3
    again = _decide(Ending.TRUNCATED, History(errors=2, cut_offs=2, first_error_ms=NOW))
    assert isinstance(again, RetryIn)
    assert 0 <= again.delay_s <= 2
    spent = _decide(Ending.TRUNCATED, History(errors=3, cut_offs=3, first_error_ms=NOW))
    assert isinstance(spent, GiveUp)
    assert spent.error_type is ErrorType.TRUNCATED
    assert "cut off 3 times" in spent.message
    assert "last: why" in spent.message


def test_a_cut_off_is_also_bounded_by_the_error_budget_and_the_horizon() -> None:
    """Cut-offs count as errors: max_tries and the retry horizon end them too, still as ``truncated``."""
    limits = Limits(
        max_tries=2, retry_horizon_s=60, max_deferrals=10, max_internal_errors=3, backoff_base_s=1, backoff_cap_s=30
    )
    by_tries = decide(
        limits, TryEnded(Ending.TRUNCATED, "x"), History(errors=2, cut_offs=1, first_error_ms=NOW), now_ms=NOW
    )
    assert isinstance(by_tries, GiveUp)
    assert by_tries.error_type is ErrorType.TRUNCATED
    late = _decide(Ending.TRUNCATED, History(errors=1, cut_offs=1, first_error_ms=NOW - 61_000))
    assert isinstance(late, GiveUp)
    assert late.error_type is ErrorType.TRUNCATED


def test_cut_offs_and_other_errors_share_the_error_budget_only() -> None:
    """Three cut-offs do not stop a 5xx early (it has max_tries); a 5xx after cut-offs still fails as
    ``retries_exhausted`` once the errors, cut-offs included, reach max_tries."""
    assert isinstance(_decide(Ending.TRANSIENT, History(errors=4, cut_offs=3, first_error_ms=NOW)), RetryIn)
    spent = _decide(Ending.TRANSIENT, History(errors=5, cut_offs=3, first_error_ms=NOW))
    assert isinstance(spent, GiveUp)
    assert spent.error_type is ErrorType.RETRIES_EXHAUSTED
    assert Ending.TRUNCATED.counts_as_error


def test_a_line_held_back_by_the_budget_in_flight_never_gives_up_and_backs_off() -> None:
    """Waiting for the batch's calls in flight to settle is bounded by them (a call's time, or a dead worker's
    lease), not by the line: it never exhausts the line, and its delay grows (with jitter) up to a cap."""
    late = History(errors=1, waits=10_000, first_error_ms=NOW - 10**9)
    assert isinstance(_decide(Ending.HELD, late), RetryIn)
    first = [_held_delay(History(waits=1)) for _ in range(200)]
    many = [_held_delay(History(waits=50)) for _ in range(200)]
    assert max(first) <= HELD_BASE_S * 1.1 + 0.05
    assert max(many) <= HELD_CAP_S * 1.1 + 0.05
    assert sum(many) / len(many) > 2 * sum(first) / len(first)
    assert not Ending.HELD.counts_as_error


def _held_delay(history: History) -> float:
    decision = decide(LIMITS, TryEnded(Ending.HELD, "held"), history, now_ms=NOW)
    assert isinstance(decision, RetryIn)
    return decision.delay_s
