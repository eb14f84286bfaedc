"""Rate limits the way OpenAI enforces them: per-model request and token buckets, 429s, ``x-ratelimit-*`` headers.

Every response carries the ``x-ratelimit-*`` headers clients (the SDK, adaptive
concurrency) read. With no limit configured they are static and generous
(:class:`StaticRateLimits`, never a 429). With ``rpm`` and/or ``tpm`` set,
:class:`TokenBucketLimits` keeps two token buckets per model:

* refill rate ``limit / 60`` per second; capacity ``limit / 60 * window_s``.
  Providers enforce limits over sub-minute slices, so a fresh bucket admits
  about a window's worth, not a whole minute's worth, at once;
* a request is charged 1 request and ``input tokens + max output tokens``
  tokens (:func:`simulator.completion.rate_limit_charge`), taken from both buckets or from neither;
  admitted charges are never refunded. With ``charge_output="actual"`` a request
  that sets no maximum is charged only its input on admission, and the output
  tokens it really produced later (:meth:`TokenBucketLimits.charge`), which may
  leave the token bucket in debt;
* a charge larger than a bucket's capacity (but within the per-minute limit)
  is admitted only when that bucket is full and leaves it in debt, so the
  long-run rate still holds; a token charge above the per-minute limit is
  rejected outright (OpenAI's "Request too large");
* ``x-ratelimit-remaining-*`` is the bucket level, floored: how many
  requests / tokens could be admitted right now (not a per-minute figure);
  ``x-ratelimit-reset-*`` is the time until the bucket is full again, in
  OpenAI's Go-style durations (:func:`format_duration`);
* the limits can change mid-run (:meth:`TokenBucketLimits.set_limits`, an
  account changing tier): buckets keep their level, clipped to the new
  capacity, and refill at the new rate from then on.

What a client sees of all this depends on the header style
(:func:`style_headers`): OpenAI's headers, none at all (a local vLLM or
llama.cpp server), or Azure's placeholders (``-1`` / ``0``, no reset, no
``retry-after`` on a 429).

Time comes from an injectable monotonic clock, so the arithmetic is testable
without sleeping.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Literal, Protocol

from simulator.errors import ApiError

Clock = Callable[[], float]
LimitKind = Literal["requests", "tokens"]
ChargeOutput = Literal["max", "actual"]
"""What a request without a max output is charged for output: the default max up front, or what it produced."""
LimitHeaders = Literal["openai", "none", "azure"]
"""Which rate-limit headers responses carry (see :func:`style_headers`)."""
CHARGE_OUTPUT_MODES: tuple[ChargeOutput, ...] = ("max", "actual")
LIMIT_HEADER_STYLES: tuple[LimitHeaders, ...] = ("openai", "none", "azure")
RATE_HEADER_PREFIX = "x-ratelimit-"
AZURE_RATE_HEADERS = {
    "x-ratelimit-limit-requests": "-1",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-limit-tokens": "-1",
    "x-ratelimit-remaining-tokens": "0",
}
"""What Azure's Responses API is reported to send instead of real figures (and no ``x-ratelimit-reset-*``)."""

ORGANIZATION = "org-simulator"
RATE_LIMITS_URL = "https://platform.openai.com/account/rate-limits"
TIME_TOLERANCE_S = 1e-9
"""A bucket this close (in refill time) to holding enough counts as holding enough (float rounding)."""
_MS_TOLERANCE = 1e-7


def ceil_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up (ignoring float noise below a nanosecond); never negative."""
    return max(0, math.ceil(seconds * 1000 - _MS_TOLERANCE))


def format_duration(seconds: float) -> str:
    """A duration as OpenAI's headers and messages print it (Go's ``time.Duration``), at millisecond precision.

    Rounded up to the millisecond: ``0s``, ``20ms``, ``1s``, ``1.5s``, ``6m0s``, ``1h2m3s``, ``1h0m0.25s``.
    """
    ms = ceil_ms(seconds)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    secs = f"{whole}.{frac:03d}".rstrip("0") if frac else str(whole)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of :meth:`RateLimits.admit`: admitted or not, and the headers to answer with.

    When rejected, ``error`` is the 429 to send (its own headers include the rate-limit ones),
    ``limited_by`` says which bucket was short and ``retry_after_s`` how long until it holds enough
    (``None`` when waiting cannot help: the request exceeds the per-minute limit).
    """

    admitted: bool
    headers: dict[str, str]
    error: ApiError | None = None
    limited_by: LimitKind | None = None
    retry_after_s: float | None = None


class RateLimits(Protocol):
    def headers(self, model: str | None = None) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers for a response sent now (for ``model``, if known), without charging."""
        ...

    def admit(self, model: str, tokens: int) -> Admission:
        """Charge one request of ``tokens`` tokens to ``model``'s budget, or reject it (both buckets or neither)."""
        ...


def style_headers(headers: MutableMapping[str, str], style: LimitHeaders, status: int) -> None:
    """Rewrite, in place, the rate-limit headers of a response about to be sent with ``status``.

    ``openai``: unchanged. ``none``: every ``x-ratelimit-*`` header removed (a 429 keeps ``retry-after`` and
    ``retry-after-ms``). ``azure``: the ``x-ratelimit-*`` headers replaced by :data:`AZURE_RATE_HEADERS`
    (limits ``-1``, remaining ``0``, no reset), and a 429 loses ``retry-after`` and ``retry-after-ms``
    (its message still says "Please try again in ...").
    """
    if style == "openai":
        return
    for name in {name for name in headers if name.lower().startswith(RATE_HEADER_PREFIX)}:
        del headers[name]
    if style == "azure":
        headers.update(AZURE_RATE_HEADERS)
        if status == 429:
            for name in ("retry-after", "retry-after-ms"):
                if name in headers:
                    del headers[name]


class StaticRateLimits:
    """No limits: fixed, generous headers (always one request and one token short of full), never a 429."""

    def __init__(self, request_limit: int = 10_000, token_limit: int = 30_000_000) -> None:
        self._headers = {
            "x-ratelimit-limit-requests": str(request_limit),
            "x-ratelimit-remaining-requests": str(request_limit - 1),
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-limit-tokens": str(token_limit),
            "x-ratelimit-remaining-tokens": str(token_limit - 1),
            "x-ratelimit-reset-tokens": "6ms",
        }

    def headers(self, model: str | None = None) -> dict[str, str]:
        return dict(self._headers)

    def admit(self, model: str, tokens: int) -> Admission:
        return Admission(True, dict(self._headers))


class TokenBucket:
    """One bucket: ``limit`` per minute, refilled continuously, holding at most ``window_s`` worth."""

    __slots__ = ("capacity", "level", "limit", "rate", "updated")

    def __init__(self, limit: int, window_s: float, now: float) -> None:
        if limit <= 0 or window_s <= 0:
            raise ValueError("a bucket needs a positive limit and window")
        self.limit = limit
        self.rate = limit / 60.0
        self.capacity = self.rate * window_s
        self.level = self.capacity
        self.updated = now

    def set_limit(self, limit: int, window_s: float, now: float) -> None:
        """A new per-minute limit from ``now``: refilled at the old rate until now, clipped to the new capacity."""
        if limit <= 0:
            raise ValueError("a bucket needs a positive limit")
        self.refill(now)
        self.limit = limit
        self.rate = limit / 60.0
        self.capacity = self.rate * window_s
        self.level = min(self.level, self.capacity)

    def refill(self, now: float) -> None:
        if now > self.updated:
            self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
            self.updated = now

    def needed(self, amount: float) -> float:
        """What the level must reach to admit ``amount`` (a charge above capacity waits for a full bucket)."""
        return min(amount, self.capacity)

    def holds(self, amount: float) -> bool:
        return self.level + self.rate * TIME_TOLERANCE_S >= self.needed(amount)

    def wait_s(self, amount: float) -> float:
        """Seconds until the bucket holds enough for ``amount`` (0 if it already does)."""
        if self.holds(amount):
            return 0.0
        return (self.needed(amount) - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def remaining(self) -> int:
        """The level, floored at 0 and rounded down: what could be admitted right now."""
        return max(0, math.floor(self.level + self.rate * TIME_TOLERANCE_S))

    def until_full_s(self) -> float:
        return max(0.0, self.capacity - self.level) / self.rate


class _ModelBuckets:
    __slots__ = ("requests", "tokens")

    def __init__(self, requests: TokenBucket | None, tokens: TokenBucket | None) -> None:
        self.requests = requests
        self.tokens = tokens


def _check_limit(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 (0 = unlimited), not {value!r}")


class TokenBucketLimits:
    """Per-model request and token buckets (``rpm`` / ``tpm`` 0 = that dimension unlimited).

    With both 0 it behaves as :class:`StaticRateLimits` (static headers, never a 429) until
    :meth:`set_limits` sets a limit.
    """

    def __init__(self, rpm: int, tpm: int, window_s: float = 1.0, clock: Clock = time.monotonic) -> None:
        _check_limit("rpm", rpm)
        _check_limit("tpm", tpm)
        if window_s <= 0:
            raise ValueError("the limit window must be > 0")
        self.rpm = rpm
        self.tpm = tpm
        self.window_s = window_s
        self.clock = clock
        self._static = StaticRateLimits()
        self._models: dict[str, _ModelBuckets] = {}

    def _new_buckets(self, now: float) -> _ModelBuckets:
        return _ModelBuckets(
            TokenBucket(self.rpm, self.window_s, now) if self.rpm else None,
            TokenBucket(self.tpm, self.window_s, now) if self.tpm else None,
        )

    def _buckets(self, model: str, now: float) -> _ModelBuckets:
        buckets = self._models.get(model)
        if buckets is None:
            buckets = self._models[model] = self._new_buckets(now)
        else:
            for bucket in (buckets.requests, buckets.tokens):
                if bucket is not None:
                    bucket.refill(now)
        return buckets

    def limits(self) -> dict[str, float]:
        """The enforced limits: ``{"rpm", "tpm", "window_s"}`` (0 = unlimited), as ``GET /_sim/limits`` shows them."""
        return {"rpm": self.rpm, "tpm": self.tpm, "window_s": self.window_s}

    def set_limits(self, rpm: int | None = None, tpm: int | None = None) -> None:
        """Replace the per-minute limits of every model at once (``None`` = keep that one; 0 = unlimited).

        Existing buckets keep their current level (refilled up to now at the old rate), clipped to the new
        capacity (debt is kept), and refill at the new rate from now on; a dimension that was unlimited gets
        full buckets; one set to 0 loses its buckets. Models not seen yet get fresh buckets when first used.
        """
        if rpm is not None:
            _check_limit("rpm", rpm)
        if tpm is not None:
            _check_limit("tpm", tpm)
        now = self.clock()
        self.rpm = self.rpm if rpm is None else rpm
        self.tpm = self.tpm if tpm is None else tpm
        for buckets in self._models.values():
            buckets.requests = self._retuned(buckets.requests, self.rpm, now)
            buckets.tokens = self._retuned(buckets.tokens, self.tpm, now)

    def _retuned(self, bucket: TokenBucket | None, limit: int, now: float) -> TokenBucket | None:
        if limit == 0:
            return None
        if bucket is None:
            return TokenBucket(limit, self.window_s, now)
        bucket.set_limit(limit, self.window_s, now)
        return bucket

    def charge(self, model: str, tokens: int) -> None:
        """Charge ``tokens`` more to ``model``'s token bucket, unconditionally (it may go into debt).

        The output of an answer under ``charge_output="actual"``; nothing happens without a token limit.
        """
        buckets = self._buckets(model, self.clock())
        if buckets.tokens is not None:
            buckets.tokens.take(tokens)

    def headers(self, model: str | None = None) -> dict[str, str]:
        now = self.clock()
        # A model never admitted has untouched (full) buckets; don't store any for it.
        known = model is not None and model in self._models
        return self._headers_for(self._buckets(model, now) if known and model is not None else self._new_buckets(now))

    def _headers_for(self, buckets: _ModelBuckets) -> dict[str, str]:
        headers = self._static.headers()
        for name, bucket in (("requests", buckets.requests), ("tokens", buckets.tokens)):
            if bucket is not None:
                headers[f"x-ratelimit-limit-{name}"] = str(bucket.limit)
                headers[f"x-ratelimit-remaining-{name}"] = str(bucket.remaining())
                headers[f"x-ratelimit-reset-{name}"] = format_duration(bucket.until_full_s())
        return headers

    def admit(self, model: str, tokens: int) -> Admission:
        now = self.clock()
        buckets = self._buckets(model, now)
        if buckets.tokens is not None and tokens > buckets.tokens.limit:
            return self._too_large(model, buckets, tokens)
        short: list[tuple[float, LimitKind, TokenBucket, int]] = []
        if buckets.requests is not None and not buckets.requests.holds(1):
            short.append((buckets.requests.wait_s(1), "requests", buckets.requests, 1))
        if buckets.tokens is not None and not buckets.tokens.holds(tokens):
            short.append((buckets.tokens.wait_s(tokens), "tokens", buckets.tokens, tokens))
        if not short:
            if buckets.requests is not None:
                buckets.requests.take(1)
            if buckets.tokens is not None:
                buckets.tokens.take(tokens)
            return Admission(True, self._headers_for(buckets))
        # The bucket that keeps the request waiting longest is the one reported (requests on a tie).
        wait_s, kind, bucket, requested = max(short, key=lambda entry: entry[0])
        headers = self._headers_for(buckets)
        wait_ms = ceil_ms(wait_s)
        headers["retry-after-ms"] = str(wait_ms)
        headers["retry-after"] = str(max(1, math.ceil(wait_ms / 1000)))
        label = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
        used = bucket.limit - bucket.remaining()
        message = (
            f"Rate limit reached for {model} in organization {ORGANIZATION} on {label}: Limit {bucket.limit}, "
            f"Used {used}, Requested {requested}. Please try again in {format_duration(wait_s)}. "
            f"Visit {RATE_LIMITS_URL} to learn more."
        )
        error = ApiError(429, message, error_type=kind, code="rate_limit_exceeded", headers=headers)
        return Admission(False, headers, error=error, limited_by=kind, retry_after_s=wait_s)

    def _too_large(self, model: str, buckets: _ModelBuckets, tokens: int) -> Admission:
        assert buckets.tokens is not None
        headers = self._headers_for(buckets)
        message = (
            f"Request too large for {model} in organization {ORGANIZATION} on tokens per min (TPM): "
            f"Limit {buckets.tokens.limit}, Requested {tokens}. The input or output tokens must be reduced in order "
            f"to run successfully. Visit {RATE_LIMITS_URL} to learn more."
        )
        error = ApiError(429, message, error_type="tokens", code="rate_limit_exceeded", headers=headers)
        return Admission(False, headers, error=error, limited_by="tokens")


def rate_limits_for(rpm: int, tpm: int, window_s: float, clock: Clock) -> TokenBucketLimits:
    """Token buckets for the limits set (static headers while neither is), changeable with ``set_limits``."""
    return TokenBucketLimits(rpm, tpm, window_s, clock)
