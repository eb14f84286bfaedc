"""What the simulated API was asked, what it admitted under its rate limits and what it would have charged.

Tests, demos and benchmarks read this (``GET /_sim/ledger``) to prove the
service does not pay twice for the same input, that its own cost accounting
matches the provider's, and how close it runs to the rate limits:

* ``billed`` sums the usage of every 200 response, including refusals,
  truncated outputs and responses the client had given up on (``abandoned``),
  which the real API bills too;
* ``per_input`` counts paid requests per request fingerprint (exact
  duplicates), ``ok_per_input`` 200s per input key (the document: a repair or
  a retry of the same document counts there too);
* ``rate_limit`` and ``achieved`` compare admissions with the limits (the
  current ones, if ``POST /_sim/limits`` changed them); ``admitted_tokens``
  counts every token the limiter charged, output charged after an answer
  (``charge_output="actual"``) included; ``series`` (only with ``?series=1``)
  has exact per-second counters;
* ``tiers`` (only with ``?tiers=1``) splits ``billed`` by the tier that served each 200 (``billed``: the same
  keys as the top-level ``billed``, per ``default`` / ``flex`` / ``priority``; ``ok``: 200s per tier), so a bill
  can be priced per tier, and counts the flex requests refused for want of capacity
  (``resource_unavailable_429``: unbilled, not admitted, not in ``rate_limit.rejected_429``);
* ``venues`` (only with ``?venues=1``) splits ``billed`` by where each answer was bought: ``sync`` (the HTTP
  endpoints) and ``batch`` (lines of ``/v1/batches``, billed at half the synchronous price). Each venue has
  ``price_factor`` (1.0, 0.5), ``ok`` (answers billed), ``billed`` (the same keys as the top-level ``billed``) and
  ``billed_at_sync_price`` (``billed`` times ``price_factor``: what to multiply by the synchronous price list).
  Batch lines are in ``billed``, ``per_input``, ``ok_per_input``, ``tiers`` (by the tier their body reports) and
  ``series`` like any answer, but in no ``requests`` or ``rate_limit`` count: they are not HTTP requests.

Everything is a counter updated in O(1) per request; nothing scans history.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from simulator.tokens import Usage

BILLED_KEYS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens")
VENUE_PRICE_FACTORS = {"sync": 1.0, "batch": 0.5}
"""Where an answer was bought, and its price as a share of the synchronous price (the Batch API's half)."""
_SERIES_FIELDS = ("admitted", "admitted_tokens", "billed_tokens", "rejected_429")
_ADMITTED, _ADMITTED_TOKENS, _BILLED_TOKENS, _REJECTED = range(4)


class Ledger:
    """Request counters, billed token totals, paid requests per input, rate-limit admissions over time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, rpm_limit: int = 0, tpm_limit: int = 0) -> None:
        self.clock = clock
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.total = 0
        self.by_status: Counter[str] = Counter()
        self.by_endpoint: Counter[str] = Counter()
        self.per_input: Counter[str] = Counter()
        self.ok_per_input: Counter[str] = Counter()
        self.billed: Counter[str] = Counter()
        self.abandoned = 0
        self.admitted_requests = 0
        self.admitted_tokens = 0
        self.output_charged_tokens = 0
        self.rejected_429: Counter[str] = Counter()
        self.origin: float | None = None
        self.first_admitted: float | None = None
        self.last_admitted: float | None = None
        self._series: dict[int, list[int]] = {}
        self.billed_by_tier: dict[str, Counter[str]] = {}
        self.ok_by_tier: Counter[str] = Counter()
        self.resource_unavailable_429 = 0
        self.billed_by_venue: dict[str, Counter[str]] = {venue: Counter() for venue in VENUE_PRICE_FACTORS}
        self.ok_by_venue: Counter[str] = Counter()

    def reset(self) -> None:
        self.total = self.abandoned = self.admitted_requests = self.admitted_tokens = self.output_charged_tokens = 0
        self.resource_unavailable_429 = 0
        for counter in (self.by_status, self.by_endpoint, self.per_input, self.ok_per_input, self.billed):
            counter.clear()
        self.billed_by_tier.clear()
        self.ok_by_tier.clear()
        for counter in self.billed_by_venue.values():
            counter.clear()
        self.ok_by_venue.clear()
        self.rejected_429.clear()
        self.origin = self.first_admitted = self.last_admitted = None
        self._series.clear()

    # -- events -------------------------------------------------------------------------------------------------

    def arrived(self) -> None:
        """An API request arrived: the first one starts the series clock (``t = 0``)."""
        if self.origin is None:
            self.origin = self.clock()

    def _second(self, now: float) -> list[int]:
        if self.origin is None:
            self.origin = now
        second = max(0, math.floor(now - self.origin))
        row = self._series.get(second)
        if row is None:
            row = self._series[second] = [0, 0, 0, 0]
        return row

    def admit(self, charge: int) -> None:
        """A request passed the rate limiter, charged ``charge`` tokens."""
        now = self.clock()
        self.admitted_requests += 1
        self.admitted_tokens += charge
        if self.first_admitted is None:
            self.first_admitted = now
        self.last_admitted = now
        row = self._second(now)
        row[_ADMITTED] += 1
        row[_ADMITTED_TOKENS] += charge

    def charge_output(self, tokens: int) -> None:
        """An answer's output tokens were charged to the limiter after the fact (``charge_output="actual"``).

        They count in ``admitted_tokens`` (and the series' ``admitted_tokens`` of the second they were charged in),
        which thus stays what the limiter counted.
        """
        self.admitted_tokens += tokens
        self.output_charged_tokens += tokens
        self._second(self.clock())[_ADMITTED_TOKENS] += tokens

    def set_limits(self, rpm: int, tpm: int) -> None:
        """The limits reported from now on (``POST /_sim/limits``)."""
        self.rpm_limit = rpm
        self.tpm_limit = tpm

    def reject(self, limited_by: str) -> None:
        """The rate limiter answered 429 because the ``limited_by`` bucket (requests / tokens) was short."""
        self.rejected_429[limited_by] += 1
        self._second(self.clock())[_REJECTED] += 1

    def count(self, endpoint: str | None, status: int | str) -> None:
        """Record one API request and the status it got (``endpoint`` None for unknown paths).

        ``status`` is the HTTP status, or ``"dropped"`` for a connection closed without a response.
        """
        self.total += 1
        self.by_status[str(status)] += 1
        if endpoint is not None:
            self.by_endpoint[endpoint] += 1

    def bill(self, fingerprint: str, usage: Usage, tier: str = "default", venue: str = "sync") -> None:
        """Charge a successful (200) response, served on ``tier`` (``default``, ``flex`` or ``priority``), bought
        at ``venue`` (``sync``, or ``batch`` for a line of a batch: half the price)."""
        self.per_input[fingerprint] += 1
        by_tier = self.billed_by_tier.get(tier)
        if by_tier is None:
            by_tier = self.billed_by_tier[tier] = Counter()
        self.ok_by_venue[venue] += 1
        for counter in (self.billed, by_tier, self.billed_by_venue[venue]):
            counter["input_tokens"] += usage.input_tokens
            counter["cached_input_tokens"] += usage.cached_tokens
            counter["output_tokens"] += usage.output_tokens
            counter["reasoning_tokens"] += usage.reasoning_tokens
            counter["total_tokens"] += usage.total_tokens
        self.ok_by_tier[tier] += 1
        self._second(self.clock())[_BILLED_TOKENS] += usage.total_tokens

    def resource_unavailable(self) -> None:
        """A flex request was refused for want of capacity (a 429 that is not billed and was not admitted)."""
        self.resource_unavailable_429 += 1

    def ok(self, input_key: str) -> None:
        """A 200 was sent (or would have been, had the client stayed) for the input ``input_key``."""
        self.ok_per_input[input_key] += 1

    def abandon(self) -> None:
        """A response was ready but its client had gone away (it was billed all the same)."""
        self.abandoned += 1

    # -- reports ------------------------------------------------------------------------------------------------

    def snapshot(self, *, series: bool = False, tiers: bool = False, venues: bool = False) -> dict[str, Any]:
        """The JSON served at ``GET /_sim/ledger`` (``?series=1`` adds ``series``, ``?tiers=1`` adds ``tiers``,
        ``?venues=1`` adds ``venues``)."""
        report: dict[str, Any] = {
            "requests": {
                "total": self.total,
                "by_status": dict(self.by_status),
                "by_endpoint": dict(self.by_endpoint),
            },
            "billed": {key: self.billed[key] for key in BILLED_KEYS},
            "per_input": dict(self.per_input),
            "ok_per_input": dict(self.ok_per_input),
            "abandoned": self.abandoned,
            "rate_limit": {
                "rpm_limit": self.rpm_limit,
                "tpm_limit": self.tpm_limit,
                "admitted_requests": self.admitted_requests,
                "admitted_tokens": self.admitted_tokens,
                "output_charged_tokens": self.output_charged_tokens,
                "rejected_429": {"requests": self.rejected_429["requests"], "tokens": self.rejected_429["tokens"]},
            },
            "achieved": self.achieved(),
        }
        if series:
            report["series"] = self.series()
        if tiers:
            report["tiers"] = self.tiers()
        if venues:
            report["venues"] = self.venues()
        return report

    def venues(self) -> dict[str, Any]:
        """Billed usage per venue (``sync``, ``batch``; both always present), with its price factor."""
        return {
            venue: {
                "price_factor": factor,
                "ok": self.ok_by_venue[venue],
                "billed": {key: self.billed_by_venue[venue][key] for key in BILLED_KEYS},
                "billed_at_sync_price": {key: self.billed_by_venue[venue][key] * factor for key in BILLED_KEYS},
            }
            for venue, factor in VENUE_PRICE_FACTORS.items()
        }

    def tiers(self) -> dict[str, Any]:
        """Billed usage and 200s per served tier (tiers that served nothing are absent), and the flex 429s."""
        return {
            "billed": {
                tier: {key: counter[key] for key in BILLED_KEYS}
                for tier, counter in sorted(self.billed_by_tier.items())
            },
            "ok": dict(sorted(self.ok_by_tier.items())),
            "resource_unavailable_429": self.resource_unavailable_429,
        }

    def achieved(self) -> dict[str, float | None]:
        """Per-minute rates over the span from the first to the last admitted request (None until it is > 0)."""
        span = (
            self.last_admitted - self.first_admitted
            if self.first_admitted is not None and self.last_admitted is not None
            else 0.0
        )

        def per_minute(amount: int) -> float | None:
            return amount * 60.0 / span if span > 0 else None

        return {
            "window_s": span,
            "requests_per_minute": per_minute(self.admitted_requests),
            "tokens_per_minute": per_minute(self.admitted_tokens),
            "billed_tokens_per_minute": per_minute(self.billed["total_tokens"]),
        }

    def series(self) -> list[dict[str, int]]:
        """One row per second since the first request (``t`` = whole seconds, gaps filled with zeros)."""
        if not self._series:
            return []
        empty = [0, 0, 0, 0]
        return [
            {"t": second, **dict(zip(_SERIES_FIELDS, self._series.get(second, empty), strict=True))}
            for second in range(max(self._series) + 1)
        ]
