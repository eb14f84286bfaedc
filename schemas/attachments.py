"""Documents that are not (only) text: the images and PDFs attached to a line, as a job carries them.

A line's document is its text (possibly empty) and its attachments, in order. An attachment is described once, at
submit, by what a request needs to send it and what the admission controller needs to reserve for it:

* **where its bytes are** when the call is made (``source``/``ref``): ``blob`` -- stored once per distinct content
  in the batch's blob hash in Redis (``store.blobs``; ``ref`` is the ``sha256:`` of the bytes), sent as a ``data:``
  URL; ``file_id`` -- an OpenAI file (given by the user, or uploaded once by the producer with ``--attach upload``);
  ``url`` -- an ``http(s)`` URL the provider fetches itself;
* **what it is** (``kind``: image or pdf, ``media_type``, ``filename``);
* **what it costs** (image pixels, PDF page sizes in points and the tokens of the PDF's text): the worker's estimate
  (``schemas.vision_tokens``) uses them; unknown (a URL, a file id) means the worker assumes a conservative size.

``content`` is the attachment's identity in the fingerprint: the ``sha256:`` of its bytes whenever the producer saw
them (a file, a ``data:`` URL, an upload), so the same image under two names, or inline and uploaded, is one piece of
work paid once; otherwise the reference itself (``file_id:...``, ``url:...``).

Limits are the provider's (``OPENAI-FACTS.md`` section 1, from the file-inputs and images-vision guides): a PDF under
50 MB and 50 MB of files per request; images PNG, JPEG, WEBP or non-animated GIF, up to 512 MB and 1,500 per request.
Chat Completions takes PDFs only as ``file`` parts (``file_data`` or ``file_id``), never by URL.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from schemas.vision_tokens import UNKNOWN_IMAGE_SIZE, image_tokens, pdf_tokens

AttachmentKind = Literal["image", "pdf"]
AttachmentSource = Literal["blob", "file_id", "url"]
AttachMode = Literal["inline", "upload"]
"""``inline``: bytes in Redis once per distinct content, sent as ``data:`` URLs; ``upload``: sent to the provider's
Files API once per distinct content (``purpose: user_data``) and referred to by ``file_id``."""
ImageDetail = Literal["auto", "low", "high", "original"]

IMAGE_MEDIA_TYPES: dict[str, str] = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
}
PDF_MEDIA_TYPE = "application/pdf"
TEXT_SUFFIXES = (".txt", ".md", ".json", ".html", ".htm")
"""Files read as the line's text (UTF-8): the API would only extract their text anyway."""
DOCUMENT_SUFFIXES = (*IMAGE_MEDIA_TYPES, ".pdf", *TEXT_SUFFIXES)

MAX_FILE_BYTES = 50 * 1024 * 1024
"""A PDF must be under 50 MB, and so must all the PDFs of one request together."""
MAX_IMAGE_BYTES = 512 * 1024 * 1024
"""Images of one request together."""
MAX_IMAGES = 1500
"""Images in one request."""


class Attachment(BaseModel):
    """One image or PDF of a line, as the job carries it (never its bytes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AttachmentKind
    media_type: str
    filename: str
    """Sent with a PDF's ``file_data`` (the API requires it); the name the user gave, for messages."""
    source: AttachmentSource
    ref: str
    """``blob``: ``sha256:<hex>`` of the bytes; ``file_id``: the id; ``url``: the URL."""
    content: str
    """Identity in the fingerprint: ``sha256:<hex>`` when the bytes were seen, else ``file_id:<id>`` / ``url:<url>``."""
    size: int | None = Field(default=None, ge=0)
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    pages: tuple[tuple[float, float], ...] = ()
    """A PDF's page sizes in points (its media boxes), in order."""
    text_tokens: int = Field(default=0, ge=0)
    """Tokens of a PDF's extracted text (``cl100k_base``, uncalibrated like every raw estimate)."""

    def uploaded(self, file_id: str) -> Attachment:
        """The same attachment, sent by the provider's ``file_id`` instead (its identity stays its content)."""
        return self.model_copy(update={"source": "file_id", "ref": file_id})


def fingerprint_part(attachments: tuple[Attachment, ...], detail: ImageDetail) -> bytes:
    """What a line's attachments add to its fingerprint: their kinds and contents, in order, and the image detail
    (it changes what the model sees). Empty without attachments, so text-only fingerprints stay what they were."""
    if not attachments:
        return b""
    listed = "\n".join(f"{a.kind} {a.content}" for a in attachments)
    return f"\n\x00attachments detail={detail}\n{listed}".encode()


LETTER_PAGE = (612.0, 792.0)
UNKNOWN_PDF_PAGES = 4
"""Pages assumed for a PDF we never saw (a URL, a file id): the estimate then learns from the usage reported."""
UNKNOWN_PDF_TEXT_TOKENS_PER_PAGE = 600


def attachment_tokens(model: str, attachment: Attachment, detail: ImageDetail) -> int:
    """Input tokens the provider charges for one attachment, by its published formulas (``schemas.vision_tokens``),
    uncalibrated; sizes we do not know (a URL, a file id) are assumed on the large side."""
    text, images = attachment_token_parts(model, attachment, detail)
    return text + images


def attachment_token_parts(model: str, attachment: Attachment, detail: ImageDetail) -> tuple[int, int]:
    """(text tokens, image tokens) of one attachment: a PDF's extracted text is counted like any text (and is
    calibrated like it); images and PDF page images are the formula's."""
    if attachment.kind == "image":
        if attachment.width is not None and attachment.height is not None:
            return 0, image_tokens(model, attachment.width, attachment.height, detail)
        return 0, image_tokens(model, *UNKNOWN_IMAGE_SIZE, detail)
    if attachment.pages:
        pages, text = attachment.pages, attachment.text_tokens
    else:
        pages, text = (LETTER_PAGE,) * UNKNOWN_PDF_PAGES, UNKNOWN_PDF_PAGES * UNKNOWN_PDF_TEXT_TOKENS_PER_PAGE
    return text, pdf_tokens(model, pages, 0)
