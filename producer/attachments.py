"""Make a chunk of lines' attachments ready to send, just before their jobs are enqueued (``store.blobs``).

With ``--attach inline`` the bytes of every distinct content the chunk needs go into the batch's blob hash; with
``--attach upload`` each distinct content is uploaded once to the provider's Files API (``purpose: user_data``) and
its ``file_id`` kept with the batch, so a later chunk, a resubmit or a ``retry`` with the same content reuses it.
Either way a job carries a reference, never the bytes. Chat Completions takes images only by URL, so on that API an
uploaded batch still sends its images inline; its PDFs go by ``file_id``.

Uploaded files are asked to expire after :data:`UPLOAD_EXPIRES_S` (30 days, the longest the Files API allows), and
``producer delete`` deletes them at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import openai
from redis.asyncio import Redis

from producer.documents import LocalAttachment
from producer.readers import InputLine
from schemas.attachments import Attachment
from schemas.jobs import BatchSpec
from store.blobs import BlobStore
from store.keys import BatchKeys

UPLOAD_EXPIRES_S = 30 * 24 * 3600
UPLOAD_CONCURRENCY = 4


class UploadError(RuntimeError):
    """The Files API refused an upload; ``str()`` names the file and the provider's reason."""


@dataclass
class Uploader:
    """The provider's Files API, as the producer uses it: upload a file, delete one."""

    client: openai.AsyncOpenAI

    @classmethod
    def connect(cls, *, api_key: str, base_url: str | None, timeout_s: float = 120.0) -> Uploader:
        return cls(openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=3, timeout=timeout_s))

    async def upload(self, attachment: Attachment, data: bytes) -> str:
        try:
            created = await self.client.files.create(
                file=(attachment.filename, data, attachment.media_type),
                purpose="user_data",
                expires_after={"anchor": "created_at", "seconds": UPLOAD_EXPIRES_S},
            )
        except openai.APIError as exc:
            raise UploadError(f"uploading {attachment.filename}: {exc}") from exc
        return created.id

    async def delete(self, file_id: str) -> bool:
        """Delete a file; False when the provider no longer has it."""
        try:
            await self.client.files.delete(file_id)
        except openai.NotFoundError:
            return False
        return True

    async def close(self) -> None:
        await self.client.close()


class AttachmentStager:
    """Stores or uploads what a chunk's lines need, and returns their attachments as their jobs carry them."""

    def __init__(self, redis: Redis, keys: BatchKeys, spec: BatchSpec, uploader: Uploader | None) -> None:
        if spec.attach == "upload" and uploader is None:
            raise ValueError("an --attach upload batch needs an uploader (an API key) to feed it")
        self._blobs = BlobStore(redis)
        self._keys = keys
        self._spec = spec
        self._uploader = uploader if spec.attach == "upload" else None

    def _uploads(self, attachment: Attachment) -> bool:
        if self._uploader is None or attachment.source != "blob":
            return False
        return self._spec.api == "responses" or attachment.kind == "pdf"

    async def stage(self, lines: Sequence[InputLine]) -> list[tuple[Attachment, ...]]:
        """Each line's attachments, ready: their bytes stored (inline) or uploaded (upload) first."""
        inline: dict[str, LocalAttachment] = {}
        upload: dict[str, LocalAttachment] = {}
        for line in lines:
            for local in line.attachments:
                a = local.attachment
                if a.source == "blob":
                    (upload if self._uploads(a) else inline).setdefault(a.content, local)
        if inline:
            await self._blobs.put(self._keys, {content: _bytes(local) for content, local in inline.items()})
        file_ids = await self._upload(upload) if upload else {}
        return [
            tuple(
                a.uploaded(file_ids[a.content]) if a.content in file_ids else a
                for a in (local.attachment for local in line.attachments)
            )
            for line in lines
        ]

    async def _upload(self, wanted: dict[str, LocalAttachment]) -> dict[str, str]:
        assert self._uploader is not None
        uploader = self._uploader
        known = await self._blobs.uploaded(self._keys, list(wanted))
        missing = [local for content, local in wanted.items() if content not in known]
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def one(local: LocalAttachment) -> tuple[str, str]:
            async with gate:
                file_id = await uploader.upload(local.attachment, _bytes(local))
            # Kept at once: a chunk that fails half way still never uploads these again.
            await self._blobs.note_uploaded(self._keys, {local.attachment.content: file_id})
            return local.attachment.content, file_id

        uploaded = dict(await asyncio.gather(*(one(local) for local in missing)))
        return {**known, **uploaded}


def _bytes(local: LocalAttachment) -> bytes:
    data = local.read()
    if data is None:  # a blob-source attachment always came from a file or a data: URL
        raise ValueError(f"{local.attachment.filename}: no bytes to store")
    return data
