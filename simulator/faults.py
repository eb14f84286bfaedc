"""Fault injection: count-limited rules and seeded rates that make requests fail or misbehave.

A rule ``{"match": "<substring>", "fault": "<kind>", "times": N}`` applies to
requests whose input text contains ``match`` (``""`` matches everything) and
fires at most ``times`` times in total (``null`` = unlimited). The first rule
that matches and still has shots left wins.

Rates (``{"http_500": 0.02, "dropped_connection": 0.01, ...}``) fault a random
share of the requests the rules leave alone, reproducibly: the draw for the
*n*-th request of an input is a hash of ``(seed, input key, n)`` (see
:meth:`FaultBook.decide`), and an input is rate-faulted at most
``max_per_input`` times, then always answered normally. The input key is the
*document* identity (see :func:`simulator.request.ExtractionRequest.input_key`)
so a repair call for the same document counts as the same input. A request
gets at most one fault.

Faults come in three families:

* *HTTP faults* (:data:`HTTP_FAULTS`) answer with an error before any output is
  generated, so they are not billed.
* *Output faults* (:data:`OUTPUT_FAULTS`) return a 200 with a broken output
  (schema violation, refusal, truncation), billed like the real API bills them.
  ``truncation`` is a *transient* cut-off: the answer stops about halfway
  through its JSON and only what was written is billed (tens of tokens, well
  below any cap), yet it comes back marked exactly like a cap hit
  (``status: incomplete`` with ``max_output_tokens``, ``finish_reason:
  length``). A real cap hit needs no fault: the simulator stops any answer,
  reasoning first, at the request's max output tokens.
* *Connection faults* (:data:`CONNECTION_FAULTS`), handled by the route:
  ``dropped_connection`` closes the connection without any response (unbilled);
  ``slow_response`` answers normally, but only after ``slow_response_ms``
  (billed even if the client has given up by then, as OpenAI does).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.errors import ApiError


class FaultKind(StrEnum):
    """What a fault does to the request it fires on."""

    INVALID_OUTPUT = "invalid_output"
    REFUSAL = "refusal"
    TRUNCATION = "truncation"
    """Cut off mid-answer, well below the cap, but marked like a cap hit (see the module docstring)."""
    HTTP_400 = "http_400"
    HTTP_429 = "http_429"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    DROPPED_CONNECTION = "dropped_connection"
    SLOW_RESPONSE = "slow_response"


OUTPUT_FAULTS = frozenset({FaultKind.INVALID_OUTPUT, FaultKind.REFUSAL, FaultKind.TRUNCATION})
CONNECTION_FAULTS = frozenset({FaultKind.DROPPED_CONNECTION, FaultKind.SLOW_RESPONSE})
RATE_FAULT_KINDS: tuple[FaultKind, ...] = (
    FaultKind.HTTP_500,
    FaultKind.HTTP_503,
    FaultKind.DROPPED_CONNECTION,
    FaultKind.SLOW_RESPONSE,
    FaultKind.INVALID_OUTPUT,
    FaultKind.TRUNCATION,
    FaultKind.REFUSAL,
)
"""Kinds a seeded ``rate`` may inject, in the order their probabilities are stacked on ``[0, 1)``."""


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


RatesLike = Mapping[FaultKind, float] | Mapping[str, float]
"""Fault rates keyed by kind (the enum or its name)."""


def check_rates(rates: RatesLike) -> dict[FaultKind, float]:
    """Validate fault rates (kinds of :data:`RATE_FAULT_KINDS`, each in [0, 1], summing to at most 1)."""
    checked: dict[FaultKind, float] = {}
    for name, rate in rates.items():
        kind = FaultKind(name)
        if kind not in RATE_FAULT_KINDS:
            raise ValueError(f"{kind} cannot be given a rate (rate kinds: {', '.join(RATE_FAULT_KINDS)})")
        if not 0.0 <= rate <= 1.0:  # also rejects NaN
            raise ValueError(f"the rate of {kind} must be in [0, 1], got {rate}")
        checked[kind] = float(rate)
    if sum(checked.values()) > 1.0 + 1e-9:
        raise ValueError("fault rates must add up to at most 1 (a request gets at most one fault)")
    return checked


def fault_uniform(seed: int, input_key: str, attempt: int, purpose: str = "fault") -> float:
    """A uniform draw in [0, 1) fixed by (seed, purpose, input key, attempt number): same run, same draws."""
    digest = hashlib.sha256(f"{seed}\x00{purpose}\x00{input_key}\x00{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class FaultSettings(BaseModel):
    """The object form of ``POST /_sim/faults``; every key is optional and only the given ones change."""

    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] | None = None
    rates: dict[FaultKind, float] | None = None
    seed: int | None = None
    max_per_input: int | None = Field(default=None, ge=0)
    slow_response_ms: float | None = Field(default=None, ge=0)

    @field_validator("rates")
    @classmethod
    def _valid_rates(cls, rates: dict[FaultKind, float] | None) -> dict[FaultKind, float] | None:
        return None if rates is None else check_rates(rates)


@dataclass(frozen=True, slots=True)
class FaultDecision:
    """The fault a request gets (None: answer normally) and which request of its input it is (0-based)."""

    fault: FaultKind | None
    attempt: int


class FaultBook:
    """The live fault rules and rates, and what has fired (the only mutable fault state).

    Count-limited rules are checked first; if none fires, the seeded rates get
    a say, unless the input has already been faulted ``max_per_input`` times.
    The rate decision for the *n*-th request of an input is
    ``fault_uniform(seed, input_key, n)`` against the stacked rates, so a run
    is reproducible whatever order concurrent requests arrive in.
    """

    def __init__(
        self,
        rules: list[FaultRule] | None = None,
        *,
        rates: RatesLike | None = None,
        seed: int = 0,
        max_per_input: int = 1,
        slow_response_ms: float = 30_000.0,
    ) -> None:
        self._armed = [_Armed(rule) for rule in rules or []]
        self.rates: dict[FaultKind, float] = {}
        self._thresholds: list[tuple[float, FaultKind]] = []
        self.set_rates(rates or {})
        self.seed = seed
        self.max_per_input = max_per_input
        self.slow_response_ms = slow_response_ms
        self._inputs: dict[str, list[int]] = {}  # input key -> [requests seen, rate faults injected]
        self.rate_fired: Counter[FaultKind] = Counter()

    def replace(self, rules: list[FaultRule]) -> None:
        """Swap in a new rule list; counters start from zero."""
        self._armed = [_Armed(rule) for rule in rules]

    def set_rates(self, rates: RatesLike) -> None:
        self.rates = check_rates(rates)
        cumulative = 0.0
        self._thresholds = []
        for kind in RATE_FAULT_KINDS:
            rate = self.rates.get(kind, 0.0)
            if rate > 0:
                cumulative += rate
                self._thresholds.append((cumulative, kind))

    def configure(self, settings: FaultSettings) -> None:
        """Apply the given settings (``POST /_sim/faults`` object form); per-input counts start afresh."""
        if settings.rules is not None:
            self.replace(settings.rules)
        if settings.rates is not None:
            self.set_rates(settings.rates)
        if settings.seed is not None:
            self.seed = settings.seed
        if settings.max_per_input is not None:
            self.max_per_input = settings.max_per_input
        if settings.slow_response_ms is not None:
            self.slow_response_ms = settings.slow_response_ms
        self._inputs.clear()
        self.rate_fired.clear()

    def reset_counters(self) -> None:
        """Re-arm every rule and forget per-input counts (used by ``/_sim/reset``)."""
        for armed in self._armed:
            armed.fired = 0
        self._inputs.clear()
        self.rate_fired.clear()

    def take(self, input_text: str) -> FaultKind | None:
        """The rule-based fault for a request with this input text, if any; consumes one shot of the rule."""
        for armed in self._armed:
            if self._fires(armed, input_text):
                armed.fired += 1
                return armed.rule.fault
        return None

    def decide(self, input_text: str, input_key: str) -> FaultDecision:
        """The fault for an admitted request: a rule's first, else a seeded rate's (capped per input)."""
        counts = self._inputs.get(input_key)
        if counts is None:
            counts = self._inputs[input_key] = [0, 0]
        attempt = counts[0]
        counts[0] += 1
        fault = self.take(input_text)
        if fault is None and self._thresholds and counts[1] < self.max_per_input:
            draw = fault_uniform(self.seed, input_key, attempt)
            for threshold, kind in self._thresholds:
                if draw < threshold:
                    fault = kind
                    counts[1] += 1
                    self.rate_fired[kind] += 1
                    break
        return FaultDecision(fault, attempt)

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

    def settings_snapshot(self) -> dict[str, Any]:
        """Rules, rates and what the rates injected, for ``GET /_sim/faults?full=1`` and object-form POSTs."""
        return {
            "rules": self.snapshot(),
            "rates": {str(kind): rate for kind, rate in self.rates.items()},
            "seed": self.seed,
            "max_per_input": self.max_per_input,
            "slow_response_ms": self.slow_response_ms,
            "rate_fired": {str(kind): count for kind, count in self.rate_fired.items()},
            "faulted_inputs": sum(1 for _, faults in self._inputs.values() if faults),
        }


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
