"""Which failures are worth another try, and how long to wait: pure functions, no I/O."""

from __future__ import annotations

import random
import re

_RNG = random.Random()  # noqa: S311 - retry jitter, not security

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Plus every 5xx. 400, 401, 403, 404 and 422 are the caller's to fix and never retried."""


def is_retryable_status(status_code: int) -> bool:
    return status_code in RETRYABLE_STATUS or 500 <= status_code <= 599


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1).

    Capped exponential backoff with full jitter (uniform in [0, min(cap, base * 2**(attempt-1))]), which spreads
    many workers' retries instead of synchronising them. A server's ``retry-after`` wins when it is sent: it knows
    when capacity returns better than we do; a little jitter on top (up to 10 % + 50 ms) keeps every job that got
    the same answer from coming back in the same millisecond. Either way the wait is at most ``cap_s``.
    """
    draw = (rng or _RNG).uniform
    if retry_after_s is not None and retry_after_s >= 0:
        return min(retry_after_s + draw(0, 0.1 * retry_after_s + 0.05), cap_s)
    exponent = min(max(attempt - 1, 0), 64)  # capped: after thousands of waits 2**n would not fit a float
    ceiling = min(cap_s, base_s * (2**exponent))
    return draw(0, ceiling)


def parse_retry_after(headers: dict[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` (OpenAI's, more precise) or ``retry-after``; header names in lower case."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is not None:
        try:
            return max(float(value), 0.0)
        except ValueError:
            return None  # an HTTP date: rare from OpenAI; fall back to our own backoff
    return None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration_s(text: str) -> float | None:
    """A Go-style duration as OpenAI's headers and messages write them (``20ms``, ``1.5s``, ``6m0s``), in seconds."""
    text = text.strip()
    if not text:
        return None
    total, position = 0.0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        value, unit = float(match.group(1)), match.group(2)
        total += value * {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}[unit]
        position = match.end()
    return total if position == len(text) else None
