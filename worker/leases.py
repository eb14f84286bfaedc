"""Keeps this worker registered as alive and its jobs' claims held, one lease at a time (``store.workers``).

A background task renews, every third of ``EXTRACT_JOB_LEASE_S``, the worker's entry in the registry of live
workers and the claim of every job it runs, in one script call. It runs beside arq's poll loop, not inside it:
arq's loop stops polling while every job slot is busy, and that is exactly when the claims matter most. A renewal
that fails (Redis restarting) is retried at the next beat; if Redis stays away longer than a lease the claims lapse
and other workers may start the same lines again, which recording once makes safe for the results.

When the worker stops cleanly it leaves the registry at once; a worker that is killed simply stops renewing, and
both its registration and its claims lapse within one lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from store.workers import WorkerRegistry

log = logging.getLogger("worker.leases")

RENEWALS_PER_LEASE = 3
"""A lease survives two missed renewals (a Redis blip, a slow event loop) before it lapses."""


class LeaseKeeper:
    def __init__(self, registry: WorkerRegistry, *, lease_s: float, running: Callable[[], list[str]]) -> None:
        self._registry = registry
        self._lease_ms = int(lease_s * 1000)
        self._every_s = lease_s / RENEWALS_PER_LEASE
        self._running = running
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    async def start(self) -> None:
        """Register now (so ``wait`` sees the worker before its first job), then keep renewing in the background."""
        await self.renew_once()
        self._task = asyncio.create_task(self._run(), name="lease-keeper")

    async def renew_once(self) -> None:
        try:
            async with asyncio.timeout(self._every_s):
                lost = await self._registry.renew(self._running(), lease_ms=self._lease_ms)
        except Exception as exc:  # a Redis blip: the next beat tries again; two missed beats still hold the lease
            if not self._failing:
                log.warning("could not renew this worker's leases (%s: %s); retrying", type(exc).__name__, exc)
            self._failing = True
            return
        if self._failing:
            log.info("leases renewed again")
            self._failing = False
        if lost:
            log.warning(
                "%d running job(s) lost their lease (this worker stalled longer than a lease, %.0fs): another worker "
                "may run them too; each line is still recorded once: %s",
                len(lost),
                self._lease_ms / 1000,
                ", ".join(lost[:5]),
            )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every_s)
            await self.renew_once()

    async def stop(self) -> None:
        """Stop renewing and leave the registry (the claims of jobs still running lapse with their lease)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self._registry.leave()
