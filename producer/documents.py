"""Read a line's attachments and the files of a folder: check them as the API would, and describe them for the job.

Every attachment is inspected where its bytes are (a file beside the input, a ``data:`` URL in the line): its type
from the bytes, not from the name (a ``.png`` that is a JPEG is sent as what it is; a ``.pdf`` that pypdf cannot open
is refused), its pixels or its pages and the tokens of its text (for the worker's estimate), its sha256 (its identity
in the fingerprint and its name in the blob store). What the API refuses is refused here, with the reason: a type it
does not take, a file over its size limits, an animated GIF, a PDF by URL on Chat Completions.

Inspecting a PDF means extracting its text; the results are kept per content hash (:data:`INSPECTED_CACHE` entries)
so the later passes over an input (index, feed) reuse them and only hash the bytes again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from schemas.attachments import (
    DOCUMENT_SUFFIXES,
    IMAGE_MEDIA_TYPES,
    MAX_FILE_BYTES,
    MAX_IMAGE_BYTES,
    MAX_IMAGES,
    PDF_MEDIA_TYPE,
    TEXT_SUFFIXES,
    Attachment,
    AttachmentKind,
)
from schemas.input_limits import count_tokens
from schemas.jobs import ApiKind

logging.getLogger("pypdf").setLevel(logging.ERROR)  # a malformed PDF is our error message, not pypdf's warnings

INSPECTED_CACHE = 65_536
_PIL_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^;,]*)*?);base64,(?P<data>.*)$", re.DOTALL)
_FILE_ID = re.compile(r"^file-[A-Za-z0-9_-]{1,128}$")


class AttachmentError(ValueError):
    """An attachment the API would refuse, or we cannot read; ``str()`` is the reason for the user."""


@dataclass(frozen=True)
class LocalAttachment:
    """An attachment as the producer has it: its description and how to get its bytes again."""

    attachment: Attachment
    path: Path | None = None
    """A file beside the input (read again when the bytes are needed)."""
    data: bytes | None = None
    """Bytes that came in the line itself (a ``data:`` URL)."""

    def read(self) -> bytes | None:
        """The bytes (None for a URL or file id: the provider has them); raises AttachmentError if a file changed."""
        if self.data is not None:
            return self.data
        if self.path is None:
            return None
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise AttachmentError(f"{self.path}: cannot read it ({exc.strerror or exc})") from exc
        if "sha256:" + hashlib.sha256(data).hexdigest() != self.attachment.content:
            raise AttachmentError(f"{self.path} changed since it was submitted")
        return data


@dataclass(frozen=True)
class _Facts:
    kind: AttachmentKind
    media_type: str
    width: int | None = None
    height: int | None = None
    pages: tuple[tuple[float, float], ...] = ()
    text_tokens: int = 0


_inspected: OrderedDict[str, _Facts] = OrderedDict()


def inspect_bytes(data: bytes, name: str) -> tuple[str, _Facts]:
    """(``sha256:<hex>``, what the bytes are); raises AttachmentError for what the API would not take."""
    content = "sha256:" + hashlib.sha256(data).hexdigest()
    facts = _inspected.get(content)
    if facts is None:
        facts = _inspect(data, name)
        _inspected[content] = facts
        if len(_inspected) > INSPECTED_CACHE:
            _inspected.popitem(last=False)
    return content, facts


def _inspect(data: bytes, name: str) -> _Facts:
    if data[:5] == b"%PDF-":
        if len(data) > MAX_FILE_BYTES:
            raise AttachmentError(f"{name}: {len(data):,} bytes, over the API's 50 MB limit for a file")
        return _pdf_facts(data, name)
    try:
        with Image.open(io.BytesIO(data)) as image:
            media_type = _PIL_FORMATS.get(image.format or "")
            if media_type is None:
                raise AttachmentError(
                    f"{name}: a {image.format} image; the API takes PNG, JPEG, WEBP and non-animated GIF"
                )
            if media_type == "image/gif" and getattr(image, "is_animated", False):
                raise AttachmentError(f"{name}: an animated GIF; the API takes only non-animated GIFs")
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        if isinstance(exc, AttachmentError):
            raise
        raise AttachmentError(f"{name}: neither a PDF nor an image the API takes (PNG, JPEG, WEBP, GIF)") from exc
    if len(data) > MAX_IMAGE_BYTES:
        raise AttachmentError(f"{name}: {len(data):,} bytes, over the API's 512 MB limit for images")
    return _Facts("image", media_type, width=width, height=height)


def _pdf_facts(data: bytes, name: str) -> _Facts:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise AttachmentError(f"{name}: an encrypted PDF; the API cannot read it")
        pages = tuple((float(p.mediabox.width), float(p.mediabox.height)) for p in reader.pages)
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except AttachmentError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, OSError) as exc:
        raise AttachmentError(f"{name}: not a readable PDF ({type(exc).__name__}: {exc})"[:300]) from exc
    if not pages:
        raise AttachmentError(f"{name}: a PDF without pages")
    return _Facts("pdf", PDF_MEDIA_TYPE, pages=pages, text_tokens=count_tokens(text) if text.strip() else 0)


def _described(facts: _Facts, content: str, name: str, size: int) -> Attachment:
    return Attachment(
        kind=facts.kind,
        media_type=facts.media_type,
        filename=name,
        source="blob",
        ref=content,
        content=content,
        size=size,
        width=facts.width,
        height=facts.height,
        pages=facts.pages,
        text_tokens=facts.text_tokens,
    )


def from_file(path: Path, *, shown: str) -> LocalAttachment:
    """A file as an attachment (``shown``: how messages name it, e.g. its path as written in the input)."""
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_BYTES:
            raise AttachmentError(f"{shown}: {size:,} bytes, over the API's limits")
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise AttachmentError(f"{shown}: no such file") from exc
    except IsADirectoryError as exc:
        raise AttachmentError(f"{shown}: a directory, not a file") from exc
    except OSError as exc:
        raise AttachmentError(f"{shown}: cannot read it ({exc.strerror or exc})") from exc
    content, facts = inspect_bytes(data, shown)
    return LocalAttachment(_described(facts, content, path.name, len(data)), path=path)


def from_data_url(url: str, *, shown: str) -> LocalAttachment:
    """A ``data:<type>;base64,...`` URL as an attachment (its bytes decoded and inspected like a file's)."""
    match = _DATA_URL.match(url)
    if match is None:
        raise AttachmentError(f"{shown}: a data: URL must be data:<media type>;base64,<data>")
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttachmentError(f"{shown}: the data: URL is not valid base64") from exc
    content, facts = inspect_bytes(data, shown)
    name = _param(match["params"], "filename") or ("document.pdf" if facts.kind == "pdf" else "image")
    return LocalAttachment(_described(facts, content, name, len(data)), data=data)


def _param(params: str, name: str) -> str | None:
    for part in params.split(";"):
        key, _, value = part.partition("=")
        if key.strip() == name and value.strip():
            return value.strip()
    return None


def from_url(url: str, *, api: ApiKind, shown: str) -> LocalAttachment:
    """An ``http(s)`` URL the provider fetches: an image (``image_url``) or, on the Responses API, a PDF
    (``file_url``), told apart by the URL's extension since we do not fetch it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AttachmentError(f"{shown}: not an http(s) or data: URL")
    suffix = PurePosixPath(parts.path).suffix.lower()
    name = PurePosixPath(parts.path).name or "document"
    if suffix == ".pdf":
        if api == "chat":
            raise AttachmentError(
                f"{shown}: Chat Completions takes a PDF only as a file part (file_data or file_id), not by URL: "
                "list the file under 'files', give its file_id, or use --api responses"
            )
        return LocalAttachment(
            Attachment(
                kind="pdf", media_type=PDF_MEDIA_TYPE, filename=name, source="url", ref=url, content=f"url:{url}"
            )
        )
    media_type = IMAGE_MEDIA_TYPES.get(suffix)
    if media_type is None:
        raise AttachmentError(
            f"{shown}: cannot tell what the URL is from its name; use a URL ending in "
            f"{', '.join(IMAGE_MEDIA_TYPES)} or .pdf, or download it and list it under 'files'"
        )
    return LocalAttachment(
        Attachment(kind="image", media_type=media_type, filename=name, source="url", ref=url, content=f"url:{url}")
    )


def from_file_id(value: Any, *, shown: str) -> LocalAttachment:
    """An OpenAI file id: ``"file-..."`` (a PDF) or ``{"id": "file-...", "kind": "image" | "pdf"}``."""
    kind: Any = "pdf"
    if isinstance(value, dict):
        kind, value = value.get("kind", "pdf"), value.get("id")
    if not isinstance(value, str) or not _FILE_ID.match(value):
        raise AttachmentError(f"{shown}: a file id looks like 'file-abc123' (or {{'id': ..., 'kind': 'image'}})")
    if kind not in ("pdf", "image"):
        raise AttachmentError(f"{shown}: kind must be 'pdf' or 'image', got {kind!r}")
    media_type = PDF_MEDIA_TYPE if kind == "pdf" else "image/*"
    return LocalAttachment(
        Attachment(
            kind=kind, media_type=media_type, filename=value, source="file_id", ref=value, content=f"file_id:{value}"
        )
    )


def check_together(attachments: tuple[LocalAttachment, ...], api: ApiKind) -> None:
    """The limits of one request: PDFs together under 50 MB; images together under 512 MB and 1,500; on Chat
    Completions an image by file id is refused (its image parts take URLs only)."""
    pdf_bytes = sum(a.attachment.size or 0 for a in attachments if a.attachment.kind == "pdf")
    if pdf_bytes > MAX_FILE_BYTES:
        raise AttachmentError(f"its PDFs are {pdf_bytes:,} bytes together, over the API's 50 MB per request")
    images = [a.attachment for a in attachments if a.attachment.kind == "image"]
    if len(images) > MAX_IMAGES:
        raise AttachmentError(f"{len(images)} images, over the API's {MAX_IMAGES} per request")
    if sum(a.size or 0 for a in images) > MAX_IMAGE_BYTES:
        raise AttachmentError("its images are over the API's 512 MB per request together")
    if api == "chat":
        for image in images:
            if image.source == "file_id":
                raise AttachmentError(
                    f"{image.ref}: Chat Completions takes images by URL or data: URL only, not by file id "
                    "(use --api responses)"
                )


# ------------------------------------------------------------------------------------------------------- folders
@dataclass(frozen=True)
class FolderEntry:
    path: Path
    relative: str
    """The path below the folder, with ``/``: the line's custom_id."""
    inside: bool = True
    """False for a symlink that leads out of the folder: refused, like a line's file outside its input's folder."""


def folder_entries(root: Path, glob: str) -> Iterator[FolderEntry]:
    """The files under ``root`` matching ``glob``, in a stable order (by relative path); hidden ones left out."""
    found = []
    resolved_root = root.resolve()
    for path in root.glob(glob):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        found.append(FolderEntry(path, relative.as_posix(), inside=path.resolve().is_relative_to(resolved_root)))
    found.sort(key=lambda entry: entry.relative)
    return iter(found)


def read_folder_file(entry: FolderEntry) -> tuple[str, tuple[LocalAttachment, ...]]:
    """(text, attachments) of one file of a folder: a text file is the text; a PDF or image is the attachment."""
    if not entry.inside:
        raise AttachmentError("a symlink to a file outside the folder")
    suffix = entry.path.suffix.lower()
    if suffix not in DOCUMENT_SUFFIXES:
        supported = ", ".join(sorted({s.lstrip(".") for s in DOCUMENT_SUFFIXES}))
        raise AttachmentError(f"unsupported file type {suffix or '(none)'!r} (supported: {supported})")
    if suffix in TEXT_SUFFIXES:
        try:
            text = entry.path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise AttachmentError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except OSError as exc:
            raise AttachmentError(f"cannot read it ({exc.strerror or exc})") from exc
        if not text.strip():
            raise AttachmentError("the file is empty")
        return text, ()
    return "", (from_file(entry.path, shown="the file"),)
