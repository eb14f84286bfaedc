"""Schema-violating outputs for the ``invalid_output`` fault.

Real models under Structured Outputs almost never break the schema, but the
service must survive when one does (or when strict mode is off). The violation
is chosen to look like a real slip (a missing required field, a value of the
wrong type) and is checked against the schema, so it is always truly invalid
whenever the schema can be violated at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from simulator.schema_checks import validator

INVALID_MARKER = "__invalid__"


def violate(schema: dict[str, Any], instance: Any) -> Any:
    """A deterministic variant of ``instance`` that fails ``schema``; ``{"__invalid__": true}`` if none does."""
    check = validator(schema)
    for candidate in _candidates(schema, instance):
        if not check.is_valid(candidate):
            return candidate
    return {INVALID_MARKER: True}


def _candidates(schema: dict[str, Any], instance: Any) -> Iterator[Any]:
    if isinstance(instance, dict):
        required = schema.get("required")
        for name in required if isinstance(required, list) else ():
            if name in instance:
                yield {key: value for key, value in instance.items() if key != name}
                break
        for name, value in instance.items():
            yield {**instance, name: 12345 if isinstance(value, str) else INVALID_MARKER}
        yield {**instance, INVALID_MARKER: True}
    yield {INVALID_MARKER: True}
    yield [INVALID_MARKER]
    yield INVALID_MARKER
    yield None
