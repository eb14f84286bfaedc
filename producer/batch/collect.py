"""Write a batch's results as JSONL: in input order, atomically and in bounded memory; or as they finish (``--follow``).

Both read through the store (``store.results``): one line per input line, its latest final result -- a ``retry``'s
new result replaces the failed one -- and a synthesized ``cancelled`` line for lines a ``cancel`` stopped before they
were ever enqueued. Memory holds one chunk of lines at a time, whatever the batch's size.

**Output files.** Every file the CLI writes -- ``collect`` (atomic replace), ``collect --follow`` (appended as lines
finish), ``report --html``, ``compare --html`` -- goes through :func:`open_output` or :func:`write_output`, with one
rule: mode 0600 (:data:`OUTPUT_MODE`), whatever the umask, a replaced file included, and a missing folder is an error
(:class:`OutputPathError`), never created: ``--out reslts/b.jsonl`` is more likely a typo than a wish.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any, Literal

import orjson
from redis.asyncio import Redis

from producer.batch.status import ensure_fed
from producer.errors import InputError
from schemas.jobs import BatchSpec
from schemas.pricing import ModelPrice
from store.batches import BatchRecord, BatchStore
from store.codec import ResultCodec
from store.keys import BatchKeys, Keys
from store.lines import LineIndex
from store.objects import ObjectStoreError
from store.results import ResultStore, final_json
from store.sink.parts import PartRecord, entry_key
from store.sink.reader import ReorderOverflowError, SinkReader

OutputFormat = Literal["native", "openai-batch"]

OUTPUT_MODE = 0o600
"""Owner read and write only, for every output file. Results and reports carry what was extracted from people's
documents (names, addresses, amounts, free text): under the usual umask 022 they would be readable by every account
on the machine. The umask is not consulted, so the rule is the same on every machine; ``chmod`` shares a file."""

READ_CHUNK = 5000


def render(raw: bytes, output_format: OutputFormat) -> bytes:
    if output_format == "native":
        return raw
    return orjson.dumps(to_openai_batch(orjson.loads(raw)))


def to_openai_batch(result: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI Batch API output line shape, so consumers of that format can read our results.

    A succeeded line carries a response body in the shape of the API that produced it, holding the extracted JSON
    as the message text and the line's usage; a failed or cancelled line carries ``error`` and no response.
    """
    custom_id = result["custom_id"]
    # Unique per line: the custom_id is unique in a batch (identical documents share a fingerprint, not an id).
    line_id = "batch_req_" + hashlib.sha256(f"{custom_id}\n{result.get('fingerprint', '')}".encode()).hexdigest()[:24]
    if result["status"] != "succeeded":
        error = result.get("error") or {"type": result["status"], "message": result["status"]}
        return {
            "id": line_id,
            "custom_id": custom_id,
            "response": None,
            "error": {"code": error["type"], "message": error["message"]},
        }
    text = orjson.dumps(result["output"]).decode()
    usage = result["usage"]
    if result["api"] == "chat":
        body: dict[str, Any] = {
            "id": result.get("response_id"),
            "object": "chat.completion",
            "model": result["model"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                }
            ],
            "usage": {
                "prompt_tokens": usage["input_tokens"],
                "completion_tokens": usage["output_tokens"],
                "total_tokens": usage["total_tokens"],
                "prompt_tokens_details": {"cached_tokens": usage["cached_input_tokens"]},
                "completion_tokens_details": {"reasoning_tokens": usage["reasoning_tokens"]},
            },
        }
    else:
        body = {
            "id": result.get("response_id"),
            "object": "response",
            "status": "completed",
            "model": result["model"],
            "output": [
                {
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": usage["cached_input_tokens"]},
                "output_tokens": usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": usage["reasoning_tokens"]},
                "total_tokens": usage["total_tokens"],
            },
        }
    return {
        "id": line_id,
        "custom_id": custom_id,
        # The Batch API's request_id is the provider's x-request-id (what its support asks for); lines recorded before
        # it was kept fall back to the response id.
        "response": {
            "status_code": 200,
            "request_id": result.get("request_id") or result.get("response_id"),
            "body": body,
        },
        "error": None,
    }


async def final_result_chunks(
    redis: Redis, keys: Keys, batch_id: str, *, chunk: int = READ_CHUNK
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every line's latest final result as a dict, in input order (pending lines left out), ``chunk`` input lines at
    a time: what ``report`` and ``compare`` fold, one chunk in memory at a time (a chunk may be short or empty)."""
    batch = await BatchStore(redis, keys).get(batch_id)
    sink = sink_reader(redis, keys, batch.spec)
    async for lines in ResultStore(redis).final_lines(batch, keys.batch(batch_id), price=None, chunk=chunk, sink=sink):
        yield [orjson.loads(final.json) for final in lines if final.json is not None]


async def final_results(redis: Redis, keys: Keys, batch_id: str) -> list[dict[str, Any]]:
    """Every line's latest final result as a dict, in input order, all in one list: holds the whole batch, so only
    for small batches (tests); ``report`` and ``compare`` read :func:`final_result_chunks`."""
    return [line async for chunk in final_result_chunks(redis, keys, batch_id) for line in chunk]


async def collect(
    redis: Redis,
    keys: Keys,
    batch_id: str,
    out: Path,
    *,
    output_format: OutputFormat = "native",
    price: ModelPrice | None = None,
) -> tuple[int, int]:
    """Write every line that has a final result, in input order, replacing ``out`` atomically.

    Returns (written, missing): missing lines are pending (no final result yet) or not in the index yet.
    """
    batch = await BatchStore(redis, keys).get(batch_id)
    results = ResultStore(redis)
    sink = sink_reader(redis, keys, batch.spec)
    if sink is not None and batch.complete:
        try:
            return await _collect_from_parts(sink, batch, out, output_format), 0
        except (ReorderOverflowError, ObjectStoreError):
            pass  # finished far out of order, or reopened meanwhile: line by line, through the slots, below
    missing = 0

    async def rendered() -> AsyncIterator[list[bytes]]:
        nonlocal missing
        async for chunk in results.final_lines(batch, keys.batch(batch_id), price=price, chunk=READ_CHUNK, sink=sink):
            lines = [render(final.json, output_format) for final in chunk if final.json is not None]
            missing += len(chunk) - len(lines)
            yield lines

    written = await _write_atomically(out, rendered())
    return written, missing + max(batch.lines - batch.indexed, 0)


def sink_reader(redis: Redis, keys: Keys, spec: BatchSpec) -> SinkReader | None:
    """The reader of the batch's results sink, if it has one (its results leave Redis as they are made)."""
    if spec.results is None:
        return None
    return SinkReader(redis, keys, keys.batch(spec.batch_id), spec.results)


async def _collect_from_parts(sink: SinkReader, batch: BatchRecord, out: Path, output_format: OutputFormat) -> int:
    """A finished batch whose sink is complete, in input order straight from its parts (``rows_in_input_order``)."""

    async def rendered() -> AsyncIterator[list[bytes]]:
        async for rows in sink.rows_in_input_order(batch.lines):
            yield [render(raw, output_format) for _ordinal, raw in rows]

    return await _write_atomically(out, rendered())


async def _write_atomically(out: Path, chunks: AsyncIterator[list[bytes]]) -> int:
    """Write the lines of ``chunks`` to ``out`` (replaced atomically once all are written); a chunk is written in a
    thread while the next one is read. Returns the number of lines written."""
    written = 0
    with AtomicWriter(out) as writer:
        writing: asyncio.Future[None] | None = None
        async for lines in chunks:
            written += len(lines)
            if writing is not None:
                await writing
            writing = asyncio.ensure_future(asyncio.to_thread(writer.write, lines))
        if writing is not None:
            await writing
        await asyncio.to_thread(writer.commit)
    return written


class OutputPathError(InputError, ValueError):
    """An output file that cannot be written where it is asked for: its folder is missing (not created: more likely
    a typo), or the path is a folder. The message names the path and the folder."""


def check_output_path(out: Path) -> None:
    """Raise :class:`OutputPathError` unless ``out`` can be created in an existing folder (call it before the work)."""
    folder = out.parent
    if out.is_dir():
        raise OutputPathError(f"cannot write {out}: it is a folder; name a file in it")
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise OutputPathError(f"cannot write {out}: folder {folder} {state} (create it first)")


def open_output(out: Path) -> IO[bytes]:
    """Create or truncate ``out`` for writing, mode :data:`OUTPUT_MODE` (an existing file's mode is reset too)."""
    check_output_path(out)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, OUTPUT_MODE)
    try:
        os.fchmod(fd, OUTPUT_MODE)  # O_CREAT's mode applies to a new file only, and through the umask
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def write_output(out: Path, data: bytes) -> None:
    """Replace ``out`` with ``data`` atomically, mode :data:`OUTPUT_MODE` (``report``, ``compare --html``)."""
    with AtomicWriter(out) as writer:
        writer.write_bytes(data)
        writer.commit()


class AtomicWriter:
    """A temp file in the target's directory, fsync, rename: readers see the old file or the whole new one. The file
    gets :data:`OUTPUT_MODE`; the folder must exist (:func:`check_output_path`)."""

    def __init__(self, out: Path) -> None:
        check_output_path(out)
        self._out = out
        fd, self._tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        os.fchmod(fd, OUTPUT_MODE)  # mkstemp's 0600 today; stated here so the rule does not hang on it
        self._handle = os.fdopen(fd, "wb")
        self._committed = False

    def write(self, lines: list[bytes]) -> None:
        for line in lines:
            self._handle.write(line)
            self._handle.write(b"\n")

    def write_bytes(self, data: bytes) -> None:
        self._handle.write(data)

    def commit(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        os.replace(self._tmp, self._out)
        self._committed = True

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        if not self._committed:
            self._handle.close()
            Path(self._tmp).unlink(missing_ok=True)


async def follow(
    redis: Redis,
    keys: Keys,
    batch_id: str,
    out: Path,
    *,
    output_format: OutputFormat = "native",
    price: ModelPrice | None = None,
    block_ms: int = 1000,
    on_line: Callable[[int], None] | None = None,
) -> int:
    """Append each line's final result to ``out`` as it is recorded, until every line of the batch has one.

    Each line is written once, when its first final result that is still its latest is seen. Returns the count.
    """
    store, results, index = BatchStore(redis, keys), ResultStore(redis), LineIndex(redis)
    batch_keys = keys.batch(batch_id)
    batch = await store.get(batch_id)
    codec = ResultCodec(batch.spec.json_schema)
    sink = sink_reader(redis, keys, batch.spec)
    seen = bytearray((batch.lines + 7) // 8)  # one bit per line: written already
    written, last, synthesized = 0, "0-0", False
    handle = await asyncio.to_thread(open_output, out)

    def take(ordinal: int, line: bytes) -> bytes | None:
        nonlocal written
        if ordinal >= batch.lines:
            return None
        if ordinal >> 3 >= len(seen):  # lines appended (``submit --append``) while following
            seen.extend(bytes((ordinal >> 3) + 1 - len(seen)))
        if seen[ordinal >> 3] & (1 << (ordinal & 7)):
            return None
        seen[ordinal >> 3] |= 1 << (ordinal & 7)
        written += 1
        return render(line, output_format) + b"\n"

    try:
        while written < batch.lines:
            since = await results.read_since(batch_keys, last, READ_CHUNK)
            if sink is not None and entry_key(since.sink_after) > entry_key(last):
                # The writer took entries after ``last`` out of the stream: they are in its parts now.
                async for part, rows in sink.parts_ending_after(last):
                    await _append_latest(index, batch_keys, part, rows, take, handle)
                    if on_line is not None:
                        on_line(written)
                    last = part.last
                continue
            last, entries = since.last, since.lines
            chunk = [line for o, stored in entries if (line := take(o, codec.decode(stored))) is not None]
            if batch.cancel_from is not None and not synthesized:
                synthesized = True
                chunk += await _never_enqueued(index, batch_keys, batch, codec, price, take)
            if chunk:
                await asyncio.to_thread(_append, handle, chunk)
                if on_line is not None:
                    on_line(written)
            elif not entries:
                await results.wait_for_more(batch_keys, last, block_ms=block_ms)
                snapshot = await store.snapshot(batch_id)  # a cancel may have closed the feed meanwhile
                batch = snapshot.record
                ensure_fed(snapshot)  # nothing more will come if nobody feeds the batch
    finally:
        await asyncio.to_thread(handle.close)
    return written


async def _never_enqueued(
    index: LineIndex,
    keys: BatchKeys,
    batch: BatchRecord,
    codec: ResultCodec,
    price: ModelPrice | None,
    take: Callable[[int, bytes], bytes | None],
) -> list[bytes]:
    """The synthesized lines of a cancel's never-enqueued lines not written yet (``take``)."""
    assert batch.cancel_from is not None
    out = []
    for first in range(batch.cancel_from, batch.indexed, READ_CHUNK):
        for held in await index.read(keys, first, min(READ_CHUNK, batch.indexed - first)):
            json_line = final_json(batch, held, None, codec, price)
            if json_line is not None and (line := take(held.ordinal, json_line)) is not None:
                out.append(line)
    return out


async def _append_latest(
    index: LineIndex,
    keys: BatchKeys,
    part: PartRecord,
    rows: dict[int, bytes],
    take: Callable[[int, bytes], bytes | None],
    handle: IO[bytes],
) -> None:
    """Append the rows of a sink part that are still their line's latest result (its slot's entry is in the part's
    range) and not written yet (``take``)."""
    latest = await index.slot_entries(keys, list(rows))
    chunk = [
        line
        for (ordinal, raw), entry in zip(rows.items(), latest, strict=True)
        if entry is not None and part.holds(entry) and (line := take(ordinal, raw)) is not None
    ]
    if chunk:
        await asyncio.to_thread(_append, handle, chunk)


def _append(handle: IO[bytes], chunk: list[bytes]) -> None:
    handle.writelines(chunk)
    handle.flush()
