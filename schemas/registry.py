"""Where extraction schemas come from, and how a model's output is checked against them.

A schema is chosen once per batch (``--schema``) in one of three forms:

* a built-in name: ``invoice``, ``support_ticket`` (alias ``ticket``), ``contact`` (alias ``person``);
* a JSON Schema file: ``examples/schemas/receipt.json`` (or ``file:<path>``);
* a pydantic model: ``package.module:ClassName``. When the *producer* resolves it, the current directory is added
  to ``sys.path`` (at the end) so that ``examples.custom_schema:JobPosting`` works from the repository root even
  through an installed console script, whose ``sys.path[0]`` is the script's directory.

The producer resolves it to an :class:`ExtractionSchema` and stores the strict and the source schema in the batch
record; workers rebuild it with :func:`load_schema_from_record` without reading any file, and validate outputs
with :func:`validator_for`. Pydantic models validate with the model itself (custom validators, coercion, defaults
included); file schemas validate with the strict JSON Schema that was sent to the API plus the constraints strict
mode refuses and the conversion therefore leaves out of it (``minLength``, ``maxLength``, ``uniqueItems``:
``schemas.strict.to_local_validation_schema``), so the answer is held to the user's schema, not to its API subset.

A batch record is data from Redis, and data must not choose what code a worker runs: a worker imports a
``module:Class`` only when the module is on its own allowlist (``EXTRACT_SCHEMA_MODULES``, empty by default), never
adds the current directory to ``sys.path``, and otherwise validates with the recorded JSON Schema. Built-in schemas
are part of this package and need no import.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import json
import logging
import os
import re
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError
from pydantic.errors import PydanticUserError

from schemas.builtin import BUILTIN_SCHEMAS
from schemas.strict import (
    MAX_NESTING_LEVELS,
    SchemaError,
    canonical_schema_json,
    check_json_depth,
    drop_nulls_for_optional,
    schema_name,
    to_local_validation_schema,
    to_strict_json_schema,
)

__all__ = [
    "BUILTIN_ALIASES",
    "ExtractionSchema",
    "JsonSchemaOutputValidator",
    "OutputValidationError",
    "OutputValidator",
    "PydanticOutputValidator",
    "SchemaError",
    "UnknownSchemaError",
    "load_schema_from_record",
    "local_validation_schema",
    "resolve_schema",
    "validator_for",
]

logger = logging.getLogger(__name__)

BUILTIN_ALIASES: dict[str, str] = {"ticket": "support_ticket", "person": "contact"}
"""Other names accepted for built-in schemas; the normalized ``ref`` is always the canonical name."""

MAX_REPORTED_ERRORS = 20
"""At most this many validation messages are reported; a repair prompt needs the first problems, not all."""

_MODULE_SPEC = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_MAX_MESSAGE_CHARS = 240


class UnknownSchemaError(ValueError):
    """``--schema`` names nothing usable: unknown name, unreadable file, missing module or not a pydantic model."""


class OutputValidationError(ValueError):
    """The model's output does not match the schema.

    Attributes:
        errors: Short ``"<path>: <problem>"`` messages, e.g. ``"line_items[0].quantity: Input should be a valid
            number (got 'two')"``, meant to be shown to the model in a repair prompt and to users in results.
    """

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


@dataclass(frozen=True)
class ExtractionSchema:
    """A resolved extraction schema: what is sent to the API and what checks the answer."""

    ref: str
    """What the user passed, normalized: a built-in name, ``module.path:Class`` or ``file:<name>``."""
    name: str
    """The response format name sent to the API (``^[a-zA-Z0-9_-]{1,64}$``)."""
    json_schema: dict[str, Any]
    """The strict JSON Schema sent to the API (without the keywords strict mode refuses)."""
    source_schema: dict[str, Any]
    """The schema before the strict conversion; needed to map nulls back to pydantic defaults, and the source of the
    local validation schema (:func:`validator_for`)."""
    model: type[BaseModel] | None
    """The pydantic class, when there is one (built-ins and ``module:Class``)."""


def resolve_schema(spec: str) -> ExtractionSchema:
    """Resolve a ``--schema`` value to an :class:`ExtractionSchema`.

    Args:
        spec: A built-in name (or alias), a path to a ``.json`` JSON Schema file (``file:`` prefix optional) or
            ``package.module:ClassName``.

    Returns:
        The schema with its strict conversion.

    Raises:
        UnknownSchemaError: Unknown name, unreadable or non-JSON file, missing module or attribute, or an
            attribute that is not a pydantic model. The message says what to pass instead.
        SchemaError: The schema was found but cannot be used in strict mode (e.g. its root is not an object); the
            message names the file or class and the location inside the schema.
    """
    text = spec.strip()
    if not text:
        raise UnknownSchemaError(_unknown_message(spec))
    builtin = _builtin_key(text)
    if builtin is not None:
        model = BUILTIN_SCHEMAS[builtin]
        return _from_model(builtin, model, builtin)
    if text.startswith("file:"):
        return _from_file(Path(text.removeprefix("file:")))
    if text.lower().endswith(".json") or "/" in text or os.sep in text:
        return _from_file(Path(text))
    if _MODULE_SPEC.fullmatch(text):
        model = _import_model(text, from_cwd=True)
        return _from_model(text, model, model.__name__)
    if Path(text).is_file():
        return _from_file(Path(text))
    raise UnknownSchemaError(_unknown_message(text))


def load_schema_from_record(
    ref: str,
    json_schema: dict[str, Any],
    source_schema: dict[str, Any],
    *,
    name: str | None = None,
    allowed_modules: frozenset[str] = frozenset(),
) -> ExtractionSchema:
    """Rebuild an :class:`ExtractionSchema` from a batch record, as a worker does.

    The recorded schemas are authoritative: they are what the API was given and what the batch fingerprints
    cover. For a built-in ref the built-in class validates; for ``module:Class`` the class is imported to validate
    with it only if its module is in ``allowed_modules`` (a module listed there also allows its submodules). If it
    is not allowed, cannot be imported, or its schema no longer equals the recorded source schema (the code changed
    since the batch was submitted), ``model`` is ``None`` and outputs are validated against the recorded strict schema.

    Args:
        ref: The normalized ref from :func:`resolve_schema`.
        json_schema: The recorded strict schema.
        source_schema: The recorded source schema.
        name: The recorded format name; derived from ``ref`` when omitted.
        allowed_modules: The modules this process may import for a recorded ``module:Class``.

    Returns:
        The schema, with ``model`` set when the class is allowed, importable and unchanged.
    """
    model: type[BaseModel] | None = None
    candidate = _model_for_ref(ref, allowed_modules)
    if candidate is not None:
        try:
            unchanged = _model_schema_bytes(candidate) == canonical_schema_json(source_schema)
        except SchemaError:
            unchanged = False
        if unchanged:
            model = candidate
        else:
            logger.warning(
                "schema %s changed since the batch was submitted; validating with the recorded JSON Schema", ref
            )
    return ExtractionSchema(
        ref=ref,
        name=name or _name_for_ref(ref),
        json_schema=json_schema,
        source_schema=source_schema,
        model=model,
    )


class OutputValidator(ABC):
    """Checks a decoded model output against an extraction schema."""

    @abstractmethod
    def validate(self, data: Any) -> dict[str, Any]:
        """Validate and normalize one output.

        Args:
            data: The decoded JSON the model returned.

        Returns:
            The JSON-compatible output to store.

        Raises:
            OutputValidationError: With short messages suitable for a repair prompt.
        """


class PydanticOutputValidator(OutputValidator):
    """Validates with the original pydantic model, after mapping strict-mode nulls back to defaults."""

    def __init__(self, model: type[BaseModel], source_schema: dict[str, Any]) -> None:
        """Create the validator.

        Args:
            model: The extraction model.
            source_schema: Its JSON Schema before the strict conversion (says which fields were optional).
        """
        self.model = model
        self.source_schema = source_schema

    def validate(self, data: Any) -> dict[str, Any]:
        """Validate with the model; return ``model_dump(mode="json")`` so defaults and coercions are applied."""
        prepared = drop_nulls_for_optional(data, self.source_schema)
        try:
            instance = self.model.model_validate(prepared)
        except ValidationError as exc:
            raise OutputValidationError(_pydantic_messages(exc)) from None
        return instance.model_dump(mode="json")


class JsonSchemaOutputValidator(OutputValidator):
    """Validates with a JSON Schema (Draft 2020-12, formats such as ``date`` checked)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        """Create the validator.

        Args:
            schema: The local validation schema: the strict JSON Schema sent to the API with the constraints strict
                mode refuses put back (``schemas.strict.to_local_validation_schema``).
        """
        self._validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def validate(self, data: Any) -> dict[str, Any]:
        """Validate; return the data itself (JSON Schema applies no defaults, nulls stay nulls)."""
        messages = sorted({m for error in self._validator.iter_errors(data) for m in _jsonschema_messages(error)})
        if messages:
            raise OutputValidationError(_cap(messages))
        if not isinstance(data, dict):  # unreachable for an object root schema; keeps the return type honest
            raise OutputValidationError([f"<root>: expected a JSON object, got {_json_kind(data)}"])
        return data


def validator_for(schema: ExtractionSchema) -> OutputValidator:
    """The validator for a schema: its pydantic model when there is one, else its local validation schema.

    The local validation schema is the strict conversion of the *source* schema with the keywords strict mode refuses
    kept (``minLength``, ``maxLength``, ``uniqueItems``), so they are enforced here although the API never saw them.
    If the source cannot be converted (a hand-made :class:`ExtractionSchema`), the schema sent to the API is used.

    Args:
        schema: A resolved or record-loaded schema.

    Returns:
        A reusable validator (build it once per batch, not per line).
    """
    if schema.model is not None:
        return PydanticOutputValidator(schema.model, schema.source_schema)
    return JsonSchemaOutputValidator(local_validation_schema(schema))


def local_validation_schema(schema: ExtractionSchema) -> dict[str, Any]:
    """What an answer to ``schema`` is checked against when there is no pydantic model (see :func:`validator_for`)."""
    try:
        return to_local_validation_schema(schema.source_schema)
    except SchemaError:
        return schema.json_schema


# --------------------------------------------------------------------------------------------------------------
# resolution helpers


def _builtin_key(text: str) -> str | None:
    key = text.strip().lower().replace("-", "_")
    key = BUILTIN_ALIASES.get(key, key)
    return key if key in BUILTIN_SCHEMAS else None


def _unknown_message(spec: str) -> str:
    names = sorted([*BUILTIN_SCHEMAS, *BUILTIN_ALIASES])
    close = difflib.get_close_matches(spec.strip().lower(), names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown schema {spec!r}.{hint} Pass a built-in name ({', '.join(names)}), a path to a JSON Schema "
        "file (e.g. examples/schemas/receipt.json) or a pydantic model as package.module:ClassName."
    )


def _from_model(ref: str, model: type[BaseModel], name: str) -> ExtractionSchema:
    source = _model_json_schema(model)
    try:
        strict = to_strict_json_schema(source)
    except SchemaError as exc:
        raise SchemaError(f"schema {ref} ({model.__module__}.{model.__qualname__}): {exc}") from exc
    return ExtractionSchema(ref=ref, name=schema_name(name), json_schema=strict, source_schema=source, model=model)


def _model_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    try:
        return model.model_json_schema()
    except PydanticUserError as exc:  # e.g. a field type with no JSON Schema (a callable, an arbitrary class)
        raise SchemaError(f"{model.__qualname__} has no JSON Schema: {exc}") from exc


@functools.cache
def _model_schema_bytes(model: type[BaseModel]) -> bytes:
    """The canonical JSON of a model's schema, cached: workers compare it with every record they load."""
    return canonical_schema_json(_model_json_schema(model))


def _from_file(path: Path) -> ExtractionSchema:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnknownSchemaError(f"JSON Schema file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UnknownSchemaError(f"cannot read JSON Schema file {path}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnknownSchemaError(
            f"JSON Schema file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except RecursionError:  # thousands of nested brackets: the parser's own recursion gives up
        raise SchemaError(_too_deep(path)) from None
    if not isinstance(raw, dict):
        raise SchemaError(f"JSON Schema file {path}: the root must be a JSON object, found {_json_kind(raw)}")
    try:
        check_json_depth(raw)  # before the validator, which recurses once per level
        Draft202012Validator.check_schema(raw)
        strict = to_strict_json_schema(raw)
    except jsonschema.SchemaError as exc:
        location = _json_path(exc.absolute_path)
        raise SchemaError(f"JSON Schema file {path} is not a valid JSON Schema at {location}: {exc.message}") from None
    except SchemaError as exc:
        raise SchemaError(f"JSON Schema file {path}: {exc}") from exc
    except RecursionError:  # a backstop: the depth guard above should keep every schema from getting here
        raise SchemaError(_too_deep(path)) from None
    title = raw.get("title")
    name = schema_name(title if isinstance(title, str) and title.strip() else path.stem)
    return ExtractionSchema(ref=f"file:{name}", name=name, json_schema=strict, source_schema=raw, model=None)


def _too_deep(path: Path) -> str:
    return (
        f"JSON Schema file {path} nests too deeply to read; strict mode accepts at most {MAX_NESTING_LEVELS} levels "
        "of objects"
    )


@functools.cache
def _import_model(spec: str, *, from_cwd: bool = False) -> type[BaseModel]:
    """Import ``module:Attr`` and check it is a pydantic model; successes are cached, failures are not.

    ``from_cwd`` (the producer, resolving what its user typed) also looks in the current directory.
    """
    module_name, _, attr_path = spec.partition(":")
    cwd = os.getcwd()
    if from_cwd and cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UnknownSchemaError(
                f"schema {spec!r}: no module named {exc.name!r}; run from the directory that contains it or "
                "install the package"
            ) from None
        raise UnknownSchemaError(f"schema {spec!r}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:  # the user's module itself raised while importing
        raise UnknownSchemaError(
            f"schema {spec!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UnknownSchemaError(
                f"schema {spec!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not (isinstance(obj, type) and issubclass(obj, BaseModel)):
        kind = f"class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise UnknownSchemaError(f"schema {spec!r} is {kind}, not a pydantic BaseModel subclass")
    return obj


def module_allowed(module_name: str, allowed: frozenset[str]) -> bool:
    return any(module_name == entry or module_name.startswith(entry + ".") for entry in allowed)


def _model_for_ref(ref: str, allowed_modules: frozenset[str]) -> type[BaseModel] | None:
    builtin = _builtin_key(ref)
    if builtin is not None:
        return BUILTIN_SCHEMAS[builtin]
    if not _MODULE_SPEC.fullmatch(ref):
        return None
    module_name = ref.partition(":")[0]
    if not module_allowed(module_name, allowed_modules):
        logger.info(
            "schema %s: module %r is not in EXTRACT_SCHEMA_MODULES; validating with the recorded JSON Schema",
            ref,
            module_name,
        )
        return None
    try:
        return _import_model(ref)
    except UnknownSchemaError as exc:
        logger.warning("cannot import %s (%s); validating with the recorded JSON Schema", ref, exc)
        return None


def _name_for_ref(ref: str) -> str:
    builtin = _builtin_key(ref)
    if builtin is not None:
        return builtin
    if ref.startswith("file:"):
        return schema_name(ref.removeprefix("file:"))
    if _MODULE_SPEC.fullmatch(ref):
        return schema_name(ref.rpartition(":")[2].rpartition(".")[2])
    return schema_name(ref)


# --------------------------------------------------------------------------------------------------------------
# error messages


def _pydantic_messages(exc: ValidationError) -> list[str]:
    messages = []
    for error in exc.errors(include_url=False):
        message = f"{_json_path(error['loc'])}: {error['msg']}"
        value = error.get("input")
        if error["type"] != "missing" and (value is None or isinstance(value, str | int | float | bool)):
            message += f" (got {_short_repr(value)})"
        messages.append(_truncate(message))
    return _cap(messages)


def _jsonschema_messages(error: jsonschema.ValidationError) -> list[str]:
    """Messages for one error; a failed union is explained by the branch that nearly matched.

    "not valid under any of the given schemas" does not help the model repair anything. If some branch of the union
    (typically the nullable wrapper) had the right type, its errors are the real problems: ``tip: -1 is less than
    the minimum of 0``. If every branch failed on type alone, the types are listed: ``"abc" is not of type 'number'
    or 'null'``.
    """
    path = _json_path(error.absolute_path)
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [_truncate(f"{path}: {error.message}")]
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for branch_error in error.context:
        index = branch_error.relative_schema_path[0] if branch_error.relative_schema_path else None
        branches.setdefault(index, []).append(branch_error)
    near = [errors for errors in branches.values() if not _is_type_mismatch(errors)]
    if near:
        return [message for branch_error in min(near, key=len) for message in _jsonschema_messages(branch_error)]
    types: list[str] = []
    for branch_error in error.context:
        value = branch_error.validator_value
        for name in value if isinstance(value, list) else [value]:
            if repr(name) not in types:
                types.append(repr(name))
    return [_truncate(f"{path}: {_short_repr(error.instance)} is not of type {' or '.join(types)}")]


def _is_type_mismatch(errors: list[jsonschema.ValidationError]) -> bool:
    """Whether a union branch failed only because the value has another type altogether."""
    return len(errors) == 1 and errors[0].validator == "type" and not errors[0].relative_path


def _json_path(loc: Any) -> str:
    """``("line_items", 0, "quantity")`` → ``line_items[0].quantity``; the empty path is ``<root>``."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "<root>"


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null" if value is None else f"a {type(value).__name__}"


def _short_repr(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _truncate(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE_CHARS else message[: _MAX_MESSAGE_CHARS - 3] + "..."


def _cap(messages: list[str]) -> list[str]:
    if len(messages) <= MAX_REPORTED_ERRORS:
        return messages
    return [*messages[:MAX_REPORTED_ERRORS], f"... and {len(messages) - MAX_REPORTED_ERRORS} more errors"]
