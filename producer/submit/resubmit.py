"""A submit of a batch id that exists already: compare every line with what the batch holds, by its custom_id.

- The common case -- the same file again, after an interrupted submit or to make sure -- matches the batch line by
  line at the same positions: the submit goes on from the feed cursor (``producer.submit.submit``).
- Otherwise every line of the input is looked up by its custom_id in the batch's index (a map of ids to positions,
  about 100 bytes per line of the batch while the submit runs):

  * the same id and document (fingerprint: document and parameters) -> nothing to do;
  * the same id, another document -> refused with its line number, or with ``--replace-changed`` given its new
    document: run again, its new result superseding the old one (``store.feed.REPLACE_CHUNK``);
  * an id the batch does not have -> refused, or with ``--append`` added at the end of the batch and fed;
  * ids of the batch missing from the input are left as they are.

Nothing is written unless every line is acceptable. A batch whose submit was interrupted while writing its index
must first be finished with its own input; ``--append`` needs every earlier line to be enqueued already.
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from redis.asyncio import Redis

from producer.errors import InputError
from producer.input.readers import InputLine, LineSource
from producer.submit.attachments import AttachmentStager, Uploader
from producer.submit.feeder import Feeder, FeedResult, ProgressHook, job_payloads
from producer.submit.indexer import BatchExistsError, InputChangedError, chunked, index_lines
from schemas.jobs import Fingerprinter
from store.batches import BatchRecord, BatchStore
from store.feed import FeedCode, FeedStore
from store.keys import Keys
from store.lines import LineIndex, encode_entry, fingerprint_digest

INDEX_READ = 5000
WINDOW_POLL_S = 0.2
MAX_REPORTED = 50


class ResubmitRefusedError(InputError, RuntimeError):
    """Lines of the input that the batch cannot take as they are; ``problems`` say which and why."""

    def __init__(self, problems: list[str], total: int) -> None:
        more = f" (and {total - len(problems)} more)" if total > len(problems) else ""
        super().__init__(f"{total} line(s) refused{more}")
        self.problems = problems
        self.total = total


@dataclass
class Plan:
    unchanged: int = 0
    changed: dict[int, int] = field(default_factory=dict)
    """input line number -> the batch ordinal whose document it changes."""
    new: list[int] = field(default_factory=list)
    """input line numbers of ids the batch does not have, in input order."""


@dataclass
class ResubmitResult:
    replaced: int = 0
    running: list[int] = field(default_factory=list)
    """Ordinals not replaced because they were running: submit again once they have finished."""
    appended: int = 0
    feed: FeedResult | None = None


async def matches_by_position(redis: Redis, keys: Keys, record: BatchRecord, source: LineSource) -> bool:
    """Whether ``source`` is the batch's own input: the same line count and, line by line, the same ids and
    documents as the index holds (the fast, usual case of a resubmit)."""
    if source.count != record.lines:
        return False
    index = LineIndex(redis)
    batch_keys = keys.batch(record.batch_id)
    fingerprint = Fingerprinter(record.spec)
    for first, lines in chunked(source.lines(), INDEX_READ, first=source.first_ordinal):
        if first >= record.indexed:
            return True
        held = await index.read(batch_keys, first, min(len(lines), record.indexed - first))
        for line, entry in zip(lines, held, strict=False):
            if line.custom_id != entry.custom_id or fingerprint(line.text, line.described) != entry.fingerprint:
                return False
    return True


async def plan_resubmit(redis: Redis, keys: Keys, record: BatchRecord, source: LineSource) -> Plan:
    """Compare every input line with the batch's line of the same id."""
    if record.indexed < record.lines:
        raise InputChangedError(
            f"batch {record.batch_id!r} was interrupted while it was being submitted, and this input is not the one "
            "it was submitted from: finish it with its own input first"
        )
    positions: dict[str, int] = {}
    digests = array("Q")  # the first 8 bytes of each line's fingerprint, by ordinal
    index = LineIndex(redis)
    batch_keys = keys.batch(record.batch_id)
    for first in range(0, record.indexed, INDEX_READ):
        for held in await index.read(batch_keys, first, min(INDEX_READ, record.indexed - first)):
            positions[held.custom_id] = held.ordinal
            digests.append(int.from_bytes(fingerprint_digest(held.fingerprint)[:8], "big"))
    fingerprint = Fingerprinter(record.spec)
    plan = Plan()
    for line in source.lines():
        ordinal = positions.get(line.custom_id)
        if ordinal is None:
            plan.new.append(line.line)
        elif int.from_bytes(fingerprint_digest(fingerprint(line.text, line.described))[:8], "big") == digests[ordinal]:
            plan.unchanged += 1
        else:
            plan.changed[line.line] = ordinal
    return plan


def refusals(
    plan: Plan, *, replace_changed: bool, append: bool, source_lines: Callable[[], Iterator[InputLine]]
) -> None:
    """Raise ``ResubmitRefusedError`` naming each line the flags do not allow."""
    problems: list[str] = []
    total = 0
    new = set(plan.new)
    for line in source_lines():
        reason = None
        if line.line in plan.changed and not replace_changed:
            reason = (
                f"{line.place}: the document of {line.custom_id!r} differs from the one the batch has "
                "(--replace-changed runs it again)"
            )
        elif line.line in new and not append:
            reason = f"{line.place}: the batch has no line {line.custom_id!r} (--append adds it)"
        if reason is not None:
            total += 1
            if len(problems) < MAX_REPORTED:
                problems.append(reason)
    if total:
        raise ResubmitRefusedError(problems, total)


async def apply_plan(
    redis: Redis,
    keys: Keys,
    record: BatchRecord,
    source: LineSource,
    plan: Plan,
    *,
    window: int,
    chunk: int,
    on_progress: ProgressHook | None = None,
    uploader: Uploader | None = None,
) -> ResubmitResult:
    """Replace the changed lines and append the new ones (``refusals`` passed)."""
    result = ResubmitResult()
    if plan.changed:
        await _replace(redis, keys, record, source, plan, result, window=window, chunk=chunk, uploader=uploader)
    if plan.new:
        await _append(
            redis,
            keys,
            record,
            source,
            plan,
            result,
            window=window,
            chunk=chunk,
            on_progress=on_progress,
            uploader=uploader,
        )
    return result


async def _replace(
    redis: Redis,
    keys: Keys,
    record: BatchRecord,
    source: LineSource,
    plan: Plan,
    result: ResubmitResult,
    *,
    window: int,
    chunk: int,
    uploader: Uploader | None,
) -> None:
    feeds = FeedStore(redis, keys)
    fingerprint = Fingerprinter(record.spec)
    stager = AttachmentStager(redis, keys.batch(record.batch_id), record.spec, uploader)
    pending: list[tuple[int, InputLine]] = []

    async def flush() -> None:
        fingerprints = [fingerprint(line.text, line.described) for _, line in pending]
        staged = await stager.stage([line for _, line in pending])
        payloads = job_payloads(record.batch_id, pending, fingerprints, staged)
        items = [
            (ordinal, encode_entry(fp, line.custom_id), payload)
            for (ordinal, line), fp, payload in zip(pending, fingerprints, payloads, strict=True)
        ]
        while True:
            answer, running = await feeds.replace(record.batch_id, window, items)
            if answer.code == FeedCode.DONE:
                result.replaced += answer.count
                result.running += running
                return
            if answer.code == FeedCode.FULL:
                await asyncio.sleep(WINDOW_POLL_S)  # wait for lines to finish
                continue
            raise BatchExistsError(f"batch {record.batch_id!r} was cancelled or deleted while it was being replaced")

    for line in source.lines():
        ordinal = plan.changed.get(line.line)
        if ordinal is not None:
            pending.append((ordinal, line))
            if len(pending) >= min(chunk, window):
                await flush()
                pending = []
    if pending:
        await flush()


async def _append(
    redis: Redis,
    keys: Keys,
    record: BatchRecord,
    source: LineSource,
    plan: Plan,
    result: ResubmitResult,
    *,
    window: int,
    chunk: int,
    on_progress: ProgressHook | None,
    uploader: Uploader | None,
) -> None:
    if record.fed < record.lines and record.cancel_from is None:
        raise InputChangedError(
            f"batch {record.batch_id!r} is still being fed ({record.fed} of {record.lines} lines enqueued): finish "
            "its submit first, then --append"
        )
    new = set(plan.new)
    appended = AppendedLines(source, new, first=record.lines)
    code, lines = await FeedStore(redis, keys).extend(
        keys.batch(record.batch_id), record.lines, record.lines + len(new)
    )
    if code != 1:
        raise BatchExistsError(f"batch {record.batch_id!r} changed (or was cancelled) while lines were being appended")
    grown = await BatchStore(redis, keys).get(record.batch_id)
    await index_lines(redis, keys, grown, appended, chunk=chunk)
    grown = await BatchStore(redis, keys).get(record.batch_id)
    feeder = Feeder(redis, keys, grown, window=window, chunk=chunk, uploader=uploader)
    result.feed = await feeder.feed(appended, on_progress=on_progress)
    result.appended = lines - record.lines


@dataclass(frozen=True)
class AppendedLines:
    """The lines an ``--append`` adds, numbered as the batch's next ordinals (``first`` on)."""

    source: LineSource
    numbers: set[int]
    first: int

    @property
    def count(self) -> int:
        return self.first + len(self.numbers)

    @property
    def first_ordinal(self) -> int:
        return self.first

    def lines(self) -> Iterator[InputLine]:
        return (line for line in self.source.lines() if line.line in self.numbers)

    def describe(self) -> None:
        return None
