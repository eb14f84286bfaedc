"""A task a worker runs in the background every few seconds (the uploads sweep, the venue's part keeper): started
once the worker is up, stopped (cancelled, awaited) on shutdown. A run that fails -- Redis away, a provider error
that escaped, the run's time limit -- is logged at WARNING and the next run goes on: a background task never dies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod


class Periodic(ABC):
    """Subclasses say what one run does (:meth:`run_once`), how often (``every_s``) and how long it may take."""

    every_s: float
    timeout_s: float | None = None
    name: str = "periodic"
    log: logging.Logger = logging.getLogger("worker.periodic")

    _task: asyncio.Task[None] | None = None

    @abstractmethod
    async def run_once(self) -> object:
        """One run; what it returns goes to :meth:`ran`."""

    def ran(self, result: object) -> None:  # noqa: B027 - optional hook: most runs have nothing to say
        """Say what a run did (nothing by default)."""

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.timeout_s):
                    self.ran(await self.run_once())
            except Exception as exc:  # this run ends; the next one goes on
                self.log.warning("%s: run failed: %s: %s", self.name, type(exc).__name__, exc)
            await asyncio.sleep(self.every_s)
