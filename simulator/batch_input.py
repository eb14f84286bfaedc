"""A batch input file, checked as the Batch API checks it while a batch is ``validating``.

A line is ``{"custom_id", "method": "POST", "url": <the batch endpoint>, "body": {...}}`` (OPENAI-FACTS §4, §9).
Any problem fails the whole batch with ``errors.data[]`` entries shaped as the spec's ``BatchError``: ``code``,
``line`` (1-based, counting blank lines; null for the file as a whole), ``message`` and ``param``. File-level codes:
``file_too_large`` (over 200 MB; the message is OpenAI's, the code is ours: the real one is not published),
``empty_file``, ``too_many_tasks`` (over 50,000 lines). Line codes, one per line (its first problem):
``invalid_json_line``, ``missing_required_parameter`` / ``invalid_type`` (no or a malformed ``custom_id``,
``method``, ``url`` or ``body``), ``invalid_value`` (a ``method`` other than POST), ``url_mismatch``,
``duplicate_custom_id``, ``model_mismatch`` (a ``body.model`` other than the first line's). A body the synchronous
endpoint would refuse is *not* a validation error: that line is answered with the endpoint's 400, in the error file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MAX_REPORTED_ERRORS = 1000
"""Errors past this many are not listed (the batch fails all the same)."""


@dataclass(frozen=True, slots=True)
class InputLine:
    """One request of the file: where it is, its ``custom_id`` and its body."""

    line: int
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CheckedInput:
    """The requests of a valid file, or the errors that fail the batch; ``model`` is the first line's, if any."""

    lines: tuple[InputLine, ...]
    model: str | None
    errors: tuple[dict[str, Any], ...]


def batch_error(code: str, message: str, *, line: int | None = None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "line": line, "message": message, "param": param}


def check_input(data: bytes, url: str, *, max_bytes: int, max_lines: int) -> CheckedInput:
    """The requests of ``data`` (JSONL) for a batch on ``url``, or why the batch fails."""
    if len(data) > max_bytes:  # not read any further: only the first line, for the model's name
        first = next((raw for raw in data.split(b"\n", 1)[:1] if raw.strip()), b"")
        model = _model_of(_loads(first))
        named = model if isinstance(model, str) else None
        message = (
            f"The batch input file is larger than the {max_bytes} maximum for the {named or 'requested'} model. "
            "Please try again with a smaller batch."
        )
        return CheckedInput((), named, (batch_error("file_too_large", message),))
    raw_lines = [(number, raw) for number, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]
    parsed = [(number, _loads(raw)) for number, raw in raw_lines]
    model = next((m for _, item in parsed if isinstance(m := _model_of(item), str)), None)
    if not parsed:
        return CheckedInput((), model, (batch_error("empty_file", "The batch input file is empty."),))
    if len(parsed) > max_lines:
        message = f"The batch input file has {len(parsed)} requests, over the limit of {max_lines} requests per batch."
        return CheckedInput((), model, (batch_error("too_many_tasks", message),))
    errors: list[dict[str, Any]] = []
    lines: list[InputLine] = []
    seen: set[str] = set()
    for number, item in parsed:
        problem = _line_problem(number, item, url, model, seen)
        if problem is not None:
            errors.append(problem)
            continue
        assert isinstance(item, dict)
        seen.add(item["custom_id"])
        lines.append(InputLine(number, item["custom_id"], item["body"]))
    return CheckedInput(tuple(lines), model, tuple(errors[:MAX_REPORTED_ERRORS]))


_NOT_JSON = object()


def _loads(raw: bytes) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _NOT_JSON


def _model_of(item: object) -> object:
    body = item.get("body") if isinstance(item, dict) else None
    return body.get("model") if isinstance(body, dict) else None


_FIELDS: tuple[tuple[str, type], ...] = (("custom_id", str), ("method", str), ("url", str), ("body", dict))


def _line_problem(number: int, item: object, url: str, model: str | None, seen: set[str]) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return batch_error("invalid_json_line", "This line is not parseable as valid JSON.", line=number)
    for name, kind in _FIELDS:
        if item.get(name) is None:
            return batch_error(
                "missing_required_parameter", f"Missing required parameter: '{name}'.", line=number, param=name
            )
        if not isinstance(item[name], kind):
            expected = "a string" if kind is str else "an object"
            return batch_error(
                "invalid_type", f"Invalid type for '{name}': expected {expected}.", line=number, param=name
            )
    if item["method"] != "POST":
        message = f"Invalid value: '{item['method']}'. Supported values are: 'POST'."
        return batch_error("invalid_value", message, line=number, param="method")
    if item["url"] != url:
        message = "The URL provided for this request does not prefix-match the batch endpoint."
        return batch_error("url_mismatch", message, line=number, param="url")
    if item["custom_id"] in seen:
        message = (
            "The custom_id for this request is a duplicate of another request. "
            "The custom_id parameter must be unique for each request in a batch."
        )
        return batch_error("duplicate_custom_id", message, line=number, param="custom_id")
    line_model = item["body"].get("model")
    if isinstance(line_model, str) and line_model != model:
        message = (
            f"The provided model '{line_model}' does not match the model of the other requests in this batch "
            f"('{model}'). A batch input file must use a single model."
        )
        return batch_error("model_mismatch", message, line=number, param="body.model")
    return None
