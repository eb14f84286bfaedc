"""Read and validate an input file in bounded memory. Every problem gets its line number.

Two formats, detected from the first non-blank line:

- native: one JSON object per line with an id field and a text field (names configurable);
- OpenAI Batch API input: ``{"custom_id", "method", "url", "body"}``, where the document is the last user
  message of a Chat Completions body (``messages``) or the ``input`` of a Responses body.

A file is read more than once and never held in memory: ``scan_input`` checks every line first (nothing is written
for a file with a bad line, unless invalid lines are skipped; besides the checks here, a caller's ``check`` can
refuse a document, as submit's preflight does for one over the size limits of ``schemas.input_limits``), then
:class:`FileSource` yields the valid lines again whenever the batch needs their text (index, feed, retry). A line's
*ordinal* is its position among the valid lines, so every pass numbers the lines alike (a pass that reopens the file
must give it the same ``check``). Duplicate ids are found with a set of 64-bit hashes (about 64 bytes per line)
and confirmed by comparing the ids themselves, so a hash collision is never reported as a duplicate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import orjson

from schemas.jobs import BatchSpec

InputFormat = Literal["native", "openai-batch"]

_BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})
MAX_ID_LENGTH = 256
MAX_KEPT_ERRORS = 1000
"""Errors kept with their text; beyond this only counted (a file of garbage must not fill the memory)."""


@dataclass(frozen=True)
class InputLine:
    line: int
    """1-based line number in the file."""
    custom_id: str
    text: str


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class InputScan:
    """What a first pass over the input found."""

    format: InputFormat = "native"
    count: int = 0
    """Valid lines."""
    errors: list[LineError] = field(default_factory=list)
    """The first ``MAX_KEPT_ERRORS`` problems, in line order."""
    error_count: int = 0
    invalid_lines: set[int] = field(default_factory=set)
    """Line numbers of every invalid line (skipped by later passes, so ordinals agree)."""

    def add_error(self, error: LineError) -> None:
        self.error_count += 1
        self.invalid_lines.add(error.line)
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)


class LineSource(Protocol):
    """The valid lines of an input, in order, as often as they are asked for."""

    @property
    def count(self) -> int:
        """The ordinal after the last line: how many lines the batch has once these are in it."""
        ...

    @property
    def first_ordinal(self) -> int:
        """The ordinal of the first line ``lines()`` yields (0 for a whole input)."""
        ...

    def lines(self) -> Iterator[InputLine]: ...

    def describe(self) -> dict[str, Any] | None:
        """Where the lines can be read again (recorded with the batch for ``retry``); None if nowhere."""
        ...


RawLines = Callable[[], Iterable[bytes]]
"""Opens the input anew: each call yields its raw lines from the start."""
TextCheck = Callable[[str], str | None]
"""A further check of a well-formed line's document: the reason it is refused, or None."""
LineCheck = Callable[[dict[str, Any]], str | None]
"""A further check of a well-formed line's whole object (an OpenAI Batch line's ``body``): the reason, or None."""


def scan_input(
    open_lines: RawLines,
    *,
    id_field: str = "custom_id",
    text_field: str = "text",
    check: TextCheck | None = None,
    batch_check: LineCheck | None = None,
) -> InputScan:
    """Check every line, collecting all errors rather than stopping at the first (users fix them in one go).

    ``check`` runs on the document of every line that is otherwise valid, ``batch_check`` on the whole object of a
    line in the OpenAI Batch format (a native line may well have a ``body`` field of its own); a reason either
    returns makes the line invalid (reported with its number, skipped by later passes) like any other problem.
    """
    scan = InputScan()
    format_known = False
    seen: set[int] = set()
    suspects: set[int] = set()
    for number, obj in _objects(open_lines(), scan):
        if not format_known:
            scan.format = "openai-batch" if obj.keys() >= _BATCH_KEYS else "native"
            format_known = True
        result = _parse(obj, number, scan.format, id_field, text_field)
        if (
            isinstance(result, InputLine)
            and scan.format == "openai-batch"
            and batch_check is not None
            and (reason := batch_check(obj)) is not None
        ):
            result = LineError(number, reason)
        if isinstance(result, InputLine) and check is not None and (reason := check(result.text)) is not None:
            result = LineError(number, reason)
        if isinstance(result, LineError):
            scan.add_error(result)
            continue
        digest = hash(result.custom_id)
        if digest in seen:
            suspects.add(digest)
        seen.add(digest)
        scan.count += 1
    if suspects:
        _confirm_duplicates(open_lines, scan, suspects, id_field, text_field)
    if scan.count == 0 and scan.error_count == 0:
        scan.add_error(LineError(0, "the input has no lines"))
    scan.errors.sort(key=lambda e: e.line)
    return scan


def _confirm_duplicates(
    open_lines: RawLines, scan: InputScan, suspects: set[int], id_field: str, text_field: str
) -> None:
    """Second look at ids whose hash repeated: the later occurrences of an id really seen before are errors."""
    first_line: dict[str, int] = {}
    for number, obj in _objects(open_lines(), None):
        if number in scan.invalid_lines:
            continue
        result = _parse(obj, number, scan.format, id_field, text_field)
        if isinstance(result, LineError) or hash(result.custom_id) not in suspects:
            continue
        if result.custom_id in first_line:
            first = first_line[result.custom_id]
            scan.add_error(LineError(number, f"duplicate id {result.custom_id!r} (first on line {first})"))
            scan.count -= 1
        else:
            first_line[result.custom_id] = number


def valid_lines(
    raw_lines: Iterable[bytes], *, fmt: InputFormat, id_field: str, text_field: str, skip: set[int]
) -> Iterator[InputLine]:
    """The valid lines again (the ones ``scan_input`` accepted), in order."""
    for number, obj in _objects(raw_lines, None):
        if number in skip:
            continue
        result = _parse(obj, number, fmt, id_field, text_field)
        if isinstance(result, InputLine):
            yield result


@dataclass(frozen=True)
class FileSource:
    """The valid lines of a JSONL file, read from disk each time they are needed."""

    path: Path
    scan: InputScan
    id_field: str = "custom_id"
    text_field: str = "text"

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        id_field: str = "custom_id",
        text_field: str = "text",
        check: TextCheck | None = None,
        batch_check: LineCheck | None = None,
    ) -> FileSource:
        """Scan ``path`` once (check every line, and each with ``check``/``batch_check`` if given); see
        ``scan.errors``."""
        scan = scan_input(
            lambda: _read_lines(path), id_field=id_field, text_field=text_field, check=check, batch_check=batch_check
        )
        return cls(path, scan, id_field, text_field)

    @property
    def count(self) -> int:
        return self.scan.count

    first_ordinal = 0

    def lines(self) -> Iterator[InputLine]:
        return valid_lines(
            _read_lines(self.path),
            fmt=self.scan.format,
            id_field=self.id_field,
            text_field=self.text_field,
            skip=self.scan.invalid_lines,
        )

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.path.resolve()), "id_field": self.id_field, "text_field": self.text_field}


@dataclass(frozen=True)
class MemorySource:
    """Lines already in memory (tests, benchmarks, callers of the library)."""

    items: tuple[InputLine, ...]

    @property
    def count(self) -> int:
        return len(self.items)

    first_ordinal = 0

    def lines(self) -> Iterator[InputLine]:
        return iter(self.items)

    def describe(self) -> None:
        return None


def _read_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        yield from handle


def _objects(raw_lines: Iterable[bytes], scan: InputScan | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line that is a JSON object; the others are errors in ``scan``."""
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if scan is not None:
                scan.add_error(LineError(number, f"not valid JSON ({exc})"))
            continue
        if not isinstance(obj, dict):
            if scan is not None:
                scan.add_error(LineError(number, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        yield number, obj


def _parse(obj: dict[str, Any], number: int, fmt: InputFormat, id_field: str, text_field: str) -> InputLine | LineError:
    if fmt == "openai-batch":
        return _batch_line(obj, number)
    return _native_line(obj, number, id_field, text_field)


def _coerce_id(value: Any, number: int, name: str) -> str | LineError:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return LineError(number, f"field {name!r} must be a string or an integer, got {type(value).__name__}")
    custom_id = str(value)
    if not custom_id.strip():
        return LineError(number, f"field {name!r} is empty")
    if len(custom_id) > MAX_ID_LENGTH:
        return LineError(number, f"field {name!r} is longer than {MAX_ID_LENGTH} characters")
    return custom_id


def _text(value: Any, number: int, name: str) -> str | LineError:
    if not isinstance(value, str):
        return LineError(number, f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        return LineError(number, f"field {name!r} is empty")
    return value


def _native_line(obj: dict[str, Any], number: int, id_field: str, text_field: str) -> InputLine | LineError:
    if id_field not in obj:
        return LineError(number, f"missing id field {id_field!r} (set another with --id-field)")
    if text_field not in obj:
        return LineError(number, f"missing text field {text_field!r} (set another with --text-field)")
    custom_id = _coerce_id(obj[id_field], number, id_field)
    if isinstance(custom_id, LineError):
        return custom_id
    text = _text(obj[text_field], number, text_field)
    if isinstance(text, LineError):
        return text
    return InputLine(number, custom_id, text)


def _batch_line(obj: dict[str, Any], number: int) -> InputLine | LineError:
    missing = sorted(_BATCH_KEYS - obj.keys())
    if missing:
        return LineError(number, f"OpenAI batch line is missing {', '.join(missing)}")
    custom_id = _coerce_id(obj["custom_id"], number, "custom_id")
    if isinstance(custom_id, LineError):
        return custom_id
    body = obj["body"]
    if not isinstance(body, dict):
        return LineError(number, "field 'body' must be an object")
    url = str(obj["url"])
    if url.endswith("/chat/completions"):
        text = _last_user_text(body.get("messages"))
    elif url.endswith("/responses"):
        text = _responses_input_text(body.get("input"))
    else:
        return LineError(number, f"unsupported url {url!r} (expected /v1/chat/completions or /v1/responses)")
    if text is None:
        return LineError(number, "no user message text found in 'body'")
    return InputLine(number, custom_id, text)


_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_SYSTEM_ROLES = ("system", "developer")


def batch_body_check(spec: BatchSpec) -> LineCheck:
    """For OpenAI Batch input: refuse a line whose request says something the batch would not do.

    Every line of a batch is sent with the batch's model, generation parameters, instructions and schema, so a
    line's own ``body.model``, ``temperature``, max-token field, system/developer message or response format must
    agree with them (or be absent), else the line is reported -- field, its value and the batch's -- rather than
    silently sent another way. ``method`` must be POST and ``url`` a path (``/v1/chat/completions`` or
    ``/v1/responses``), as the Batch API itself requires.
    """

    def check(line: dict[str, Any]) -> str | None:
        body: dict[str, Any] = line["body"]
        method, url = str(line.get("method", "")), str(line.get("url", ""))
        if method.upper() != "POST":
            return f"'method' is {method!r}; the Batch API format sends POST"
        if not url.startswith("/"):
            return f"'url' is {url!r}; it must be a path such as /v1/chat/completions or /v1/responses"
        return _body_disagreement(body, spec)

    return check


def _body_disagreement(body: dict[str, Any], spec: BatchSpec) -> str | None:
    model = body.get("model")
    if model is not None and model != spec.model:
        return f"body.model is {model!r} but the batch's model is {spec.model!r} (--model)"
    temperature = body.get("temperature")
    if temperature is not None and temperature != spec.params.temperature:
        return f"body.temperature is {temperature!r} but the batch's is {spec.params.temperature!r} (--temperature)"
    for name in _MAX_TOKEN_FIELDS:
        value = body.get(name)
        if value is not None and value != spec.params.max_output_tokens:
            limit = spec.params.max_output_tokens
            return f"body.{name} is {value!r} but the batch's is {limit!r} (--max-output-tokens)"
    if "response_format" in body or "format" in (body.get("text") or {}):
        field = "response_format" if "response_format" in body else "text.format"
        return f"body.{field} is set; the batch's output format comes from --schema ({spec.schema_ref})"
    instructions = _system_text(body)
    if instructions is not None and instructions.strip() != spec.instructions.strip():
        return (
            "body has a system/developer message (or instructions) that differs from the batch's instructions; "
            "they come from --instructions or --instructions-file"
        )
    return None


def _system_text(body: dict[str, Any]) -> str | None:
    """The request's own instructions: Responses ``instructions``, or its system/developer messages."""
    if isinstance(body.get("instructions"), str):
        return str(body["instructions"])
    items = body.get("messages") if isinstance(body.get("messages"), list) else body.get("input")
    if not isinstance(items, list):
        return None
    texts = [
        text
        for item in items
        if isinstance(item, dict) and item.get("role") in _SYSTEM_ROLES
        if (text := _content_text(item.get("content"))) is not None
    ]
    return "\n".join(texts) if texts else None


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [str(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def _last_user_text(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = _content_text(message.get("content"))
            if text and text.strip():
                return text
    return None


def _responses_input_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value if value.strip() else None
    return _last_user_text(value)
