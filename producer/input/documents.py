"""Read a line's attachments and the files of a folder: check them as the API would, and describe them for the job.

Every attachment is inspected where its bytes are (a file beside the input, a ``data:`` URL in the line): its type
from the bytes, not from the name (a ``.png`` that is a JPEG is sent as what it is; a ``.pdf`` that pypdf cannot open
is refused), its pixels or its pages and the tokens of its text (for the worker's estimate), its sha256 (its identity
in the fingerprint and its name in the blob store). What the API refuses is refused here, with the reason: a type it
does not take, a file over its size limits, an animated GIF, a PDF by URL on Chat Completions.

Inspecting a PDF means extracting its text; the results are kept per content hash (:data:`INSPECTED_CACHE` entries)
so the later passes over an input (index, feed) reuse them and only hash the bytes again.

**Opening what an input names.** A line (or a folder) can name anything the producer may open, so a file is opened
only if it is a regular file: ``stat`` first (a named pipe, a device or a socket is refused without being opened),
then opened with ``O_NONBLOCK`` and checked again on the descriptor (``fstat``), so a file swapped for a pipe in
between cannot block the producer. It is read to at most its limit + 1 byte (a PDF :data:`MAX_FILE_BYTES`, an image
:data:`MAX_IMAGE_BYTES`, a folder's text file the document byte limit), whatever its size claims.

**Pixels.** The producer never decodes an image: it reads its header. The provider does decode it, and so do Pillow
and the tools around it, so an image whose header declares more than :data:`MAX_IMAGE_PIXELS` (89,478,485 pixels,
about 9,459 x 9,459) is refused -- a 109 KB PNG can declare 30,000 x 30,000 blank pixels, 900 MB once decoded.
Why that figure: it is where Pillow itself starts to warn of a decompression bomb (and twice it, where it refuses to
open one), so nothing we accept trips Pillow in our simulator or in a user's tooling at its defaults; and it is far
above what a model looks at: every model scales an image to at most 6,000 px a side (36 MP) except gpt-5.6 in
``original``/``auto``, where an image at the ceiling is already about 105,000 input tokens (1.2 per 32 x 32 patch).
A 48 MP phone photo or an A3 page scanned at 600 dpi (70 MP) passes; a larger scan must be scaled down first. The
API itself documents no pixel limit (``OPENAI-FACTS.md`` section 2).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import os
import re
import stat
import struct
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from PIL import GifImagePlugin, Image, JpegImagePlugin, PngImagePlugin, UnidentifiedImageError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from producer.errors import InputError, ProducerError
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
MAX_IMAGE_PIXELS = 89_478_485
"""The most pixels an image's header may declare (see the module docstring for why this figure)."""
_HEADER_ERRORS = (OSError, ValueError, EOFError, SyntaxError, struct.error, IndexError, TypeError)
"""What Pillow raises on bytes that are not (a whole) image of a format it read the header of."""
_PIL_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+)(?P<params>(?:;[^;,]*)*?);base64,(?P<data>.*)$", re.DOTALL)
_FILE_ID = re.compile(r"^file-[A-Za-z0-9_-]{1,128}$")


class AttachmentError(ProducerError, ValueError):
    """An attachment the API would refuse, or we cannot read; ``str()`` is the reason for the user."""


class GlobError(InputError, ValueError):
    """A ``--glob`` that cannot select files below a folder; ``str()`` says why, for the user."""


# --------------------------------------------------------------------------------------------------- opening files
_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _require_regular(mode: int, shown: str) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise AttachmentError(f"{shown}: a directory, not a file")
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    raise AttachmentError(f"{shown}: not a regular file ({kind})")


def _unreadable(exc: OSError, shown: str) -> AttachmentError:
    if isinstance(exc, FileNotFoundError):
        return AttachmentError(f"{shown}: no such file")
    return AttachmentError(f"{shown}: cannot read it ({exc.strerror or exc})")


@contextmanager
def open_regular(path: Path, shown: str) -> Iterator[tuple[int, int]]:
    """``(descriptor, size)`` of a regular file, closed on exit; AttachmentError (naming it as ``shown``) for anything
    else. Nothing but a regular file is opened, and nothing that is opened can block (see the module docstring)."""
    if "\x00" in str(path):
        raise AttachmentError(f"{shown}: a file name cannot contain a NUL character")
    try:
        _require_regular(os.stat(path).st_mode, shown)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _unreadable(exc, shown) from exc
    try:
        info = os.fstat(fd)
        _require_regular(info.st_mode, shown)  # swapped for something else between the stat and the open
        yield fd, info.st_size
    finally:
        os.close(fd)


def read_at_most(fd: int, limit: int, size: int, shown: str) -> bytes:
    """The bytes of an open regular file from its start, at most ``limit + 1`` of them (more than ``limit`` means
    too large); ``size`` is what ``fstat`` said, so a file that claims less than it holds is still bounded."""
    try:
        with open(fd, "rb", closefd=False) as handle:
            handle.seek(0)
            data = handle.read(min(size, limit) + 1)
            if len(data) <= size or len(data) > limit:
                return data
            parts, total = [data], len(data)  # it holds more than it said (a file still growing, /proc)
            while total <= limit and (part := handle.read(min(1 << 20, limit + 1 - total))):
                parts.append(part)
                total += len(part)
            return b"".join(parts)
    except OSError as exc:
        raise _unreadable(exc, shown) from exc


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
        expected = self.attachment.size or 0
        with open_regular(self.path, str(self.path)) as (fd, size):
            data = read_at_most(fd, expected, size, str(self.path)) if size == expected else b""
        if len(data) != expected or "sha256:" + hashlib.sha256(data).hexdigest() != self.attachment.content:
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
        with warnings.catch_warnings():
            # Pillow warns (then refuses) above its own threshold; ours is no higher, so its warning is our refusal.
            # (catch_warnings is process-wide: fine here, the producer reads its input on one thread.)
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise AttachmentError(_too_many_pixels(name, f"a {width:,} x {height:,} image", width * height))
                media_type = _PIL_FORMATS.get(image.format or "")
                if media_type is None:
                    raise AttachmentError(
                        f"{name}: a {image.format} image; the API takes PNG, JPEG, WEBP and non-animated GIF"
                    )
                if media_type == "image/gif" and getattr(image, "is_animated", False):
                    raise AttachmentError(f"{name}: an animated GIF; the API takes only non-animated GIFs")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise AttachmentError(_too_many_pixels(name, *_declared_size(data, exc))) from exc
    except (UnidentifiedImageError, *_HEADER_ERRORS) as exc:
        if isinstance(exc, AttachmentError):
            raise
        raise AttachmentError(f"{name}: neither a PDF nor an image the API takes (PNG, JPEG, WEBP, GIF)") from exc
    if len(data) > MAX_IMAGE_BYTES:
        raise AttachmentError(f"{name}: {len(data):,} bytes, over the API's 512 MB limit for images")
    return _Facts("image", media_type, width=width, height=height)


def _declared_size(data: bytes, refusal: Exception) -> tuple[str, int]:
    """What an image Pillow refused to open as a bomb declares, for the message: its size from the header of a PNG,
    JPEG or GIF (read by Pillow's plugin for it, which checks no size), else the pixels Pillow's refusal names."""
    for plugin in (PngImagePlugin.PngImageFile, JpegImagePlugin.JpegImageFile, GifImagePlugin.GifImageFile):
        try:
            with plugin(io.BytesIO(data)) as image:
                width, height = image.size
        except _HEADER_ERRORS:
            continue
        return f"a {width:,} x {height:,} image", width * height
    declared = re.search(r"\((\d+) pixels\)", str(refusal))
    return "an image", int(declared[1]) if declared else MAX_IMAGE_PIXELS + 1


def _too_many_pixels(name: str, what: str, pixels: int) -> str:
    return (
        f"{name}: {what} ({pixels:,} pixels), over the ceiling of {MAX_IMAGE_PIXELS:,} pixels for an image "
        "(a decompression bomb, or an image to scale down before sending)"
    )


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
    with open_regular(path, shown) as (fd, size):
        try:
            pdf = os.pread(fd, 5, 0) == b"%PDF-"
        except OSError as exc:
            raise _unreadable(exc, shown) from exc
        limit, what = (
            (MAX_FILE_BYTES, "50 MB limit for a file") if pdf else (MAX_IMAGE_BYTES, "512 MB limit for images")
        )
        data = read_at_most(fd, limit, size, shown) if size <= limit else b""
        if size > limit or len(data) > limit:
            size_shown = f"{size:,} bytes" if size > limit else f"more than {limit:,} bytes"
            raise AttachmentError(f"{shown}: {size_shown}, over the API's {what}")
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


@dataclass
class Together:
    """The running sums :func:`check_together` checks, so that a line naming many files is read only until one of
    them takes the request over a limit (then ``check_together`` says which)."""

    pdf_bytes: int = 0
    images: int = 0
    image_bytes: int = 0

    def over(self, attachment: Attachment) -> bool:
        """Count one more attachment; True once the request is over a limit."""
        if attachment.kind == "pdf":
            self.pdf_bytes += attachment.size or 0
        else:
            self.images += 1
            self.image_bytes += attachment.size or 0
        return self.pdf_bytes > MAX_FILE_BYTES or self.images > MAX_IMAGES or self.image_bytes > MAX_IMAGE_BYTES


# ------------------------------------------------------------------------------------------------------- folders
@dataclass(frozen=True)
class FolderEntry:
    path: Path
    relative: str
    """The path below the folder, with ``/``: the line's custom_id."""
    inside: bool = True
    """False for a symlink that leads out of the folder: refused, like a line's file outside its input's folder."""


def shown_path(text: str) -> str:
    """A path as messages show it: bytes that are not UTF-8 (kept by Python as surrogates) as ``\\xff`` escapes."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def check_glob(glob: str) -> None:
    """Raise GlobError for a pattern that cannot select files below a folder (``Path.glob`` would raise, or leave)."""
    if not glob.strip():
        raise GlobError(f"--glob {glob!r} is empty: give a pattern below the folder, e.g. '**/*.pdf'")
    if glob.startswith("/"):
        raise GlobError(f"--glob {glob!r} is an absolute path: give a pattern below the folder, e.g. '**/*.pdf'")
    if ".." in PurePosixPath(glob).parts:
        raise GlobError(f"--glob {glob!r} leads out of the folder ('..'): give a pattern below it, e.g. '**/*.pdf'")
    if "\x00" in glob:
        raise GlobError(f"--glob {glob!r} contains a NUL character")


def folder_entries(root: Path, glob: str) -> Iterator[FolderEntry]:
    """The entries under ``root`` matching ``glob`` that are not folders, in a stable order (by relative path);
    hidden ones left out. Special files (pipes, devices) are listed, so that reading them is refused by name.
    Raises GlobError for a bad pattern and AttachmentError for a folder that cannot be listed."""
    check_glob(glob)
    found = []
    resolved_root = Path(os.path.realpath(root))
    try:
        for path in root.glob(glob):
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts) or path.is_dir():
                continue
            inside = Path(os.path.realpath(path)).is_relative_to(resolved_root)  # realpath: no error on a loop
            found.append(FolderEntry(path, relative.as_posix(), inside=inside))
    except OSError as exc:
        where = shown_path(str(exc.filename)) if exc.filename else shown_path(str(root))
        raise AttachmentError(f"cannot list {where} ({exc.strerror or exc})") from exc
    found.sort(key=lambda entry: entry.relative)
    return iter(found)


def read_folder_file(
    entry: FolderEntry, *, max_text_bytes: int | None = None
) -> tuple[str, tuple[LocalAttachment, ...]]:
    """(text, attachments) of one file of a folder: a text file is the text; a PDF or image is the attachment.

    A text file is read up to ``max_text_bytes`` (the document byte limit, ``EXTRACT_MAX_DOCUMENT_BYTES``) or, with
    none, up to the API's :data:`MAX_FILE_BYTES` for a file: a file over it is refused by its size in bytes on disk.
    """
    if not entry.inside:
        raise AttachmentError("a symlink to a file outside the folder")
    suffix = entry.path.suffix.lower()
    if suffix not in DOCUMENT_SUFFIXES:
        supported = ", ".join(sorted({s.lstrip(".") for s in DOCUMENT_SUFFIXES}))
        raise AttachmentError(f"unsupported file type {suffix or '(none)'!r} (supported: {supported})")
    if suffix in TEXT_SUFFIXES:
        return _text_file(entry.path, max_text_bytes), ()
    return "", (from_file(entry.path, shown="the file"),)


def _text_file(path: Path, max_text_bytes: int | None) -> str:
    shown = "the file"
    limit = max_text_bytes or MAX_FILE_BYTES
    with open_regular(path, shown) as (fd, size):
        data = read_at_most(fd, limit, size, shown) if size <= limit else b""
    if size > limit or len(data) > limit:
        size_shown = f"{size:,} bytes" if size > limit else f"more than {limit:,} bytes"
        where = "(EXTRACT_MAX_DOCUMENT_BYTES)" if max_text_bytes else "(the API's 50 MB for a file)"
        raise AttachmentError(f"{shown}: {size_shown}, over the limit of {limit:,} bytes {where}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AttachmentError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as reading it as text does
    if not text.strip():
        raise AttachmentError("the file is empty")
    return text
