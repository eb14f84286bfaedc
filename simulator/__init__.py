"""An OpenAI-compatible API simulator for offline demos and tests.

Serves ``POST /v1/responses`` and ``POST /v1/chat/completions`` for Structured
Outputs requests with deterministic, schema-conforming answers, approximate
token usage, prompt caching, fault injection and a ledger of what would have
been billed (``/_sim/*``). Messages may carry images and PDFs (inline, by URL or
by ``file_id`` from the in-memory Files API, ``/v1/files``), charged by OpenAI's
published formulas (:mod:`simulator.vision`); ``POST /v1/responses/input_tokens``
counts a body's input. See ``python -m simulator --help``.
"""

from simulator.app import STATE_KEY, create_app
from simulator.config import SimulatorConfig
from simulator.faults import FaultKind, FaultRule
from simulator.server import RunningSimulator, running_simulator
from simulator.state import SimulatorState

__all__ = [
    "STATE_KEY",
    "FaultKind",
    "FaultRule",
    "RunningSimulator",
    "SimulatorConfig",
    "SimulatorState",
    "create_app",
    "running_simulator",
]
