"""All mutable simulator state, in one object that tests can read directly (``sim.state``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator.config import SimulatorConfig
from simulator.faults import FaultBook
from simulator.ledger import Ledger
from simulator.prompt_cache import PromptCache
from simulator.ratelimit import RateLimits, StaticRateLimits
from simulator.request_log import RequestLog


@dataclass(slots=True)
class SimulatorState:
    """Config plus ledger, request log, fault counters, prompt cache, rate limits and the latency RNG."""

    config: SimulatorConfig
    ledger: Ledger
    requests: RequestLog
    faults: FaultBook
    prompt_cache: PromptCache
    rate_limits: RateLimits
    rng: random.Random

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> SimulatorState:
        return cls(
            config=config,
            ledger=Ledger(),
            requests=RequestLog(config.request_log_size),
            faults=FaultBook(list(config.faults)),
            prompt_cache=PromptCache(),
            rate_limits=StaticRateLimits(),
            rng=random.Random(config.seed),
        )

    def reset(self) -> None:
        """Forget everything that happened (rules stay, their counters restart); ``POST /_sim/reset``."""
        self.ledger.reset()
        self.requests.clear()
        self.faults.reset_counters()
        self.prompt_cache.clear()

    def base_delay_s(self) -> float:
        """Seconds to wait before answering any API request: ``latency_ms`` +- uniform jitter."""
        jitter = self.config.latency_jitter_ms
        delay_ms = self.config.latency_ms + (self.rng.uniform(-jitter, jitter) if jitter else 0.0)
        return max(delay_ms, 0.0) / 1000

    def output_delay_s(self, output_tokens: int) -> float:
        """Extra seconds a successful answer takes to "generate" its output tokens."""
        return self.config.ms_per_output_token * output_tokens / 1000
