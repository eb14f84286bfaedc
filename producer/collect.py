"""Write a batch's results as JSONL: in input order, atomically; or streamed as they finish (``--follow``)."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any, Literal

import orjson
from redis.asyncio import Redis

from schemas.keys import Keys
from schemas.redis_typing import awaited

OutputFormat = Literal["native", "openai-batch"]

_READ_CHUNK = 5000


async def recorded_results(redis: Redis, keys: Keys, batch_id: str) -> dict[str, bytes]:
    """Every recorded result line of a batch, by custom_id (raw JSON, as the worker wrote it)."""
    stream = keys.results(batch_id)
    found: dict[str, bytes] = {}
    start = "-"
    while True:
        entries = await redis.xrange(stream, min=start, max="+", count=_READ_CHUNK)
        for _entry_id, fields in entries:
            found[fields[b"id"].decode()] = fields[b"r"]
        if len(entries) < _READ_CHUNK:
            return found
        start = "(" + entries[-1][0].decode()


async def input_order(redis: Redis, keys: Keys, batch_id: str) -> AsyncIterator[list[str]]:
    key = keys.batch_order(batch_id)
    start = 0
    while True:
        ids = await awaited(redis.lrange(key, start, start + _READ_CHUNK - 1))
        if not ids:
            return
        yield [i.decode() for i in ids]
        start += len(ids)


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
    line_id = "batch_req_" + str(result.get("fingerprint", "")).removeprefix("sha256:")[:24]
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
        "response": {"status_code": 200, "request_id": result.get("response_id"), "body": body},
        "error": None,
    }


async def collect(
    redis: Redis, keys: Keys, batch_id: str, out: Path, *, output_format: OutputFormat = "native"
) -> tuple[int, int]:
    """Write every recorded line in input order, replacing ``out`` atomically. Returns (written, missing)."""
    found = await recorded_results(redis, keys, batch_id)
    lines: list[bytes] = []
    missing = 0
    async for ids in input_order(redis, keys, batch_id):
        for custom_id in ids:
            raw = found.get(custom_id)
            if raw is None:
                missing += 1
            else:
                lines.append(render(raw, output_format))
    await asyncio.to_thread(write_atomically, out, lines)
    return len(lines), missing


def write_atomically(out: Path, lines: list[bytes]) -> None:
    """Temp file in the same directory, fsync, rename: readers see the old file or the whole new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            for line in lines:
                handle.write(line)
                handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def follow(
    redis: Redis,
    keys: Keys,
    batch_id: str,
    out: Path,
    *,
    total: int,
    output_format: OutputFormat = "native",
    block_ms: int = 1000,
    on_line: Callable[[int], None] | None = None,
) -> int:
    """Append lines to ``out`` as results are recorded, until every line of the batch has one. Returns the count."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[bytes] = await asyncio.to_thread(open, out, "wb")
    written = 0
    last_id = "0-0"
    try:
        while written < total:
            response = await redis.xread({keys.results(batch_id): last_id}, count=_READ_CHUNK, block=block_ms)
            chunk: list[bytes] = []
            for _stream, entries in response:
                for entry_id, fields in entries:
                    last_id = entry_id.decode()
                    chunk.append(render(fields[b"r"], output_format) + b"\n")
            if chunk:
                await asyncio.to_thread(_append, handle, chunk)
                written += len(chunk)
                if on_line is not None:
                    on_line(written)
    finally:
        await asyncio.to_thread(handle.close)
    return written


def _append(handle: IO[bytes], chunk: list[bytes]) -> None:
    handle.writelines(chunk)
    handle.flush()
