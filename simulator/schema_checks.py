"""Checks on the response schema a request supplies, and cached validators for it.

The real API rejects invalid JSON Schemas and, in strict mode, schemas that
break the Structured Outputs rules (root must be an object; every object must
set ``additionalProperties: false`` and list all its properties as required;
no keyword outside the supported subset). Rejecting them here too means a bad
schema fails in tests, not in production.

Keywords refused in strict mode (:data:`NOT_PERMITTED_IN_STRICT`): the
composition keywords OpenAI's Structured Outputs guide lists as not supported
("Some type-specific keywords are not yet supported": ``allOf``, ``not``,
``dependentRequired``, ``dependentSchemas``, ``if``, ``then``, ``else``,
https://developers.openai.com/api/docs/guides/structured-outputs#supported-schemas),
the type-specific keywords its earlier copies listed there (``minLength``,
``maxLength``, ``patternProperties``, ``unevaluatedProperties``,
``propertyNames``, ``minProperties``, ``maxProperties``, ``unevaluatedItems``,
``contains``, ``minContains``, ``maxContains``, ``uniqueItems``) and that its
current "Supported properties" list still leaves out. ``minItems``,
``maxItems``, ``pattern``, ``format`` and the numeric bounds are supported now
and accepted. A refusal is the API's 400 ``invalid_json_schema``:
``Invalid schema for response_format '<name>': In context=('properties',
'code'), 'minLength' is not permitted.`` (the shape reported for the real API,
``param`` naming the schema).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from simulator.errors import invalid_request

NOT_PERMITTED_IN_STRICT = (
    "allOf",
    "not",
    "dependentRequired",
    "dependentSchemas",
    "if",
    "then",
    "else",
    "minLength",
    "maxLength",
    "patternProperties",
    "unevaluatedProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "uniqueItems",
)
"""Schema keywords a strict request must not carry (see the module docstring)."""

_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")
_SUBSCHEMA_VALUES = ("items", "additionalProperties", "not")


def check_schema(schema: dict[str, Any], name: str, *, strict: bool, param: str) -> None:
    """Raise a 400 if ``schema`` is not a valid JSON Schema, or (strict) breaks Structured Outputs rules."""
    problem = _schema_problem(canonical_json(schema), strict)
    if problem is not None:
        raise invalid_request(
            f"Invalid schema for response_format '{name}': {problem}", param=param, code="invalid_json_schema"
        )


@functools.lru_cache(maxsize=256)
def _schema_problem(canonical: str, strict: bool) -> str | None:
    """What is wrong with a schema, or None; cached because a batch reuses one schema for every request."""
    schema = orjson.loads(canonical)
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        return f"{exc.message}."
    return _strict_problem(schema) if strict else None


def canonical_json(schema: object) -> str:
    """Canonical JSON text of a schema (sorted keys): the cache key for its validator."""
    return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()


@functools.lru_cache(maxsize=256)
def _cached_validator(canonical: str) -> Validator:
    schema = orjson.loads(canonical)
    cls = validator_for(schema, default=Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validator(schema: object) -> Validator:
    """A (cached) validator for a schema already accepted by :func:`check_schema`; checks formats too."""
    return _cached_validator(canonical_json(schema))


def _strict_problem(schema: dict[str, Any]) -> str | None:
    if schema.get("type") != "object":
        got = orjson.dumps(schema.get("type")).decode()
        return f"schema must be a JSON Schema of 'type: \"object\"', got 'type: {got}'."
    for context, node in _walk(schema, ()):
        where = f"In context={context!r}, "
        refused = next((key for key in node if key in _NOT_PERMITTED), None)
        if refused is not None:
            return where + f"'{refused}' is not permitted."
        if not _is_object_schema(node):
            continue
        if node.get("additionalProperties") is not False:
            return where + "'additionalProperties' is required to be supplied and to be false."
        required = node.get("required", [])
        missing = [key for key in node.get("properties", {}) if key not in required]
        if missing:
            return (
                where + "'required' is required to be supplied and to be an array including every key in "
                f"properties. Missing '{missing[0]}'."
            )
    return None


_NOT_PERMITTED = frozenset(NOT_PERMITTED_IN_STRICT)


def _is_object_schema(node: dict[str, Any]) -> bool:
    declared = node.get("type")
    is_object_type = declared == "object" or (isinstance(declared, list) and "object" in declared)
    return is_object_type or "properties" in node


def _walk(node: object, context: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every subschema (dict) with its path, in document order."""
    if not isinstance(node, dict):
        return
    yield context, node
    for key in _SUBSCHEMA_VALUES:
        yield from _walk(node.get(key), (*context, key))
    for key in _SUBSCHEMA_LISTS:
        for index, child in enumerate(node.get(key) or ()):
            yield from _walk(child, (*context, key, str(index)))
    for key in _SUBSCHEMA_MAPS:
        children = node.get(key)
        if isinstance(children, dict):
            for child_name, child in children.items():
                yield from _walk(child, (*context, key, child_name))
