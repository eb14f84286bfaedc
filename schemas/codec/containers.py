"""The builder's containers: objects (declared properties, maps as key/value pairs, the channel of an open object)
and arrays (items, tuples). ``schemas.codec.build.Builder`` is the walk; this is its half that knows containers."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from schemas.codec.context import (
    _ANY_VALUES_NOTE,
    _LOCAL_NOTES,
    _NULL_DECIDERS,
    CHANNEL_NAME,
    Ctx,
    OpenObjects,
    _description,
    _is_number,
)
from schemas.codec.errors import Unsatisfiable, schema_path
from schemas.codec.merge import ABSENT, type_list
from schemas.codec.nodes import Array, Graph, Json, Leaf, Node, Object, PairKind, Pairs, Prop, Union, key_checker
from schemas.codec.steps import Step
from schemas.codec.validation import SchemaValidator, python_regex

__all__ = ["ContainerBuilder"]


class ContainerBuilder:
    """Objects and arrays; the walk itself (:meth:`node`, :meth:`any_node`, :meth:`step`) is the subclass's."""

    graph: Graph
    open_objects: OpenObjects
    draft3: bool
    validator: SchemaValidator
    steps: dict[tuple[str, str, str], Step]

    def node(self, schema: Any, ctx: Ctx) -> Node:
        raise NotImplementedError

    def step(self, path: str, kind: str, lossy: bool, note: str) -> None:
        raise NotImplementedError

    def any_node(
        self,
        schema: Mapping[str, Any],
        ctx: Ctx,
        types: list[str] | None,
        *,
        quiet: bool = False,
        described: bool = True,
    ) -> Node:
        raise NotImplementedError

    def allows_null(self, schema: Any) -> bool:
        """Whether ``null`` is valid under a subschema of the user's schema (its own validator says; a plain typed
        schema is answered without it)."""
        if isinstance(schema, Mapping) and not (schema.keys() & _NULL_DECIDERS):
            types = type_list(schema.get("type"))
            if types is not None:
                return "null" in types
        return self.validator.valid_under(schema, None) is True

    def object_node(self, schema: Mapping[str, Any], ctx: Ctx, *, described: bool = True) -> Node:  # noqa: C901
        raw_props = schema.get("properties")
        props: Mapping[str, Any] = raw_props if isinstance(raw_props, Mapping) else {}
        required = (
            [r for r in schema.get("required", []) if isinstance(r, str)]
            if isinstance(schema.get("required"), list)
            else []
        )
        if self.draft3:
            required += [
                name for name, sub in props.items() if isinstance(sub, Mapping) and sub.get("required") is True
            ]
        additional = schema.get("additionalProperties", ABSENT)
        if additional is ABSENT and schema.get("unevaluatedProperties") is False:
            additional = False
        raw_patterns = schema.get("patternProperties")
        patterns: list[tuple[str, str | None, Any]] = []
        if isinstance(raw_patterns, Mapping):
            patterns = [(str(p), python_regex(str(p)), sub) for p, sub in raw_patterns.items()]
        description = _description(schema) if described else None
        out_props: list[Prop] = []
        for name in list(dict.fromkeys([*props, *required])):
            sub: Any = props.get(name, ABSENT)
            matching = [psub for p, rx, psub in patterns if rx is not None and re.search(rx, name)]
            if sub is ABSENT:
                if matching:
                    sub = {"allOf": matching}
                elif additional is False:
                    raise Unsatisfiable(
                        schema_path(ctx.path, "required"),
                        f"{name!r} is required, but no property declares it and additionalProperties is false",
                    )
                elif additional is ABSENT or additional is True:
                    sub = True
                else:
                    sub = additional
                self.step(
                    ctx.path,
                    "required-undeclared",
                    False,
                    f"required {name!r} is not among the properties: declared with the schema extra keys have",
                )
            elif matching:
                sub = {"allOf": [sub, *matching]}
                self.step(
                    ctx.path,
                    "pattern-on-declared",
                    False,
                    f"patternProperties matching {name!r} merged into its schema",
                )
            try:
                child = self.node(sub, ctx.at("properties", name) if name in props else ctx.at("required"))
            except Unsatisfiable as exc:
                if name in required:
                    raise
                self.step(exc.path, "dropped", False, f"optional {name!r} can never be valid: left out")
                continue
            optional = name not in required
            out_props.append(Prop(name, child, optional, optional and not self.allows_null(sub)))
        for p, rx, _ in patterns:
            if rx is None:
                self.step(ctx.path, "local-check", True, f"patternProperties {p!r} is not a Python regex: not checked")
        kinds = self._pair_kinds(schema, patterns, additional, ctx)
        bounds: dict[str, Any] = {}
        exact_bounds = not out_props
        for source, target in (("minProperties", "minItems"), ("maxProperties", "maxItems")):
            limit = schema.get(source)
            if isinstance(limit, int | float) and not isinstance(limit, bool) and exact_bounds and kinds:
                bounds[target] = int(limit)
            elif source in schema:
                self.step(ctx.path, "local-check", True, _LOCAL_NOTES[source])
        if not out_props:
            if not kinds:
                return Object([], description=description, graph=self.graph)
            only_any = (
                len(kinds) == 1 and isinstance(kinds[0].value, Json) and kinds[0].key_schema == {"type": "string"}
            )
            if only_any and not bounds:
                self.steps.pop((ctx.path, "any-as-json-string", _ANY_VALUES_NOTE), None)
                return self.any_node(schema, ctx, ["object"], described=described)
            self.step(
                ctx.path,
                "map-as-pairs",
                False,
                'an object with free keys is sent as an array of {"key", "value"} items, rebuilt into an object',
            )
            return Pairs(kinds, bounds, description, self.graph)
        channel = None
        if kinds:
            channel = Pairs(kinds, {}, "Properties not listed above, as key/value items; usually empty.", self.graph)
            self.step(
                ctx.path,
                "extra-keys-channel",
                False,
                f'undeclared keys are sent as {{"key", "value"}} items in "{CHANNEL_NAME}" (values of any '
                "shape as JSON text), merged back",
            )
        taken = {prop.name for prop in out_props}
        channel_name = CHANNEL_NAME
        while channel_name in taken:
            channel_name = "_" + channel_name
        for prop in out_props:
            if prop.optional:
                self.step(
                    schema_path(ctx.path, "properties", prop.name),
                    "optional-nullable",
                    False,
                    "optional: sent as required and nullable; a null the model gives is removed",
                )
        return Object(out_props, channel, channel_name, description, self.graph)

    def _pair_kinds(
        self, schema: Mapping[str, Any], patterns: list[tuple[str, str | None, Any]], additional: Any, ctx: Ctx
    ) -> list[PairKind]:
        kinds: list[PairKind] = []
        for pattern, rx, sub in patterns:
            try:
                matched = self.node(sub, ctx.at("patternProperties", pattern))
            except Unsatisfiable:
                continue
            kinds.append(PairKind({"type": "string", "pattern": pattern}, matched, key_checker(rx, None)))
        open_any = additional is True or additional == {} or (additional is ABSENT and self.open_objects == "extras")
        if additional is False or (additional is ABSENT and not open_any):
            return kinds
        key_schema: dict[str, Any] = {"type": "string"}
        key_pattern: str | None = None
        key_enum: list[Any] | None = None
        names = schema.get("propertyNames")
        if isinstance(names, Mapping):
            if isinstance(names.get("pattern"), str) and python_regex(names["pattern"]) is not None:
                key_schema["pattern"] = names["pattern"]
                key_pattern = python_regex(names["pattern"])
            values = [names["const"]] if "const" in names else names.get("enum")
            if isinstance(values, list) and all(isinstance(v, str) for v in values):
                key_schema["enum"] = list(values)
                key_enum = list(values)
            self.step(ctx.path, "local-check", True, _LOCAL_NOTES["propertyNames"])
        if open_any:
            value: Node = self.any_node({}, ctx.at("additionalProperties"), None, quiet=True)
            if additional is not ABSENT:
                self.step(ctx.path, "any-as-json-string", True, _ANY_VALUES_NOTE)
        else:
            try:
                value = self.node(additional, ctx.at("additionalProperties"))
            except Unsatisfiable:
                return kinds
        kinds.append(PairKind(key_schema, value, key_checker(key_pattern, key_enum)))
        return kinds

    # -- arrays -----------------------------------------------------------------------------------------------------

    def array_node(self, schema: Mapping[str, Any], ctx: Ctx, *, described: bool = True) -> Node:
        items = schema.get("items", ABSENT)
        prefix = schema.get("prefixItems")
        rest_key = "items"
        if isinstance(items, list):  # draft 4-2019 tuple form
            prefix, items, rest_key = items, schema.get("additionalItems", ABSENT), "additionalItems"
        bounds: dict[str, Any] = {}
        for key in ("minItems", "maxItems"):
            if _is_number(schema.get(key)):
                bounds[key] = int(schema[key])
        description = _description(schema) if described else None
        if isinstance(prefix, list) and prefix:
            return self._tuple(prefix, items, rest_key, bounds, description, ctx)
        if items is ABSENT or items is True or items == {}:
            item: Node = self.any_node({}, ctx.at("items"), None, quiet=True)
            self.step(
                ctx.path,
                "any-as-json-string",
                True,
                "array items of any type are sent as strings holding JSON, parsed back and checked locally",
            )
        elif items is False:
            item, bounds["maxItems"] = Leaf({"type": "null"}), 0
        else:
            try:
                item = self.node(items, ctx.at("items"))
            except Unsatisfiable:
                item, bounds["maxItems"] = Leaf({"type": "null"}), 0
        if bounds.get("minItems", 0) > bounds.get("maxItems", bounds.get("minItems", 0)):
            raise Unsatisfiable(ctx.path, "minItems is above maxItems (or no item can be valid)")
        return Array(item, bounds, description)

    def _tuple(
        self, prefix: list[Any], rest: Any, rest_key: str, bounds: dict[str, Any], description: str | None, ctx: Ctx
    ) -> Node:
        variants: list[Node] = []
        for i, sub in enumerate(prefix):
            try:
                variants.append(self.node(sub, ctx.at("prefixItems" if rest_key == "items" else "items", i)))
            except Unsatisfiable:
                bounds["maxItems"] = min(bounds.get("maxItems", i), i)
                break
        if rest is False:
            bounds.setdefault("maxItems", len(prefix))
        elif (rest is ABSENT or rest is True or rest == {}) and bounds.get("maxItems", len(prefix) + 1) > len(prefix):
            variants.append(self.any_node({}, ctx.at(rest_key), None, quiet=True))  # items past the tuple: any value
        elif rest is not ABSENT and rest is not True and rest != {}:
            try:
                variants.append(self.node(rest, ctx.at(rest_key)))
            except Unsatisfiable:
                bounds["maxItems"] = min(bounds.get("maxItems", len(prefix)), len(prefix))
        if bounds.get("minItems", 0) > bounds.get("maxItems", bounds.get("minItems", 0)):
            raise Unsatisfiable(ctx.path, "the tuple's minItems cannot be reached")
        if not variants:  # only the empty array is valid
            return Array(Leaf({"type": "null"}), {"maxItems": 0}, description)
        self.step(
            ctx.path,
            "tuple-as-array",
            True,
            "a tuple is sent as an array of the union of its item schemas: positions are checked locally",
        )
        item = variants[0] if len(variants) == 1 else Union(variants, None, self.graph)
        ordered: dict[str, Any] = {k: bounds[k] for k in ("minItems", "maxItems") if k in bounds}
        return Array(item, ordered, description)
