"""An OpenAI-compatible API simulator for offline demos and tests.

Serves ``POST /v1/responses`` and ``POST /v1/chat/completions`` for Structured
Outputs requests with deterministic, schema-conforming answers, approximate
token usage, prompt caching, fault injection and a ledger of what would have
been billed (``/_sim/*``). Messages may carry images and PDFs (inline, by URL or
by ``file_id`` from the in-memory Files API, ``/v1/files``), charged by OpenAI's
published formulas (:mod:`simulator.vision`); ``POST /v1/responses/input_tokens``
counts a body's input. Models follow per-family rules (:mod:`simulator.model_families`):
which reason and at which efforts (reasoning tokens billed inside the output and
counted against its cap), which refuse ``temperature``/``top_p``/``max_tokens``,
which offer the ``flex`` and ``priority`` tiers; a share of flex requests can be
refused with the unbilled ``429 resource_unavailable`` (:mod:`simulator.tiers`).
Every response carries a unique ``x-request-id``, kept in the request log. See
``python -m simulator --help``.
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
