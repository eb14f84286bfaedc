"""Read, check and charge the images and files a request names: from :class:`PartSource` to :class:`Attachment`.

For every part, in order: get the bytes (decode a data URL, look up a ``file_id`` in the Files store, or, only when
the simulator was started with ``--fetch-urls``, download an http(s) URL under :mod:`simulator.fetch`'s address
policy with a 10 s timeout), enforce the size limits, then identify the content and charge it
(:mod:`simulator.vision` for images and PDF page images, :mod:`simulator.tokens` for text):

* images: PNG, JPEG, WEBP or non-animated GIF (Pillow reads the header only);
* files: a PDF (pypdf: per-page media box and text) or, on the Responses API, UTF-8 text ("non-PDF documents:
  text only"; the simulator cannot read docx/xlsx and says so). Chat Completions accepts PDFs only.

Limits (``SimulatorConfig``; defaults from OpenAI's guides): a file over 50 MB, files over 50 MB together, images
over 512 MB together (decoded bytes, MB = MiB here). Wordings of the real API's 400s where one was found (search
tool, issue threads and tests quoting the API); the others are ours:

* image data URL: "Invalid '<param>'. Expected a base64-encoded data URL with an image MIME type (e.g. …), but got
  an invalid base64-encoded value." / "… empty base64-encoded bytes." / "… unsupported MIME type 'x'."
  (``invalid_value``; anomalyco/opencode#23983, openai/codex#24169);
* bytes that are no supported image: "You uploaded an unsupported image. Please make sure your image has of one
  the following formats: ['png', 'jpeg', 'gif', 'webp']." (sic, ``invalid_image_format``);
* chat file not a PDF: "Invalid file data: '<param>'. Expected a base64-encoded data URL with an application/pdf
  MIME type (e.g. …), but got unsupported MIME type 'text/plain'.";
* a URL that cannot be fetched: "Error while downloading <url>." (``param`` null, ``invalid_image_url``, or
  ``invalid_file_url`` for a file); a URL the simulator will not fetch (fetching off, or an address
  :mod:`simulator.fetch` refuses) gets the same 400 with one more sentence saying why;
* an unknown ``file_id``: "No such File object: <id>" (the Files API's 404 wording, here inside a 400 naming the
  part: the wording of the real 400 was not found).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import pypdf
from PIL import Image

from simulator import fetch, vision
from simulator.content import Attachment, PartSource, PdfPage, invalid_image_data
from simulator.errors import ApiError, invalid_request
from simulator.files import FileStore
from simulator.request import ExtractionRequest, Message
from simulator.tokens import count_tokens

MIB = 1024 * 1024
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif"}
IMAGE_MEDIA_TYPES = frozenset({"image/png", "image/jpeg", "image/jpg", "image/webp", "image/gif"})
PDF_MEDIA_TYPE = "application/pdf"
CHAT_PDF_EXAMPLE = "data:application/pdf;base64,SGVsbG8sIFdvcmxkIQ=="
UNSUPPORTED_IMAGE = (
    "You uploaded an unsupported image. Please make sure your image has of one the following formats: "
    "['png', 'jpeg', 'gif', 'webp']."
)
_DATA_URL = re.compile(r"^data:(?P<media>[^;,]*)(?P<params>(?:;[^;,]*)*),(?P<payload>.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class DocumentLimits:
    """Size limits, whether and from where URLs are fetched, the download timeout and the PDF page resolution (see
    ``SimulatorConfig``)."""

    max_file_bytes: int = 50 * MIB
    max_request_file_bytes: int = 50 * MIB
    max_request_image_bytes: int = 512 * MIB
    download_timeout_s: float = 10.0
    pdf_page_dpi: float = vision.PDF_POINTS_PER_INCH
    fetch_urls: bool = False
    fetch_private: bool = False


@dataclass(frozen=True, slots=True)
class _Loaded:
    """A part's bytes, and what the sender said they are."""

    part: PartSource
    data: bytes
    media_type: str
    filename: str | None


async def resolve_attachments(
    request: ExtractionRequest, files: FileStore, limits: DocumentLimits
) -> ExtractionRequest:
    """``request`` with every message's attachments read and charged; a 400 :class:`ApiError` for any bad part."""
    if not any(message.sources for message in request.messages):
        return request
    loaded: list[list[_Loaded]] = []
    totals = {"file": 0, "image": 0}
    for message in request.messages:
        row = []
        for part in message.sources:
            item = await _load(part, files, limits)
            _check_size(item, totals, limits)
            row.append(item)
        loaded.append(row)
    messages: list[Message] = []
    for message, row in zip(request.messages, loaded, strict=True):
        attachments = [await asyncio.to_thread(_charge, item, request.model, limits) for item in row]
        messages.append(replace(message, attachments=tuple(attachments)))
    return replace(request, messages=tuple(messages))


# -- getting the bytes --------------------------------------------------------------------------------------------


async def _load(part: PartSource, files: FileStore, limits: DocumentLimits) -> _Loaded:
    if part.source == "data":
        return await asyncio.to_thread(_decode, part)
    if part.source == "file_id":
        stored = files.get(part.value)
        if stored is None:
            raise invalid_request(f"No such File object: {part.value}", param=part.value_param)
        return _Loaded(part, stored.data, "", stored.filename)
    data, media_type = await _download(part, limits)
    name = part.value.split("?", 1)[0].rsplit("/", 1)[-1] or None
    return _Loaded(part, data, media_type, part.filename or name)


def _decode(part: PartSource) -> _Loaded:
    """Bytes of a ``data:`` URL (or, for a Responses ``file_data``, bare base64)."""
    match = _DATA_URL.match(part.value)
    if match is None and part.kind == "file" and not part.chat:
        return _Loaded(part, _b64(part.value, part), "", part.filename)
    if match is None:
        raise _bad_data(part, "a value with an invalid format")
    media_type = match["media"].strip().lower()
    if ";base64" not in match["params"].lower():
        raise _bad_data(part, "a value without the ';base64' separator")
    if part.kind == "image" and media_type not in IMAGE_MEDIA_TYPES:
        raise _bad_data(part, f"unsupported MIME type '{match['media']}'")
    if part.kind == "file" and part.chat and media_type != PDF_MEDIA_TYPE:
        raise _bad_data(part, f"unsupported MIME type '{match['media']}'")
    return _Loaded(part, _b64(match["payload"], part), media_type, part.filename)


def _b64(payload: str, part: PartSource) -> bytes:
    if not payload:
        raise _bad_data(part, "empty base64-encoded bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _bad_data(part, "an invalid base64-encoded value") from None
    if not data:
        raise _bad_data(part, "empty base64-encoded bytes")
    return data


def _bad_data(part: PartSource, got: str) -> ApiError:
    if part.kind == "image":
        return invalid_image_data(part.value_param, got)
    if part.chat:
        return invalid_request(
            f"Invalid file data: '{part.value_param}'. Expected a base64-encoded data URL with an application/pdf "
            f"MIME type (e.g. '{CHAT_PDF_EXAMPLE}'), but got {got}.",
            param=part.value_param,
            code="invalid_value",
        )
    return invalid_request(
        f"Invalid file data: '{part.value_param}'. Expected a base64-encoded data URL or base64-encoded bytes, "
        f"but got {got}.",
        param=part.value_param,
        code="invalid_value",
    )


async def _download(part: PartSource, limits: DocumentLimits) -> tuple[bytes, str]:
    """GET the URL if fetching is on and the policy allows its address; "Error while downloading" otherwise."""
    if not limits.fetch_urls:
        raise _download_error(part, "The simulator fetches URLs only when started with --fetch-urls.")
    cap = limits.max_file_bytes if part.kind == "file" else limits.max_request_image_bytes
    try:
        return await fetch.fetch(
            part.value, allow_private=limits.fetch_private, timeout_s=limits.download_timeout_s, max_bytes=cap
        )
    except fetch.FetchRefused as exc:
        raise _download_error(part, f"The simulator refused it: {exc}.") from None
    except fetch.FetchTooLarge as exc:
        raise (_too_large_file if part.kind == "file" else _too_large_images)(part, exc.size, cap) from None
    except fetch.FetchFailed:
        raise _download_error(part) from None


def _download_error(part: PartSource, why: str = "") -> ApiError:
    """The API's wording for a URL it could not fetch; ``why``, the simulator's own reason, follows it."""
    return invalid_request(
        f"Error while downloading {part.value}." + (f" {why}" if why else ""),
        code="invalid_image_url" if part.kind == "image" else "invalid_file_url",
    )


# -- size limits --------------------------------------------------------------------------------------------------


def _mb(limit: int) -> str:
    """A limit as the guides write it (``50 MB``), or in bytes when it is no whole number of MB (lowered in tests)."""
    return f"{limit // MIB} MB" if limit % MIB == 0 else f"{limit} bytes"


def _too_large_file(part: PartSource, size: int, limit: int) -> ApiError:
    return invalid_request(
        f"Invalid '{part.value_param}': the file is {size} bytes, and each file must be under {_mb(limit)}.",
        param=part.value_param,
        code="file_too_large",
    )


def _too_large_images(part: PartSource, total: int, limit: int) -> ApiError:
    return invalid_request(
        f"Invalid '{part.value_param}': the images in this request come to {total} bytes, over the "
        f"{_mb(limit)} total payload allowed per request.",
        param=part.value_param,
        code="image_too_large",
    )


def _check_size(item: _Loaded, totals: dict[str, int], limits: DocumentLimits) -> None:
    """Each file under the per-file limit; all files, and all images, of the request under their totals."""
    part, size = item.part, len(item.data)
    totals[part.kind] += size
    if part.kind == "file":
        if size > limits.max_file_bytes:
            raise _too_large_file(part, size, limits.max_file_bytes)
        if totals["file"] > limits.max_request_file_bytes:
            raise invalid_request(
                f"Invalid '{part.value_param}': the files in this request come to {totals['file']} bytes, over "
                f"the combined limit of {_mb(limits.max_request_file_bytes)} across all files in the request.",
                param=part.value_param,
                code="file_too_large",
            )
    elif totals["image"] > limits.max_request_image_bytes:
        raise _too_large_images(part, totals["image"], limits.max_request_image_bytes)


# -- reading and charging (in a worker thread: Pillow and pypdf are CPU-bound) -------------------------------------


def _charge(item: _Loaded, model: str, limits: DocumentLimits) -> Attachment:
    part = item.part
    digest = hashlib.sha256(item.data).hexdigest()
    size = len(item.data)
    if part.kind == "image":
        media_type, width, height = _image_header(item.data, part)
        return Attachment(
            kind="image",
            param=part.param,
            source=part.source,
            sha256=digest,
            size=size,
            media_type=media_type,
            detail=part.detail,
            sizing=vision.image_sizing(model, _image_detail(part.detail)),
            tokens=_image_tokens(model, width, height, part),
            width=width,
            height=height,
        )
    if _file_kind(item) == "pdf":
        detail = vision.pdf_detail(model, _file_detail(part.detail))
        pages = _pdf_pages(item, model, detail, limits.pdf_page_dpi)
        return Attachment(
            kind="pdf",
            param=part.param,
            source=part.source,
            sha256=digest,
            size=size,
            media_type=PDF_MEDIA_TYPE,
            detail=part.detail,
            sizing=detail,
            tokens=sum(page.text_tokens + page.image_tokens for page, _ in pages),
            text="\n".join(text for _, text in pages),
            filename=item.filename,
            pages=tuple(page for page, _ in pages),
        )
    text = item.data.decode()
    return Attachment(
        kind="text",
        param=part.param,
        source=part.source,
        sha256=digest,
        size=size,
        media_type=item.media_type or "text/plain",
        detail=part.detail,
        sizing="",
        tokens=count_tokens(text),
        text=text,
        filename=item.filename,
    )


def _image_detail(detail: str) -> vision.Detail:
    assert detail in ("low", "high", "original", "auto")
    return detail  # type: ignore[return-value]


def _file_detail(detail: str) -> Literal["low", "high", "auto"]:
    assert detail in ("low", "high", "auto")
    return detail  # type: ignore[return-value]


def _image_header(data: bytes, part: PartSource) -> tuple[str, int, int]:
    """``(media type, width, height)`` of a supported image; the API's ``invalid_image_format`` 400 otherwise."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            media_type = IMAGE_FORMATS.get(image.format or "")
            animated = image.format == "GIF" and getattr(image, "n_frames", 1) > 1
            width, height = image.size
    except Exception:  # any failure to read the header means "not an image we take"
        media_type, animated, width, height = None, False, 0, 0
    if media_type is None or animated or width < 1 or height < 1:
        raise invalid_request(UNSUPPORTED_IMAGE, param=part.value_param, code="invalid_image_format")
    return media_type, width, height


def _image_tokens(model: str, width: int, height: int, part: PartSource) -> int:
    try:
        return vision.image_tokens(model, width, height, _image_detail(part.detail))
    except vision.ImageTooLarge as exc:
        raise invalid_request(
            f"Invalid '{part.value_param}': at detail '{exc.sizing}' this {width}x{height} image needs "
            f"{exc.patches} patches, more than the {vision.MAX_PATCHES_PER_IMAGE:,} allowed per image. "
            "Resize it and try again.",
            param=part.value_param,
            code="invalid_value",
        ) from None


def _file_kind(item: _Loaded) -> Literal["pdf", "text"]:
    part = item.part
    name = (item.filename or "").lower()
    if item.data.startswith(b"%PDF-") or item.media_type == PDF_MEDIA_TYPE or name.endswith(".pdf"):
        return "pdf"
    if part.chat:
        raise invalid_request(
            f"Invalid file: '{part.value_param}'. Chat Completions accepts only PDF files as file content parts, "
            f"but {part.value} is not a PDF.",
            param=part.value_param,
            code="invalid_value",
        )
    try:
        item.data.decode()
    except UnicodeDecodeError:
        raise invalid_request(
            f"Invalid file: '{part.value_param}'. The simulator reads PDF and UTF-8 text files only, and this "
            f"{item.media_type or 'file'} is neither.",
            param=part.value_param,
            code="unsupported_file_type",
        ) from None
    return "text"


def _pdf_pages(item: _Loaded, model: str, detail: Literal["low", "high"], dpi: float) -> Sequence[tuple[PdfPage, str]]:
    """Every page's charge and text; a 400 if pypdf cannot open the PDF or finds no page."""
    part = item.part
    try:
        reader = pypdf.PdfReader(io.BytesIO(item.data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ValueError("encrypted")
        read = []
        for pdf_page in reader.pages:
            box = pdf_page.mediabox
            width_pt, height_pt = abs(float(box.width)), abs(float(box.height))
            if pdf_page.rotation % 180 == 90:
                width_pt, height_pt = height_pt, width_pt
            read.append((width_pt, height_pt, pdf_page.extract_text() or ""))
        if not read:
            raise ValueError("no pages")
    except Exception:  # pypdf raises many kinds; all mean the same to the sender
        raise invalid_request(
            f"Invalid file data: '{part.value_param}'. The file could not be parsed as a PDF.",
            param=part.value_param,
            code="invalid_value",
        ) from None
    pages = []
    for width_pt, height_pt, text in read:
        width_px, height_px = vision.page_pixels(width_pt, height_pt, dpi)
        try:
            image_tokens = vision.image_tokens(model, width_px, height_px, detail)
        except vision.ImageTooLarge as exc:
            raise invalid_request(
                f"Invalid '{part.value_param}': a {width_px}x{height_px} page image needs {exc.patches} patches, "
                f"more than the {vision.MAX_PATCHES_PER_IMAGE:,} allowed per image.",
                param=part.value_param,
                code="invalid_value",
            ) from None
        page = PdfPage(width_pt, height_pt, width_px, height_px, count_tokens(text), image_tokens)
        pages.append((page, text))
    return pages
