"""Merging schemas that must all hold (``allOf``, a ``$ref`` with sibling keywords, keywords beside a union).

:func:`combine` takes the parts -- plain schemas without ``allOf`` or ``$ref`` at their top -- and returns one schema
that accepts what every part accepts, keyword by keyword:

* ``type``, ``enum``, ``const``: intersected (``integer`` is a ``number``); empty means unsatisfiable;
* bounds: the tighter one wins (``minimum``, ``maxLength``, ``minItems`` ...); ``uniqueItems``: either;
* ``properties``, ``patternProperties``, ``dependentSchemas``: united; a name in two parts gets ``allOf`` of both
  (merged in turn when it is converted); ``required``: united;
* ``additionalProperties`` of a part applies to what *that part* does not declare: a property another part declares
  gets it as one more ``allOf`` part (``false`` there forbids the property), and the merged object's own
  ``additionalProperties`` is the ``allOf`` of every part's (the classic "allOf of closed objects" keeps its meaning);
* ``items``, ``additionalItems``, ``propertyNames``: ``allOf``; ``not``: ``not`` of the ``anyOf`` (De Morgan);
* ``anyOf``/``oneOf`` in several parts: their cross product, each pair an ``allOf`` (up to :data:`MAX_BRANCHES`);
* annotations (``description``, ``title``, ``default`` ...): the first part's.

What cannot be merged exactly (two different ``pattern`` or ``format`` values, ``multipleOf`` values neither of
which divides the other, two ``contains``, two ``if``/``then``/``else`` groups, tuple forms) keeps the first part's
and is returned in ``local``: the caller records a lossy Step, and the user's own schema checks it on every answer.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson

from schemas.codec.errors import Unsatisfiable
from schemas.codec.validation import python_regex

__all__ = ["ABSENT", "MAX_BRANCHES", "combine", "json_type", "normalize", "type_list", "value_key"]

MAX_BRANCHES = 64
"""Most union branches a cross product may produce; beyond it the second union is left to the local check."""

ABSENT: Any = object()
"""A keyword that is not there (``None`` is a value)."""

_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains")
_ALL_OF_VALUES = ("items", "additionalItems", "propertyNames", "unevaluatedItems")
_SCHEMA_DICTS = ("properties", "patternProperties", "dependentSchemas")
_FIRST_AND_LOCAL = ("contains", "prefixItems", "if", "then", "else", "dependencies", "unevaluatedProperties")


def json_type(value: Any) -> str:
    """The JSON type of a (decoded) JSON value: ``integer`` for whole numbers, as JSON Schema counts them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def value_key(value: Any) -> tuple[str, Any]:
    """A key under which JSON-equal values are equal (``1`` and ``1.0``; never ``true`` and ``1``)."""
    kind = json_type(value)
    if kind in ("integer", "number"):
        return ("number", value)
    if kind in ("object", "array"):
        return (kind, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
    return (kind, value)


def type_list(declared: Any) -> list[str] | None:
    """``type`` as a list (``None``: no type keyword, or draft 3's ``any``)."""
    if isinstance(declared, str):
        return None if declared == "any" else [declared]
    if isinstance(declared, list) and all(isinstance(t, str) for t in declared):
        return None if "any" in declared or not declared else list(dict.fromkeys(declared))
    return None


def normalize(schema: Mapping[str, Any], *, draft4: bool) -> dict[str, Any]:
    """Draft differences the builder should not see: draft 4's boolean ``exclusiveMinimum``/``exclusiveMaximum``
    become numbers; ``$recursiveRef``/``$dynamicRef`` read as ``$ref`` (right unless a dynamic anchor overrides)."""
    out = dict(schema)
    if draft4:
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if isinstance(out.get(flag), bool) and out.pop(flag) and _is_number(out.get(bound)):
                out[flag] = out.pop(bound)
    for dynamic in ("$recursiveRef", "$dynamicRef"):
        if dynamic in out and "$ref" not in out:
            out["$ref"] = out.pop(dynamic)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _types_meet(a: list[str], b: list[str]) -> list[str]:
    out = [t for t in a if t in b]
    if "integer" in a and "number" in b and "integer" not in out:
        out.append("integer")
    if "number" in a and "integer" in b and "integer" not in out:
        out.append("integer")
    return out


def _fits_type(value: Any, types: list[str]) -> bool:
    kind = json_type(value)
    return kind in types or (kind == "integer" and "number" in types)


class _Combiner:
    def __init__(self, where: str) -> None:
        self.where = where
        self.out: dict[str, Any] = {}
        self.local: list[tuple[str, str]] = []
        self.object_parts: list[tuple[set[str], list[str], Any]] = []

    def add(self, part: Mapping[str, Any]) -> None:
        if "additionalProperties" in part or "properties" in part or "patternProperties" in part:
            names = set(part["properties"]) if isinstance(part.get("properties"), Mapping) else set()
            patterns = list(part["patternProperties"]) if isinstance(part.get("patternProperties"), Mapping) else []
            self.object_parts.append((names, patterns, part.get("additionalProperties", ABSENT)))
        for key, value in part.items():
            if key in ("allOf", "$ref", "additionalProperties"):
                continue
            if key not in self.out:
                self.out[key] = list(value) if isinstance(value, list) and key in ("required", "enum") else value
            else:
                self._meet(key, self.out[key], value)

    def _meet(self, key: str, mine: Any, theirs: Any) -> None:  # noqa: C901 -- one branch per keyword family
        out = self.out
        if mine == theirs:
            return
        if key == "type":
            a, b = type_list(mine), type_list(theirs)
            if a is None or b is None:
                out[key] = theirs if a is None else mine
                return
            met = _types_meet(a, b)
            if not met:
                raise Unsatisfiable(self.where, f"allOf parts allow no common type ({a} and {b})")
            out[key] = met
        elif key == "enum":
            if not isinstance(mine, list) or not isinstance(theirs, list):
                return
            keys = {value_key(v) for v in theirs}
            met = [v for v in mine if value_key(v) in keys]
            if not met:
                raise Unsatisfiable(self.where, "allOf parts allow no common enum value")
            out[key] = met
        elif key == "const":
            if value_key(mine) != value_key(theirs):
                raise Unsatisfiable(self.where, f"allOf parts require different constants ({mine!r}, {theirs!r})")
        elif key == "required":
            if isinstance(theirs, list):
                out[key] = list(dict.fromkeys([*(mine if isinstance(mine, list) else []), *theirs]))
        elif key in _SCHEMA_DICTS:
            if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
                merged = dict(mine)
                for name, sub in theirs.items():
                    merged[name] = sub if name not in merged or merged[name] == sub else {"allOf": [merged[name], sub]}
                out[key] = merged
        elif key == "dependentRequired":
            if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
                merged = {k: list(v) for k, v in mine.items() if isinstance(v, list)}
                for name, names in theirs.items():
                    if isinstance(names, list):
                        merged[name] = list(dict.fromkeys([*merged.get(name, []), *names]))
                out[key] = merged
        elif key in _LOWER_BOUNDS:
            if _is_number(mine) and _is_number(theirs):
                out[key] = max(mine, theirs)
        elif key in _UPPER_BOUNDS:
            if _is_number(mine) and _is_number(theirs):
                out[key] = min(mine, theirs)
        elif key == "multipleOf":
            self._multiple_of(mine, theirs)
        elif key == "uniqueItems":
            out[key] = bool(mine) or bool(theirs)
        elif key in _ALL_OF_VALUES:
            if isinstance(mine, list) or isinstance(theirs, list):  # tuple forms
                self.local.append((key, "two tuple forms in allOf: the first is sent, both are checked locally"))
            else:
                out[key] = {"allOf": [mine, theirs]}
        elif key == "not":
            out[key] = {"anyOf": [mine, theirs]}
        elif key in ("anyOf", "oneOf"):
            self._cross(key, mine, theirs)
        elif key in ("pattern", "format") or key in _FIRST_AND_LOCAL:
            self.local.append((key, f"allOf parts give {key} twice: the first is sent, both are checked locally"))
        # every other keyword (annotations, unknown keywords): the first part's wins

    def _multiple_of(self, mine: Any, theirs: Any) -> None:
        if not (_is_number(mine) and _is_number(theirs)) or mine <= 0 or theirs <= 0:
            return
        big, small = max(mine, theirs), min(mine, theirs)
        ratio = big / small
        if math.isclose(ratio, round(ratio), rel_tol=1e-9):
            self.out["multipleOf"] = big
        elif isinstance(mine, int) and isinstance(theirs, int):
            self.out["multipleOf"] = mine * theirs // math.gcd(mine, theirs)
        else:
            self.local.append(("multipleOf", "allOf parts give two multipleOf: the first is sent, both are checked"))

    def _cross(self, key: str, mine: Any, theirs: Any) -> None:
        if not isinstance(mine, list) or not isinstance(theirs, list):
            return
        if len(mine) * len(theirs) > MAX_BRANCHES:
            self.local.append((key, f"two {key} unions in allOf: the first is sent, both are checked locally"))
            return
        self.out[key] = [{"allOf": [a, b]} for a, b in itertools.product(mine, theirs)]

    def finish(self) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self._additional_properties()
        self._check_satisfiable()
        return self.out, self.local

    def _additional_properties(self) -> None:
        explicit = [(names, patterns, ap) for names, patterns, ap in self.object_parts if ap is not ABSENT]
        if not explicit:
            return
        properties = dict(self.out["properties"]) if isinstance(self.out.get("properties"), Mapping) else {}
        for names, patterns, ap in explicit:
            if ap is True or ap == {}:
                continue
            compiled = [python_regex(p) for p in patterns]
            for name in properties:
                if name in names or any(rx is None or re.search(rx, name) for rx in compiled):
                    continue
                properties[name] = {"allOf": [properties[name], ap]}
        if properties:
            self.out["properties"] = properties
        constraining = [ap for _, _, ap in explicit if not (ap is True or ap == {})]
        if any(ap is False for ap in constraining):
            self.out["additionalProperties"] = False
        elif len(constraining) == 1:
            self.out["additionalProperties"] = constraining[0]
        elif constraining:
            self.out["additionalProperties"] = {"allOf": constraining}
        else:
            self.out["additionalProperties"] = True

    def _check_satisfiable(self) -> None:
        out = self.out
        types = type_list(out.get("type"))
        values = [out["const"]] if "const" in out else out.get("enum") if isinstance(out.get("enum"), list) else None
        if values is not None:
            enum = out.get("enum")
            if (
                "const" in out
                and isinstance(enum, list)
                and value_key(out["const"]) not in {value_key(v) for v in enum}
            ):
                raise Unsatisfiable(self.where, "allOf parts: the const is not among the enum values")
            if types is not None and not any(_fits_type(v, types) for v in values):
                raise Unsatisfiable(self.where, "allOf parts: no enum/const value has an allowed type")
        for low, high in (("minLength", "maxLength"), ("minItems", "maxItems"), ("minProperties", "maxProperties")):
            if _is_number(out.get(low)) and _is_number(out.get(high)) and out[low] > out[high]:
                raise Unsatisfiable(self.where, f"allOf parts: {low} {out[low]} is above {high} {out[high]}")


def combine(parts: list[Mapping[str, Any]], where: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """One schema for all of ``parts`` (see the module docstring) and what is left to the local check.

    Raises:
        Unsatisfiable: No value can satisfy every part.
    """
    combiner = _Combiner(where)
    for part in parts:
        combiner.add(part)
    return combiner.finish()
