"""What the builder's two halves share: the walk's context, the keyword tables and the notes of lossy steps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from referencing._core import Resolver

from schemas.codec.errors import schema_path

__all__ = ["CHANNEL_NAME", "CONSTRAINTS", "Ctx", "OpenObjects"]

OpenObjects = Literal["extras", "closed"]
"""What an object without ``additionalProperties`` becomes: ``extras`` (what JSON Schema says: open, so it gets a
channel for undeclared keys) or ``closed`` (pydantic models: undeclared keys are ignored by the model anyway)."""

CHANNEL_NAME = "__extra__"
"""The property that carries an open object's undeclared keys, as ``{key, value}`` items."""

MAX_INLINE_DEPTH = 32
"""Most references inlined inside one another (a ``$ref`` with a description is inlined); deeper ones stay refs."""

_NUMERIC = ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "multipleOf")
_OBJECT_KEYWORDS = frozenset(
    {
        "properties",
        "patternProperties",
        "additionalProperties",
        "required",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
    }
)
_ARRAY_KEYWORDS = frozenset(
    {
        "items",
        "prefixItems",
        "additionalItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "unevaluatedItems",
    }
)
_STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern"})
_NUMBER_KEYWORDS = frozenset({*_NUMERIC, "divisibleBy"})
_ANY_TYPE_KEYWORDS = frozenset({"type", "enum", "const", "allOf", "anyOf", "oneOf", "not", "if", "$ref", "format"})
_ANY_TYPE_KEYWORDS |= {"disallow", "extends", "$recursiveRef", "$dynamicRef"}
CONSTRAINTS = _OBJECT_KEYWORDS | _ARRAY_KEYWORDS | _STRING_KEYWORDS | _NUMBER_KEYWORDS | _ANY_TYPE_KEYWORDS
"""Every keyword a validator checks (the rest annotate)."""

_LOCAL_NOTES = {
    "minLength": "minLength is not sent (strict mode refuses it); checked locally",
    "maxLength": "maxLength is not sent (strict mode refuses it); checked locally",
    "uniqueItems": "uniqueItems is not sent (strict mode refuses it); checked locally",
    "contains": "contains cannot be sent in strict mode; checked locally",
    "minContains": "minContains cannot be sent in strict mode; checked locally",
    "maxContains": "maxContains cannot be sent in strict mode; checked locally",
    "unevaluatedItems": "unevaluatedItems cannot be sent in strict mode; checked locally",
    "unevaluatedProperties": "unevaluatedProperties cannot be sent in strict mode; checked locally",
    "not": "not cannot be sent in strict mode; checked locally",
    "if": "if/then/else cannot be sent in strict mode; checked locally",
    "dependencies": "dependencies cannot be sent in strict mode; checked locally",
    "dependentRequired": "dependentRequired cannot be sent in strict mode; checked locally",
    "dependentSchemas": "dependentSchemas cannot be sent in strict mode; checked locally",
    "minProperties": "minProperties cannot be sent in strict mode; checked locally",
    "maxProperties": "maxProperties cannot be sent in strict mode; checked locally",
    "propertyNames": "propertyNames cannot be sent in strict mode; checked locally",
    "disallow": "disallow cannot be sent in strict mode; checked locally",
    "extends": "extends (draft 3) is not sent; checked locally",
    "divisibleBy": "divisibleBy (draft 3) is not sent; checked locally",
}


def _applies(keyword: str, types: list[str] | None) -> bool:
    """Whether a keyword constrains a value of one of ``types`` (None: any type)."""
    if types is None or keyword in _ANY_TYPE_KEYWORDS:
        return True
    if keyword in _OBJECT_KEYWORDS:
        return "object" in types
    if keyword in _ARRAY_KEYWORDS:
        return "array" in types
    if keyword in _STRING_KEYWORDS:
        return "string" in types
    if keyword in _NUMBER_KEYWORDS:
        return "number" in types or "integer" in types
    return True


def _constraints(schema: Mapping[str, Any]) -> list[str]:
    return [key for key in schema if key in CONSTRAINTS]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _description(schema: Mapping[str, Any]) -> str | None:
    value = schema.get("description")
    return value if isinstance(value, str) and value else None


_NULL_DECIDERS = frozenset(
    {"$ref", "$recursiveRef", "$dynamicRef", "allOf", "anyOf", "oneOf", "not", "if", "enum", "const", "extends"}
    | {"disallow", "$id", "id"}
)
"""Keywords beside ``type`` that may change whether ``null`` is valid (the validator is asked then)."""

_ANY_VALUES_NOTE = "values of undeclared keys (any JSON) are sent as JSON text, parsed back and checked locally"


@dataclass(frozen=True)
class Ctx:
    path: str
    """Where in the user's schema."""
    resolver: Resolver[Any]

    def at(self, *parts: str | int) -> Ctx:
        return replace(self, path=schema_path(self.path, *parts))
