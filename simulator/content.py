"""Message content parts of both APIs: text, images and files, checked for shape (no IO here).

A message's content list is reduced to its text plus the attachments it names (:class:`PartSource`: where the
bytes are, not yet the bytes); :mod:`simulator.documents` then fetches, decodes, checks and charges them
(:class:`Attachment`). Accepted, as in the OpenAPI spec:

* Responses: ``input_text``; ``input_image`` with ``image_url`` (data URL or http(s) URL) or ``file_id`` and a
  ``detail`` of ``low``/``high``/``auto``/``original``; ``input_file`` with ``file_data`` (+ ``filename``),
  ``file_id`` or ``file_url`` and a ``detail`` of ``low``/``high``/``auto``;
* Chat Completions: ``text``; ``image_url: {url, detail: auto|low|high}``; ``file: {file_data + filename |
  file_id}`` (no ``file_url``: the schema has none, so it is an unknown parameter).

Other part types (``output_text``/``refusal`` of assistant turns, audio) are ignored, as before. Wordings of the
real API's 400s, where one was found (search tool, issue threads quoting the API):

* chat ``file_data`` without ``filename``: "Missing required parameter: 'messages[1].content[1].file.file_id'."
  (sic: the API names ``file_id``; openai/openai-agents-python#1513);
* an unknown field: "Unknown parameter: '<path>'." (``unknown_parameter``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from simulator.errors import ApiError, invalid_request, missing_parameter

PartKind = Literal["image", "file"]
SourceKind = Literal["data", "file_id", "url"]
AttachmentKind = Literal["image", "pdf", "text"]

TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text"})
RESPONSES_IMAGE_DETAILS = ("low", "high", "auto", "original")
CHAT_IMAGE_DETAILS = ("auto", "low", "high")
FILE_DETAILS = ("auto", "low", "high")
_CHAT_FILE_KEYS = frozenset({"filename", "file_data", "file_id"})


@dataclass(frozen=True, slots=True)
class PartSource:
    """An image or file a content part names, before it is read.

    ``param`` is the part's path (``input[0].content[1]``), ``value_param`` the field holding ``value`` (a data URL
    or bare base64 for ``data``, an id for ``file_id``, a URL for ``url``).
    """

    kind: PartKind
    chat: bool
    param: str
    value_param: str
    source: SourceKind
    value: str
    filename: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class PdfPage:
    """What one PDF page was charged: its text, and its image at the simulator's page resolution."""

    width_pt: float
    height_pt: float
    width_px: int
    height_px: int
    text_tokens: int
    image_tokens: int

    def record(self) -> dict[str, Any]:
        return {
            "width_pt": self.width_pt,
            "height_pt": self.height_pt,
            "width_px": self.width_px,
            "height_px": self.height_px,
            "text_tokens": self.text_tokens,
            "image_tokens": self.image_tokens,
            "tokens": self.text_tokens + self.image_tokens,
        }


@dataclass(frozen=True, slots=True)
class Attachment:
    """An image, PDF or text file read, checked and charged: ``tokens`` is what it adds to the input.

    ``detail`` is what the request asked for, ``sizing`` what was charged (``auto`` resolved for the model; a
    PDF's page-image detail); ``text`` is the document text it contributes (a PDF's pages, a text file), never
    counted again as message text.
    """

    kind: AttachmentKind
    param: str
    source: SourceKind
    sha256: str
    size: int
    media_type: str
    detail: str
    sizing: str
    tokens: int
    text: str = ""
    filename: str | None = None
    width: int | None = None
    height: int | None = None
    pages: tuple[PdfPage, ...] = ()

    def record(self) -> dict[str, Any]:
        """The JSON the request log shows for this part (``GET /_sim/requests``)."""
        record: dict[str, Any] = {
            "kind": self.kind,
            "param": self.param,
            "source": self.source,
            "tokens": self.tokens,
            "detail": self.detail,
            "sizing": self.sizing,
            "bytes": self.size,
            "sha256": self.sha256,
            "media_type": self.media_type,
            "filename": self.filename,
        }
        if self.kind == "image":
            record["width"] = self.width
            record["height"] = self.height
        if self.kind == "pdf":
            record["pages"] = [page.record() for page in self.pages]
            record["text_tokens"] = sum(page.text_tokens for page in self.pages)
            record["image_tokens"] = sum(page.image_tokens for page in self.pages)
        return record


def parse_content(content: object, param: str, *, chat: bool) -> tuple[str, tuple[PartSource, ...]]:
    """A message's text (text parts joined by newlines) and the attachments it names; 400 for a malformed part."""
    if content is None:
        return "", ()
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise invalid_request(f"Invalid type for '{param}': expected a string or an array.", param=param)
    texts: list[str] = []
    sources: list[PartSource] = []
    for index, part in enumerate(content):
        path = f"{param}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid_request(f"Invalid '{path}': expected a content part object.", param=param)
        kind = part["type"]
        if kind in TEXT_PART_TYPES:
            text = part.get("text")
            if not isinstance(text, str):
                raise missing_parameter(f"{path}.text")
            texts.append(text)
        elif chat and kind == "image_url":
            sources.append(_chat_image(part, path))
        elif chat and kind == "file":
            sources.append(_chat_file(part, path))
        elif not chat and kind == "input_image":
            sources.append(_responses_image(part, path))
        elif not chat and kind == "input_file":
            sources.append(_responses_file(part, path))
    return "\n".join(texts), tuple(sources)


def _supported(values: tuple[str, ...]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _detail(part: Mapping[str, Any], path: str, allowed: tuple[str, ...]) -> str:
    detail = part.get("detail")
    if detail is None:
        return "auto"
    if not isinstance(detail, str) or detail not in allowed:
        raise invalid_request(
            f"Invalid value: {detail!r}. Supported values are: {_supported(allowed)}.",
            param=f"{path}.detail",
            code="invalid_value",
        )
    return detail


def _string(value: object, param: str) -> str:
    if not isinstance(value, str):
        raise invalid_request(
            f"Invalid type for '{param}': expected a string, but got {type(value).__name__} instead.",
            param=param,
            code="invalid_type",
        )
    return value


def _one_source(present: dict[str, object], path: str, missing: str) -> tuple[str, object]:
    """The one source field a part sets (None counts as unset): 400 for none or several."""
    given = {name: value for name, value in present.items() if value is not None}
    if not given:
        raise missing_parameter(missing)
    if len(given) > 1:
        names = " and ".join(f"'{name}'" for name in given)
        raise invalid_request(
            f"Invalid '{path}': {names} cannot be given together; provide exactly one.",
            param=path,
            code="invalid_value",
        )
    return next(iter(given.items()))


def _url_source(value: str, value_param: str, *, image: bool) -> SourceKind:
    if value.startswith("data:"):
        return "data"
    if value.startswith(("https://", "http://")):
        return "url"
    if image:
        raise invalid_image_data(value_param, "a value with an invalid format")
    raise invalid_request(
        f"Invalid '{value_param}': expected an http or https URL.", param=value_param, code="invalid_value"
    )


def invalid_image_data(param: str, got: str) -> ApiError:
    """The API's 400 for an ``image_url`` that is not a usable base64 data URL (Responses and Chat alike)."""
    return invalid_request(
        f"Invalid '{param}'. Expected a base64-encoded data URL with an image MIME type "
        f"(e.g. 'data:image/png;base64,aW1nIGJ5dGVzIGhlcmU='), but got {got}.",
        param=param,
        code="invalid_value",
    )


def _responses_image(part: Mapping[str, Any], path: str) -> PartSource:
    detail = _detail(part, path, RESPONSES_IMAGE_DETAILS)
    field, value = _one_source(
        {"image_url": part.get("image_url"), "file_id": part.get("file_id")}, path, f"{path}.image_url"
    )
    value_param = f"{path}.{field}"
    text = _string(value, value_param)
    source: SourceKind = "file_id" if field == "file_id" else _url_source(text, value_param, image=True)
    return PartSource("image", False, path, value_param, source, text, None, detail)


def _responses_file(part: Mapping[str, Any], path: str) -> PartSource:
    detail = _detail(part, path, FILE_DETAILS)
    field, value = _one_source(
        {"file_data": part.get("file_data"), "file_id": part.get("file_id"), "file_url": part.get("file_url")},
        path,
        f"{path}.file_id",
    )
    value_param = f"{path}.{field}"
    text = _string(value, value_param)
    filename = part.get("filename")
    if filename is not None:
        filename = _string(filename, f"{path}.filename")
    source: SourceKind
    if field == "file_data":
        if filename is None:
            raise missing_parameter(f"{path}.filename")
        source = "data"
    elif field == "file_id":
        source = "file_id"
    else:
        source = _url_source(text, value_param, image=False)
        if source != "url":
            raise invalid_request(
                f"Invalid '{value_param}': expected an http or https URL.", param=value_param, code="invalid_value"
            )
    return PartSource("file", False, path, value_param, source, text, filename, detail)


def _required_object(part: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    """``part[key]``, which a Chat Completions part must have as an object (the API's 400s when it does not)."""
    value = part.get(key)
    if value is None:
        raise missing_parameter(f"{path}.{key}")
    if not isinstance(value, dict):
        raise invalid_request(
            f"Invalid type for '{path}.{key}': expected an object, but got {type(value).__name__} instead.",
            param=f"{path}.{key}",
            code="invalid_type",
        )
    return value


def _chat_image(part: Mapping[str, Any], path: str) -> PartSource:
    image_url = _required_object(part, "image_url", path)
    detail = _detail(image_url, f"{path}.image_url", CHAT_IMAGE_DETAILS)
    url = image_url.get("url")
    value_param = f"{path}.image_url.url"
    if url is None:
        raise missing_parameter(value_param)
    text = _string(url, value_param)
    return PartSource("image", True, path, value_param, _url_source(text, value_param, image=True), text, None, detail)


def _chat_file(part: Mapping[str, Any], path: str) -> PartSource:
    file = _required_object(part, "file", path)
    for key in file:
        if key not in _CHAT_FILE_KEYS:  # file_url among them: Chat Completions has none
            raise invalid_request(
                f"Unknown parameter: '{path}.file.{key}'.", param=f"{path}.file.{key}", code="unknown_parameter"
            )
    filename = file.get("filename")
    if filename is not None:
        filename = _string(filename, f"{path}.file.filename")
    field, value = _one_source(
        {"file_data": file.get("file_data"), "file_id": file.get("file_id")}, f"{path}.file", f"{path}.file.file_id"
    )
    value_param = f"{path}.file.{field}"
    text = _string(value, value_param)
    if field == "file_data" and filename is None:
        raise missing_parameter(f"{path}.file.file_id")  # sic: what the API answers (see the module docstring)
    source: SourceKind = "data" if field == "file_data" else "file_id"
    return PartSource("file", True, path, value_param, source, text, filename, "auto")
