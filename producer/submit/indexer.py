"""The first two steps of a submit: record the batch, then write its line index.

1. ``open_batch``: a new batch id gets its record (spec, number of lines, retention, where the input is); a known one
   must have the same parameters, or the submit is refused naming the ones that differ (its lines are compared by
   ``producer.submit.resubmit``).
2. ``index_lines``: the line index (custom_id and fingerprint of every line, in input order) is written in chunks,
   resuming where an interrupted submit stopped; lines the index already holds are checked against the input, so a
   changed file is refused instead of being mixed into the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from redis.asyncio import Redis

from producer.errors import BatchStateError
from producer.input.readers import InputLine, LineSource
from schemas.jobs import BatchSpec, Fingerprinter
from store.batches import BatchRecord, BatchStore
from store.keys import Keys
from store.lines import IndexedLine, LineIndex


class BatchExistsError(BatchStateError, RuntimeError):
    """The batch id is taken by a batch with other parameters or another input."""


class InputChangedError(BatchStateError, RuntimeError):
    """A line of the input differs from the line the batch holds at the same position."""


@dataclass(frozen=True)
class OpenedBatch:
    record: BatchRecord
    created: bool


async def open_batch(
    redis: Redis, keys: Keys, spec: BatchSpec, *, lines: int, ttl_s: int, input_ref: dict[str, Any] | None
) -> OpenedBatch:
    """Record a new batch, or check that a known one is the same work (its lines are compared later)."""
    store = BatchStore(redis, keys)
    created = await store.create(
        spec, lines=lines, ttl_ms=ttl_s * 1000, input_ref=input_ref, created_ms=int(time.time() * 1000)
    )
    record = await store.get(spec.batch_id)
    if created:
        await store.prune_index()  # tidy the batch index of expired batches now and then
        return OpenedBatch(record, created=True)
    differences = record.spec.differences(spec)
    if differences:
        raise BatchExistsError(
            f"batch {spec.batch_id!r} already exists with other parameters ({'; '.join(differences)}: the batch's "
            "vs this submit's); resubmit with the same ones to resume it, or choose another --batch-id"
        )
    return OpenedBatch(record, created=False)


async def adopt_input(redis: Redis, keys: Keys, record: BatchRecord, input_ref: dict[str, Any] | None) -> None:
    """Make ``input_ref`` the file ``retry`` reads the batch's lines from. Only for an input that holds exactly the
    batch's lines in the batch's order (a moved or renamed copy): a refused resubmit changes nothing, and an input
    whose lines were changed, reordered or appended is not one ``retry`` can read by position."""
    if input_ref is not None and input_ref != record.input:
        await BatchStore(redis, keys).set_input(record.spec.batch_id, input_ref)


async def index_lines(
    redis: Redis,
    keys: Keys,
    record: BatchRecord,
    source: LineSource,
    *,
    chunk: int = 1000,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Write the rest of the batch's line index and check the part it already has. Returns the index length."""
    index = LineIndex(redis)
    batch_keys = keys.batch(record.batch_id)
    fingerprint = Fingerprinter(record.spec)
    indexed = record.indexed
    for first, lines in chunked(source.lines(), chunk, first=source.first_ordinal):
        entries = [(fingerprint(line.text, line.described), line.custom_id) for line in lines]
        while True:
            if first + len(lines) <= indexed:
                check_against_index(lines, entries, await index.read(batch_keys, first, len(lines)))
                break
            if first < indexed:  # part of this chunk is indexed already: check that part, append the rest
                known = indexed - first
                check_against_index(lines[:known], entries[:known], await index.read(batch_keys, first, known))
                lines, entries, first = lines[known:], entries[known:], indexed
            code, indexed = await index.append(batch_keys, first, entries)
            if code == 1:
                break
            if code < 0:
                raise BatchExistsError(f"batch {record.batch_id!r} was deleted while it was being submitted")
            # code 0: another submit of this batch wrote here first; compare with what it wrote.
        if on_progress is not None:
            on_progress(indexed)
    return indexed


def check_against_index(lines: list[InputLine], entries: list[tuple[str, str]], indexed: list[IndexedLine]) -> None:
    """Refuse an input whose line differs from the line the batch holds at the same position."""
    for line, (fingerprint, custom_id), held in zip(lines, entries, indexed, strict=True):
        if custom_id != held.custom_id:
            raise InputChangedError(
                f"{line.place}: id {custom_id!r} where the batch has {held.custom_id!r}: this is not the input "
                "the batch was submitted from (use another --batch-id)"
            )
        if fingerprint != held.fingerprint:
            raise InputChangedError(
                f"{line.place}: the document of {custom_id!r} changed since the batch was submitted "
                "(use another --batch-id)"
            )


def chunked(lines: Iterable[InputLine], size: int, *, first: int = 0) -> Iterator[tuple[int, list[InputLine]]]:
    """(ordinal of the first line, lines) in chunks of ``size``, the first line being ordinal ``first``."""
    iterator = iter(lines)
    while chunk := list(islice(iterator, size)):
        yield first, chunk
        first += len(chunk)
