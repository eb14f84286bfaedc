"""Run the simulator inside the current event loop (tests, demos) on a real TCP port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from simulator.app import STATE_KEY, create_app
from simulator.config import SimulatorConfig
from simulator.state import SimulatorState

SHUTDOWN_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A simulator being served: where to reach it and its live state."""

    url: str
    app: web.Application

    @property
    def base_url(self) -> str:
        """What ``OPENAI_BASE_URL`` / ``AsyncOpenAI(base_url=...)`` should be."""
        return f"{self.url}/v1"

    @property
    def state(self) -> SimulatorState:
        return self.app[STATE_KEY]


@asynccontextmanager
async def running_simulator(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[RunningSimulator]:
    """Serve a fresh simulator on ``host:port`` (``port=0``: a free port) for the duration of the block."""
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield RunningSimulator(url=f"http://{url_host}:{bound_port}", app=app)
    finally:
        await runner.cleanup()
