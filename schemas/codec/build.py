"""From the user's schema to a codec graph (``schemas.codec.nodes``), recording every Step on the way.

The walk follows the user's schema, not the strict one: each subschema becomes one node, ``$ref`` targets become
definitions (built once, after the root, from a work list, so a long chain of definitions costs no recursion), and
``allOf``/``$ref``-with-siblings/keywords-beside-a-union are merged first (``schemas.codec.merge``). Anything the
strict shape does not carry is recorded as a lossy Step: the user's own schema checks it on every answer. Objects and
arrays are ``schemas.codec.containers``'.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from jsonschema import Draft3Validator, Draft4Validator, Draft6Validator, Draft7Validator
from referencing._core import Resolver

from schemas.codec.containers import ContainerBuilder
from schemas.codec.context import (
    _ARRAY_KEYWORDS,
    _LOCAL_NOTES,
    _NUMERIC,
    _OBJECT_KEYWORDS,
    CHANNEL_NAME,
    CONSTRAINTS,
    MAX_INLINE_DEPTH,
    Ctx,
    OpenObjects,
    _applies,
    _constraints,
    _description,
    _is_number,
)
from schemas.codec.errors import SchemaError, Unsatisfiable
from schemas.codec.keywords import DEF_KEYS, SUPPORTED_FORMATS
from schemas.codec.merge import combine, json_type, normalize, type_list
from schemas.codec.nodes import ROOT, EnumJson, Graph, Json, Leaf, Node, Object, Ref, Union, Wrap
from schemas.codec.refs import Refs
from schemas.codec.steps import Step
from schemas.codec.validation import SchemaValidator, format_checked

__all__ = ["CHANNEL_NAME", "Builder", "OpenObjects"]

_NAME_OK = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


class Builder(ContainerBuilder):
    """One conversion (see the module docstring)."""

    def __init__(self, source: Any, validator: SchemaValidator, *, open_objects: OpenObjects) -> None:
        self.source = source
        self.validator = validator
        self.open_objects = open_objects
        self.draft4 = validator.cls in (Draft3Validator, Draft4Validator)
        self.draft3 = validator.cls is Draft3Validator
        # Drafts 3 to 7 ignore every keyword beside a $ref; 2019-09 and later apply them with it.
        self.ref_hides_siblings = validator.cls in (Draft3Validator, Draft4Validator, Draft6Validator, Draft7Validator)
        meta = validator.cls.META_SCHEMA
        self.refs = Refs(source, meta.get("$id") or meta.get("id"))
        self.graph = Graph()
        self.steps: dict[tuple[str, str, str], Step] = {}
        self.stack: list[int] = []
        self.names: dict[int, str] = {}
        self.used_names: set[str] = set()
        self.reserved: dict[int, str] = {}
        self.pending: list[tuple[str, Any, Resolver[Any], str]] = []
        self.def_order: list[str] = []
        self.root_referenced = False
        self._reserve_root_definitions()

    # -- entry ------------------------------------------------------------------------------------------------------

    def build(self) -> Node:
        """The root node (an object: the root itself, or its wrapper)."""
        if self.source is False:
            raise SchemaError("$: the schema is false: no value is valid")
        self.stack.append(id(self.source))
        try:
            node = self.node(self.source, Ctx("$", self.refs.resolver))
            self.graph.root = node
            self._build_defs()
        except Unsatisfiable as exc:
            raise SchemaError(f"{exc.path}: the schema is unsatisfiable: {exc.reason}") from None
        finally:
            self.stack.clear()
        for where, pattern in self.validator.unchecked_patterns:
            self.step(where, "local-check", True, f"pattern {pattern!r} is not a Python regex: only the API checks it")
        target: Node = node
        seen: set[str] = set()
        while isinstance(target, Ref) and target.name not in seen:
            seen.add(target.name)
            target = self.graph.target(target.name)
        if isinstance(target, Object):
            return target
        if self.root_referenced:
            self.graph.root_def = self._unique("Root")
            node = Ref(ROOT, self.graph)
        self.step("$", "wrap-root", False, 'the root is not an object: sent as the property "value" of one, unwrapped')
        return Wrap(node)

    def step(self, path: str, kind: str, lossy: bool, note: str) -> None:
        self.steps.setdefault((path, kind, note), Step(path, kind, lossy, note))

    # -- definitions ------------------------------------------------------------------------------------------------

    def _reserve_root_definitions(self) -> None:
        if not isinstance(self.source, Mapping):
            return
        for key in DEF_KEYS:
            section = self.source.get(key)
            if not isinstance(section, Mapping):
                continue
            for name, target in section.items():
                if isinstance(target, Mapping | bool) and id(target) not in self.reserved:
                    self.reserved[id(target)] = self._unique(str(name))

    def _unique(self, wanted: str) -> str:
        name = wanted if _NAME_OK.match(wanted) else (_NAME_BAD.sub("_", wanted).strip("_")[:60] or "Def")
        candidate, n = name, 1
        while candidate in self.used_names or candidate == ROOT:
            n += 1
            candidate = f"{name}_{n}"
        self.used_names.add(candidate)
        return candidate

    def def_name(self, target: Any, resolver: Resolver[Any], where: str) -> str:
        key = id(target)
        if key == id(self.source):
            self.root_referenced = True
            return ROOT
        name = self.names.get(key)
        if name is not None:
            return name
        location = self.refs.location(target)
        name = self.reserved.get(key)
        if name is None:
            last = location.rsplit(".", 1)[-1].strip("[]'\"") if location else "Def"
            name = self._unique(last)
            self.step(location or where, "ref-hoist", False, f"definition carried into $defs as {name!r}")
        self.names[key] = name
        self.def_order.append(name)
        self.pending.append((name, target, resolver, location or f"{where}.$ref"))
        return name

    def _build_defs(self) -> None:
        while self.pending:
            name, target, resolver, location = self.pending.pop(0)
            self.stack.append(id(target))
            try:
                self.graph.defs[name] = self.node(target, Ctx(location, resolver))
            finally:
                self.stack.pop()

    # -- nodes ------------------------------------------------------------------------------------------------------

    def node(self, schema: Any, ctx: Ctx) -> Node:
        """The node for one subschema of the user's schema."""
        made = self._node(schema, ctx)
        if made.where is None:
            made.where = ctx.path
        return made

    def _node(self, schema: Any, ctx: Ctx) -> Node:
        if schema is True:
            return self.any_node({}, ctx, None)
        if schema is False:
            raise Unsatisfiable(ctx.path, "the schema is false")
        if not isinstance(schema, Mapping):
            raise SchemaError(f"{ctx.path}: expected a schema (an object or a boolean), got {json_type(schema)}")
        ctx = replace(ctx, resolver=self.refs.enter(ctx.resolver, schema))
        schema = self._ref_view(normalize(schema, draft4=self.draft4))
        if schema.get("not") is True or schema.get("not") == {}:
            raise Unsatisfiable(ctx.path, "not: {} (or true) admits no value")
        if "$ref" in schema:
            return self.ref_node(schema, ctx)
        all_of = schema.get("allOf")
        if isinstance(all_of, list) and all_of:
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            if len(all_of) == 1 and not _constraints(rest) and isinstance(all_of[0], Mapping):
                return self.node({**all_of[0], **rest}, ctx)  # pydantic's annotated reference
            return self.merged_node(schema, ctx)
        if isinstance(schema.get("anyOf"), list) or isinstance(schema.get("oneOf"), list):
            return self.union_node(schema, ctx)
        return self.typed_node(schema, ctx)

    def _ref_view(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """The schema as its draft reads it: up to draft 7 a ``$ref`` hides its siblings (a description is kept for
        the model; the validator of the user's schema ignores it too)."""
        if self.ref_hides_siblings and "$ref" in schema:
            return {k: v for k, v in schema.items() if k in ("$ref", "description", *DEF_KEYS)}
        return schema

    def ref_node(self, schema: Mapping[str, Any], ctx: Ctx) -> Node:
        target, resolver = self.refs.lookup(schema["$ref"], ctx.resolver, ctx.path)
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        recursive = id(target) in self.stack
        if not _constraints(siblings):
            description = _description(siblings)
            if description and not recursive and len(self.stack) < MAX_INLINE_DEPTH and isinstance(target, Mapping):
                inlined = {k: v for k, v in target.items() if k not in DEF_KEYS}
                return self._inline(target, {**inlined, "description": description}, ctx, resolver)
            return Ref(self.def_name(target, resolver, ctx.path), self.graph)
        if recursive or len(self.stack) >= MAX_INLINE_DEPTH:
            self.step(ctx.path, "local-check", True, "keywords beside a recursive $ref are checked locally")
            return Ref(self.def_name(target, resolver, ctx.path), self.graph)
        return self.merged_node(schema, ctx)

    def _inline(self, target: Any, schema: Mapping[str, Any], ctx: Ctx, resolver: Resolver[Any]) -> Node:
        self.stack.append(id(target))
        try:
            return self.node(schema, Ctx(ctx.path, resolver))
        finally:
            self.stack.pop()

    def _flatten(self, schema: Any, ctx: Ctx, out: list[Mapping[str, Any]], inlined: list[int]) -> str | None:
        """Collect the parts of ``schema`` that must all hold (its ``allOf`` and ``$ref``, recursively) into
        ``out``; the name of a recursive reference that cannot be inlined, if one is met."""
        if schema is True:
            return None
        if schema is False:
            raise Unsatisfiable(ctx.path, "an allOf part is false")
        if not isinstance(schema, Mapping):
            raise SchemaError(f"{ctx.path}: expected a schema, got {json_type(schema)}")
        schema = self._ref_view(normalize(schema, draft4=self.draft4))
        own = {k: v for k, v in schema.items() if k not in ("allOf", "$ref", *DEF_KEYS)}
        if own:
            out.append(own)
        opaque = None
        if "$ref" in schema:
            target, _ = self.refs.lookup(schema["$ref"], ctx.resolver, ctx.path)
            if id(target) in self.stack or id(target) in inlined or len(self.stack) + len(inlined) >= MAX_INLINE_DEPTH:
                opaque = self.def_name(target, ctx.resolver, ctx.path)
            else:
                inlined.append(id(target))
                opaque = self._flatten(target, ctx, out, inlined)
        parts = schema.get("allOf")
        if isinstance(parts, list):
            for i, part in enumerate(parts):
                opaque = self._flatten(part, ctx.at("allOf", i), out, inlined) or opaque
        return opaque

    def merged_node(self, schema: Mapping[str, Any], ctx: Ctx) -> Node:
        parts: list[Mapping[str, Any]] = []
        inlined: list[int] = []
        opaque = self._flatten(schema, ctx, parts, inlined)
        if opaque is not None:
            if any(_constraints(part) for part in parts):
                self.step(ctx.path, "local-check", True, "allOf beside a recursive $ref: the rest is checked locally")
            return Ref(opaque, self.graph)
        merged, local = combine(parts, ctx.path)
        for keyword, note in local:
            self.step(ctx.path, "allof-merge", True, f"{keyword}: {note}")
        if sum(1 for part in parts if _constraints(part)) > 1:
            self.step(ctx.path, "allof-merge", False, "allOf parts merged into one schema (every keyword kept)")
        self.stack.extend(inlined)
        try:
            return self.node(merged, ctx)
        finally:
            del self.stack[len(self.stack) - len(inlined) :]

    def union_node(self, schema: Mapping[str, Any], ctx: Ctx) -> Node:
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
        any_of, one_of = schema.get("anyOf"), schema.get("oneOf")
        keyword = "anyOf" if isinstance(any_of, list) else "oneOf"
        branches: list[Any] = list(any_of if isinstance(any_of, list) else one_of or [])
        originals = list(branches)
        if isinstance(any_of, list) and isinstance(one_of, list):
            if len(any_of) * len(one_of) <= 64:
                branches = [{"allOf": [a, b]} for a in any_of for b in one_of]
                keyword = "anyOf"
            else:
                self.step(ctx.path, "local-check", True, "oneOf beside anyOf is checked locally")
        constraints = {k: v for k, v in rest.items() if k in CONSTRAINTS}
        if constraints:
            branches = [{"allOf": [constraints, branch]} for branch in branches]
            self.step(ctx.path, "union-distribute", False, f"keywords beside {keyword} merged into each branch")
        nodes: list[Node] = []
        for i, branch in enumerate(branches):
            try:
                nodes.append(self.node(branch, ctx.at(keyword, i)))
            except Unsatisfiable as exc:
                self.step(exc.path, "dropped", False, f"a union branch no value satisfies is left out ({exc.reason})")
        if not nodes:
            raise Unsatisfiable(ctx.path, f"no branch of {keyword} can be satisfied")
        flat: list[Node] = []
        for node in nodes:
            flat.extend(node.branches if isinstance(node, Union) and not node.description else [node])
        if keyword == "oneOf" and len(flat) > 1 and not self._exclusive(originals, rest, ctx):
            self.step(
                ctx.path,
                "oneof-as-anyof",
                True,
                "oneOf is sent as anyOf: that only one branch matches is checked locally",
            )
        if len(flat) == 1 and _description(rest) is None:
            return flat[0]
        return Union(flat, _description(rest), self.graph)

    def _exclusive(self, branches: list[Any], rest: Mapping[str, Any], ctx: Ctx) -> bool:
        """Whether the branches of a oneOf can never match together: disjoint types, or a distinct constant in a
        property every branch requires (a discriminator; ``rest``: the keywords beside the oneOf)."""
        views = [self._view(branch, ctx) for branch in branches]
        if any(view is None for view in views):
            return False
        known = [view for view in views if view is not None]
        types = [type_list(view.get("type")) for view in known]
        if all(t is not None for t in types):
            flat = [t for group in types if group is not None for t in group]
            if len(flat) == len(set(flat)) and not ({"integer", "number"} <= set(flat)):
                return True
        required = rest.get("required")
        outer: list[Any] = required if isinstance(required, list) else []
        for name in _common_required(known, outer):
            values = [_constant(view, name) for view in known]
            if None not in values and len(values) == len(set(values)):
                return True
        return False

    def _view(self, branch: Any, ctx: Ctx) -> Mapping[str, Any] | None:
        """A union branch with its ``$ref`` chain followed (None: a boolean or a reference to nowhere)."""
        view = branch
        for _ in range(8):
            if not (isinstance(view, Mapping) and "$ref" in view):
                break
            try:
                view, _ = self.refs.lookup(view["$ref"], ctx.resolver, ctx.path)
            except SchemaError:
                return None
        return view if isinstance(view, Mapping) else None

    def typed_node(self, schema: Mapping[str, Any], ctx: Ctx) -> Node:
        types = type_list(schema.get("type"))
        if "type" in schema and types is None and schema.get("type") not in ("any", ["any"]):
            raise SchemaError(f"{ctx.path}: type must be a type name or a list of them, got {schema['type']!r}")
        unknown = [
            t for t in types or [] if t not in ("string", "number", "integer", "boolean", "null", "object", "array")
        ]
        if unknown:
            raise SchemaError(f"{ctx.path}: unknown type {unknown[0]!r}")
        if "const" in schema or isinstance(schema.get("enum"), list):
            return self.enum_node(schema, types, ctx)
        if types is None:
            return self.untyped_node(schema, ctx)
        scalars = [t for t in types if t not in ("object", "array")]
        containers = [t for t in types if t in ("object", "array")]
        single = len(containers) + (1 if scalars else 0) == 1
        forms: list[Node] = []
        for kind in containers:
            try:
                if kind == "object":
                    forms.append(self.object_node(schema, ctx, described=single))
                else:
                    forms.append(self.array_node(schema, ctx, described=single))
            except Unsatisfiable:
                if single:
                    raise
        if scalars:
            forms.append(self.scalar_leaf(schema, scalars, ctx, with_description=single))
        if not forms:
            raise Unsatisfiable(ctx.path, "no type of the list can be satisfied")
        self._local_keywords(schema, types, ctx)
        if len(forms) == 1:
            return forms[0]
        self.step(ctx.path, "type-split", False, "a type list with objects or arrays is sent as anyOf, one per type")
        return Union(forms, _description(schema), self.graph)

    def untyped_node(self, schema: Mapping[str, Any], ctx: Ctx) -> Node:
        keys = set(schema)
        forms: list[Node] = []
        if keys & _OBJECT_KEYWORDS:
            with contextlib.suppress(Unsatisfiable):
                forms.append(self.object_node(schema, ctx, described=False))
        if keys & _ARRAY_KEYWORDS:
            with contextlib.suppress(Unsatisfiable):
                forms.append(self.array_node(schema, ctx, described=False))
        if not forms:
            return self.any_node(schema, ctx, None)
        forms.append(self.any_node(schema, ctx, None, quiet=True, described=False))
        self.step(
            ctx.path,
            "any-as-json-string",
            True,
            "no type: objects/arrays keep their shape, any other value is sent as JSON text; checked locally",
        )
        self._local_keywords(schema, None, ctx)
        return Union(forms, _description(schema), self.graph)

    def any_node(
        self,
        schema: Mapping[str, Any],
        ctx: Ctx,
        types: list[str] | None,
        *,
        quiet: bool = False,
        described: bool = True,
    ) -> Node:
        what = "a JSON object" if types == ["object"] else "any JSON value"
        hint = f"Write {what} as JSON text."
        if not quiet:
            self.step(
                ctx.path,
                "any-as-json-string",
                True,
                f"{what} cannot be expressed in strict mode: sent as a string holding JSON, parsed back and checked "
                "locally",
            )
        description = _description(schema) if described else None
        return Json(f"{description} ({hint})" if description else hint)

    def enum_node(self, schema: Mapping[str, Any], types: list[str] | None, ctx: Ctx) -> Node:
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        if types is not None:
            values = [v for v in values if json_type(v) in types or (json_type(v) == "integer" and "number" in types)]
        if not values:
            raise Unsatisfiable(ctx.path, "no enum/const value has an allowed type")
        self._local_keywords(schema, types, ctx, carried=frozenset({"pattern", *_NUMERIC}))
        if any(isinstance(v, dict | list) for v in values):
            self.step(ctx.path, "enum-as-json", False, "enum values with objects or arrays are sent as their JSON text")
            return EnumJson(values, _description(schema))
        inferred = types or list(dict.fromkeys(json_type(v) for v in values))
        out: dict[str, Any] = {}
        if _description(schema):
            out["description"] = schema["description"]
        out["type"] = inferred[0] if len(inferred) == 1 else inferred
        if "const" in schema:
            out["const"] = schema["const"]
        else:
            out["enum"] = values
        self._scalar_constraints(schema, inferred, out)
        return Leaf(out)

    def scalar_leaf(self, schema: Mapping[str, Any], types: list[str], ctx: Ctx, *, with_description: bool) -> Leaf:
        impossible = impossible_bounds(schema, types)
        if impossible is not None:
            raise Unsatisfiable(ctx.path, impossible)
        out: dict[str, Any] = {}
        if with_description and _description(schema):
            out["description"] = schema["description"]
        out["type"] = types[0] if len(types) == 1 else types
        self._scalar_constraints(schema, types, out)
        return Leaf(out)

    def _scalar_constraints(self, schema: Mapping[str, Any], types: list[str], out: dict[str, Any]) -> None:
        if "string" in types:
            if schema.get("format") in SUPPORTED_FORMATS:
                out["format"] = schema["format"]
            if isinstance(schema.get("pattern"), str):
                out["pattern"] = schema["pattern"]
        if "number" in types or "integer" in types:
            for key in _NUMERIC:
                if _is_number(schema.get(key)):
                    out[key] = schema[key]

    def _local_keywords(
        self, schema: Mapping[str, Any], types: list[str] | None, ctx: Ctx, carried: frozenset[str] = frozenset()
    ) -> None:
        """Steps for the constraints the strict form does not carry (the user's schema checks them)."""
        for key in schema:
            if key in carried or key not in _LOCAL_NOTES or not _applies(key, types):
                continue
            if key in ("minProperties", "maxProperties", "propertyNames"):
                continue  # the object conversion records those itself
            self.step(ctx.path, "local-check", True, _LOCAL_NOTES[key])
        fmt = schema.get("format")
        if (
            isinstance(fmt, str)
            and fmt not in SUPPORTED_FORMATS
            and (types is None or {"string", "number", "integer"} & set(types))
        ):
            if format_checked(fmt):
                self.step(
                    ctx.path, "local-check", True, f"format {fmt!r} is not in strict mode's list; checked locally"
                )
            else:
                self.step(ctx.path, "local-check", True, f"format {fmt!r} is not known to the validator: not checked")

    # -- objects ----------------------------------------------------------------------------------------------------


def _constant(view: Mapping[str, Any], name: str) -> str | None:
    """The one value property ``name`` may have in ``view`` (a ``const`` or a one-value ``enum``), as its repr."""
    properties = view.get("properties")
    sub = properties.get(name) if isinstance(properties, Mapping) else None
    if not isinstance(sub, Mapping):
        return None
    if "const" in sub:
        return repr(sub["const"])
    enum = sub.get("enum")
    return repr(enum[0]) if isinstance(enum, list) and len(enum) == 1 else None


def _common_required(views: list[Mapping[str, Any]], outer: list[Any]) -> list[str]:
    common: list[str] | None = None
    for view in views:
        required = (
            [r for r in view.get("required", []) if isinstance(r, str)]
            if isinstance(view.get("required"), list)
            else []
        )
        required += [r for r in outer if isinstance(r, str)]
        common = required if common is None else [r for r in common if r in required]
    return common or []


def impossible_bounds(schema: Mapping[str, Any], types: list[str]) -> str | None:
    """Why no value of ``types`` meets the schema's own bounds (``minimum`` above ``maximum``, an exclusive bound
    equal to the other, no integer between them, ``minLength`` above ``maxLength``), or None. Only a schema of one
    kind is judged: with another type allowed, that type may still be valid."""
    kinds = set(types)
    if kinds and kinds <= {"number", "integer"}:
        low, low_open = _bound(schema, "minimum", "exclusiveMinimum")
        high, high_open = _bound(schema, "maximum", "exclusiveMaximum")
        if low is not None and high is not None:
            if low > high or (low == high and (low_open or high_open)):
                return f"no number is at least {low} and at most {high} (with the exclusive bounds)"
            if kinds == {"integer"}:
                first = math.floor(low) + 1 if low_open or low != math.floor(low) else int(low)
                last = math.ceil(high) - 1 if high_open or high != math.ceil(high) else int(high)
                if first > last:
                    return f"no integer lies between {low} and {high}"
    if kinds == {"string"}:
        shortest, longest = schema.get("minLength"), schema.get("maxLength")
        if isinstance(shortest, int | float) and isinstance(longest, int | float) and shortest > longest:
            return f"minLength {shortest} is above maxLength {longest}"
    return None


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str) -> tuple[float | None, bool]:
    """A bound and whether it is exclusive: draft 6 and later give the exclusive one as a number, draft 4 as a
    boolean beside the inclusive one."""
    value, open_value = schema.get(inclusive), schema.get(exclusive)
    candidates: list[tuple[float, bool]] = []
    if isinstance(value, int | float) and not isinstance(value, bool):
        candidates.append((float(value), open_value is True))
    if isinstance(open_value, int | float) and not isinstance(open_value, bool):
        candidates.append((float(open_value), True))
    if not candidates:
        return None, False
    lower = inclusive == "minimum"
    # The tighter bound wins: the larger lower bound, the smaller upper one (exclusive first on a tie).
    return max(candidates, key=lambda c: (c[0], c[1])) if lower else min(candidates, key=lambda c: (c[0], -c[1]))
