"""What JSON Schema keywords are, for the codec: where subschemas sit, which keywords only annotate, and a walk.

The walk (:func:`iter_subschemas`) knows the applicator keywords of every draft from 3 to 2020-12, so it visits
subschemas and never the data inside ``enum``, ``const``, ``default`` or ``examples`` (a property *named*
``pattern`` is a subschema under ``properties``; an ``enum`` value ``{"pattern": 1}`` is data).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from schemas.codec.errors import schema_path

__all__ = [
    "ANNOTATIONS",
    "DEF_KEYS",
    "SCHEMA_LISTS",
    "SCHEMA_MAPS",
    "SCHEMA_VALUES",
    "SUPPORTED_FORMATS",
    "iter_subschemas",
]

SUPPORTED_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
"""String ``format`` values strict mode accepts (OPENAI-FACTS.md section 7); any other format is checked locally."""

DEF_KEYS = ("$defs", "definitions")

SCHEMA_VALUES = (
    "additionalProperties",
    "additionalItems",
    "items",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
"""Keywords whose value is one subschema (``items`` may also be a list: the draft 4-2019 tuple form)."""
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "extends", "disallow")
SCHEMA_MAPS = ("properties", "patternProperties", "dependentSchemas", "dependencies", *DEF_KEYS)
"""Keywords whose value maps names to subschemas (``dependencies`` values may also be lists of names)."""

ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "id",
        "$anchor",
        "$dynamicAnchor",
        "$recursiveAnchor",
        "$comment",
        "$vocabulary",
        "title",
        "description",
        "default",
        "examples",
        "example",
        "deprecated",
        "readOnly",
        "writeOnly",
        "contentMediaType",
        "contentEncoding",
        "contentSchema",
        "discriminator",
        "nullable",
        "xml",
        "externalDocs",
        "$defs",
        "definitions",
    }
)
"""Keywords that constrain nothing a validator checks (OpenAPI's ``nullable``/``discriminator`` included: a JSON
Schema validator ignores them, so the user's schema does not mean them). Unknown keywords (``x-...``) are
annotations too, by the same rule."""


def iter_subschemas(schema: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """Every subschema of ``schema`` (itself first) with its location, depth first, in document order.

    Iterative, so a deep document cannot exhaust the recursion limit; booleans are yielded as subschemas too.
    """
    pending: list[tuple[str, Any]] = [(path, schema)]
    while pending:
        where, node = pending.pop()
        yield where, node
        if not isinstance(node, Mapping):
            continue
        children: list[tuple[str, Any]] = []
        for key in SCHEMA_VALUES:
            value = node.get(key)
            if isinstance(value, Mapping | bool):
                children.append((schema_path(where, key), value))
            elif key == "items" and isinstance(value, list):
                children.extend((schema_path(where, key, i), sub) for i, sub in enumerate(value))
        for key in SCHEMA_LISTS:
            value = node.get(key)
            if isinstance(value, list):
                children.extend((schema_path(where, key, i), sub) for i, sub in enumerate(value))
            elif key in ("extends", "disallow") and isinstance(value, Mapping):
                children.append((schema_path(where, key), value))
        for key in SCHEMA_MAPS:
            value = node.get(key)
            if isinstance(value, Mapping):
                children.extend(
                    (schema_path(where, key, str(name)), sub)
                    for name, sub in value.items()
                    if isinstance(sub, Mapping | bool)
                )
        pending.extend(reversed(children))
