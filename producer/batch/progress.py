"""``wait``: live progress (done/total, rate, ETA, outcomes, tokens, cost, workers) until every line has a final
result."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from typing import ClassVar

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column
from rich.text import Text

from producer.batch.status import BatchPausedError, ensure_fed, read_snapshot
from producer.errors import EXIT_INCOMPLETE, ProducerError
from store.batches import BatchRecord, BatchSnapshot
from store.keys import Keys
from store.sink.state import SinkStore


class WaitTimeoutError(ProducerError, TimeoutError):
    exit_code: ClassVar[int] = EXIT_INCOMPLETE

    def __init__(self, record: BatchRecord) -> None:
        super().__init__(f"batch {record.batch_id}: {record.pending} of {record.lines} lines still pending")
        self.record = record


REPORT_EVERY_S = 10.0
"""Without a terminal, ``wait`` prints one progress line this often."""
RECONNECT_FOR_S = 120.0
"""``wait`` rides out a Redis that stops answering (a restart, a failover) for this long, then gives up."""
NO_WORKER_WARNING_S = 30.0
"""``wait`` warns when no worker has been alive for this long (and again as long as it lasts)."""


async def wait_for_batch(
    redis: Redis,
    keys: Keys,
    batch_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    report_every_s: float = REPORT_EVERY_S,
    console: Console | None = None,
) -> BatchRecord:
    """Poll the batch record until it is complete. Raises ``WaitTimeoutError`` after ``timeout_s``,
    ``IncompleteSubmitError`` when no submit is feeding a batch whose lines are not all enqueued, and
    ``BatchPausedError`` when the batch paused on a batch-wide error (waiting cannot finish it).

    On a terminal it draws a live bar; otherwise (logs, CI, ``kubectl logs``) it prints a progress line every
    ``report_every_s``. Both show succeeded/failed/cancelled, tokens, cost so far and projected, and live workers.
    """
    console = console or Console(stderr=True)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    snapshot = await _read_riding_out_blips(redis, keys, batch_id, console)
    record = snapshot.record
    started, done_at_start = time.monotonic(), record.done
    recent = RecentTries()
    last_report, workers_seen = started, started
    with LiveProgress(console) as progress:
        task = progress.add_task(batch_id, total=record.lines, completed=record.done, rate="-", summary="")
        while not record.complete:
            if record.paused is not None:
                raise BatchPausedError(record)
            ensure_fed(snapshot)
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeoutError(record)
            await asyncio.sleep(poll_s)
            snapshot = await _read_riding_out_blips(redis, keys, batch_id, console)
            record, workers = snapshot.record, snapshot.live_workers
            now = time.monotonic()
            if workers:
                workers_seen = now
            elif now - workers_seen >= NO_WORKER_WARNING_S and not record.complete:
                console.print(
                    f"[yellow]warning[/yellow]: no worker has been alive for {now - workers_seen:.0f}s: "
                    "is `worker run` running against this Redis and key prefix?"
                )
                workers_seen = now  # say it again if it lasts
            elapsed = now - started
            rate = (record.done - done_at_start) / elapsed if elapsed > 0 else 0.0
            summary = progress_summary(record, workers) + recent.update(now, record)
            progress.update(task, completed=record.done, rate=f"{rate:.1f}", summary=summary)
            if not console.is_terminal and now - last_report >= report_every_s and not record.complete:
                console.print(f"{batch_id}: {record.done:,}/{record.lines:,} done, {rate:.1f} lines/s, {summary}")
                last_report = now
    if not console.is_terminal:
        # Logs and CI get one summary line at the end too.
        console.print(f"{batch_id}: {record.done}/{record.lines} done, {progress_summary(record, None)}")
    if record.spec.results is not None:
        await wait_for_sink(redis, keys, record, deadline=deadline, poll_s=poll_s, console=console)
    return record


class SinkNotWrittenError(WaitTimeoutError):
    """Every line is final, but the results sink does not hold them all yet (``wait`` timed out on the writers)."""

    def __init__(self, record: BatchRecord, waiting: int) -> None:
        ProducerError.__init__(
            self,
            f"batch {record.batch_id}: every line is final, but {waiting} result(s) are not written to "
            f"{record.spec.results.url if record.spec.results else 'the sink'} yet (see producer status)",
        )
        self.record = record


async def wait_for_sink(
    redis: Redis, keys: Keys, record: BatchRecord, *, deadline: float | None, poll_s: float, console: Console
) -> None:
    """Wait until the batch's results sink holds every line (its manifest says complete): the workers' writers
    finish it within a few seconds of the last line."""
    store, batch_keys = SinkStore(redis, keys), keys.batch(record.batch_id)
    said = False
    while not (state := await store.state(batch_keys)).done:
        waiting = await SinkStore(redis, keys).waiting(batch_keys)
        if deadline is not None and time.monotonic() >= deadline:
            raise SinkNotWrittenError(record, waiting)
        if not said:
            console.print(f"{record.batch_id}: writing the last results to the sink ({state.rows:,} written) ...")
            said = True
        await asyncio.sleep(poll_s)


async def _read_riding_out_blips(redis: Redis, keys: Keys, batch_id: str, console: Console) -> BatchSnapshot:
    """The batch record, its feeder and the live workers, read at one instant (one script, no scan); through a Redis
    that went away it keeps trying (saying so) for ``RECONNECT_FOR_S``. A wrong password or a gone batch is not a
    blip and is raised at once."""
    lost_at: float | None = None
    while True:
        try:
            snapshot = await read_snapshot(redis, keys, batch_id)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if isinstance(exc, AuthenticationError):
                raise
            now = time.monotonic()
            if lost_at is None:
                lost_at = now
                console.print(f"[yellow]Redis went away[/yellow] ({exc}); reconnecting ...")
            elif now - lost_at > RECONNECT_FOR_S:
                raise
            await asyncio.sleep(1.0)
            continue
        if lost_at is not None:
            console.print(f"Redis is back after {time.monotonic() - lost_at:.0f}s")
        return snapshot


class LiveProgress(Progress):
    """The live display on a terminal, in two parts so that nothing that matters is cut on a narrow one: a bar that
    takes the width left, done/total, the rate, elapsed time and ETA; then the batch id with the outcomes, tokens,
    cost, retries and workers, folded onto as many lines as the terminal needs."""

    def __init__(self, console: Console) -> None:
        super().__init__(
            BarColumn(bar_width=None, table_column=Column(ratio=1)),
            MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=9)),
            TextColumn("{task.fields[rate]} lines/s", table_column=Column(no_wrap=True, min_width=12)),
            TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
            TextColumn("ETA", table_column=Column(no_wrap=True, min_width=3)),
            TimeRemainingColumn(table_column=Column(no_wrap=True, min_width=7)),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            summary = str(task.fields.get("summary", ""))
            line = Text(task.description, style="bold", overflow="fold")
            if summary:
                line.append(": " + summary, style="")
            yield line


class RecentTries:
    """Retries and 429s in the last minute, from the batch's running counts as ``wait`` polls them."""

    WINDOW_S = 60.0

    def __init__(self) -> None:
        self._samples: deque[tuple[float, int, int]] = deque()

    def update(self, now: float, record: BatchRecord) -> str:
        self._samples.append((now, record.tries_failed, record.rate_limited))
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.WINDOW_S:
            self._samples.popleft()
        _then, failed, limited = self._samples[0]
        return f", last minute: {record.tries_failed - failed:,} retries, {record.rate_limited - limited:,} 429s"


def progress_summary(record: BatchRecord, workers: int | None) -> str:
    """Succeeded/failed/cancelled, tokens, cost so far and projected to the whole batch, live workers."""
    usage = record.usage
    parts = [
        f"{record.succeeded:,} ok / {record.failed:,} failed / {record.cancelled:,} cancelled",
        f"tokens {usage.input_tokens:,} in / {usage.output_tokens:,} out",
    ]
    if record.cost_usd is not None:
        projected = record.cost_usd * record.lines / record.done if record.done else 0.0
        parts.append(f"${record.cost_usd:.4f} (projected ${projected:.4f})")
    if workers is not None:
        parts.append(f"workers {workers}")
    return ", ".join(parts)
