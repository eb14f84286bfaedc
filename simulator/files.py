"""An in-memory Files API store (``/v1/files``): uploads a request can name by ``file_id``.

Per simulator instance, cleared by ``POST /_sim/reset``. Objects follow the spec's ``OpenAIFile``: ids are
``file-`` plus 24 letters and digits, ``status`` is always ``processed``, and ``expires_at`` is present only when
the file expires (``expires_after``, or the 30 days the Files API gives ``purpose=batch`` and the Batch API its
``batch_output`` files by default); the spec
types it as a plain integer, so it is left out rather than sent as null. An expired file is gone, as if deleted.
``GET /_sim/files`` (:meth:`FileStore.snapshot`) shows what is stored and how many times each content (by sha256)
was uploaded, so a test can tell a client that uploads a document once from one that uploads it per request.

``GET /v1/files`` lists them as the API does (:meth:`FileStore.page`): newest first by default, ``purpose`` filter,
``limit`` 1-10,000, ``after`` cursor. A test can **hold** uploads (:meth:`FileStore.set_hold`, ``POST
/_sim/files/hold``): each upload is stored, then its answer waits until the hold is lifted -- the provider has the
file and the client never learns its id, which is what a client killed mid-upload leaves behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import secrets
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FILE_ID_ALPHABET = string.ascii_letters + string.digits
FILE_ID_LENGTH = 24
PURPOSES = ("assistants", "batch", "user_data", "vision")
"""The upload purposes the simulator takes (those a document for a model input, or a batch file, would use)."""
BATCH_OUTPUT = "batch_output"
"""The purpose of the output and error files of a batch (written by the simulator, never uploaded)."""
EXPIRES_AFTER_MIN_S = 3600
EXPIRES_AFTER_MAX_S = 2_592_000
BATCH_DEFAULT_EXPIRY_S = 2_592_000
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
"""The Files API's per-file limit ("Individual files can be up to 512 MB")."""
LIST_LIMIT_MAX = 10_000
"""``GET /v1/files``: "Limit can range between 1 and 10,000, and the default is 10,000"."""


def new_file_id() -> str:
    return "file-" + "".join(secrets.choice(FILE_ID_ALPHABET) for _ in range(FILE_ID_LENGTH))


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    sha256: str
    created_at: int
    expires_at: int | None
    seq: int = 0
    """Order of creation: files of one second keep it in listings."""

    def object(self) -> dict[str, Any]:
        """The ``OpenAIFile`` object the API answers with."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at
        return body


class FileStore:
    """Uploaded files by id, and how many uploads each content (sha256) has had."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._files: dict[str, StoredFile] = {}
        self._seq = itertools.count()
        self.uploads_per_sha256: Counter[str] = Counter()
        self._released = asyncio.Event()
        self._released.set()

    def clear(self) -> None:
        self._files.clear()
        self.uploads_per_sha256.clear()
        self.set_hold(False)

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    def set_hold(self, hold: bool) -> None:
        """Hold the answers of uploads from now on (True), or answer every held one now and stop holding (False)."""
        if hold:
            self._released.clear()
        else:
            self._released.set()

    async def released(self) -> None:
        """Return once uploads are not held (at once, unless :meth:`set_hold` held them)."""
        await self._released.wait()

    def add(self, filename: str, purpose: str, data: bytes, expires_after_s: int | None = None) -> StoredFile:
        created_at = int(self._clock())
        if expires_after_s is None and purpose in ("batch", BATCH_OUTPUT):
            expires_after_s = BATCH_DEFAULT_EXPIRY_S
        digest = hashlib.sha256(data).hexdigest()
        stored = StoredFile(
            id=new_file_id(),
            filename=filename,
            purpose=purpose,
            data=data,
            sha256=digest,
            created_at=created_at,
            expires_at=None if expires_after_s is None else created_at + expires_after_s,
            seq=next(self._seq),
        )
        self._files[stored.id] = stored
        self.uploads_per_sha256[digest] += 1
        return stored

    def get(self, file_id: str) -> StoredFile | None:
        """The file, or None if there is none by that id (or it has expired, and is then forgotten)."""
        stored = self._files.get(file_id)
        if stored is not None and stored.expires_at is not None and self._clock() >= stored.expires_at:
            del self._files[file_id]
            return None
        return stored

    def delete(self, file_id: str) -> bool:
        return self.get(file_id) is not None and self._files.pop(file_id, None) is not None

    def page(
        self, *, purpose: str | None = None, limit: int = LIST_LIMIT_MAX, order: str = "desc", after: str | None = None
    ) -> tuple[list[StoredFile], bool] | None:
        """One page of ``GET /v1/files``: (files, has_more) by ``created_at`` in ``order``, those after the file
        ``after`` names; None when ``after`` names no stored file."""
        files = [f for f in list(self._files.values()) if self.get(f.id) is not None]
        if purpose is not None:
            files = [f for f in files if f.purpose == purpose]
        files.sort(key=lambda f: (f.created_at, f.seq), reverse=order == "desc")
        if after is not None:
            at = next((i for i, f in enumerate(files) if f.id == after), None)
            if at is None:
                return None
            files = files[at + 1 :]
        return files[:limit], len(files) > limit

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /_sim/files`` shows: the stored files (no content) and upload counts per sha256."""
        files = [stored for stored in list(self._files.values()) if self.get(stored.id) is not None]
        return {
            "files": [{**stored.object(), "sha256": stored.sha256} for stored in files],
            "count": len(files),
            "uploads_per_sha256": dict(self.uploads_per_sha256),
        }
