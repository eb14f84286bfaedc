"""What the simulated API was asked and what it would have charged.

Tests and demos read this (``GET /_sim/ledger``) to prove the service does not
pay twice for the same input and that its own cost accounting matches the
provider's: ``billed`` sums the usage of every 200 response, including
refusals and truncated outputs, which the real API bills too.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from simulator.tokens import Usage


class Ledger:
    """Request counters, billed token totals and a count of paid requests per input fingerprint."""

    def __init__(self) -> None:
        self.total = 0
        self.by_status: Counter[str] = Counter()
        self.by_endpoint: Counter[str] = Counter()
        self.per_input: Counter[str] = Counter()
        self.billed: Counter[str] = Counter()

    def reset(self) -> None:
        self.total = 0
        for counter in (self.by_status, self.by_endpoint, self.per_input, self.billed):
            counter.clear()

    def count(self, endpoint: str | None, status: int) -> None:
        """Record one API request and the status it got (``endpoint`` None for unknown paths)."""
        self.total += 1
        self.by_status[str(status)] += 1
        if endpoint is not None:
            self.by_endpoint[endpoint] += 1

    def bill(self, fingerprint: str, usage: Usage) -> None:
        """Charge a successful (200) response."""
        self.per_input[fingerprint] += 1
        self.billed["input_tokens"] += usage.input_tokens
        self.billed["cached_input_tokens"] += usage.cached_tokens
        self.billed["output_tokens"] += usage.output_tokens
        self.billed["reasoning_tokens"] += usage.reasoning_tokens
        self.billed["total_tokens"] += usage.total_tokens

    def snapshot(self) -> dict[str, Any]:
        """The JSON served at ``GET /_sim/ledger``."""
        billed_keys = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens")
        return {
            "requests": {
                "total": self.total,
                "by_status": dict(self.by_status),
                "by_endpoint": dict(self.by_endpoint),
            },
            "billed": {key: self.billed[key] for key in billed_keys},
            "per_input": dict(self.per_input),
        }
