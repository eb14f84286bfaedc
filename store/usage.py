"""The usage codec: how token counts travel as script arguments and sit in hashes.

The field list is :class:`schemas.results.Usage`'s own; every other place (batch totals, job accounts, script
arguments, status) goes through this module, so a new kind of token is added in one place.
"""

from __future__ import annotations

from collections.abc import Sequence

from schemas.results import Usage

USAGE_FIELDS: tuple[str, ...] = tuple(Usage.model_fields)
"""``input_tokens``, ``cached_input_tokens``, ``output_tokens``, ``reasoning_tokens``, ``total_tokens``."""

USAGE_LUA = "{" + ", ".join(f"'{name}'" for name in USAGE_FIELDS) + "}"
"""The field names as a Lua table literal, in the order of :func:`usage_args`."""


def usage_args(usage: Usage) -> list[int]:
    """The counts in ``USAGE_FIELDS`` order (script arguments)."""
    return [getattr(usage, name) for name in USAGE_FIELDS]


def usage_from(values: Sequence[bytes | str | int | float | None]) -> Usage:
    """A Usage from counts in ``USAGE_FIELDS`` order; missing values are 0."""
    return Usage(**{name: int(float(value or 0)) for name, value in zip(USAGE_FIELDS, values, strict=False)})
