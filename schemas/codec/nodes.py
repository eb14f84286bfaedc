"""The codec's graph: one node per place in the strict schema, each with its schema, its encode and its decode.

A node knows three things about its place: the strict JSON Schema it sends (:meth:`Node.emit`), how a value of the
user's shape becomes a value of the strict shape (:meth:`Node.encode`) and the way back (:meth:`Node.decode`).
``decode(encode(x)) == x`` for every ``x`` that ``encode`` accepts, with one documented exception: an optional
property whose own schema allows ``null`` is sent as ``null`` when absent, and stays ``null`` (both are valid).

Decoding is lenient about shape, never about meaning: a value that is not in the strict shape at all (a corrupt
answer) is passed through unchanged for the user's schema to judge, and only what the node itself introduced is
removed or rebuilt (a ``null`` it added, a wrapper, key/value pairs, JSON text). Encoding is strict: a value the
strict shape cannot carry raises :class:`~schemas.codec.errors.CodecError`.

Nodes:

* :class:`Leaf` -- a scalar schema sent as it is (``string``, ``number``, ``enum`` ...); identity both ways.
* :class:`Json` -- any value, sent as a string holding its JSON text; decoded by parsing it (text that is not JSON
  is the string itself).
* :class:`EnumJson` -- an ``enum``/``const`` with object or array values: a string enum of their JSON texts.
* :class:`Array` -- ``items`` converted; :class:`Object` -- declared properties (optional ones nullable) and, for an
  open object, a channel of extra keys; :class:`Pairs` -- an object with free keys (a map) as an array of
  ``{key, value}`` items, rebuilt into an object.
* :class:`Union` -- ``anyOf``; the branch of an answer is told by its JSON type, then by the branch's strict schema.
* :class:`Ref` -- a definition in ``$defs`` (recursion included); :class:`Wrap` -- a root that is not an object, as
  the property ``value`` of one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from schemas.codec.errors import CodecError, data_path, join_data
from schemas.codec.merge import json_type, value_key

__all__ = [
    "ROOT",
    "WRAP_KEY",
    "Array",
    "EnumJson",
    "Graph",
    "Json",
    "Leaf",
    "Node",
    "Object",
    "PairKind",
    "Pairs",
    "Prop",
    "Ref",
    "Union",
    "Wrap",
    "make_nullable",
]

ROOT = "#"
"""The name a reference to the whole source schema goes by."""
WRAP_KEY = "value"
"""The property a wrapped root sits in."""

_NULL_SCHEMA: dict[str, Any] = {"type": "null"}
_ALL_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})

PREFER_ABSENT: ContextVar[bool] = ContextVar("prefer_absent", default=False)
"""While set, an optional property whose own schema allows null and whose answer is null decodes as absent (see
:meth:`schemas.codec.SchemaCodec.check`): absent and null are one answer in the strict shape, and absent is the one
that keeps a schema with ``dependentRequired``/``dependencies`` satisfied."""


def canonical(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _types_of_value(value: Any) -> frozenset[str]:
    kind = json_type(value)
    return frozenset({"integer", "number"}) if kind == "integer" else frozenset({kind})


def same_value(decoded: Any, value: Any) -> bool:
    """``decode(encode(value))`` is ``value``: equal, except that a property absent from ``value`` may come back as
    ``null`` (an optional property whose schema allows null: the one documented normalization)."""
    if isinstance(value, dict) and isinstance(decoded, dict):
        if not value.keys() <= decoded.keys():
            return False
        extra = decoded.keys() - value.keys()
        return all(decoded[k] is None for k in extra) and all(same_value(decoded[k], value[k]) for k in value)
    if isinstance(value, list) and isinstance(decoded, list):
        return len(value) == len(decoded) and all(same_value(d, v) for d, v in zip(decoded, value, strict=True))
    return json_type(decoded) == json_type(value) and decoded == value


def make_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Also accept ``null``: ``anyOf [schema, null]`` (an existing ``anyOf`` gets the branch appended); the
    description moves to the wrapper."""
    out: dict[str, Any] = {}
    if "description" in schema:
        out["description"] = schema["description"]
    inner = {k: v for k, v in schema.items() if k != "description"}
    out["anyOf"] = [*inner["anyOf"], dict(_NULL_SCHEMA)] if inner.keys() == {"anyOf"} else [inner, dict(_NULL_SCHEMA)]
    return out


class Graph:
    """The definitions a graph's :class:`Ref` nodes name, and the strict schema once it is emitted."""

    def __init__(self) -> None:
        self.defs: dict[str, Node] = {}
        self.root: Node | None = None
        """The node of the whole source schema (what :data:`ROOT` names)."""
        self.root_def: str | None = None
        """When the root is wrapped and referenced: the name its node is emitted under in ``$defs``."""
        self.strict: dict[str, Any] | None = None
        self._validator: Draft202012Validator | None = None

    def target(self, name: str) -> Node:
        node = self.root if name == ROOT else self.defs.get(name)
        if node is None:
            raise CodecError("<root>", f"internal: no definition {name!r}")
        return node

    def seal(self, strict: dict[str, Any]) -> None:
        self.strict = strict
        self._validator = Draft202012Validator(strict)

    def strict_problem(self, value: Any) -> tuple[str, str] | None:
        """Why ``value`` is not valid under the whole strict schema, as ``(path, problem)``; None when it is."""
        if self._validator is None:
            return None
        try:
            error = next(iter(self._validator.iter_errors(value)), None)
        except Exception as exc:
            return "<root>", f"strict check failed: {type(exc).__name__}"
        if error is None:
            return None
        return data_path(error.absolute_path), f"the strict shape cannot carry this: {error.message}"

    def fits(self, schema: Any, value: Any) -> bool:
        """Whether ``value`` is valid under a part of the emitted strict schema (its refs resolve in the whole)."""
        if self._validator is None:
            return True
        try:
            return bool(self._validator.evolve(schema=schema).is_valid(value))
        except Exception:
            return False


class Node:
    """One place in the strict schema (see the module docstring)."""

    description: str | None = None
    emitted: dict[str, Any] | None = None
    """The strict schema this node emitted last (what a union's branch is told by)."""
    where: str | None = None
    """Where in the user's schema the node comes from (for the Steps of the limits fitter)."""

    def emit(self, em: Emitter) -> dict[str, Any]:
        schema = self._emit(em)
        self.emitted = schema
        return schema

    def _emit(self, em: Emitter) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self, value: Any, at: str) -> Any:
        raise NotImplementedError

    def decode(self, value: Any, at: str) -> Any:
        raise NotImplementedError

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        """The JSON types a strict answer here may have."""
        raise NotImplementedError

    def accepts_null(self, graph: Graph, seen: frozenset[str] = frozenset()) -> bool:
        return "null" in self.json_types(graph, seen)

    def user_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        """The JSON types a value of the user's shape here may have (what :meth:`encode` takes)."""
        return self.json_types(graph, seen)

    def children(self) -> list[Node]:
        return []

    def replace(self, old: Node, new: Node) -> None:
        """Put ``new`` where the child ``old`` is (the limits fitter collapses subtrees this way)."""

    def _described(self, schema: dict[str, Any]) -> dict[str, Any]:
        return {"description": self.description, **schema} if self.description else schema


class Emitter:
    """Emits a graph's strict schema; collects the definitions its references use, in first-use order."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.used: list[str] = []

    def ref(self, name: str) -> str:
        if name == ROOT and self.graph.root_def is None:
            return "#"
        real = self.graph.root_def if name == ROOT else name
        assert real is not None
        if real not in self.used:
            self.used.append(real)
        return "#/$defs/" + real.replace("~", "~0").replace("/", "~1")


@dataclass(eq=False)
class Leaf(Node):
    """A scalar schema (no container inside), sent as is."""

    schema: dict[str, Any]

    def _emit(self, em: Emitter) -> dict[str, Any]:
        return dict(self.schema)

    def encode(self, value: Any, at: str) -> Any:
        return _copy(value)

    def decode(self, value: Any, at: str) -> Any:
        return _copy(value)

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        declared = self.schema.get("type")
        if isinstance(declared, str):
            types = {declared}
        elif isinstance(declared, list):
            types = set(declared)
        else:
            values = [self.schema["const"]] if "const" in self.schema else self.schema.get("enum", [])
            types = {json_type(v) for v in values}
        if "integer" in types:
            types.add("number")
        return frozenset(types)


@dataclass(eq=False)
class Json(Node):
    """Any JSON value, as a string holding its JSON text."""

    description: str | None = None

    def _emit(self, em: Emitter) -> dict[str, Any]:
        return self._described({"type": "string"})

    def encode(self, value: Any, at: str) -> Any:
        try:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise CodecError(at, f"not a JSON value: {exc}") from None

    def decode(self, value: Any, at: str) -> Any:
        if not isinstance(value, str):
            return _copy(value)
        try:
            return json.loads(value, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return value  # not JSON text: the string itself is the value (the user's schema judges it)

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return frozenset({"string"})

    def user_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return _ALL_TYPES


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass(eq=False)
class EnumJson(Node):
    """An ``enum``/``const`` whose values include objects or arrays: a string enum of their canonical JSON texts."""

    values: list[Any]
    description: str | None = None
    texts: dict[str, Any] = field(default_factory=dict)
    by_key: dict[tuple[str, Any], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for value in self.values:
            text = canonical(value).decode()
            self.texts.setdefault(text, value)
            self.by_key.setdefault(value_key(value), text)

    def _emit(self, em: Emitter) -> dict[str, Any]:
        return self._described({"type": "string", "enum": list(self.texts)})

    def encode(self, value: Any, at: str) -> Any:
        text = self.by_key.get(value_key(value))
        if text is None:
            raise CodecError(at, "not one of the enum values")
        return text

    def decode(self, value: Any, at: str) -> Any:
        if isinstance(value, str) and value in self.texts:
            return _copy(self.texts[value])
        return _copy(value)

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return frozenset({"string"})

    def user_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return frozenset().union(*(_types_of_value(v) for v in self.values))


@dataclass(eq=False)
class Array(Node):
    items: Node
    bounds: dict[str, Any] = field(default_factory=dict)
    """``minItems``/``maxItems``."""
    description: str | None = None

    def _emit(self, em: Emitter) -> dict[str, Any]:
        return self._described({"type": "array", **self.bounds, "items": self.items.emit(em)})

    def encode(self, value: Any, at: str) -> Any:
        if not isinstance(value, list):
            raise CodecError(at, f"expected an array, got {json_type(value)}")
        return [self.items.encode(v, join_data(at, i)) for i, v in enumerate(value)]

    def decode(self, value: Any, at: str) -> Any:
        if not isinstance(value, list):
            return _copy(value)
        return [self.items.decode(v, join_data(at, i)) for i, v in enumerate(value)]

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return frozenset({"array"})

    def children(self) -> list[Node]:
        return [self.items]

    def replace(self, old: Node, new: Node) -> None:
        if self.items is old:
            self.items = new


@dataclass(eq=False)
class PairKind:
    """One kind of ``{key, value}`` item: keys matching ``key_schema`` carry values of ``value``."""

    key_schema: dict[str, Any]
    value: Node
    key_check: Callable[[str], bool]
    emitted: dict[str, Any] | None = None

    def emit(self, em: Emitter) -> dict[str, Any]:
        self.emitted = {
            "type": "object",
            "properties": {"key": dict(self.key_schema), "value": self.value.emit(em)},
            "required": ["key", "value"],
            "additionalProperties": False,
        }
        return self.emitted


def key_checker(pattern: str | None, enum: list[Any] | None) -> Callable[[str], bool]:
    compiled = re.compile(pattern) if pattern is not None else None

    def check(key: str) -> bool:
        if compiled is not None and not compiled.search(key):
            return False
        return enum is None or key in enum

    return check


@dataclass(eq=False)
class Pairs(Node):
    """An object with free keys, as an array of ``{"key": k, "value": v}`` items (one kind per key pattern)."""

    kinds: list[PairKind]
    bounds: dict[str, Any] = field(default_factory=dict)
    """``minItems``/``maxItems`` (from ``minProperties``/``maxProperties``)."""
    description: str | None = None
    graph: Graph | None = None

    def _emit(self, em: Emitter) -> dict[str, Any]:
        items = [kind.emit(em) for kind in self.kinds]
        item = items[0] if len(items) == 1 else {"anyOf": items}
        return self._described({"type": "array", **self.bounds, "items": item})

    def kind_for(self, key: str, pair: Any, graph: Graph | None) -> PairKind | None:
        candidates = [kind for kind in self.kinds if kind.key_check(key)]
        if len(candidates) > 1 and graph is not None and pair is not None:
            fitting = [kind for kind in candidates if kind.emitted is None or graph.fits(kind.emitted, pair)]
            candidates = fitting or candidates
        return candidates[0] if candidates else None

    def encode(self, value: Any, at: str) -> Any:
        if not isinstance(value, dict):
            raise CodecError(at, f"expected an object, got {json_type(value)}")
        return self.encode_items(value, at)

    def encode_items(self, value: Mapping[str, Any], at: str) -> list[dict[str, Any]]:
        out = []
        for key, item in value.items():
            kind = self.kind_for(key, None, None)
            if kind is None:
                raise CodecError(join_data(at, key), "no key/value kind takes this key")
            out.append({"key": key, "value": kind.value.encode(item, join_data(at, key))})
        return out

    def decode(self, value: Any, at: str) -> Any:
        if not isinstance(value, list):
            return _copy(value)
        return self.decode_items(value, at, self.graph)

    def decode_items(self, value: list[Any], at: str, graph: Graph | None, taken: frozenset[str] = frozenset()) -> Any:
        out: dict[str, Any] = {}
        for index, pair in enumerate(value):
            if not (isinstance(pair, dict) and isinstance(pair.get("key"), str) and "value" in pair):
                raise CodecError(join_data(at, index), 'expected an item {"key": ..., "value": ...}')
            key = pair["key"]
            where = join_data(at, key)
            if key in out or key in taken:
                raise CodecError(where, "the key is given twice")
            kind = self.kind_for(key, pair, graph)
            out[key] = kind.value.decode(pair["value"], where) if kind is not None else _copy(pair["value"])
        return out

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return frozenset({"array"})

    def user_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return frozenset({"object"})

    def children(self) -> list[Node]:
        return [kind.value for kind in self.kinds]

    def replace(self, old: Node, new: Node) -> None:
        for kind in self.kinds:
            if kind.value is old:
                kind.value = new


@dataclass(eq=False)
class Prop:
    name: str
    node: Node
    optional: bool
    drop_null: bool
    """Optional and ``null`` is not valid in the user's schema: a ``null`` answer means "absent"."""


@dataclass(eq=False)
class Object(Node):
    props: list[Prop]
    channel: Pairs | None = None
    channel_name: str = ""
    description: str | None = None
    graph: Graph | None = None

    def _emit(self, em: Emitter) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for prop in self.props:
            schema = prop.node.emit(em)
            if prop.optional and not prop.node.accepts_null(em.graph):
                schema = make_nullable(schema)
            properties[prop.name] = schema
        if self.channel is not None:
            properties[self.channel_name] = self.channel.emit(em)
        return self._described(
            {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}
        )

    def encode(self, value: Any, at: str) -> Any:
        if not isinstance(value, dict):
            raise CodecError(at, f"expected an object, got {json_type(value)}")
        out: dict[str, Any] = {}
        declared = set()
        for prop in self.props:
            declared.add(prop.name)
            where = join_data(at, prop.name)
            if prop.name not in value:
                if not prop.optional:
                    raise CodecError(where, "required property is missing")
                out[prop.name] = None
            elif value[prop.name] is None and prop.optional and prop.drop_null:
                raise CodecError(where, "null is not allowed here (the property is optional, not nullable)")
            elif value[prop.name] is None and prop.optional and not prop.node.accepts_null(self._graph()):
                out[prop.name] = None
            else:
                out[prop.name] = prop.node.encode(value[prop.name], where)
        extra = {k: v for k, v in value.items() if k not in declared}
        if self.channel is not None:
            out[self.channel_name] = self.channel.encode_items(extra, at)
        elif extra:
            raise CodecError(join_data(at, next(iter(extra))), "the strict shape has no place for this key")
        return out

    def decode(self, value: Any, at: str) -> Any:
        if not isinstance(value, dict):
            return _copy(value)
        props = {prop.name: prop for prop in self.props}
        out: dict[str, Any] = {}
        for key, item in value.items():
            prop = props.get(key)
            if prop is not None:
                if item is None and prop.optional:
                    if not prop.drop_null and not PREFER_ABSENT.get():
                        out[key] = None
                    continue
                out[key] = prop.node.decode(item, join_data(at, key))
            elif self.channel is not None and key == self.channel_name:
                if isinstance(item, list):
                    taken = frozenset(k for k in value if k in props and value[k] is not None)
                    out.update(self.channel.decode_items(item, at, self._graph(), taken))
                elif item is not None:
                    raise CodecError(join_data(at, key), 'expected a list of {"key": ..., "value": ...} items')
            else:
                out[key] = _copy(item)
        return out

    def _graph(self) -> Graph:
        return self.graph if self.graph is not None else Graph()

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return frozenset({"object"})

    def children(self) -> list[Node]:
        nodes = [prop.node for prop in self.props]
        return [*nodes, self.channel] if self.channel is not None else nodes

    def replace(self, old: Node, new: Node) -> None:
        for prop in self.props:
            if prop.node is old:
                prop.node = new
        if self.channel is old:
            if isinstance(new, Pairs):
                self.channel = new
            else:
                self.channel = None


@dataclass(eq=False)
class Union(Node):
    branches: list[Node]
    description: str | None = None
    graph: Graph | None = None

    def _emit(self, em: Emitter) -> dict[str, Any]:
        emitted: list[dict[str, Any]] = []
        seen: set[bytes] = set()
        for branch in self.branches:
            schema = branch.emit(em)
            parts = schema["anyOf"] if schema.keys() == {"anyOf"} else [schema]
            for part in parts:
                key = canonical(part)
                if key not in seen:
                    seen.add(key)
                    emitted.append(part)
        if len(emitted) == 1 and not self.description:
            return emitted[0]
        return self._described({"anyOf": emitted})

    def _candidates(self, value: Any, *, user: bool = False) -> list[Node]:
        graph = self._graph()
        kinds = _types_of_value(value)
        if user:
            return [b for b in self.branches if b.user_types(graph) & kinds]
        return [b for b in self.branches if b.json_types(graph) & kinds]

    def encode(self, value: Any, at: str) -> Any:
        """The first branch whose encoding this union decodes back to ``value``; a value the strict shape cannot
        tell from another (two branches with the same strict form) raises."""
        graph = self._graph()
        problem: CodecError | None = None
        for branch in self._candidates(value, user=True):
            try:
                encoded = branch.encode(value, at)
            except CodecError as exc:
                problem = problem or exc
                continue
            if branch.emitted is not None and not graph.fits(branch.emitted, encoded):
                continue
            try:
                if same_value(self.decode(encoded, at), value):
                    return encoded
            except CodecError:
                continue
            problem = problem or CodecError(at, "the strict shape cannot tell this value from another branch's")
        raise problem or CodecError(at, f"no branch of the union takes a value of type {json_type(value)}")

    def decode(self, value: Any, at: str) -> Any:
        graph = self._graph()
        candidates = self._candidates(value)
        if len(candidates) > 1:
            fitting = [b for b in candidates if b.emitted is None or graph.fits(b.emitted, value)]
            candidates = fitting or candidates
        problem: CodecError | None = None
        for branch in candidates:
            try:
                return branch.decode(value, at)
            except CodecError as exc:
                problem = problem or exc
        if problem is not None:
            raise problem
        return _copy(value)

    def _graph(self) -> Graph:
        return self.graph if self.graph is not None else Graph()

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for branch in self.branches:
            out |= branch.json_types(graph, seen)
        return out

    def user_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for branch in self.branches:
            out |= branch.user_types(graph, seen)
        return out

    def children(self) -> list[Node]:
        return list(self.branches)

    def replace(self, old: Node, new: Node) -> None:
        self.branches = [new if b is old else b for b in self.branches]


@dataclass(eq=False)
class Ref(Node):
    name: str
    graph: Graph

    def _emit(self, em: Emitter) -> dict[str, Any]:
        return {"$ref": em.ref(self.name)}

    def encode(self, value: Any, at: str) -> Any:
        return self.graph.target(self.name).encode(value, at)

    def decode(self, value: Any, at: str) -> Any:
        return self.graph.target(self.name).decode(value, at)

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        if self.name in seen:
            return frozenset()
        return self.graph.target(self.name).json_types(graph, seen | {self.name})

    def user_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        if self.name in seen:
            return frozenset()
        return self.graph.target(self.name).user_types(graph, seen | {self.name})


@dataclass(eq=False)
class Wrap(Node):
    """A root that is not an object, as the property :data:`WRAP_KEY` of one."""

    inner: Node

    def _emit(self, em: Emitter) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {WRAP_KEY: self.inner.emit(em)},
            "required": [WRAP_KEY],
            "additionalProperties": False,
        }

    def encode(self, value: Any, at: str) -> Any:
        return {WRAP_KEY: self.inner.encode(value, at)}

    def decode(self, value: Any, at: str) -> Any:
        if isinstance(value, dict) and WRAP_KEY in value:
            return self.inner.decode(value[WRAP_KEY], at)
        return _copy(value)

    def json_types(self, graph: Graph, seen: frozenset[str] = frozenset()) -> frozenset[str]:
        return frozenset({"object"})

    def children(self) -> list[Node]:
        return [self.inner]

    def replace(self, old: Node, new: Node) -> None:
        if self.inner is old:
            self.inner = new
