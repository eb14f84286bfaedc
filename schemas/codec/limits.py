"""OpenAI's rules and size limits for a strict schema: measured, audited, and met by transforming the graph.

The limits (structured-outputs guide, "Supported schemas", as quoted in OPENAI-FACTS.md section 7): at most
:data:`MAX_PROPERTIES` object properties in total, :data:`MAX_NESTING_LEVELS` levels of nesting,
:data:`MAX_STRING_CHARS` characters for all property names, definition names, enum and const values together,
:data:`MAX_ENUM_VALUES` enum values in total, and for a string enum of more than :data:`LARGE_ENUM_VALUES` values at
most :data:`MAX_LARGE_ENUM_CHARS` characters of values. A schema over one is refused by the API with a 400 on every
call, so :func:`fit` transforms the graph until it fits, each change a lossy Step:

* too many enum values, or a long string enum: the largest enum is sent as its plain type (``limit-enum``);
* too deep: the object that passes the limit (or the ``$ref`` whose definition would) is sent as JSON text
  (``limit-collapse``);
* too many properties or characters: the largest subtree (or definition) is sent as JSON text (``limit-collapse``).

What is sent as JSON text is parsed back and checked by the user's own schema, like any value of unknown shape.
:func:`strict_problems` is the audit every emitted schema passes before a codec exists: the structural rules of
strict mode (root object, ``additionalProperties: false``, all properties required, ``items``, standalone ``$ref``
to a definition that exists, only supported keywords and formats) and the limits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.codec.errors import SchemaError
from schemas.codec.keywords import SUPPORTED_FORMATS
from schemas.codec.nodes import Array, EnumJson, Graph, Json, Leaf, Node, Object, Pairs, Ref, Union, Wrap
from schemas.codec.steps import Step

__all__ = [
    "LARGE_ENUM_VALUES",
    "MAX_ENUM_VALUES",
    "MAX_JSON_DEPTH",
    "MAX_LARGE_ENUM_CHARS",
    "MAX_NESTING_LEVELS",
    "MAX_PROPERTIES",
    "MAX_STRING_CHARS",
    "STRICT_KEYWORDS",
    "Size",
    "check_json_depth",
    "fit",
    "measure",
    "object_nesting",
    "strict_problems",
]

MAX_PROPERTIES = 5_000
MAX_NESTING_LEVELS = 10
"""Levels of objects a strict schema may nest, counted by :func:`object_nesting` (the 2024 guide allowed 5, and the
API's refusal then read "6 levels of nesting exceeds limit of 5", tidyverse/ellmer#671)."""
MAX_STRING_CHARS = 120_000
MAX_ENUM_VALUES = 1_000
LARGE_ENUM_VALUES = 250
MAX_LARGE_ENUM_CHARS = 15_000
MAX_JSON_DEPTH = 64
"""How deep a schema document may nest as JSON before anything recursive reads it (a schema within the nesting limit
stays far below it; a far deeper one -- generated or hostile -- would exhaust Python's recursion)."""

STRICT_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "enum",
        "const",
        "format",
        "pattern",
        "minimum",
        "exclusiveMinimum",
        "maximum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "anyOf",
        "items",
        "properties",
        "required",
        "additionalProperties",
        "$ref",
        "$defs",
    }
)
"""Every keyword an emitted strict schema may carry."""

_MAX_ROUNDS = 200


def check_json_depth(document: Any) -> None:
    """Raise :class:`SchemaError` when ``document`` nests deeper than :data:`MAX_JSON_DEPTH` as JSON. Iterative: it is
    the guard that runs before anything recursive (the validator, the conversion) sees the document."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise SchemaError(
                f"$: the schema nests more than {MAX_JSON_DEPTH} levels deep as JSON; strict mode accepts at most "
                f"{MAX_NESTING_LEVELS} levels of objects"
            )
        children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else ()
        pending.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list))


def _resolve_local(root: Mapping[str, Any], ref: str) -> Mapping[str, Any] | None:
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for raw in ref[2:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        else:
            return None
    return node if isinstance(node, Mapping) else None


def _is_object(node: Mapping[str, Any]) -> bool:
    declared = node.get("type")
    return declared == "object" or (isinstance(declared, list) and "object" in declared) or "properties" in node


def object_nesting(schema: Mapping[str, Any]) -> tuple[int, str]:
    """How many levels of objects a strict schema nests, and the path to the deepest: ``(3, "a.b[]")``.

    The root object is level 1; an object in a property, in an array's ``items`` or in a union branch of an object is
    one level deeper. A ``$ref`` counts as its target, except a recursive one (the API accepts recursion: it ends the
    count there). The walk stops as soon as it passes :data:`MAX_NESTING_LEVELS`, and expands each definition at most
    once per level.
    """
    deepest, where = 0, "<root>"
    expanded: dict[str, int] = {}
    pending: list[tuple[Any, int, str, frozenset[str]]] = [(schema, 0, "", frozenset({"#"}))]
    while pending:
        node, level, path, refs = pending.pop()
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if type(ref) is str:
            target = _resolve_local(schema, ref)
            if target is None or ref in refs or expanded.get(ref, -1) >= level:
                continue
            expanded[ref] = level
            pending.append((target, level, path, refs | {ref}))
            continue
        if _is_object(node):
            level += 1
            if level > deepest:
                deepest, where = level, path or "<root>"
                if deepest > MAX_NESTING_LEVELS:
                    break
        properties = node.get("properties")
        if type(properties) is dict:
            pending.extend(
                (sub, level, f"{path}.{name}" if path else str(name), refs) for name, sub in properties.items()
            )
        if "items" in node:
            pending.append((node["items"], level, f"{path}[]", refs))
        for keyword in ("anyOf", "oneOf"):
            branches = node.get(keyword)
            if type(branches) is list:
                pending.extend((branch, level, path, refs) for branch in branches)
    return deepest, where


@dataclass(frozen=True)
class Size:
    """A strict schema measured against the limits."""

    properties: int
    levels: int
    deepest: str
    chars: int
    enum_values: int
    large_enum_chars: int
    """The most characters of any string enum with more than :data:`LARGE_ENUM_VALUES` values."""

    def problems(self) -> list[str]:
        found = []
        if self.properties > MAX_PROPERTIES:
            found.append(f"{self.properties} object properties (at most {MAX_PROPERTIES})")
        if self.levels > MAX_NESTING_LEVELS:
            found.append(
                f"{self.deepest}: {self.levels} levels of objects here; strict mode accepts at most "
                f"{MAX_NESTING_LEVELS} levels of objects"
            )
        if self.chars > MAX_STRING_CHARS:
            found.append(f"{self.chars} characters of names, enum and const values (at most {MAX_STRING_CHARS})")
        if self.enum_values > MAX_ENUM_VALUES:
            found.append(f"{self.enum_values} enum values (at most {MAX_ENUM_VALUES})")
        if self.large_enum_chars > MAX_LARGE_ENUM_CHARS:
            found.append(
                f"a string enum of more than {LARGE_ENUM_VALUES} values with {self.large_enum_chars} characters "
                f"(at most {MAX_LARGE_ENUM_CHARS})"
            )
        return found


def _walk(schema: Any) -> Iterator[dict[str, Any]]:
    pending = [schema]
    while pending:
        node = pending.pop()
        if type(node) is not dict:  # emitted schemas are plain dicts; no ABC checks on this hot path
            continue
        yield node
        for key in ("properties", "$defs"):
            section = node.get(key)
            if type(section) is dict:
                pending.extend(section.values())
        if "items" in node:
            pending.append(node["items"])
        if type(node.get("anyOf")) is list:
            pending.extend(node["anyOf"])


def _value_chars(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(str(value))


def count(schema: Any) -> tuple[int, int, int, int]:
    """Properties, characters, enum values and the largest long string enum's characters in a (part of a) schema;
    references are not followed."""
    properties = chars = enum_values = large = 0
    for node in _walk(schema):
        section = node.get("properties")
        if section is not None:
            properties += len(section)
            chars += sum(len(name) for name in section)
        defs = node.get("$defs")
        if defs is not None:
            chars += sum(len(name) for name in defs)
        enum = node.get("enum")
        if type(enum) is list:
            enum_values += len(enum)
            total = sum(_value_chars(v) for v in enum)
            chars += total
            if len(enum) > LARGE_ENUM_VALUES and all(isinstance(v, str) for v in enum):
                large = max(large, total)
        if "const" in node:
            chars += _value_chars(node["const"])
    return properties, chars, enum_values, large


def measure(schema: Mapping[str, Any]) -> Size:
    properties, chars, enum_values, large = count(schema)
    levels, deepest = object_nesting(schema)
    return Size(properties, levels, deepest, chars, enum_values, large)


def strict_problems(schema: Mapping[str, Any]) -> list[str]:  # noqa: C901 -- one check per rule of the guide
    """What the API would refuse in ``schema`` (sent with ``strict: true``): rules first, then limits."""
    found: list[str] = []
    if schema.get("type") != "object" or "anyOf" in schema:
        found.append("<root>: the root must be an object, not a union")
    pending: list[tuple[Any, str]] = [(schema, "<root>")]
    while pending:
        node, path = pending.pop()
        if not isinstance(node, Mapping):
            found.append(f"{path}: a subschema must be an object")
            continue
        unknown = set(node) - STRICT_KEYWORDS
        if unknown:
            found.append(f"{path}: keywords strict mode does not support: {sorted(unknown)}")
        if "$ref" in node:
            if len(node) != 1:
                found.append(f"{path}: $ref must stand alone")
            ref = node["$ref"]
            if not (ref == "#" or (isinstance(ref, str) and ref.startswith("#/$defs/") and ref.count("/") == 2)):
                found.append(f"{path}: $ref must point to the root or a top-level definition, got {ref!r}")
            elif _resolve_local(schema, ref) is None:
                found.append(f"{path}: $ref {ref!r} points nowhere")
            continue
        if not node.keys() & {"type", "anyOf", "enum", "const"}:
            found.append(f"{path}: no type")
        if "format" in node and node["format"] not in SUPPORTED_FORMATS:
            found.append(f"{path}: format {node['format']!r} is not supported")
        if _is_object(node):
            properties = node.get("properties")
            if not isinstance(properties, Mapping):
                found.append(f"{path}: an object needs properties")
                properties = {}
            if node.get("additionalProperties") is not False:
                found.append(f"{path}: additionalProperties must be false")
            if node.get("required") != list(properties):
                found.append(f"{path}: required must list every property")
            pending.extend((sub, f"{path}.{name}") for name, sub in properties.items())
        declared = node.get("type")
        if declared == "array" or (isinstance(declared, list) and "array" in declared):
            if not isinstance(node.get("items"), Mapping):
                found.append(f"{path}: an array needs items")
            else:
                pending.append((node["items"], f"{path}[]"))
        if "anyOf" in node:
            if not isinstance(node["anyOf"], list) or not node["anyOf"]:
                found.append(f"{path}: anyOf must be a non-empty list")
            else:
                pending.extend((sub, f"{path}.anyOf[{i}]") for i, sub in enumerate(node["anyOf"]))
        if "$defs" in node:
            if path != "<root>":
                found.append(f"{path}: $defs only at the root")
            if isinstance(node["$defs"], Mapping):
                pending.extend((sub, f"$defs.{name}") for name, sub in node["$defs"].items())
    found.extend(measure(schema).problems())
    return found


# --------------------------------------------------------------------------------------------------------------
# fitting the graph


def _edges(root: Node, graph: Graph) -> Iterator[tuple[Node | str | None, Node]]:
    """Every node once, with its parent (a def's root has its name; the root has None)."""
    seen: set[int] = set()
    starts: list[tuple[Node | str | None, Node]] = [(None, root)]
    starts += [(name, node) for name, node in graph.defs.items()]
    for start in starts:
        pending = [start]
        while pending:
            parent, node = pending.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            yield parent, node
            pending.extend((node, child) for child in node.children())


def _collapse(node: Node, why: str) -> Json:
    base = node.description
    hint = f"Write this value as JSON text ({why})."
    collapsed = Json(f"{base} {hint}" if base else hint)
    collapsed.where = node.where
    return collapsed


def _put(graph: Graph, parent: Node | str | None, old: Node, new: Node) -> bool:
    if isinstance(parent, Node):
        parent.replace(old, new)
        return True
    if isinstance(parent, str):
        graph.defs[parent] = new
        return True
    return False


def _heights(graph: Graph) -> Callable[[Node], int]:
    memo: dict[str, int] = {}
    busy: set[str] = set()

    def height(node: Node) -> int:
        if isinstance(node, Ref):
            if node.name in busy:
                return 0
            if node.name not in memo:
                busy.add(node.name)
                try:
                    memo[node.name] = height(graph.target(node.name))
                finally:
                    busy.discard(node.name)
            return memo[node.name]
        below = max((height(child) for child in node.children()), default=0)
        return below + (1 if isinstance(node, Object | Pairs | Wrap) else 0)

    return height


def _fit_depth(root: Node, graph: Graph, steps: list[Step]) -> bool:
    height = _heights(graph)
    changed = False
    pending: list[tuple[Node | None, Node, int]] = [(None, root, 0)]
    while pending:
        parent, node, level = pending.pop()
        if isinstance(node, Ref):
            if level + height(node) > MAX_NESTING_LEVELS and parent is not None:
                changed |= _put(graph, parent, node, _collapse(node, "too deep for strict mode"))
                steps.append(_step(node, "too deeply nested for strict mode"))
            continue
        if isinstance(node, Object | Pairs | Wrap):
            level += 1
            if level > MAX_NESTING_LEVELS and parent is not None:
                changed |= _put(graph, parent, node, _collapse(node, "too deep for strict mode"))
                steps.append(_step(node, "too deeply nested for strict mode"))
                continue
        pending.extend((node, child, level) for child in node.children())
    return changed


def _step(node: Node, why: str) -> Step:
    return Step(node.where or "$", "limit-collapse", True, f"{why}: sent as JSON text, parsed back and checked locally")


def _drop_enum(root: Node, graph: Graph, steps: list[Step]) -> bool:
    best: tuple[int, Node | str | None, Node] | None = None
    for parent, node in _edges(root, graph):
        size = 0
        if isinstance(node, Leaf) and isinstance(node.schema.get("enum"), list):
            size = len(node.schema["enum"])
        elif isinstance(node, EnumJson):
            size = len(node.texts)
        if size and (best is None or size > best[0]):
            best = (size, parent, node)
    if best is None:
        return False
    _, parent, node = best
    note = "too many enum values for strict mode: sent without the enum, which is checked locally"
    steps.append(Step(node.where or "$", "limit-enum", True, note))
    if isinstance(node, Leaf):
        node.schema = {k: v for k, v in node.schema.items() if k != "enum"}
        return True
    return _put(graph, parent, node, _collapse(node, "one of the values listed in the schema"))


def _collapse_largest(root: Node, graph: Graph, steps: list[Step], *, excess: int, by_chars: bool) -> bool:
    """Collapse the largest subtrees (a definition counts once) until about ``excess`` properties (or characters)
    are gone; one subtree inside another already collapsed is skipped."""
    candidates: list[tuple[int, Node | str | None, Node]] = []
    for parent, node in _edges(root, graph):
        if parent is None or not isinstance(node, Object | Pairs | Array | Union) or node.emitted is None:
            continue
        properties, chars, _, _ = count(node.emitted)
        weight = chars if by_chars else properties
        if weight:
            candidates.append((weight, parent, node))
    candidates.sort(key=lambda c: -c[0])
    gone: set[int] = set()
    removed = 0
    for weight, parent, node in candidates:
        if removed > excess:
            break
        if id(node) in gone or (isinstance(parent, Node) and id(parent) in gone):
            continue
        steps.append(_step(node, "too large for strict mode's limits"))
        if _put(graph, parent, node, _collapse(node, "too large for strict mode")):
            removed += weight
            gone.update(id(n) for n in _subtree(node))
    return removed > 0


def _subtree(node: Node) -> Iterator[Node]:
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        if not isinstance(current, Ref):
            pending.extend(current.children())


def fit(root: Node, graph: Graph, emit: Callable[[], dict[str, Any]], steps: list[Step]) -> dict[str, Any]:
    """Emit the strict schema, transforming the graph until it is within the limits (see the module docstring).

    Raises:
        SchemaError: It cannot be brought within them.
    """
    for _ in range(_MAX_ROUNDS):
        strict = emit()
        size = measure(strict)
        problems = size.problems()
        if not problems:
            return strict
        if size.levels > MAX_NESTING_LEVELS:
            changed = _fit_depth(root, graph, steps)
        elif size.enum_values > MAX_ENUM_VALUES or size.large_enum_chars > MAX_LARGE_ENUM_CHARS:
            changed = _drop_enum(root, graph, steps)
        elif size.properties > MAX_PROPERTIES:
            changed = _collapse_largest(root, graph, steps, excess=size.properties - MAX_PROPERTIES, by_chars=False)
        else:
            changed = _collapse_largest(root, graph, steps, excess=size.chars - MAX_STRING_CHARS, by_chars=True)
        if not changed:
            break
    raise SchemaError(f"$: the schema is over strict mode's limits and cannot be brought within them: {problems[0]}")
