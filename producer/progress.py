"""``wait``: a live progress bar (done/total, rate, ETA, failures) until every line has a final result."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from producer.status import BatchPausedError, ensure_fed, read_status
from store.batches import BatchRecord, BatchStore
from store.keys import Keys


class WaitTimeoutError(TimeoutError):
    def __init__(self, record: BatchRecord) -> None:
        super().__init__(f"batch {record.batch_id}: {record.pending} of {record.lines} lines still pending")
        self.record = record


async def wait_for_batch(
    redis: Redis,
    keys: Keys,
    batch_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    console: Console | None = None,
) -> BatchRecord:
    """Poll the batch record until it is complete. Raises ``WaitTimeoutError`` after ``timeout_s``,
    ``IncompleteSubmitError`` when no submit is feeding a batch whose lines are not all enqueued, and
    ``BatchPausedError`` when the batch paused on a batch-wide error (waiting cannot finish it)."""
    console = console or Console(stderr=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    store = BatchStore(redis, keys)
    record = await read_status(redis, keys, batch_id)
    started, done_at_start = time.monotonic(), record.done
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>8} lines/s"),
        TextColumn("failed [red]{task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False, disable=not console.is_terminal) as progress:
        task = progress.add_task(batch_id, total=record.lines, completed=record.done, rate="-", failed=record.failed)
        while not record.complete:
            if record.paused is not None:
                raise BatchPausedError(record)
            await ensure_fed(store, record)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(record)
            await asyncio.sleep(poll_s)
            record = await read_status(redis, keys, batch_id)
            elapsed = time.monotonic() - started
            rate = (record.done - done_at_start) / elapsed if elapsed > 0 else 0.0
            progress.update(task, completed=record.done, rate=f"{rate:.1f}", failed=record.failed)
    if not console.is_terminal:
        # Logs and CI get one summary line instead of a redrawn bar.
        console.print(f"{batch_id}: {record.done}/{record.lines} done, {record.failed} failed")
    return record
