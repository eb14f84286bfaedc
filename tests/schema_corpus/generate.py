"""Write the generated share of the schema corpus: hypothesis strategies per kind, fixed seeds, written once.

    .venv/bin/python -m tests.schema_corpus.generate [--check]

Each kind has a strategy that draws a realistic schema (field names and types from a vocabulary of API, event and
configuration fields) together with candidate instances built from the same drawing: valid ones from each node's
value strategy, invalid ones by one mutation (a wrong type, a value out of range, a required key dropped, an extra key
on a closed object, a bad map key). Every candidate is then checked with jsonschema under the schema's own draft, and
only those that agree are kept, so a strategy may over-approximate (cross-property keywords such as
``dependentRequired`` or ``if``/``then`` are left to that filter). A case keeps at most three of each and is dropped
when it has fewer than two (the ``unsatisfiable`` kind keeps no valid instance: there is none).

The run is deterministic for a given hypothesis version: one ``@seed`` per kind, no example database, generation
phase only. Files are named ``gen-<seed>-<example>.json`` and carry ``"source": "generated:<seed>"``. They are
written once and checked in; ``--check`` regenerates in memory and lists the files that would change.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from jsonschema.exceptions import SchemaError

from tests.schema_corpus.loader import CORPUS_DIR, instance_errors, validator_class

D4 = "http://json-schema.org/draft-04/schema#"
D6 = "http://json-schema.org/draft-06/schema#"
D7 = "http://json-schema.org/draft-07/schema#"
D2019 = "https://json-schema.org/draft/2019-09/schema"
D2020 = "https://json-schema.org/draft/2020-12/schema"

PER_KIND = {
    "plain-objects": 14,
    "optional-fields": 14,
    "nested-deep": 14,
    "roots-nonobject": 14,
    "maps": 14,
    "allof": 14,
    "refs": 14,
    "any-value": 14,
    "open-objects": 14,
    "constraints": 16,
    "limits": 8,
    "drafts": 14,
    "unsatisfiable": 14,
}
"""How many generated schemas each kind gets."""
SEED_BASE = 22_000
CANDIDATES = 6
"""Candidate instances drawn per case, of each sort; at most :data:`KEEP` of each survive the jsonschema filter."""
KEEP = 3

WORDS = (
    "alpha", "harbour", "invoice", "north", "widget", "river", "copper", "delta", "maple", "orbit", "quartz", "saffron",
    "tundra", "velvet", "zephyr", "Berlin", "Lagos", "Osaka", "Lima", "Quebec",
)  # fmt: skip
EXTRA_KEYS = ("x_source", "debug", "_links", "trace_id", "legacy_code", "notes_internal")
"""Keys an open object's instances may carry beyond the declared ones (none is in :data:`FIELDS`)."""

Json = Any


@dataclass(frozen=True)
class Node:
    """A schema and how to draw values for it: valid ones, and invalid ones (``None``: every value is valid)."""

    schema: Json
    valid: st.SearchStrategy[Json]
    invalid: st.SearchStrategy[Json] | None


@dataclass(frozen=True)
class Style:
    """How a kind draws objects."""

    all_required: bool = True
    closed: bool | None = True
    """``True``: ``additionalProperties: false``; ``False``: open (declared or default); ``None``: either."""
    strict_only: bool = True
    """Keep to keywords and formats strict mode has (``format: uri`` becomes a pattern)."""
    nullable: float = 0.0
    """Share of properties whose type admits null."""
    min_props: int = 2
    max_props: int = 6


# -- scalars ---------------------------------------------------------------------------------------------------------

_TEXT = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
_WRONG_TYPES: st.SearchStrategy[Json] = st.sampled_from([None, True, 17, "17", [], {}])


def _wrong(except_type: str) -> st.SearchStrategy[Json]:
    """Values of any JSON type other than ``except_type``."""
    matches: dict[str, Callable[[Json], bool]] = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    test = matches[except_type]
    return _WRONG_TYPES.filter(lambda v: not test(v))


def _string(schema: dict[str, Json], valid: st.SearchStrategy[str], bad: list[str]) -> Node:
    invalid = _wrong("string") | st.sampled_from(bad) if bad else _wrong("string")
    return Node({"type": "string", **schema}, valid, invalid)


def _text(draw: st.DrawFn, style: Style) -> Node:
    schema: dict[str, Json] = {}
    if not style.strict_only and draw(st.booleans()):
        schema.update(minLength=1, maxLength=40)
        return _string(schema, _TEXT.filter(lambda t: 1 <= len(t) <= 40), ["", "x" * 41])
    return _string(schema, _TEXT, [])


def _enum(values: list[str]) -> Node:
    return Node(
        {"type": "string", "enum": values}, st.sampled_from(values), _wrong("string") | st.just("unknown-value")
    )


_DATE = st.dates(min_value=date(1990, 1, 1), max_value=date(2035, 12, 31))
_DATETIME = st.builds(
    lambda d, h, m, s: f"{d.isoformat()}T{h:02d}:{m:02d}:{s:02d}Z",
    _DATE,
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)
_SLUG = st.sampled_from(WORDS).map(str.lower)


def _formatted(fmt: str, style: Style) -> Node:
    if fmt == "regex" and style.strict_only:
        return _string({}, st.sampled_from(["^a+$", "foo|bar"]), [])
    if fmt == "uri" and style.strict_only:
        return _string({"pattern": "^https?://"}, _SLUG.map(lambda w: f"https://example.com/{w}"), ["example.com", ""])
    valid: dict[str, tuple[st.SearchStrategy[str], list[str]]] = {
        "date": (_DATE.map(lambda d: d.isoformat()), ["31/12/2024", "2024-13-01", "yesterday"]),
        "date-time": (_DATETIME, ["2024-01-01", "2024-01-01 10:00", "now"]),
        "email": (st.tuples(_SLUG, _SLUG).map(lambda p: f"{p[0]}.{p[1]}@example.com"), ["not-an-address", ""]),
        "uuid": (st.uuids().map(str), ["1234", "not-a-uuid"]),
        "ipv4": (st.ip_addresses(v=4).map(str), ["10.0.0.256", "localhost"]),
        "hostname": (_SLUG.map(lambda w: f"{w}.example.org"), ["-bad-.example", "a..b"]),
        "uri": (_SLUG.map(lambda w: f"https://example.com/{w}"), ["example dot com", "//no-scheme"]),
        "uri-reference": (_SLUG.map(lambda w: f"/static/{w}.png"), ["\\\\bad path"]),
        "duration": (st.integers(1, 90).map(lambda n: f"P{n}D"), ["5 days", "P"]),
        "time": (st.integers(0, 23).map(lambda h: f"{h:02d}:30:00Z"), ["25:00:00Z", "noon"]),
        "regex": (st.sampled_from(["^a+$", "foo|bar", "[0-9]{2,4}", "^(?:GET|POST)$"]), ["([a-z", "*x", "[z-a]"]),
    }
    strategy, bad = valid[fmt]
    return _string({"format": fmt}, strategy, bad)


_PATTERNS = {
    "code": ("^[A-Z]{3}-[0-9]{4}$", ["abc-1234", "ABC1234", ""]),
    "currency": ("^[A-Z]{3}$", ["eur", "EURO", ""]),
    "zip": ("^[0-9]{5}$", ["1234", "ABCDE", ""]),
    "color": ("^#[0-9a-f]{6}$", ["red", "#FFF", ""]),
    "semver": ("^[0-9]+\\.[0-9]+\\.[0-9]+$", ["1.0", "v1.0.0", ""]),
}


def _patterned(key: str) -> Node:
    pattern, bad = _PATTERNS[key]
    return _string({"pattern": pattern}, st.from_regex(pattern, fullmatch=True).filter(lambda s: "\n" not in s), bad)


def _integer(low: int | None, high: int | None, fmt: str | None = None) -> Node:
    schema: dict[str, Json] = {"type": "integer"}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    if fmt:
        schema["format"] = fmt
    bad: list[Json] = [1.5]
    if low is not None:
        bad.append(low - 1)
    if high is not None:
        bad.append(high + 1)
    valid = st.integers(low if low is not None else -1000, high if high is not None else 100_000)
    return Node(schema, valid, _wrong("integer") | st.sampled_from(bad))


def _number(low: float, high: float, *, exclusive_low: bool = False, step: float | None = None) -> Node:
    schema: dict[str, Json] = {
        "type": "number",
        ("exclusiveMinimum" if exclusive_low else "minimum"): low,
        "maximum": high,
    }
    if step is not None:
        schema["multipleOf"] = step
    scale = 4 if step is None else round(1 / step)
    first = int(low * scale) + (1 if exclusive_low else 0)
    valid = st.integers(first, int(high * scale)).map(lambda n: n / scale if scale != 1 else n)
    bad: list[Json] = [high + 1, low - 1, str(high)]
    if exclusive_low:
        bad.append(low)
    return Node(schema, valid, _wrong("number") | st.sampled_from(bad))


def _boolean() -> Node:
    return Node({"type": "boolean"}, st.booleans(), _wrong("boolean") | st.sampled_from(["true", 0]))


def _tags(style: Style) -> Node:
    item = Node({"type": "string"}, _SLUG, _wrong("string"))
    return array_node(item, max_items=5, unique=not style.strict_only)


FIELDS: dict[str, str] = {
    "id": "code", "order_id": "code", "sku": "code", "user_id": "uuid", "event_id": "uuid", "session_id": "uuid",
    "name": "text", "title": "text", "description": "text", "city": "text", "company": "text", "comment": "text",
    "currency": "currency", "postal_code": "zip", "color": "color", "version": "semver",
    "email": "email", "contact_email": "email", "homepage": "uri", "page_url": "uri", "avatar_url": "uri",
    "created_at": "date-time", "updated_at": "date-time", "collector_tstamp": "date-time", "due_date": "date",
    "birth_date": "date", "ip_address": "ipv4", "host": "hostname", "ttl": "duration",
    "quantity": "count", "retries": "count", "replicas": "count", "port": "port", "age": "age",
    "price": "money", "amount": "money", "total": "money", "score": "ratio", "latitude": "lat", "longitude": "lon",
    "enabled": "bool", "is_active": "bool", "verified": "bool", "private": "bool",
    "status": "status", "priority": "priority", "platform": "platform", "protocol": "protocol", "tags": "tags",
    "filter_regex": "regex",
}  # fmt: skip
"""Realistic field names and the kind of value each holds."""
ENUMS = {
    "status": ["draft", "open", "paid", "cancelled"],
    "priority": ["low", "medium", "high", "urgent"],
    "platform": ["web", "mob", "pc", "srv", "app", "tv", "cnsl", "iot"],
    "protocol": ["TCP", "UDP", "SCTP"],
}


def scalar_node(draw: st.DrawFn, field: str, style: Style) -> Node:
    """The node a field of this name holds, in the style's dialect."""
    kind = FIELDS[field]
    if kind in ENUMS:
        return _enum(ENUMS[kind])
    if kind == "text":
        return _text(draw, style)
    if kind in _PATTERNS:
        return _patterned(kind)
    if kind in ("uuid", "email", "uri", "date-time", "date", "ipv4", "hostname", "duration", "regex"):
        return _formatted(kind, style)
    numbers: dict[str, Callable[[], Node]] = {
        "count": lambda: _integer(0, 1000),
        "port": lambda: _integer(1, 65535, None if style.strict_only else "int32"),
        "age": lambda: _integer(0, 150),
        "money": lambda: _number(0, 10_000, step=0.25),
        "ratio": lambda: _number(0, 1),
        "lat": lambda: _number(-90, 90),
        "lon": lambda: _number(-180, 180),
    }
    if kind in numbers:
        return numbers[kind]()
    if kind == "bool":
        return _boolean()
    return _tags(style)


def nullable(node: Node, draw: st.DrawFn) -> Node:
    """The node admitting null too: ``type: [T, "null"]`` or an ``anyOf`` with a null branch."""
    schema = node.schema
    if isinstance(schema.get("type"), str) and "enum" not in schema and draw(st.booleans()):
        wrapped = {**schema, "type": [schema["type"], "null"]}
    else:
        wrapped = {"anyOf": [schema, {"type": "null"}]}
    invalid = node.invalid.filter(lambda v: v is not None) if node.invalid is not None else None
    return Node(wrapped, st.none() | node.valid, invalid)


# -- containers ------------------------------------------------------------------------------------------------------

JSON_VALUES: st.SearchStrategy[Json] = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_SLUG, inner, max_size=3),
    max_leaves=6,
)
"""Any JSON value, small."""


def _canonical(value: Json) -> str:
    return json.dumps(value, sort_keys=True)


def array_node(item: Node, *, min_items: int = 0, max_items: int | None = None, unique: bool = False) -> Node:
    schema: dict[str, Json] = {"type": "array", "items": item.schema}
    if min_items:
        schema["minItems"] = min_items
    if max_items is not None:
        schema["maxItems"] = max_items
    if unique:
        schema["uniqueItems"] = True
    top = min(max_items if max_items is not None else 3, 3)
    valid = st.lists(
        item.valid, min_size=min_items, max_size=max(top, min_items), unique_by=_canonical if unique else None
    )
    options: list[st.SearchStrategy[Json]] = [_wrong("array")]
    if item.invalid is not None:
        options.append(st.tuples(valid, item.invalid).map(lambda p: [*p[0], p[1]]))
    if min_items:
        options.append(st.just([]))
    if max_items is not None:
        options.append(st.lists(item.valid, min_size=max_items + 1, max_size=max_items + 1))
    if unique:
        options.append(item.valid.map(lambda v: [v, v]))
    return Node(schema, valid, st.one_of(options))


def _setter(key: str) -> Callable[[tuple[Json, Json]], Json]:
    """``(object, value) -> object with key set to value``, for ``st.tuples(...).map``."""
    return lambda pair: {**pair[0], key: pair[1]}


def _replacer(index: int) -> Callable[[tuple[list[Json], Json]], list[Json]]:
    """``(list, value) -> list with the item at index replaced``."""
    return lambda pair: [*pair[0][:index], pair[1], *pair[0][index + 1 :]]


def object_node(
    props: dict[str, Node], required: list[str], *, closed: bool, extra: dict[str, Json] | None = None
) -> Node:
    """An object of these properties; ``closed`` sets ``additionalProperties: false``, else extra keys may come."""
    schema: dict[str, Json] = {"type": "object", "properties": {k: n.schema for k, n in props.items()}}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra or {})
    valid: st.SearchStrategy[dict[str, Json]] = st.fixed_dictionaries(
        {k: n.valid for k, n in props.items() if k in required},
        optional={k: n.valid for k, n in props.items() if k not in required},
    )
    if not closed:
        extras = st.dictionaries(st.sampled_from([k for k in EXTRA_KEYS if k not in props]), JSON_VALUES, max_size=2)
        valid = st.tuples(valid, extras).map(lambda p: {**p[0], **p[1]})
    options: list[st.SearchStrategy[Json]] = [_wrong("object")]
    if required:
        options.append(
            st.tuples(valid, st.sampled_from(required)).map(lambda p: {k: v for k, v in p[0].items() if k != p[1]})
        )
    for key, node in props.items():
        if node.invalid is not None:
            options.append(st.tuples(valid, node.invalid).map(_setter(key)))
    if closed:
        options.append(valid.map(lambda d: {**d, "unexpected_field": 1}))
    return Node(schema, valid, st.one_of(options))


def _field_names(draw: st.DrawFn, style: Style, avoid: frozenset[str] = frozenset()) -> list[str]:
    names = [name for name in FIELDS if name not in avoid]
    return draw(st.lists(st.sampled_from(names), min_size=style.min_props, max_size=style.max_props, unique=True))


def _required(draw: st.DrawFn, names: list[str], style: Style) -> list[str]:
    if style.all_required:
        return list(names)
    return [name for name in names if draw(st.booleans())]


def _closed(draw: st.DrawFn, style: Style) -> bool:
    return draw(st.booleans()) if style.closed is None else style.closed


def _describe(draw: st.DrawFn, node: Node, name: str) -> Node:
    if isinstance(node.schema, dict) and draw(st.integers(0, 9)) < 3:
        return replace(node, schema={**node.schema, "description": f"The {name.replace('_', ' ')}."})
    return node


def flat_props(draw: st.DrawFn, style: Style, avoid: frozenset[str] = frozenset()) -> dict[str, Node]:
    """Scalar fields (and tag lists) with realistic names, some nullable, some described."""
    props = {}
    for name in _field_names(draw, style, avoid):
        node = scalar_node(draw, name, style)
        if style.nullable and draw(st.integers(0, 99)) < style.nullable * 100:
            node = nullable(node, draw)
        props[name] = _describe(draw, node, name)
    return props


CONTAINERS = ("customer", "address", "shipping", "billing", "device", "line_items", "attachments", "contacts")
LIST_CONTAINERS = frozenset({"line_items", "attachments", "contacts"})
LEVELS = (
    "spec", "template", "config", "settings", "details", "owner", "location", "geo", "source", "payload", "context",
    "parent", "profile", "account", "organisation", "unit",
)  # fmt: skip


def tree_node(draw: st.DrawFn, style: Style, depth: int) -> Node:
    """Scalar fields plus up to two nested objects or arrays of objects, ``depth`` object levels at most."""
    props = flat_props(draw, style)
    if depth > 1:
        for name in draw(st.lists(st.sampled_from(CONTAINERS), max_size=2, unique=True)):
            child = tree_node(draw, replace(style, min_props=1, max_props=4), depth - 1)
            props[name] = array_node(child, max_items=3) if name in LIST_CONTAINERS else child
    return object_node(props, _required(draw, list(props), style), closed=_closed(draw, style))


def _with_schema(node: Node, **keywords: Json) -> Node:
    return replace(node, schema={**keywords, **node.schema})


# -- kinds -----------------------------------------------------------------------------------------------------------

Case = tuple[Json, list[Json], list[Json]]


def _case(draw: st.DrawFn, node: Node, *, satisfiable: bool = True) -> Case:
    """The schema and candidate instances (filtered later against jsonschema)."""
    valid = draw(st.lists(node.valid, min_size=CANDIDATES, max_size=CANDIDATES)) if satisfiable else []
    assert node.invalid is not None
    invalid = draw(st.lists(node.invalid, min_size=CANDIDATES, max_size=CANDIDATES))
    return node.schema, valid, invalid


@st.composite
def plain_objects(draw: st.DrawFn) -> Case:
    """Strict-friendly: closed objects, every property required, keywords strict mode has."""
    return _case(draw, tree_node(draw, Style(nullable=0.15), draw(st.integers(1, 3))))


@st.composite
def optional_fields(draw: st.DrawFn) -> Case:
    style = Style(all_required=False, closed=None, nullable=0.2)
    return _case(draw, tree_node(draw, style, draw(st.integers(1, 3))))


@st.composite
def nested_deep(draw: st.DrawFn) -> Case:
    """A chain of 4 to 15 object levels (sometimes through arrays), each level with a few scalar fields."""
    depth = draw(st.integers(4, 15))
    style = Style(all_required=draw(st.booleans()), closed=None, min_props=1, max_props=3)
    node = tree_node(draw, style, 1)
    names = draw(st.lists(st.sampled_from(LEVELS), min_size=depth - 1, max_size=depth - 1))
    for name in names:
        props = flat_props(draw, replace(style, max_props=2))
        props[name] = array_node(node, max_items=2) if draw(st.integers(0, 5)) == 0 else node
        required = _required(draw, list(props), style)
        if name not in required and draw(st.booleans()):
            required.append(name)
        node = object_node(props, required, closed=_closed(draw, style))
    return _case(draw, node)


@st.composite
def roots_nonobject(draw: st.DrawFn) -> Case:
    """A root that is no plain object: an array, a scalar, a union, ``type: ["object"]``, an object or null, a tuple."""
    style = Style(nullable=0.1)
    shape = draw(st.sampled_from(["objects", "scalars", "scalar", "union", "object-list", "object-or-null", "tuple"]))
    if shape == "objects":
        node = array_node(tree_node(draw, style, draw(st.integers(1, 2))), min_items=draw(st.integers(0, 1)))
    elif shape in ("scalars", "scalar"):
        scalar = scalar_node(draw, draw(st.sampled_from(sorted(FIELDS))), style)
        node = array_node(scalar, max_items=draw(st.sampled_from([None, 5]))) if shape == "scalars" else scalar
    elif shape == "union":
        left, right = tree_node(draw, style, 1), scalar_node(draw, draw(st.sampled_from(sorted(FIELDS))), style)
        assert left.invalid is not None
        assert right.invalid is not None
        node = Node({"anyOf": [left.schema, right.schema]}, left.valid | right.valid, left.invalid | right.invalid)
    elif shape == "object-list":
        obj = tree_node(draw, style, 2)
        node = replace(obj, schema={**obj.schema, "type": ["object"]})
    elif shape == "object-or-null":
        obj = tree_node(draw, style, 2)
        assert obj.invalid is not None
        node = Node(
            {**obj.schema, "type": ["object", "null"]},
            st.none() | obj.valid,
            obj.invalid.filter(lambda v: v is not None),
        )
    else:
        items = [
            scalar_node(draw, name, style)
            for name in draw(st.lists(st.sampled_from(sorted(FIELDS)), min_size=2, max_size=3))
        ]
        schema = {
            "$schema": D2020,
            "type": "array",
            "prefixItems": [n.schema for n in items],
            "items": False,
            "minItems": len(items),
        }
        valid = st.tuples(*(n.valid for n in items)).map(list)
        options = [valid.map(lambda v: [*v, "extra"]), valid.map(lambda v: v[:-1]), _wrong("array")]
        for index, item in enumerate(items):
            if item.invalid is not None:
                options.append(st.tuples(valid, item.invalid).map(_replacer(index)))
        invalid = st.one_of(options)
        node = Node(schema, valid, invalid)
    return _case(draw, _describe(draw, node, "answer"))


_MAP_KEYS = {
    "^x-[a-z]+$": st.from_regex("^x-[a-z]{1,8}$", fullmatch=True),
    "^[a-z]{2}(-[A-Z]{2})?$": st.sampled_from(["en", "fr", "de-CH", "pt-BR", "ja"]),
    "^[0-9]+$": st.integers(0, 9999).map(str),
    "^dimension[0-9]{1,3}$": st.integers(1, 200).map(lambda n: f"dimension{n}"),
}
MAP_NAMES = ("labels", "attributes", "counts", "translations", "headers", "prices_by_region", "features")


def map_node(draw: st.DrawFn, value: Node, *, declared: dict[str, Node] | None = None) -> Node:
    """A typed map: ``additionalProperties`` or ``patternProperties`` (closed to other keys), maybe beside fields."""
    declared = declared or {}
    assert value.invalid is not None
    if draw(st.booleans()):
        pattern = draw(st.sampled_from(sorted(_MAP_KEYS)))
        keys = _MAP_KEYS[pattern]
        schema: dict[str, Json] = {
            "type": "object",
            "patternProperties": {pattern: value.schema},
            "additionalProperties": False,
        }
        bad_key: Json = "Not A Valid Key"
    else:
        keys = _SLUG.filter(lambda k: k not in declared)
        schema = {"type": "object", "additionalProperties": value.schema}
        bad_key = None
    if declared:
        schema["properties"] = {k: n.schema for k, n in declared.items()}
        schema["required"] = list(declared)
    fields = st.fixed_dictionaries({k: n.valid for k, n in declared.items()})
    valid = st.tuples(fields, st.dictionaries(keys, value.valid, max_size=3)).map(lambda p: {**p[1], **p[0]})
    options = [_wrong("object"), st.tuples(valid, keys, value.invalid).map(lambda p: {**p[0], p[1]: p[2]})]
    if bad_key is not None:
        options.append(st.tuples(valid, value.valid).map(lambda p: {**p[0], "Not A Valid Key": p[1]}))
    return Node(schema, valid, st.one_of(options))


@st.composite
def maps(draw: st.DrawFn) -> Case:
    style = Style(nullable=0.1, max_props=4)
    value = (
        tree_node(draw, replace(style, max_props=3), 1)
        if draw(st.booleans())
        else scalar_node(draw, draw(st.sampled_from(sorted(FIELDS))), style)
    )
    shape = draw(st.sampled_from(["root", "beside-fields", "property"]))
    if shape == "root":
        return _case(draw, map_node(draw, value))
    if shape == "beside-fields":
        return _case(draw, map_node(draw, value, declared=flat_props(draw, replace(style, min_props=1, max_props=2))))
    props = flat_props(draw, style)
    props[draw(st.sampled_from(MAP_NAMES))] = map_node(draw, value)
    return _case(draw, object_node(props, _required(draw, list(props), Style(all_required=False)), closed=True))


@st.composite
def allof(draw: st.DrawFn) -> Case:
    """``allOf`` of open same-type parts, sometimes through ``$ref``, with an enum or a ``oneOf`` discriminator part."""
    style = Style(all_required=False, closed=False, max_props=6, nullable=0.1)
    props = flat_props(draw, style)
    required = _required(draw, list(props), style)
    names = list(props)
    cut = draw(st.integers(1, max(1, len(names) - 1)))
    groups = [names[:cut], names[cut:]] if names[cut:] else [names]
    parts: list[dict[str, Json]] = []
    for group in groups:
        part: dict[str, Json] = {"type": "object", "properties": {k: props[k].schema for k in group}}
        if [k for k in group if k in required]:
            part["required"] = [k for k in group if k in required]
        parts.append(part)
    base = object_node(props, required, closed=False)
    valid, invalid = base.valid, base.invalid
    assert invalid is not None
    extra = draw(st.sampled_from(["none", "enum", "discriminator", "numeric"]))
    text_fields = [k for k in names if props[k].schema.get("type") == "string" and FIELDS[k] == "text"]
    if extra == "enum" and text_fields:
        key = draw(st.sampled_from(text_fields))
        choices = draw(st.lists(st.sampled_from(WORDS), min_size=2, max_size=4, unique=True))
        parts.append({"properties": {key: {"enum": choices}}})
        valid = st.tuples(valid, st.sampled_from(choices)).map(lambda p: {**p[0], key: p[1]} if key in p[0] else p[0])
        invalid = invalid | valid.map(lambda d: {**d, key: "not-a-choice"})
    elif extra == "discriminator":
        fields = draw(
            st.lists(st.sampled_from([k for k in FIELDS if k not in props]), min_size=2, max_size=3, unique=True)
        )
        kinds = [f"type_{chr(97 + i)}" for i in range(len(fields))]
        nodes = [scalar_node(draw, field, style) for field in fields]
        parts.append(
            {
                "oneOf": [
                    {"properties": {"kind": {"const": kind}, field: node.schema}, "required": ["kind", field]}
                    for kind, field, node in zip(kinds, fields, nodes, strict=True)
                ]
            }
        )
        branches = [
            node.valid.map(_branch(kind, field)) for kind, field, node in zip(kinds, fields, nodes, strict=True)
        ]
        branch = st.one_of(branches)
        valid = st.tuples(valid, branch).map(lambda p: {**p[0], **p[1]})
        invalid = (
            invalid
            | valid.map(lambda d: {**d, "kind": "type_z"})
            | valid.map(lambda d: {k: v for k, v in d.items() if k != "kind"})
        )
    elif extra == "numeric":
        parts.append(
            {
                "properties": {
                    "quantity": {"allOf": [{"type": "integer", "minimum": 0}, {"multipleOf": 5}, {"maximum": 500}]}
                }
            }
        )
        valid = st.tuples(valid, st.integers(0, 100)).map(lambda p: {**p[0], "quantity": p[1] * 5})
        invalid = invalid | valid.map(lambda d: {**d, "quantity": 7}) | valid.map(lambda d: {**d, "quantity": 505})
    schema: dict[str, Json] = {"allOf": parts}
    if draw(st.booleans()):
        schema = {"$defs": {"Base": parts[0]}, "allOf": [{"$ref": "#/$defs/Base"}, *parts[1:]]}
    if draw(st.booleans()):
        schema["type"] = "object"
    return _case(draw, Node(schema, valid, invalid))


def _branch(kind: str, field: str) -> Callable[[Json], dict[str, Json]]:
    return lambda value: {"kind": kind, field: value}


DEF_NAMES = ("Address", "LineItem", "Money", "Customer", "Tag", "Dimensions", "Contact", "GeoPoint")
ODD_NAMES = ("Line Item", "money/amount", "tag~v1", "Größe", "Customer%Record", "io.k8s.api.core.v1.Probe")


def _pointer_token(name: str) -> str:
    return quote(name.replace("~", "~0").replace("/", "~1"), safe="~")


@st.composite
def refs(draw: st.DrawFn) -> Case:
    """Definitions in ``$defs``, ``definitions``, ``components/schemas`` or nested, odd names, recursion."""
    style = Style(all_required=draw(st.booleans()), closed=None, max_props=4, nullable=0.1)
    container = draw(st.sampled_from(["$defs", "definitions", "components/schemas", "definitions/Shared/definitions"]))
    names = draw(st.lists(st.sampled_from(DEF_NAMES + ODD_NAMES), min_size=1, max_size=3, unique=True))
    defs = {name: tree_node(draw, replace(style, min_props=1, max_props=3), draw(st.integers(1, 2))) for name in names}
    pointer = "#/" + container + "/"
    root_props = flat_props(draw, style)
    for name, node in defs.items():
        ref: dict[str, Json] = {"$ref": pointer + _pointer_token(name)}
        if draw(st.integers(0, 3)) == 0:
            ref["description"] = f"The {name.lower()}."
        field = draw(st.sampled_from(CONTAINERS).filter(lambda k: k not in root_props))
        as_ref = Node(ref, node.valid, node.invalid)
        root_props[field] = array_node(as_ref, max_items=3) if field in LIST_CONTAINERS else as_ref
    if draw(st.booleans()):
        leaf = {"name": _TEXT, "subcategories": st.just([])}
        tree = st.recursive(
            st.fixed_dictionaries(leaf),
            lambda inner: st.fixed_dictionaries({"name": _TEXT, "subcategories": st.lists(inner, max_size=2)}),
            max_leaves=4,
        )
        children = {"type": "array", "items": {"$ref": pointer + "Category"}}
        category = {
            "type": "object",
            "properties": {"name": {"type": "string"}, "subcategories": children},
            "required": ["name", "subcategories"],
            "additionalProperties": False,
        }
        defs["Category"] = Node(category, tree, None)
        bad = st.sampled_from(
            [{"name": 1, "subcategories": []}, {"name": "a"}, {"name": "a", "subcategories": [{"name": "b"}]}]
        )
        root_props["category"] = Node({"$ref": pointer + "Category"}, tree, bad)
    root = object_node(root_props, _required(draw, list(root_props), style), closed=_closed(draw, style))
    schema = dict(root.schema)
    store: dict[str, Json] = {name: node.schema for name, node in defs.items()}
    for segment in reversed(container.split("/")):
        store = {segment: store}
    schema = {**store, **schema}
    if container == "definitions/Shared/definitions":
        schema["definitions"]["Shared"]["type"] = "object"
    if container in ("definitions", "definitions/Shared/definitions"):
        schema = {"$schema": D7, **schema}
    return _case(draw, Node(schema, root.valid, root.invalid))


_ANY_OBJECTS = st.dictionaries(_SLUG, JSON_VALUES, max_size=3)
_ANY_ARRAYS = st.lists(JSON_VALUES, max_size=3)
ANY_SHAPES: tuple[tuple[Json, st.SearchStrategy[Json], st.SearchStrategy[Json] | None], ...] = (
    ({}, JSON_VALUES, None),
    ({"description": "Any JSON value the source system attached."}, JSON_VALUES, None),
    (True, JSON_VALUES, None),
    ({"type": "object"}, _ANY_OBJECTS, _wrong("object")),
    ({"type": "object", "description": "Free-form key/value pairs."}, _ANY_OBJECTS, _wrong("object")),
    ({"type": "array"}, _ANY_ARRAYS, _wrong("array")),
    ({"type": "array", "items": {}}, _ANY_ARRAYS, _wrong("array")),
    ({"type": ["object", "array"]}, _ANY_OBJECTS | _ANY_ARRAYS, st.sampled_from([1, "x", None])),
)
ANY_NAMES = ("payload", "data", "extra", "raw", "context", "value", "details", "result")


@st.composite
def any_value(draw: st.DrawFn) -> Case:
    """Objects with one or two properties of any value: ``{}``, ``true``, bare ``object``/``array``, untyped."""
    style = Style(all_required=draw(st.booleans()), closed=None, max_props=4)
    props = flat_props(draw, style)
    for name in draw(st.lists(st.sampled_from(ANY_NAMES), min_size=1, max_size=2, unique=True)):
        schema, valid, invalid = draw(st.sampled_from(ANY_SHAPES))
        props[name] = Node(schema, valid, invalid)
    required = _required(draw, list(props), style)
    if not required:
        required = [next(iter(props))]
    return _case(draw, object_node(props, required, closed=_closed(draw, style)))


@st.composite
def open_objects(draw: st.DrawFn) -> Case:
    """Declared properties on open objects (``additionalProperties`` true, ``{}`` or absent), ``properties: {}``."""
    style = Style(all_required=draw(st.booleans()), closed=False, max_props=5, nullable=0.1)
    node = tree_node(draw, style, draw(st.integers(1, 3)))
    spelling = draw(st.sampled_from(["absent", "true", "empty"]))
    spellings: dict[str, dict[str, Json]] = {
        "absent": {},
        "true": {"additionalProperties": True},
        "empty": {"additionalProperties": {}},
    }
    extra = spellings[spelling]
    if draw(st.integers(0, 3)) == 0:
        config = Node(
            {"type": "object", "properties": {}}, st.dictionaries(_SLUG, JSON_VALUES, max_size=3), _wrong("object")
        )
        wrapper = object_node(
            {"settings": config, "name": Node({"type": "string"}, _TEXT, _wrong("string"))},
            ["settings", "name"],
            closed=False,
        )
        assert node.invalid is not None
        assert wrapper.invalid is not None
        schema = {**node.schema, "properties": {**node.schema["properties"], "plugin": wrapper.schema}}
        valid = st.tuples(node.valid, wrapper.valid).map(lambda p: {**p[0], "plugin": p[1]})
        invalid = node.invalid | st.tuples(node.valid, wrapper.invalid).map(lambda p: {**p[0], "plugin": p[1]})
        node = Node(schema, valid, invalid)
    return _case(draw, replace(node, schema={**node.schema, **extra}))


@st.composite
def constraints(draw: st.DrawFn) -> Case:
    """Keywords strict mode lacks: dependencies, min/maxProperties, not, if/then/else, formats, lengths, uniqueness."""
    style = Style(all_required=False, closed=None, strict_only=False, min_props=3, max_props=7, nullable=0.1)
    props = flat_props(draw, style)
    if draw(st.booleans()):
        props["filter_regex"] = scalar_node(draw, "filter_regex", style)
    required = _required(draw, list(props), style)
    node = object_node(props, required, closed=_closed(draw, style))
    schema = dict(node.schema)
    optional = [k for k in props if k not in required]
    chosen = draw(
        st.lists(st.sampled_from(["dependent", "count", "not", "if", "names"]), min_size=1, max_size=3, unique=True)
    )
    if "dependent" in chosen and len(optional) >= 2:
        first, second = draw(st.lists(st.sampled_from(optional), min_size=2, max_size=2, unique=True))
        if draw(st.booleans()):
            schema.update({"$schema": D7, "dependencies": {first: [second]}})
        else:
            schema["dependentRequired"] = {first: [second]}
    if "count" in chosen:
        schema["minProperties"] = len(required) + 1
        schema["maxProperties"] = max(len(props) - 1, len(required) + 1)
    strings = [k for k in props if props[k].schema.get("type") == "string"]
    if "not" in chosen and strings:
        key = draw(st.sampled_from(strings))
        schema["properties"] = {
            **schema["properties"],
            key: {**props[key].schema, "not": {"enum": ["", "n/a", "none"]}},
        }
    enums = [k for k in props if "enum" in props[k].schema]
    if "if" in chosen and enums and optional:
        key, target = draw(st.sampled_from(enums)), draw(st.sampled_from(optional))
        value = props[key].schema["enum"][0]
        schema["if"] = {"properties": {key: {"const": value}}, "required": [key]}
        schema["then"] = {"required": [target]}
        if draw(st.booleans()):
            schema["else"] = {"not": {"required": [target]}}
    if "names" in chosen and schema.get("additionalProperties") is not False:
        schema["propertyNames"] = {"pattern": "^[a-z_][a-z0-9_]*$"}
    assert node.invalid is not None
    return _case(draw, Node(schema, node.valid, node.invalid | node.valid.map(lambda d: {**d, "Bad-Key": 1})))


TAXONOMY = (
    ("Apparel & Accessories", "Electronics", "Home & Garden", "Sporting Goods", "Health & Beauty", "Toys & Games"),
    ("Clothing", "Audio", "Kitchen & Dining", "Outdoor Recreation", "Personal Care", "Puzzles"),
    ("Outerwear", "Headphones", "Cookware", "Camping & Hiking", "Cosmetics", "Jigsaw Puzzles", "Replacement Parts"),
    ("Coats & Jackets", "Cases & Covers", "Storage", "Tents", "Gift Sets", "Accessories"),
)
CODE_PREFIXES = ("SKU", "CITY", "ICD10", "NAICS", "GTIN", "ROUTE")


@st.composite
def limits(draw: st.DrawFn) -> Case:
    """Beyond the API's limits: big enums, long string enums, deep nesting, many properties, long names."""
    shape = draw(st.sampled_from(["enum", "long-enum", "deep", "properties", "enum-total", "names"]))
    base = flat_props(draw, Style(max_props=3))
    if shape == "enum":
        prefix, count = draw(st.sampled_from(CODE_PREFIXES)), draw(st.integers(1001, 2500))
        values = [f"{prefix}-{n:05d}" for n in range(1, count + 1)]
        base["code"] = Node(
            {"type": "string", "enum": values}, st.sampled_from(values), st.sampled_from([f"{prefix}-99999", 1])
        )
    elif shape == "long-enum":
        count = draw(st.integers(300, 500))
        values = [" > ".join(path) for path in itertools.product(*TAXONOMY)][:count]
        base["category"] = Node(
            {"type": "string", "enum": values}, st.sampled_from(values), st.sampled_from(["Clothing", 3])
        )
    elif shape == "deep":
        node = object_node(
            {"value": Node({"type": "integer"}, st.integers(), _wrong("integer"))}, ["value"], closed=True
        )
        for level in range(draw(st.integers(11, 20)) - 1):
            node = object_node(
                {LEVELS[level % len(LEVELS)] + f"_{level}": node},
                [LEVELS[level % len(LEVELS)] + f"_{level}"],
                closed=True,
            )
        base["tree"] = node
    elif shape == "properties":
        count = draw(st.integers(5001, 5400))
        fields = {
            f"col_{n:05d}": Node(
                {"type": ["number", "null"]},
                st.none() | st.integers(0, 9),
                _wrong("number").filter(lambda v: v is not None),
            )
            for n in range(count)
        }
        sample = list(fields)[:: max(1, count // 6)]
        valid = st.fixed_dictionaries({}, optional={k: fields[k].valid for k in sample})
        invalid: st.SearchStrategy[Json] = st.sampled_from(sample).map(lambda k: {k: "text"}) | st.just([])
        base["row"] = Node(
            {"type": "object", "properties": {k: n.schema for k, n in fields.items()}, "additionalProperties": False},
            valid,
            invalid,
        )
    elif shape == "enum-total":
        for k in range(draw(st.integers(6, 8))):
            values = [f"d{k}-{v:03d}" for v in range(200)]
            base[f"dimension_{k}"] = Node(
                {"type": "string", "enum": values}, st.sampled_from(values), st.just(f"d{k}-999")
            )
    else:
        count = draw(st.integers(1800, 2400))
        fields = {
            f"measurement_{'x' * 52}_{n:05d}": Node({"type": "number"}, st.integers(0, 9), st.just("n/a"))
            for n in range(count)
        }
        sample = list(fields)[:3]
        valid = st.fixed_dictionaries({}, optional={k: fields[k].valid for k in sample})
        invalid = st.sampled_from(sample).map(lambda k: {k: "n/a"})
        base["readings"] = Node(
            {"type": "object", "properties": {k: n.schema for k, n in fields.items()}}, valid, invalid
        )
    return _case(draw, object_node(base, list(base), closed=True))


def _draft_features(draw: st.DrawFn, draft: str, props: dict[str, Node], schema: dict[str, Json]) -> dict[str, Json]:
    """Add the keywords of one draft, in its own spelling, to an object schema."""
    defs_key = "definitions" if draft in (D4, D6, D7) else "$defs"
    key = draw(st.sampled_from(sorted(props)))
    schema[defs_key] = {key.title().replace("_", ""): props[key].schema}
    schema["properties"] = {**schema["properties"], key: {"$ref": f"#/{defs_key}/{key.title().replace('_', '')}"}}
    if draft == D4:
        schema["properties"]["discount_rate"] = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1}
        schema["id"] = "http://example.com/schemas/order.json"
    else:
        schema["properties"]["discount_rate"] = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
        schema["$id"] = "https://example.com/schemas/order.json"
    optional = [k for k in props if k not in schema.get("required", [])]
    if len(optional) >= 2:
        first, second = optional[:2]
        if draft in (D4, D6, D7):
            schema["dependencies"] = {first: [second]}
        else:
            schema["dependentRequired"] = {first: [second]}
    pair = [{"type": "number"}, {"type": "number"}]
    if draft == D2020:
        schema["properties"]["dimensions"] = {"type": "array", "prefixItems": pair, "items": False}
    elif draft != D4 and draw(st.booleans()):
        schema["properties"]["dimensions"] = {"type": "array", "items": pair, "additionalItems": False}
    if draft in (D6, D7, D2019, D2020):
        schema["properties"]["schema_version"] = {"const": 2}
    if draft == D7 and optional:
        schema["if"] = {"properties": {"schema_version": {"const": 2}}, "required": ["schema_version"]}
        schema["then"] = {"required": [optional[-1]]}
    return schema


@st.composite
def drafts(draw: st.DrawFn) -> Case:
    """One object per draft, using that draft's spellings (boolean exclusiveMinimum, definitions vs $defs ...)."""
    draft = draw(st.sampled_from([D4, D6, D7, D2019, D2020]))
    style = Style(all_required=False, closed=None, strict_only=False, min_props=3, max_props=6)
    props = flat_props(draw, style)
    node = object_node(props, _required(draw, list(props), style), closed=False)
    schema = _draft_features(draw, draft, props, {"$schema": draft, **node.schema})
    rate = st.integers(1, 100).map(lambda n: n / 100)
    dims = st.lists(st.integers(0, 500), min_size=2, max_size=2)
    valid = st.tuples(node.valid, rate, dims).map(
        lambda p: {**p[0], "discount_rate": p[1], "dimensions": p[2], "schema_version": 2}
    )
    valid = valid | node.valid
    assert node.invalid is not None
    invalid = (
        node.invalid
        | valid.map(lambda d: {**d, "discount_rate": 0})
        | valid.map(lambda d: {**d, "dimensions": [1, 2, 3]})
    )
    invalid |= valid.map(lambda d: {**d, "schema_version": 3})
    return _case(draw, Node(schema, valid, invalid))


IMPOSSIBLE: tuple[tuple[str, Json], ...] = (
    ("minimum above maximum", {"type": "integer", "minimum": 10, "maximum": 5}),
    ("string with integer enum", {"type": "string", "enum": [1, 2]}),
    ("false", False),
    ("allOf of integer and string", {"allOf": [{"type": "integer"}, {"type": "string"}]}),
    ("minItems above maxItems", {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 1}),
    ("const of another type", {"type": "integer", "const": "x"}),
    ("empty enum", {"enum": []}),
    ("minLength above maxLength", {"type": "string", "minLength": 5, "maxLength": 2}),
    ("exclusive bound equal to the other", {"type": "number", "exclusiveMinimum": 5, "maximum": 5}),
    ("null with a non-null enum", {"type": "null", "enum": ["x"]}),
    ("not anything", {"not": {}}),
)
IMPOSSIBLE_NAMES = ("checksum", "region_code", "batch_size", "signature", "revision")


@st.composite
def unsatisfiable(draw: st.DrawFn) -> Case:
    """A realistic object with one impossible property, required at every level down to it."""
    style = Style(max_props=4)
    props = flat_props(draw, style)
    _, impossible = draw(st.sampled_from(IMPOSSIBLE))
    name = draw(st.sampled_from(IMPOSSIBLE_NAMES))
    inner = Node(impossible, st.nothing(), JSON_VALUES)
    if draw(st.booleans()):
        child = flat_props(draw, replace(style, min_props=1, max_props=2))
        child[name] = inner
        holder = draw(st.sampled_from(CONTAINERS))
        props[holder] = object_node(child, list(child), closed=draw(st.booleans()))
    else:
        props[name] = inner
    node = object_node(props, list(props), closed=draw(st.booleans()))
    fields = {k: n.valid for k, n in props.items() if k not in (name, "customer", "address")}
    invalid = st.tuples(st.fixed_dictionaries(fields), JSON_VALUES).map(lambda p: {**p[0], name: p[1]}) | _wrong(
        "object"
    )
    return _case(draw, Node(node.schema, st.nothing(), invalid), satisfiable=False)


KIND_STRATEGIES: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "plain-objects": plain_objects,
    "optional-fields": optional_fields,
    "nested-deep": nested_deep,
    "roots-nonobject": roots_nonobject,
    "maps": maps,
    "allof": allof,
    "refs": refs,
    "any-value": any_value,
    "open-objects": open_objects,
    "constraints": constraints,
    "limits": limits,
    "drafts": drafts,
    "unsatisfiable": unsatisfiable,
}


# -- collection ------------------------------------------------------------------------------------------------------


def seed_of(kind: str) -> int:
    return SEED_BASE + list(PER_KIND).index(kind) + 1


def draw_cases(kind: str) -> list[Case]:
    """Every case hypothesis draws for ``kind`` under its fixed seed, in order."""
    drawn: list[Case] = []

    @settings(
        max_examples=PER_KIND[kind] * 8,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @seed(seed_of(kind))
    @given(KIND_STRATEGIES[kind]())
    def collect(case: Case) -> None:
        drawn.append(case)

    collect()
    return drawn


def _kept(schema: Json, candidates: list[Json], *, valid: bool) -> list[Json]:
    kept: list[Json] = []
    seen: set[str] = set()
    for instance in candidates:
        key = _canonical(instance)
        if key not in seen and (not instance_errors(schema, instance)) == valid:
            seen.add(key)
            kept.append(instance)
    return kept[:KEEP]


def documents(kind: str) -> dict[str, dict[str, Json]]:
    """File name -> document for ``kind``: the drawn cases that kept enough instances, spread over the run."""
    usable: list[tuple[int, dict[str, Json]]] = []
    seen: set[str] = set()
    for index, (schema, valid, invalid) in enumerate(draw_cases(kind)):
        key = _canonical(schema)
        if key in seen:
            continue
        seen.add(key)
        try:
            validator_class(schema).check_schema(schema)
        except SchemaError:  # a drawn schema jsonschema refuses (a bad pattern) is simply not used
            continue
        good, bad = _kept(schema, valid, valid=True), _kept(schema, invalid, valid=False)
        if kind == "unsatisfiable":
            assert not _kept(schema, invalid, valid=True), "an unsatisfiable case has a valid instance"
            if len(bad) >= 2:
                usable.append((index, {"schema": schema, "valid": [], "invalid": bad}))
        elif len(good) >= 2 and len(bad) >= 2:
            usable.append((index, {"schema": schema, "valid": good, "invalid": bad}))
    want = PER_KIND[kind]
    if len(usable) < want:
        raise SystemExit(f"{kind}: only {len(usable)} usable cases of {want} wanted")
    picks = sorted({round(i * (len(usable) - 1) / (want - 1)) for i in range(want)})
    out = {}
    for pick in picks:
        index, document = usable[pick]
        out[f"gen-{seed_of(kind)}-{index:03d}.json"] = {**document, "source": f"generated:{seed_of(kind)}"}
    return out


def render(document: dict[str, Json]) -> str:
    text = json.dumps(document, indent=2, ensure_ascii=False)
    return (text if len(text) <= 200_000 else json.dumps(document, ensure_ascii=False)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="list files that would change; write nothing")
    parser.add_argument("--kind", action="append", choices=sorted(PER_KIND), help="only these kinds")
    args = parser.parse_args(argv)
    changed = 0
    for kind in args.kind or list(PER_KIND):
        folder = CORPUS_DIR / kind
        wanted = {name: render(doc) for name, doc in documents(kind).items()}
        present = {path.name: path for path in folder.glob("gen-*.json")}
        for name, text in wanted.items():
            path = folder / name
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                changed += 1
                print(f"{'differs' if path.exists() else 'missing'}: {kind}/{name}")
                if not args.check:
                    folder.mkdir(exist_ok=True)
                    path.write_text(text, encoding="utf-8")
        for name in sorted(set(present) - set(wanted)):
            changed += 1
            print(f"stale: {kind}/{name}")
            if not args.check:
                present[name].unlink()
        print(f"{kind}: {len(wanted)} generated", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
