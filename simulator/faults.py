"""Fault injection: rules that make chosen requests fail or misbehave, a bounded number of times.

A rule ``{"match": "<substring>", "fault": "<kind>", "times": N}`` applies to
requests whose input text contains ``match`` (``""`` matches everything) and
fires at most ``times`` times in total (``null`` = unlimited). The first rule
that matches and still has shots left wins; a request gets at most one fault.

Faults come in two families, and new kinds slot into one of them:

* *HTTP faults* (:data:`HTTP_FAULTS`) answer with an error before any output is
  generated, so they are not billed.
* *Output faults* (:data:`OUTPUT_FAULTS`) return a 200 with a broken output
  (schema violation, refusal, truncation), billed like the real API bills them.

Whether a matching rule fires is decided in one place, :meth:`FaultBook._fires`,
so a seeded probabilistic ``rate`` (or a dropped-connection / slow-response
kind, handled by the route next to the HTTP faults) can be added without
reshaping the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from simulator.errors import ApiError


class FaultKind(StrEnum):
    """What a fault does to the request it fires on."""

    INVALID_OUTPUT = "invalid_output"
    REFUSAL = "refusal"
    TRUNCATION = "truncation"
    HTTP_400 = "http_400"
    HTTP_429 = "http_429"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"


OUTPUT_FAULTS = frozenset({FaultKind.INVALID_OUTPUT, FaultKind.REFUSAL, FaultKind.TRUNCATION})


class FaultRule(BaseModel):
    """One fault rule, as posted to ``/_sim/faults`` or given as ``--fault kind:match:times``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match: str = ""
    fault: FaultKind
    times: int | None = Field(default=1, ge=1, description="How often the rule may fire; null = unlimited.")

    @classmethod
    def parse_cli(cls, spec: str) -> FaultRule:
        """Parse ``kind:match:times``; ``match`` may be empty or contain ``:``; ``times`` may be ``*`` (unlimited)."""
        kind, sep, rest = spec.partition(":")
        match, sep2, times = rest.rpartition(":")
        if not sep or not sep2:
            raise ValueError(f"fault spec {spec!r} is not of the form kind:match:times")
        count = None if times in ("*", "inf") else int(times)
        return cls(fault=FaultKind(kind), match=match, times=count)


@dataclass(slots=True)
class _Armed:
    rule: FaultRule
    fired: int = 0

    @property
    def remaining(self) -> int | None:
        return None if self.rule.times is None else max(self.rule.times - self.fired, 0)


class FaultBook:
    """The live fault rules and how often each has fired (the only mutable fault state)."""

    def __init__(self, rules: list[FaultRule] | None = None) -> None:
        self._armed = [_Armed(rule) for rule in rules or []]

    def replace(self, rules: list[FaultRule]) -> None:
        """Swap in a new rule list; counters start from zero."""
        self._armed = [_Armed(rule) for rule in rules]

    def reset_counters(self) -> None:
        """Re-arm every rule (used by ``/_sim/reset``)."""
        for armed in self._armed:
            armed.fired = 0

    def take(self, input_text: str) -> FaultKind | None:
        """The fault for a request with this input text, if any; consumes one shot of the rule that fires."""
        for armed in self._armed:
            if self._fires(armed, input_text):
                armed.fired += 1
                return armed.rule.fault
        return None

    @staticmethod
    def _fires(armed: _Armed, input_text: str) -> bool:
        remaining = armed.remaining
        return (remaining is None or remaining > 0) and armed.rule.match in input_text

    def snapshot(self) -> list[dict[str, Any]]:
        """Rules with ``fired`` and ``remaining`` counts, for ``GET /_sim/faults``."""
        return [
            {**armed.rule.model_dump(mode="json"), "fired": armed.fired, "remaining": armed.remaining}
            for armed in self._armed
        ]


_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
_OVERLOADED = "The engine is currently overloaded, please try again later."
_RATE_LIMITED = (
    "Rate limit reached for requests (simulated). Limit: 10000 / min. Please try again in 100ms. "
    "Visit https://platform.openai.com/account/rate-limits to learn more."
)


@dataclass(frozen=True, slots=True)
class _HttpFault:
    status: int
    message: str
    error_type: str
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


_HTTP_FAULTS: dict[FaultKind, _HttpFault] = {
    FaultKind.HTTP_400: _HttpFault(400, "Simulated bad request (fault injection).", "invalid_request_error"),
    FaultKind.HTTP_429: _HttpFault(
        429,
        _RATE_LIMITED,
        "requests",
        "rate_limit_exceeded",
        (("retry-after-ms", "100"), ("retry-after", "1"), ("x-ratelimit-remaining-requests", "0")),
    ),
    FaultKind.HTTP_500: _HttpFault(500, _SERVER_ERROR, "server_error"),
    FaultKind.HTTP_503: _HttpFault(503, _OVERLOADED, "server_error", headers=(("retry-after", "1"),)),
}
HTTP_FAULTS = frozenset(_HTTP_FAULTS)


def http_fault_error(kind: FaultKind) -> ApiError | None:
    """A fresh error response for an HTTP fault kind, or None for kinds that are not HTTP errors."""
    spec = _HTTP_FAULTS.get(kind)
    if spec is None:
        return None
    return ApiError(spec.status, spec.message, error_type=spec.error_type, code=spec.code, headers=dict(spec.headers))
