"""Delete the files uploaded for batches that are gone: their retention passed (their keys expired, with no process
present) or they were deleted without the files going too (no API key, a provider error, an interrupted upload).

It runs in the worker because the worker is the process that runs all the time and holds the API key. Each run
(every :data:`SWEEP_EVERY_S`) claims a few due entries of the uploads index (``store.uploads``; a claim is a lease, so
several workers share the work and one killed mid-run is taken over later), asks Redis whether each batch is still
there (a live one is due again when its retention can end next), and for a gone one deletes its files at the provider
(``store.uploads.delete_files``): each file id, and whatever an interrupted upload's nonce finds. Work per run is
bounded (batches, files, and a time limit); every provider call has the client's timeout. A provider's error is its
file's (or its lookup's): counted, kept in the set and tried again later; a Redis error or the time limit ends the
run, is logged, and the next run goes on. It never touches a file it has no record of.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import openai
from redis.asyncio import Redis

from store.keys import Keys
from store.uploads import BatchFiles, ProviderFiles, Swept, UploadStore, delete_files
from worker.periodic import Periodic

log = logging.getLogger("worker.uploads")

SWEEP_EVERY_S = 30.0
BATCHES_PER_RUN = 20
FILES_PER_RUN = 1000
"""Files (and interrupted uploads) handled per run, over all batches: a large batch is finished over several runs."""
LOOKUP_MAX_FILES = 20_000
"""Provider files one lookup by nonce reads at most."""
RUN_TIMEOUT_S = 120.0
LEASE_MS = int(RUN_TIMEOUT_S * 1000) + 60_000
"""A claimed entry is due again after this, if the run that claimed it never got to it."""


@dataclass
class SweepCounts:
    batches_checked: int = 0
    batches_gone: int = 0
    swept: Swept | None = None


class UploadsSweep(Periodic):
    """The periodic task; :meth:`run_once` is one run."""

    timeout_s = RUN_TIMEOUT_S
    name = "uploads sweep"
    log = log

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        client: openai.AsyncOpenAI,
        *,
        every_s: float = SWEEP_EVERY_S,
        batches_per_run: int = BATCHES_PER_RUN,
        files_per_run: int = FILES_PER_RUN,
    ) -> None:
        self._store = UploadStore(redis, keys)
        self._api = ProviderFiles(client)
        self.every_s = every_s
        self._batches_per_run = batches_per_run
        self._files_per_run = files_per_run

    def ran(self, result: object) -> None:
        if isinstance(result, SweepCounts):
            _log(result)

    async def run_once(self) -> SweepCounts:
        """Claim due batches, reschedule the live ones, delete the gone ones' files (within this run's budget)."""
        counts = SweepCounts()
        batches = await self._store.claim(self._batches_per_run, lease_ms=LEASE_MS)
        if not batches:
            return counts
        alive = await self._store.alive(batches)
        counts.batches_checked = len(batches)
        gone = [batch for batch, live in zip(batches, alive, strict=True) if not live]
        counts.batches_gone = len(gone)
        budget = self._files_per_run
        total = Swept()
        for batch in gone:
            if budget <= 0:
                await self._store.defer(batch, 0)  # its turn comes next run
                continue
            swept = await self._sweep(batch, budget)
            budget -= swept.deleted + swept.gone + len(swept.failed) + swept.open_intents
            total.add(swept)
        counts.swept = total
        return counts

    async def _sweep(self, batch: BatchFiles, budget: int) -> Swept:
        swept = await delete_files(self._store, batch, self._api, max_members=budget, lookup_max_files=LOOKUP_MAX_FILES)
        if swept.come_back_ms is not None:
            await self._store.defer(batch, swept.come_back_ms)
        return swept


def _log(counts: SweepCounts) -> None:
    swept = counts.swept
    if swept is None or not (swept.deleted or swept.gone or swept.failed or swept.open_intents):
        return
    level = logging.WARNING if swept.failed else logging.INFO
    log.log(
        level,
        "uploads sweep: %d batch(es) gone of %d checked; %d file(s) deleted, %d already gone, %d not deleted, "
        "%d interrupted upload(s) still open",
        counts.batches_gone,
        counts.batches_checked,
        swept.deleted,
        swept.gone,
        len(swept.failed),
        swept.open_intents,
    )
