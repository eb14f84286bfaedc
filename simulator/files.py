"""An in-memory Files API store (``/v1/files``): uploads a request can name by ``file_id``.

Per simulator instance, cleared by ``POST /_sim/reset``. Objects follow the spec's ``OpenAIFile``: ids are
``file-`` plus 24 letters and digits, ``status`` is always ``processed``, and ``expires_at`` is present only when
the file expires (``expires_after``, or the 30 days the Files API gives ``purpose=batch`` by default); the spec
types it as a plain integer, so it is left out rather than sent as null. An expired file is gone, as if deleted.
``GET /_sim/files`` (:meth:`FileStore.snapshot`) shows what is stored and how many times each content (by sha256)
was uploaded, so a test can tell a client that uploads a document once from one that uploads it per request.
"""

from __future__ import annotations

import hashlib
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
EXPIRES_AFTER_MIN_S = 3600
EXPIRES_AFTER_MAX_S = 2_592_000
BATCH_DEFAULT_EXPIRY_S = 2_592_000
MAX_UPLOAD_BYTES = 512 * 1024 * 1024
"""The Files API's per-file limit ("Individual files can be up to 512 MB")."""


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
        self.uploads_per_sha256: Counter[str] = Counter()

    def clear(self) -> None:
        self._files.clear()
        self.uploads_per_sha256.clear()

    def add(self, filename: str, purpose: str, data: bytes, expires_after_s: int | None = None) -> StoredFile:
        created_at = int(self._clock())
        if expires_after_s is None and purpose == "batch":
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

    def snapshot(self) -> dict[str, Any]:
        """What ``GET /_sim/files`` shows: the stored files (no content) and upload counts per sha256."""
        files = [stored for stored in list(self._files.values()) if self.get(stored.id) is not None]
        return {
            "files": [{**stored.object(), "sha256": stored.sha256} for stored in files],
            "count": len(files),
            "uploads_per_sha256": dict(self.uploads_per_sha256),
        }
