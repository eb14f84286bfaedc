"""The codec's exceptions and the two path spellings they use.

* :class:`SchemaError`: a schema we refuse (not a schema, unsatisfiable, a ``$ref`` to nowhere or to another
  document). Its message starts with the JSON path of the place in the *user's schema* (``$.properties.tags``).
* :class:`CodecError`: a value the codec cannot carry across (encode) or read back (decode). Its ``path`` is the
  place in the *user's data* (``line_items[0].quantity``, ``<root>``), spelled as answer-validation messages are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["CodecError", "SchemaError", "Unsatisfiable", "data_path", "join_data", "schema_path"]

_PLAIN_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


class SchemaError(ValueError):
    """A schema that cannot be used (or is not a schema at all); the message names the location in the schema."""


class CodecError(ValueError):
    """A value the codec cannot encode into the strict shape, or a strict-shaped answer it cannot decode.

    Attributes:
        path: Where in the (user-shaped) data, e.g. ``tags[0]``; ``<root>`` for the whole value.
        problem: What is wrong there.
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problem))


class Unsatisfiable(Exception):
    """No value is valid here (``false``, empty type or enum intersection, a required key that may not exist)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def schema_path(base: str, *parts: str | int) -> str:
    """``schema_path("$", "properties", "a.b")`` → ``$.properties['a.b']``: a location in a schema document."""
    out = base
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_NAME.match(part):
            out += f".{part}"
        else:
            out += "[" + repr(part) + "]"
    return out


def data_path(parts: Iterable[str | int]) -> str:
    """``("line_items", 0, "quantity")`` → ``line_items[0].quantity``; the empty path is ``<root>``."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "<root>"


def join_data(path: str, part: str | int) -> str:
    """One step deeper in a data path (``<root>`` is the empty path)."""
    base = "" if path == "<root>" else path
    if isinstance(part, int):
        return f"{base}[{part}]"
    return f"{base}.{part}" if base else part
