"""Where extraction schemas come from, and how a model's output is checked against them.

A schema is chosen once per batch (``--schema``) in one of three forms:

* a built-in name: ``invoice``, ``support_ticket`` (alias ``ticket``), ``contact`` (alias ``person``);
* a JSON Schema file: ``examples/schemas/receipt.json`` (or ``file:<path>``);
* a pydantic model: ``package.module:ClassName``. When the *producer* resolves it, the current directory is added
  to ``sys.path`` (at the end) so that ``examples.custom_schema:JobPosting`` works from the repository root even
  through an installed console script, whose ``sys.path[0]`` is the script's directory.

The producer resolves it to an :class:`ExtractionSchema` whose :class:`~schemas.codec.SchemaCodec` gives the strict
schema sent to the API; the batch record stores that and the source schema, and workers rebuild the schema with
:func:`load_schema_from_record` without reading any file. Every answer is decoded by the codec back into the user's
shape (the nulls strict mode forced into optional properties removed, wrappers and key/value pairs undone, JSON text
parsed) and then validated (:func:`validator_for`): by the pydantic model when there is one (custom validators,
coercion and defaults included), else by the user's ORIGINAL JSON Schema with its own draft and formats checked --
what is stored is the user's shape and valid under the user's schema. File schemas are converted with open objects
as JSON Schema defines them (a channel for undeclared keys), pydantic models with closed ones (a model ignores
undeclared keys). A record whose strict schema the codec no longer reproduces (submitted before codecs) is read
with the null-removal of its time (``schemas.strict.drop_nulls_for_optional``) and validated the same way.

A batch record is data from Redis, and data must not choose what code a worker runs: a worker imports a
``module:Class`` only when the module is on its own allowlist (``EXTRACT_SCHEMA_MODULES``, empty by default), never
adds the current directory to ``sys.path``, and otherwise validates with the recorded JSON Schema. Built-in schemas
are part of this package and need no import.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import json
import logging
import os
import re
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from pydantic.errors import PydanticUserError

from schemas.builtin import BUILTIN_SCHEMAS
from schemas.codec import (
    CodecError,
    OpenObjects,
    SchemaCodec,
    SchemaValidator,
    build_codec,
    metaschema_problem,
)
from schemas.codec.validation import cap_messages, short_repr, truncate_message
from schemas.strict import (
    MAX_NESTING_LEVELS,
    SchemaError,
    canonical_schema_json,
    check_json_depth,
    drop_nulls_for_optional,
    schema_name,
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
    "codec_for",
    "load_schema_from_record",
    "resolve_schema",
    "validator_for",
]

logger = logging.getLogger(__name__)

BUILTIN_ALIASES: dict[str, str] = {"ticket": "support_ticket", "person": "contact"}
"""Other names accepted for built-in schemas; the normalized ``ref`` is always the canonical name."""

_MODULE_SPEC = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")


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
    """The strict JSON Schema sent to the API (the codec's ``strict_schema``)."""
    source_schema: dict[str, Any]
    """The user's schema (a file's content, or a model's ``model_json_schema()``): what answers are validated
    against, and what the codec is rebuilt from."""
    model: type[BaseModel] | None
    """The pydantic class, when there is one (built-ins and ``module:Class``)."""
    codec: SchemaCodec | None = field(default=None, compare=False, repr=False)
    """The codec between ``json_schema`` and ``source_schema`` (:func:`codec_for` finds it when not set)."""


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
    schema = ExtractionSchema(
        ref=ref,
        name=name or _name_for_ref(ref),
        json_schema=json_schema,
        source_schema=source_schema,
        model=model,
    )
    return dataclasses.replace(schema, codec=codec_for(schema))


class OutputValidator(ABC):
    """Checks a decoded model output against an extraction schema."""

    @abstractmethod
    def validate(self, data: Any) -> Any:
        """Validate and normalize one output.

        Args:
            data: The decoded JSON the model returned (in the strict shape).

        Returns:
            The JSON-compatible output to store, in the user's shape.

        Raises:
            OutputValidationError: With short messages suitable for a repair prompt.
        """

    @abstractmethod
    def accepts_stored(self, output: Any) -> bool:
        """Whether an output already in the user's shape (a cached answer, stored by another batch whose strict
        schema was the same) is valid under this batch's own schema: the strict schema can be shared by schemas
        that differ in what is checked locally. Never raises."""


class PydanticOutputValidator(OutputValidator):
    """Decodes with the codec, then validates with the original pydantic model (which applies its defaults)."""

    def __init__(self, model: type[BaseModel], source_schema: dict[str, Any], codec: SchemaCodec | None = None) -> None:
        """Create the validator.

        Args:
            model: The extraction model.
            source_schema: Its JSON Schema (says which fields were optional).
            codec: The codec the batch was sent with; None for a record from before codecs (the nulls strict mode
                forced in are then removed as they were then).
        """
        self.model = model
        self.source_schema = source_schema
        self.codec = codec

    def validate(self, data: Any) -> Any:
        """Decode, validate with the model; return ``model_dump(mode="json")`` (defaults and coercions applied)."""
        prepared = _decode(self.codec, self.source_schema, data)
        try:
            instance = self.model.model_validate(prepared)
        except ValidationError as exc:
            raise OutputValidationError(_pydantic_messages(exc)) from None
        return instance.model_dump(mode="json")

    def accepts_stored(self, output: Any) -> bool:
        try:
            self.model.model_validate(output)
        except Exception:  # a validator failure is a "no", never an exception
            return False
        return True


class JsonSchemaOutputValidator(OutputValidator):
    """Decodes with the codec, then validates with the user's original JSON Schema (its own draft, formats checked)."""

    def __init__(self, source_schema: Any, codec: SchemaCodec | None = None) -> None:
        """Create the validator.

        Args:
            source_schema: The user's schema: what the decoded answer must be valid under.
            codec: The codec the batch was sent with; None for a record from before codecs.
        """
        self.codec = codec
        self._validator = SchemaValidator(source_schema) if codec is None else None
        self.source_schema = source_schema

    def validate(self, data: Any) -> Any:
        """Decode and validate (``SchemaCodec.check``); return the decoded answer (JSON Schema applies no
        defaults)."""
        if self.codec is not None:
            instance, errors = self.codec.check(data)
        else:
            instance = _decode(None, self.source_schema, data)
            errors = self._messages(instance)
        if errors:
            raise OutputValidationError(errors)
        return instance

    def accepts_stored(self, output: Any) -> bool:
        return not (self.codec.validate(output) if self.codec is not None else self._messages(output))

    def _messages(self, instance: Any) -> list[str]:
        assert self._validator is not None
        return self._validator.messages(instance)


def _decode(codec: SchemaCodec | None, source_schema: Any, data: Any) -> Any:
    if codec is None:
        return drop_nulls_for_optional(data, source_schema) if isinstance(source_schema, dict) else data
    try:
        return codec.decode(data)
    except CodecError as exc:
        raise OutputValidationError([f"{exc.path}: {exc.problem}"]) from None


def validator_for(schema: ExtractionSchema) -> OutputValidator:
    """The validator for a schema: the codec's decoding, then its pydantic model when there is one, else the user's
    own JSON Schema.

    Args:
        schema: A resolved or record-loaded schema.

    Returns:
        A reusable validator (build it once per batch, not per line).
    """
    codec = codec_for(schema)
    if schema.model is not None:
        return PydanticOutputValidator(schema.model, schema.source_schema, codec)
    return JsonSchemaOutputValidator(schema.source_schema, codec)


def codec_for(schema: ExtractionSchema) -> SchemaCodec | None:
    """The codec that produced ``schema.json_schema`` from ``schema.source_schema``; None when no codec does (a
    record submitted before codecs, or a hand-made schema).

    A file's schema is converted with open objects, a model's with closed ones; a record says which only through its
    strict schema, so both are tried.
    """
    if schema.codec is not None:
        return schema.codec
    modes: tuple[OpenObjects, ...] = ("extras", "closed") if schema.ref.startswith("file:") else ("closed", "extras")
    sent = canonical_schema_json(schema.json_schema)
    for mode in modes:
        try:
            codec = build_codec(schema.source_schema, name=schema.name, open_objects=mode)
        except SchemaError:
            return None
        if canonical_schema_json(codec.strict_schema) == sent:
            return codec
    return None


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
        codec = build_codec(source, name=ref, open_objects="closed")
    except SchemaError as exc:
        raise SchemaError(f"schema {ref} ({model.__module__}.{model.__qualname__}): {exc}") from exc
    return ExtractionSchema(
        ref=ref,
        name=schema_name(name),
        json_schema=_copy(codec.strict_schema),
        source_schema=source,
        model=model,
        codec=codec,
    )


def _copy(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy the caller may change: the codec (cached, shared) keeps its own."""
    copied: dict[str, Any] = orjson.loads(orjson.dumps(schema))
    return copied


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
    title = raw.get("title")
    name = schema_name(title if isinstance(title, str) and title.strip() else path.stem)
    try:
        check_json_depth(raw)  # before the validator, which recurses once per level
        problem = metaschema_problem(raw)
        if problem is not None:
            raise SchemaError(f"JSON Schema file {path} is not a valid JSON Schema at {problem[1]}")
        codec = build_codec(raw, name=name, open_objects="extras")
    except SchemaError as exc:
        if str(exc).startswith("JSON Schema file"):
            raise
        raise SchemaError(f"JSON Schema file {path}: {exc}") from exc
    except RecursionError:  # a backstop: the depth guard above should keep every schema from getting here
        raise SchemaError(_too_deep(path)) from None
    return ExtractionSchema(
        ref=f"file:{name}",
        name=name,
        json_schema=_copy(codec.strict_schema),
        source_schema=raw,
        model=None,
        codec=codec,
    )


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
            message += f" (got {short_repr(value)})"
        messages.append(truncate_message(message))
    return cap_messages(messages)


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
