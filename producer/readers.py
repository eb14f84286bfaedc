"""Read and validate an input file. Pure parsing over lines; every problem gets its line number.

Two formats, detected from the first non-blank line:

- native: one JSON object per line with an id field and a text field (names configurable);
- OpenAI Batch API input: ``{"custom_id", "method", "url", "body"}``, where the document is the last user
  message of a Chat Completions body (``messages``) or the ``input`` of a Responses body.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

InputFormat = Literal["native", "openai-batch"]

_BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})
MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class InputLine:
    line: int
    custom_id: str
    text: str


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class ParsedInput:
    format: InputFormat
    lines: list[InputLine] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)


def parse_lines(raw_lines: Iterable[bytes], *, id_field: str = "custom_id", text_field: str = "text") -> ParsedInput:
    """Parse every line, collecting all errors rather than stopping at the first (users fix them in one go)."""
    parsed = ParsedInput(format="native")
    format_known = False
    first_seen: dict[str, int] = {}
    for number, raw in enumerate(raw_lines, start=1):
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            parsed.errors.append(LineError(number, f"not valid JSON ({exc})"))
            continue
        if not isinstance(obj, dict):
            parsed.errors.append(LineError(number, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        if not format_known:
            parsed.format = "openai-batch" if obj.keys() >= _BATCH_KEYS else "native"
            format_known = True
        result = (
            _batch_line(obj, number)
            if parsed.format == "openai-batch"
            else _native_line(obj, number, id_field, text_field)
        )
        if isinstance(result, LineError):
            parsed.errors.append(result)
            continue
        if result.custom_id in first_seen:
            parsed.errors.append(
                LineError(number, f"duplicate id {result.custom_id!r} (first on line {first_seen[result.custom_id]})")
            )
            continue
        first_seen[result.custom_id] = number
        parsed.lines.append(result)
    if not parsed.lines and not parsed.errors:
        parsed.errors.append(LineError(0, "the input has no lines"))
    return parsed


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
