"""Retry, wait or give up: one pure decision for every way a try of a line can end without a final answer.

The shape is stamina's: *when to stop* is separate from *how long to wait*. A try ends in one of the
:class:`Ending` kinds; the line's history (kept in its account in Redis, so it survives retries and restarts)
counts each kind on its own; :func:`decide` looks at the newest ending and that history and says either
:class:`RetryIn` (the job is handed back to the queue for that long) or :class:`GiveUp` (the line fails with that
error type). Nothing here does I/O or reads a clock: the caller passes ``now_ms``.

- ``TRANSIENT`` (5xx, 408, 409, a dropped connection, a call timeout) counts as an error; stops after
  ``max_tries`` errors or once errors have lasted ``retry_horizon_s``; waits the backoff (``retry-after`` wins).
- ``RATE_LIMITED`` (a 429 for the rate limit, or a flex tier out of capacity) counts no error (only the line's
  ``rate_limited``); stops only at the horizon; waits the backoff (``retry-after`` wins).
- ``TIMEOUT`` (the try ran past ``job_timeout_s``) is an error like TRANSIENT, and fails as ``timeout``.
- ``TRUNCATED`` (an answer cut off well below the cap in force: ``worker.extraction.well_below_cap``) is an error
  like TRANSIENT, and also counts a cut-off; stops after ``max_cut_offs`` cut-offs (or as TRANSIENT does), failing as
  ``truncated``; waits the backoff. Unlike a 5xx the call was billed, so its own budget is small.
- ``WAITING`` (admission, or an identical line in flight, further away than a job sleeps) counts a wait; stops after
  ``max_deferrals`` waits; waits exactly that long.
- ``HELD`` (the batch's budget is held by its calls in flight: ``worker.calls``) counts a wait but never stops the
  line: those calls end within a call's time, or within a lease when their worker died (``store.accounts.BEGIN_TRY``
  settles them), and then the line goes or the batch pauses. It waits the backoff over its waits, from
  ``HELD_BASE_S`` up to ``HELD_CAP_S`` with full jitter, so that a batch of waiting lines never spins.
- ``INTERNAL`` (anything else: a bug, Redis failing past its retries) counts an internal error; stops after
  ``max_internal_errors`` or at the horizon, failing as ``internal_error``; waits the backoff.

A 429 never uses up the error budget (the provider pacing us is not the line failing), but the horizon still
bounds it. Waiting for admission is not an error at all; its own budget only guards against a line that can never
be admitted.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

from schemas.results import ErrorType
from worker.retry import backoff_delay

HELD_BASE_S, HELD_CAP_S = 1.0, 15.0
"""A line held back by its batch's budget looks again after a jittered delay growing from 1 s to at most 15 s: calls
in flight settle within a call's latency, and a dead worker's within a lease (10 s by default)."""


class WaitingError(Exception):
    """The line must wait longer than a job should sleep (admission, an identical line in flight): come back later."""

    def __init__(self, wait_s: float, reason: str) -> None:
        super().__init__(reason)
        self.wait_s = wait_s
        self.reason = reason


class Ending(StrEnum):
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    TRUNCATED = "truncated"
    WAITING = "waiting"
    HELD = "held"
    INTERNAL = "internal"

    @property
    def counts_as_error(self) -> bool:
        """Whether it starts (or continues) the retry horizon's clock: ``store.accounts.NOTE_ENDING`` sets the first
        error's time on exactly these endings."""
        return self not in (Ending.WAITING, Ending.HELD)


@dataclass(frozen=True)
class TryEnded:
    """How a try ended, classified (``worker.tasks.classify``): what :func:`decide` needs besides the history."""

    ending: Ending
    reason: str
    retry_after_s: float | None = None
    wait_s: float | None = None
    status_code: int | None = None
    capacity: bool = False
    """A 429 ``resource_unavailable``: the tier (flex) had no capacity, not our rate limit."""


@dataclass(frozen=True)
class History:
    """A line's endings so far, the newest one included."""

    errors: int = 0
    """TRANSIENT, TIMEOUT and TRUNCATED endings (the error budget)."""
    internal: int = 0
    waits: int = 0
    first_error_ms: int | None = None
    cut_offs: int = 0
    """TRUNCATED endings (also counted in ``errors``)."""


@dataclass(frozen=True)
class Limits:
    max_tries: int
    retry_horizon_s: float
    max_deferrals: int
    max_internal_errors: int
    backoff_base_s: float
    backoff_cap_s: float
    max_cut_offs: int = 3
    """Tries of a line cut off well below the cap before it fails as ``truncated``. Each one was billed, and a cut
    that comes back that often is likely a cap we do not know of (a proxy's, a deployment's), so it is small."""


@dataclass(frozen=True)
class RetryIn:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    error_type: ErrorType
    message: str


Decision = RetryIn | GiveUp


def decide(
    limits: Limits, ended: TryEnded, history: History, *, now_ms: int, rng: random.Random | None = None
) -> Decision:
    """What to do after a try ``ended`` so (already counted in ``history``)."""
    ending = ended.ending
    stop = _stop(limits, ending, history, now_ms=now_ms, reason=ended.reason)
    if stop is not None:
        return stop
    if ending is Ending.WAITING:
        return RetryIn(max(ended.wait_s or 0.0, 0.0))
    if ending is Ending.HELD:
        return RetryIn(backoff_delay(max(history.waits, 1), base_s=HELD_BASE_S, cap_s=HELD_CAP_S, rng=rng))
    attempt = history.internal if ending is Ending.INTERNAL else history.errors
    return RetryIn(
        backoff_delay(
            max(attempt, 1),
            base_s=limits.backoff_base_s,
            cap_s=limits.backoff_cap_s,
            retry_after_s=ended.retry_after_s,
            rng=rng,
        )
    )


def _stop(limits: Limits, ending: Ending, history: History, *, now_ms: int, reason: str) -> GiveUp | None:
    if ending is Ending.HELD:
        return None
    if ending is Ending.WAITING:
        if history.waits > limits.max_deferrals:
            return GiveUp(ErrorType.RETRIES_EXHAUSTED, f"gave up after waiting {history.waits} times: {reason}")
        return None
    lasted_s = (now_ms - history.first_error_ms) / 1000 if history.first_error_ms is not None else 0.0
    summary = f"{history.errors} failed tries and {history.internal} internal errors over {lasted_s:.1f}s"
    if ending is Ending.INTERNAL:
        if history.internal >= limits.max_internal_errors or lasted_s >= limits.retry_horizon_s:
            return GiveUp(ErrorType.INTERNAL_ERROR, f"gave up after {summary}; last error: {reason}")
        return None
    if ending is Ending.TRUNCATED:
        if (
            history.cut_offs >= limits.max_cut_offs
            or history.errors >= limits.max_tries
            or lasted_s >= limits.retry_horizon_s
        ):
            return GiveUp(
                ErrorType.TRUNCATED,
                f"the output was cut off {history.cut_offs} times below the max output tokens in force "
                f"({summary}); last: {reason}. A limit we were not told of (a proxy's, a deployment's) "
                "cuts it short like this: set --max-output-tokens to it",
            )
        return None
    if lasted_s >= limits.retry_horizon_s or (ending is not Ending.RATE_LIMITED and history.errors >= limits.max_tries):
        error_type = ErrorType.TIMEOUT if ending is Ending.TIMEOUT else ErrorType.RETRIES_EXHAUSTED
        return GiveUp(error_type, f"gave up after {summary}; last error: {reason}")
    return None
