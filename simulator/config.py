"""Simulator settings, shared by the CLI (``python -m simulator``) and the in-process API."""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.faults import FaultRule


@dataclass(slots=True)
class SimulatorConfig:
    """How the simulated API behaves. Defaults give an instant, fault-free, unauthenticated server.

    ``seed`` feeds both output generation (together with the request content) and
    the latency jitter, so two runs with the same seed and inputs agree.
    ``require_api_key`` is kept out of ``repr`` so it never lands in logs.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    ms_per_output_token: float = 0.0
    seed: int = 0
    require_api_key: str | None = field(default=None, repr=False)
    faults: list[FaultRule] = field(default_factory=list)
    request_log_size: int = 1000

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.latency_jitter_ms < 0 or self.ms_per_output_token < 0:
            raise ValueError("latencies must be >= 0")
        if self.request_log_size < 0:
            raise ValueError("request_log_size must be >= 0")
