"""The provider's Files and Batches endpoints, as the part keeper uses them (the ``openai`` SDK, no SDK retries:
the keeper's own schedule retries).

Finding what a worker that died may have made: an upload is named ``extract-{nonce}.jsonl`` and found by that name
(``GET /v1/files``, purpose ``batch``, newest first); a provider batch carries ``extract_nonce`` in its metadata and
is found by listing batches newest first down to the intent's time (less a margin for clock skew). Files are read as
streams of lines, never whole.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

import openai
from openai.types import Batch

LIST_PAGE = 100
FIND_SKEW_S = 600
"""How far before the intent's time a listing looks (clock skew between a worker and the provider)."""
LOOKUP_MAX = 10_000
"""The most files or batches one lookup reads before it gives up (a missing one is then made again)."""


def upload_name(nonce: str) -> str:
    return f"extract-{nonce}.jsonl"


class ProviderBatches:
    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client

    async def upload(self, nonce: str, source: IO[bytes]) -> str:
        """Upload a part's input file (purpose ``batch``); its id."""
        created = await self.client.files.create(
            file=(upload_name(nonce), source, "application/jsonl"), purpose="batch"
        )
        return created.id

    async def find_upload(self, nonce: str) -> str | None:
        """The input file an earlier attempt of this part uploaded, if the provider has it."""
        seen = 0
        async for item in self.client.files.list(purpose="batch", order="desc", limit=LIST_PAGE):
            if item.filename == upload_name(nonce):
                return item.id
            seen += 1
            if seen >= LOOKUP_MAX:
                break
        return None

    async def create(self, input_file_id: str, endpoint: str, metadata: dict[str, str]) -> Batch:
        return await self.client.batches.create(
            input_file_id=input_file_id,
            endpoint=endpoint,  # type: ignore[arg-type]  # one of the two we send, checked by the caller
            completion_window="24h",
            metadata=metadata,
        )

    async def find_batch(self, nonce: str, *, since_s: float) -> Batch | None:
        """The provider batch an earlier attempt created for this part (by ``extract_nonce``), if any."""
        seen = 0
        async for batch in self.client.batches.list(limit=LIST_PAGE):
            if (batch.metadata or {}).get("extract_nonce") == nonce:
                return batch
            seen += 1
            if batch.created_at < since_s - FIND_SKEW_S or seen >= LOOKUP_MAX:
                break
        return None

    async def retrieve(self, batch_id: str) -> Batch:
        return await self.client.batches.retrieve(batch_id)

    async def cancel(self, batch_id: str) -> None:
        # Gone, or already ending: its end is read as any other.
        with contextlib.suppress(openai.NotFoundError, openai.ConflictError, openai.BadRequestError):
            await self.client.batches.cancel(batch_id)

    async def lines(self, file_id: str) -> AsyncIterator[bytes]:
        """The file's lines, as they stream in; none when the provider no longer has it (expired, deleted): its lines
        then show up as in neither file and go on."""
        try:
            async with self.client.files.with_streaming_response.content(file_id) as response:
                async for line in response.iter_lines():
                    if line.strip():
                        yield line.encode()
        except openai.NotFoundError:
            return

    async def delete_file(self, file_id: str) -> bool:
        try:
            await self.client.files.delete(file_id)
        except openai.NotFoundError:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


def spool() -> IO[bytes]:
    """A temporary file a part's input is written to before it is uploaded (deleted when closed)."""
    return tempfile.TemporaryFile(prefix="extract-part-", suffix=".jsonl")


def describe(batch: Batch) -> dict[str, Any]:
    """What the keeper keeps of a provider batch."""
    counts = batch.request_counts
    errors = [e.code or e.message or "" for e in (batch.errors.data or [])] if batch.errors else []
    return {
        "status": batch.status,
        "counts": {"total": counts.total, "completed": counts.completed, "failed": counts.failed} if counts else {},
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "errors": errors,
        "error_messages": [e.message or "" for e in (batch.errors.data or [])] if batch.errors else [],
    }
