"""Validation with the user's own schema: its own draft, formats really checked, and never an exception.

:class:`SchemaValidator` is what every answer is finally held to (``SchemaCodec.validate``):

* **Draft.** The class is chosen by the schema's ``$schema`` (draft 3, 4, 6, 7, 2019-09, 2020-12); without one, or
  with one jsonschema does not know, 2020-12.
* **Formats.** One format checker for every draft: every format jsonschema knows (``date-time``, ``uri``, ``email``,
  ``hostname``, ``regex`` ...: the ``format-nongpl`` extras supply the checkers) plus the OpenAPI numeric formats
  (``int32``, ``int64``, ``float``, ``double``, ``byte``). A format nobody knows is an annotation, as the
  specification says; :func:`format_checked` tells the builder which it is, so its Step says so.
* **References.** Resolved in the document and the bundled meta-schemas only; nothing is ever fetched (a
  ``$ref`` to another document fails validation instead of reaching the network).
* **Regular expressions.** JSON Schema's patterns are ECMA-262; Python's ``re`` reads most of them, named groups
  (``(?<name>...)``) after a rewrite. A pattern ``re`` still cannot compile (``\\p{L}``) would make every check raise:
  it is left unchecked here (the API still enforces it while decoding) and listed in :attr:`unchecked_patterns`.
* **Never raises.** A failure of the validator itself (an unresolvable reference, a recursion limit, a checker that
  throws) becomes one message, ``validator failed: PointerToNowhere: ...``, so an answer is failed, never a crash.

Messages are ``"<path>: <problem>"`` with the path in the data (``items[0].price``), at most
:data:`MAX_REPORTED_ERRORS` of them: they go into repair prompts and result lines.
"""

from __future__ import annotations

import base64
import binascii
import copy
import importlib.util
import json
import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson
import referencing
from jsonschema import Draft7Validator, Draft202012Validator, FormatChecker
from jsonschema.protocols import Validator

from schemas.codec.errors import data_path
from schemas.codec.keywords import iter_subschemas

__all__ = [
    "MAX_REPORTED_ERRORS",
    "SchemaValidator",
    "cap_messages",
    "draft_class",
    "format_checked",
    "python_regex",
    "short_repr",
    "truncate_message",
]

MAX_REPORTED_ERRORS = 20
"""At most this many validation messages are reported; a repair prompt needs the first problems, not all."""

_MAX_MESSAGE_CHARS = 240

_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint8": (0, 2**8 - 1),
    "uint16": (0, 2**16 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}


def _lazy_iri_check(rule: str) -> Any:
    """A checker of ``iri``/``iri-reference`` that imports rfc3987-syntax on its first value (``schemas`` keeps it
    out of jsonschema's import: it compiles a grammar when imported)."""

    def check(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        from rfc3987_syntax import is_valid_syntax

        return bool(is_valid_syntax(rule, instance))

    return check


def _build_format_checker() -> FormatChecker:
    checker = FormatChecker()  # every format jsonschema has a checker for, whatever the draft
    if importlib.util.find_spec("rfc3987_syntax") is not None:
        for name, rule in (("iri", "iri"), ("iri-reference", "iri_reference")):
            if name not in checker.checkers:
                checker.checks(name, raises=ValueError)(_lazy_iri_check(rule))

    def integer_in(low: int, high: int) -> Any:
        def check(instance: object) -> bool:
            if isinstance(instance, bool) or not isinstance(instance, int | float):
                return True  # formats apply to their own type only
            if isinstance(instance, float) and not instance.is_integer():
                return False
            return low <= instance <= high

        return check

    for name, (low, high) in _INT_RANGES.items():
        checker.checks(name)(integer_in(low, high))

    def finite(instance: object) -> bool:
        return not isinstance(instance, float) or math.isfinite(instance)

    checker.checks("float")(finite)
    checker.checks("double")(finite)

    @checker.checks("byte", raises=(binascii.Error, ValueError))
    def is_base64(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        base64.b64decode(instance, validate=True)
        return True

    return checker


FORMAT_CHECKER = _build_format_checker()


def format_checked(name: str) -> bool:
    """Whether our validator checks ``format: name`` (otherwise it is only an annotation)."""
    return name in FORMAT_CHECKER.checkers


def draft_class(schema: Any) -> type[Validator]:
    """The validator class for a schema's ``$schema``, without warnings.

    Without a ``$schema`` (or with one jsonschema does not know): 2020-12, unless the schema only makes sense in an
    older draft -- it uses ``dependencies``, ``additionalItems`` or the array form of ``items`` and nothing of 2019-09
    or later (``$defs``, ``prefixItems``, ``dependentRequired`` ...): then draft 7, which gives those keywords the
    meaning their author gave them (2020-12 would ignore ``dependencies`` and refuse ``items: [...]``).
    """
    if not isinstance(schema, Mapping):
        return Draft202012Validator
    if not isinstance(schema.get("$schema"), str):
        return Draft7Validator if _legacy_only(schema) else Draft202012Validator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cls: type[Validator] = jsonschema.validators.validator_for(schema, default=Draft202012Validator)
        except Exception:  # a $schema that is not even a string
            return Draft202012Validator
    return cls


_LEGACY_KEYWORDS = frozenset({"dependencies", "additionalItems"})
_MODERN_KEYWORDS = frozenset(
    {"$defs", "prefixItems", "dependentRequired", "dependentSchemas", "unevaluatedProperties", "unevaluatedItems"}
    | {"$anchor", "$dynamicRef", "$dynamicAnchor", "$recursiveRef", "minContains", "maxContains"}
)


def _legacy_only(schema: Mapping[str, Any]) -> bool:
    legacy = False
    for _, node in iter_subschemas(schema):
        if not isinstance(node, Mapping):
            continue
        if node.keys() & _MODERN_KEYWORDS:
            return False
        legacy = legacy or bool(node.keys() & _LEGACY_KEYWORDS) or isinstance(node.get("items"), list)
    return legacy


_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z_])")
_NAMED_BACKREF = re.compile(r"\\k<([A-Za-z_]\w*)>")


def python_regex(pattern: str) -> str | None:
    """``pattern`` (ECMA-262) as a Python regular expression, or None when ``re`` cannot read it."""
    for candidate in (pattern, _NAMED_BACKREF.sub(r"(?P=\1)", _NAMED_GROUP.sub("(?P<", pattern))):
        try:
            re.compile(candidate)
        except (re.error, RecursionError, OverflowError, ValueError):
            continue
        return candidate
    return None


def _prepared(schema: Any) -> tuple[Any, list[tuple[str, str]]]:  # noqa: C901 -- find, then fix a copy
    """The schema with patterns made readable by ``re``; the ones that cannot be, with their locations."""
    changes: list[tuple[str, str, str | None]] = []
    try:
        if b'"pattern' not in orjson.dumps(schema):
            return schema, []
    except (TypeError, orjson.JSONEncodeError):
        pass
    for where, node in iter_subschemas(schema):
        if not isinstance(node, Mapping):
            continue
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            translated = python_regex(pattern)
            if translated != pattern:
                changes.append((where, "pattern", translated))
        patterns = node.get("patternProperties")
        if isinstance(patterns, Mapping):
            for key in patterns:
                translated = python_regex(str(key))
                if translated != key:
                    changes.append((where, f"patternProperties:{key}", translated))
    if not changes:
        return schema, []
    unchecked: list[tuple[str, str]] = []
    fixed = copy.deepcopy(schema)
    nodes = dict(iter_subschemas(fixed))
    for where, what, translated in changes:
        node = nodes[where]
        if what == "pattern":
            original = node["pattern"]
            if translated is None:
                unchecked.append((where, original))
                del node["pattern"]
            else:
                node["pattern"] = translated
        else:
            key = what.removeprefix("patternProperties:")
            sub = node["patternProperties"].pop(key)
            if translated is None:
                unchecked.append((where, key))
            else:
                node["patternProperties"][translated] = sub
    return fixed, unchecked


class SchemaValidator:
    """The user's schema as a validator (see the module docstring); build once, use for every answer."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.cls = draft_class(schema)
        prepared, self.unchecked_patterns = _prepared(schema)
        """Patterns ``re`` cannot compile, as ``(location, pattern)``: not checked here."""
        self._validator = self.cls(
            prepared,
            registry=referencing.Registry(),  # no retrieval: nothing is ever fetched
            format_checker=FORMAT_CHECKER,
        )

    @property
    def draft(self) -> str:
        """``Draft7Validator`` → ``draft 7``."""
        return self.cls.__name__.removesuffix("Validator").replace("Draft", "draft ")

    def messages(self, instance: Any) -> list[str]:
        """Why ``instance`` is invalid (``[]``: valid); never raises."""
        try:
            found = {m for error in self._validator.iter_errors(instance) for m in _messages(error)}
        except RecursionError:
            return ["<root>: validator failed: the value nests too deeply to check"]
        except Exception as exc:  # the validator itself failed: an answer is then invalid, never a crash
            return [truncate_message(f"<root>: validator failed: {type(exc).__name__}: {exc}")]
        return cap_messages(sorted(found))

    def is_valid(self, instance: Any) -> bool:
        """Whether ``instance`` is valid; False when the validator fails."""
        return not self.messages(instance)

    def valid_under(self, subschema: Any, instance: Any) -> bool | None:
        """Whether ``instance`` is valid under ``subschema`` (a part of this schema; its references resolve
        against the whole document); None when that cannot be told."""
        try:
            return bool(self._validator.evolve(schema=subschema).is_valid(instance))
        except Exception:
            return None


def _messages(error: jsonschema.ValidationError) -> list[str]:
    """Messages for one error; a failed union is explained by the branch that nearly matched.

    "not valid under any of the given schemas" does not help the model repair anything. If some branch of the union
    had the right type, its errors are the real problems: ``tip: -1 is less than the minimum of 0``. If every branch
    failed on type alone, the types are listed: ``"abc" is not of type 'number' or 'null'``.
    """
    path = data_path(error.absolute_path)
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        return [truncate_message(f"{path}: {error.message}")]
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for branch_error in error.context:
        index = branch_error.relative_schema_path[0] if branch_error.relative_schema_path else None
        branches.setdefault(index, []).append(branch_error)
    near = [errors for errors in branches.values() if not _is_type_mismatch(errors)]
    if near:
        return [message for branch_error in min(near, key=len) for message in _messages(branch_error)]
    types: list[str] = []
    for branch_error in error.context:
        value = branch_error.validator_value
        for name in value if isinstance(value, list) else [value]:
            if repr(name) not in types:
                types.append(repr(name))
    return [truncate_message(f"{path}: {short_repr(error.instance)} is not of type {' or '.join(types)}")]


def _is_type_mismatch(errors: list[jsonschema.ValidationError]) -> bool:
    """Whether a union branch failed only because the value has another type altogether."""
    return len(errors) == 1 and errors[0].validator == "type" and not errors[0].relative_path


def short_repr(value: Any) -> str:
    """A value as a message shows it: its JSON, at most 40 characters."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def truncate_message(message: str) -> str:
    """One validation message, at most 240 characters (they go into repair prompts and result lines)."""
    return message if len(message) <= _MAX_MESSAGE_CHARS else message[: _MAX_MESSAGE_CHARS - 3] + "..."


def cap_messages(messages: list[str]) -> list[str]:
    """At most :data:`MAX_REPORTED_ERRORS` messages, and how many more there were."""
    if len(messages) <= MAX_REPORTED_ERRORS:
        return messages
    return [*messages[:MAX_REPORTED_ERRORS], f"... and {len(messages) - MAX_REPORTED_ERRORS} more errors"]
