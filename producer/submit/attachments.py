"""Make a chunk of lines' attachments ready to send, just before their jobs are enqueued (``store.blobs``,
``store.uploads``).

With ``--attach inline`` the bytes of every distinct content the chunk needs go into the batch's blob hash; with
``--attach upload`` each distinct content is uploaded once to the provider's Files API (``purpose: user_data``) and
its ``file_id`` kept with the batch, so a later chunk, a resubmit or a ``retry`` with the same content reuses it.
Either way a job carries a reference, never the bytes. Chat Completions takes images only by URL, so on that API an
uploaded batch still sends its images inline; its PDFs go by ``file_id``.

Every upload is tracked before it is made (``store.uploads``): an intent with a nonce is recorded, and the file is
uploaded under a name carrying that nonce. A submit killed mid-upload therefore leaves a trace: the next submit that
needs the content finds the file by its nonce and adopts it (no second upload), and ``producer delete`` or, once the
batch's retention has passed, the worker's uploads sweep deletes it. An attempt whose answer was lost (a timeout, a
dropped connection, a 5xx) is looked up by nonce before it is sent again, so one content makes one file. Uploads are
still asked to expire after :data:`UPLOAD_EXPIRES_S` (30 days, the longest the Files API allows), as the backstop.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass

import openai
from redis.asyncio import Redis

from producer.errors import ProducerError
from producer.input.documents import LocalAttachment
from producer.input.readers import InputLine
from schemas.attachments import Attachment
from schemas.jobs import BatchSpec
from schemas.settings import ProducerSettings
from store.blobs import BlobStore
from store.keys import BatchKeys
from store.uploads import (
    UPLOAD_EXPIRES_S,
    BatchFiles,
    Found,
    Intent,
    ProviderFiles,
    UploadStore,
    settled,
    upload_filename,
)

UPLOAD_CONCURRENCY = 4
UPLOAD_ATTEMPTS = 4
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
LOST_ANSWER_STATUS = frozenset({500, 502, 503, 504})
"""Answers after which the file may exist all the same: the next attempt looks it up first."""
LOOKUP_MAX_FILES = 100_000
"""Files a lookup by nonce reads at most (newest first, back to the intent's time)."""
BACKOFF_CAP_S = 20.0


class UploadError(ProducerError, RuntimeError):
    """The Files API refused an upload; ``str()`` names the file and the provider's reason."""


@dataclass(frozen=True)
class Uploaded:
    """The file an intent made: ``file_ids[0]``, and any other carrying its nonce (to be deleted)."""

    file_ids: tuple[str, ...]
    keep_intent: bool = False
    """An attempt's answer was lost: another file of this nonce may still land, so the intent stays tracked."""


@dataclass
class Uploader(ProviderFiles):
    """The provider's Files API, as the producer uses it: upload a file, find files by intent, delete one.

    The SDK's own retries are off: an upload is retried here, after looking up whether the lost attempt made a file.
    """

    backoff_base_s: float = 1.0

    @classmethod
    def connect(cls, *, api_key: str, base_url: str | None, timeout_s: float = 120.0) -> Uploader:
        return cls(openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s))

    async def upload(self, attachment: Attachment, data: bytes, intent: Intent) -> Uploaded:
        """Upload ``data`` under the intent's name (:func:`store.uploads.upload_filename`)."""
        name = upload_filename(intent.nonce, attachment.filename)
        lost = False
        for attempt in range(UPLOAD_ATTEMPTS):
            if lost:
                found = await self._lookup(intent, len(data))
                if found:
                    return Uploaded(found, keep_intent=True)
            try:
                created = await self.client.files.create(
                    file=(name, data, attachment.media_type),
                    purpose="user_data",
                    expires_after={"anchor": "created_at", "seconds": UPLOAD_EXPIRES_S},
                )
                return Uploaded((created.id,), keep_intent=lost)
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUS or attempt == UPLOAD_ATTEMPTS - 1:
                    raise UploadError(f"uploading {attachment.filename}: {exc}") from exc
                lost = lost or exc.status_code in LOST_ANSWER_STATUS
                await asyncio.sleep(self._backoff_s(attempt, exc.response.headers.get("retry-after")))
            except openai.APIConnectionError as exc:  # a timeout too: the file may have been made
                if attempt == UPLOAD_ATTEMPTS - 1:
                    raise UploadError(f"uploading {attachment.filename}: {exc}") from exc
                lost = True
                await asyncio.sleep(self._backoff_s(attempt, None))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff_s(self, attempt: int, retry_after: str | None) -> float:
        jittered = random.uniform(0, min(BACKOFF_CAP_S, self.backoff_base_s * 2**attempt))  # noqa: S311 - retry jitter
        try:
            return max(jittered, min(float(retry_after), BACKOFF_CAP_S)) if retry_after else jittered
        except ValueError:
            return jittered

    async def _lookup(self, intent: Intent, size: int) -> tuple[str, ...]:
        """The files an earlier attempt of this intent made (the right size first), if a lookup can tell."""
        try:
            found = await self.find([intent], max_files=LOOKUP_MAX_FILES)
        except openai.APIError:
            return ()
        files = sorted(found.files.get(intent.nonce, []), key=lambda f: f.bytes != size)
        return tuple(f.id for f in files) if files and files[0].bytes == size else ()

    async def find(self, intents: Sequence[Intent], *, max_files: int = LOOKUP_MAX_FILES) -> Found:
        return await super().find(intents, max_files=max_files)

    async def close(self) -> None:
        await self.client.close()


class AttachmentStager:
    """Stores or uploads what a chunk's lines need, and returns their attachments as their jobs carry them."""

    def __init__(self, redis: Redis, keys: BatchKeys, spec: BatchSpec, uploader: Uploader | None) -> None:
        if spec.attach == "upload" and uploader is None:
            raise ValueError("an --attach upload batch needs an uploader (an API key) to feed it")
        self._blobs = BlobStore(redis)
        self._uploads = UploadStore.of(redis, keys)
        self._keys = keys
        self._spec = spec
        self._uploader = uploader if spec.attach == "upload" else None
        self._batch: BatchFiles | None = None
        """The generation of the batch being fed, read once (``INTEND`` refuses if it changes)."""

    def _uploads_it(self, attachment: Attachment) -> bool:
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
                    (upload if self._uploads_it(a) else inline).setdefault(a.content, local)
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
        """The file id of each wanted content: kept from before, adopted from an interrupted upload, or uploaded."""
        assert self._uploader is not None
        uploader = self._uploader
        batch = self._batch = self._batch or await self._uploads.batch(self._keys.batch_id)
        if batch is None:
            raise UploadError(f"batch {self._keys.batch_id!r} was deleted while its files were being uploaded")
        held = await self._uploads.read(batch.batch_id, list(wanted))
        ready = {content: value for content, value in held.items() if isinstance(value, str)}
        interrupted = {content: value for content, value in held.items() if isinstance(value, Intent)}
        if interrupted:
            ready |= await self._adopt(batch, interrupted, wanted)
        missing = [content for content in wanted if content not in ready]
        intents = await self._uploads.intend(batch, missing) if missing else {}
        if intents is None:
            raise UploadError(f"batch {batch.batch_id!r} was deleted while its files were being uploaded")
        ready |= {content: value for content, value in intents.items() if isinstance(value, str)}
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def one(content: str, intent: Intent) -> tuple[str, str]:
            local = wanted[content]
            async with gate:
                uploaded = await uploader.upload(local.attachment, _bytes(local), intent)
            # Kept at once: a chunk that fails half way still never uploads these again.
            await self._uploads.resolve(batch, content, intent, uploaded.file_ids, keep_intent=uploaded.keep_intent)
            await self._drop(batch, uploaded.file_ids[1:])
            return content, uploaded.file_ids[0]

        outcomes = await asyncio.gather(
            *(one(content, value) for content, value in intents.items() if isinstance(value, Intent)),
            return_exceptions=True,
        )
        for outcome in outcomes:  # every upload that worked is recorded before the first error is raised
            if isinstance(outcome, BaseException):
                raise outcome
        return ready | dict(o for o in outcomes if not isinstance(o, BaseException))

    async def _adopt(
        self, batch: BatchFiles, interrupted: dict[str, Intent], wanted: dict[str, LocalAttachment]
    ) -> dict[str, str]:
        """The files interrupted uploads made (found by nonce, of the right size), now recorded for their contents.
        Those not found are uploaded afresh; their intents stay tracked for ``delete`` and the sweep."""
        assert self._uploader is not None
        try:
            found = await self._uploader.find(list(interrupted.values()))
        except openai.APIError:
            return {}
        adopted: dict[str, str] = {}
        now = await self._uploads.now_ms()
        for content, intent in interrupted.items():
            files = found.files.get(intent.nonce, [])
            size = len(_bytes(wanted[content]))
            fits = [f.id for f in files if f.bytes == size]
            others = [f.id for f in files if f.bytes != size]
            if fits:
                await self._uploads.resolve(batch, content, intent, [*fits, *others])
                adopted[content] = fits[0]
                await self._drop(batch, [*fits[1:], *others])
            elif others:  # not what we would upload (never seen: a file is made whole or not at all)
                await self._drop(batch, others, forget=False)
            elif found.complete and settled(intent, now):  # it made no file, and none can land any more
                await self._uploads.forget(batch, [intent.value])
        return adopted

    async def _drop(self, batch: BatchFiles, file_ids: Sequence[str], *, forget: bool = True) -> None:
        """Delete surplus files now; any not deleted stays in the batch's files set for ``delete`` and the sweep."""
        assert self._uploader is not None
        for file_id in file_ids:
            try:
                await self._uploader.delete(file_id)
            except openai.APIError:
                continue
            if forget:
                await self._uploads.forget(batch, [file_id])


def _bytes(local: LocalAttachment) -> bytes:
    data = local.read()
    if data is None:  # a blob-source attachment always came from a file or a data: URL
        raise ValueError(f"{local.attachment.filename}: no bytes to store")
    return data


def uploader_for(settings: ProducerSettings) -> Uploader | None:
    """The Files API client an upload batch needs (None without a key: ``delete`` then leaves files to expire)."""
    key = settings.api_key()
    return Uploader.connect(api_key=key, base_url=settings.openai_base_url) if key else None
