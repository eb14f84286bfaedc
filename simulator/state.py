"""All mutable simulator state, in one object that tests can read directly (``sim.state``)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from aiohttp import web

from simulator.batches import BatchBook
from simulator.config import SimulatorConfig
from simulator.faults import FaultBook, fault_uniform
from simulator.files import FileStore
from simulator.ledger import Ledger
from simulator.prompt_cache import PromptCache
from simulator.ratelimit import TokenBucketLimits, rate_limits_for
from simulator.request_log import RequestLog
from simulator.tiers import FlexCapacity


@dataclass(slots=True)
class SimulatorState:
    """Config plus ledger, request log, faults, prompt cache, rate limits, uploaded files, flex capacity, latency RNG,
    and the batches of the Batch API.

    ``flex.unavailable_rate`` may be changed on a running simulator (it starts as the config's), and so may
    ``batches.settings`` (they start as the config's ``batch_*`` fields).
    """

    config: SimulatorConfig
    ledger: Ledger
    requests: RequestLog
    faults: FaultBook
    prompt_cache: PromptCache
    rate_limits: TokenBucketLimits
    rng: random.Random
    files: FileStore
    flex: FlexCapacity
    batches: BatchBook

    @classmethod
    def from_config(cls, config: SimulatorConfig) -> SimulatorState:
        return cls(
            config=config,
            ledger=Ledger(config.clock, rpm_limit=config.rpm, tpm_limit=config.tpm),
            requests=RequestLog(config.request_log_size),
            faults=FaultBook(
                list(config.faults),
                rates=config.fault_rates,
                seed=config.fault_seed,
                max_per_input=config.max_faults_per_input,
                slow_response_ms=config.slow_response_ms,
            ),
            prompt_cache=PromptCache(),
            rate_limits=rate_limits_for(config.rpm, config.tpm, config.limit_window_s, config.clock),
            rng=random.Random(config.seed),
            files=FileStore(),
            flex=FlexCapacity(config.flex_unavailable_rate),
            batches=BatchBook(config.batch_settings()),
        )

    def set_limits(self, rpm: int | None = None, tpm: int | None = None) -> None:
        """Change the enforced per-minute limits of every model (``None`` = keep; 0 = unlimited); ``POST /_sim/limits``.

        ValueError for a negative or non-integer limit.
        """
        self.rate_limits.set_limits(rpm, tpm)
        self.ledger.set_limits(self.rate_limits.rpm, self.rate_limits.tpm)

    def reset(self) -> None:
        """Forget everything that happened (rules and rates stay, their counters restart); ``POST /_sim/reset``.

        Uploaded files are forgotten too, and so are the flex capacity draws (the rate stays) and the batches (their
        runners are stopped; the batch settings stay).

        Rate-limit buckets are not refilled: like OpenAI's, they only refill with time. The limits stay as they are.
        """
        self.ledger.reset()
        self.requests.clear()
        self.faults.reset_counters()
        self.prompt_cache.clear()
        self.files.clear()
        self.flex.reset()
        self.batches.clear()

    def base_delay_s(self, input_key: str | None = None, attempt: int = 0) -> float:
        """Seconds to wait before answering an admitted request: ``latency_ms`` +- uniform jitter.

        The jitter is drawn from ``(seed, input key, attempt)`` when the input is
        known, so it is reproducible whatever order concurrent requests arrive in;
        otherwise from the seeded ``rng``.
        """
        jitter = self.config.latency_jitter_ms
        delay_ms = self.config.latency_ms
        if jitter:
            if input_key is None:
                delay_ms += self.rng.uniform(-jitter, jitter)
            else:
                delay_ms += (2 * fault_uniform(self.config.seed, input_key, attempt, "latency") - 1) * jitter
        return max(delay_ms, 0.0) / 1000

    def output_delay_s(self, output_tokens: int) -> float:
        """Extra seconds a successful answer takes to "generate" its output tokens."""
        return self.config.ms_per_output_token * output_tokens / 1000


STATE_KEY = web.AppKey("simulator_state", SimulatorState)
"""Where an application keeps its :class:`SimulatorState` (``app[STATE_KEY]``)."""
