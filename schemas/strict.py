"""Conversion of any JSON Schema to the subset OpenAI Structured Outputs accepts with ``strict: true``.

Strict mode constrains decoding to the schema, but it accepts only a subset of JSON Schema: every object must
list all of its properties in ``required`` and set ``additionalProperties: false``; ``allOf``, ``default`` and most
annotation keywords are rejected; the root must be a plain object. Users give us pydantic models and hand-written
files that use all of those, so this module rewrites them. The rewrite is lossy in one way only: a property that
may be *absent* becomes a property that must be present but may be ``null``. :func:`drop_nulls_for_optional`
undoes that on the model's output, so the original pydantic model can apply its defaults.

Rules (each chosen so the result is accepted by the API and validates the same documents where possible):

* **Optional → nullable.** A property missing from the source ``required`` list becomes required and, unless its
  source schema already admits ``null``, is wrapped as ``{"anyOf": [<schema>, {"type": "null"}]}``. The
  ``description`` moves to the wrapper; an existing ``anyOf`` gets a ``null`` branch appended instead of being
  wrapped again. ``anyOf`` is used even for plain typed schemas (never ``"type": [..., "null"]``) so that enums and
  ``$ref`` targets are handled by the same rule.
* **``$ref``.** A bare ``$ref`` is kept (its target stays in ``$defs``). A ``$ref`` with sibling keywords that
  survive conversion (typically ``description``, as pydantic emits for documented enum or model fields) is
  *inlined*: the target is copied into place and the siblings override its keys, as the official ``openai`` SDK
  does. A recursive reference (its target is being converted already) stays a bare ``$ref`` and loses its siblings,
  because inlining it would never end. A single-element ``allOf`` is unwrapped into its element; a multi-element
  ``allOf`` of object schemas is merged into one object; anything else is a :class:`SchemaError`.
* **Keywords.** Kept: ``type``, ``description``, ``enum``, ``const``, ``anyOf`` (``oneOf`` becomes ``anyOf``),
  ``properties``, ``items``, ``$ref``, ``$defs``/``definitions``, the string constraints ``pattern`` and ``format``
  (only the values in :data:`SUPPORTED_FORMATS`), the number constraints ``minimum``, ``maximum``,
  ``exclusiveMinimum``, ``exclusiveMaximum``, ``multipleOf`` and the array constraints ``minItems``, ``maxItems``.
  Everything else (``title``, ``default``, ``examples``, ``$schema``, ``discriminator`` ...) is dropped. Titles go
  too: pydantic derives them from field names, so they only cost tokens.
* **Constraints checked by us, not sent.** :data:`LOCAL_ONLY_KEYWORDS` (``minLength``, ``maxLength``,
  ``uniqueItems``) constrain values of shapes strict mode can express, but the API refuses a strict schema that
  carries them. :func:`to_strict_json_schema` leaves them out of the schema sent to the API;
  :func:`to_local_validation_schema` is the same conversion with them kept, and is what our validator checks an
  answer against (``schemas.registry.validator_for``), so a too-short string is repaired or failed by us instead of
  the whole request being refused. The model is not constrained by them while it decodes; only the description
  tells it. :func:`local_constraints` lists them for the fingerprint (two schemas that differ only in a local
  constraint must not share cached answers).
* **Tuples.** Strict mode has no ``prefixItems``; a tuple becomes an array whose ``items`` is the ``anyOf`` of its
  element schemas (one schema when all elements agree), keeping ``minItems``/``maxItems``. Positions are then
  checked by the pydantic model when there is one.
* **Nesting.** A schema whose objects nest more than :data:`MAX_NESTING_LEVELS` (10) levels deep, counted by
  :func:`object_nesting` through ``$ref`` targets, raises :class:`SchemaError` naming the deepest path: the API would
  refuse it on every call. A document nested deeper than :data:`MAX_JSON_DEPTH` as JSON is refused before anything
  recursive reads it (:func:`check_json_depth`), so a generated or hostile file is one error, not a RecursionError.
* **Unrepresentable schemas raise.** Free-form mappings (``dict[str, X]``: an object without ``properties``),
  schemas without a type (``typing.Any``), arrays without ``items``, non-local ``$ref`` and non-object roots raise
  :class:`SchemaError` rather than silently producing a schema that loses data.

Which keywords the API accepts in strict mode: OpenAI's Structured Outputs guide, section "Supported schemas"
(https://developers.openai.com/api/docs/guides/structured-outputs#supported-schemas), lists as "Supported
properties" only ``pattern`` and ``format`` (date-time, time, date, duration, email, hostname, ipv4, ipv6, uuid) for
strings; ``multipleOf``, ``maximum``, ``exclusiveMaximum``, ``minimum``, ``exclusiveMinimum`` for numbers; and
``minItems``, ``maxItems`` for arrays. Under "Some type-specific keywords are not yet supported" it names the
composition keywords ``allOf``, ``not``, ``dependentRequired``, ``dependentSchemas``, ``if``, ``then``, ``else``, and
warns: "If you turn on Structured Outputs by supplying ``strict: true`` and call the API with an unsupported JSON
Schema, you will receive an error." Earlier copies of the guide listed ``minLength``, ``maxLength``, ``uniqueItems``
(and ``patternProperties``, ``propertyNames``, ``minProperties``, ``maxProperties``, ``contains`` ...) as not
supported; the current copy no longer names them, and does not list them as supported either. Refusals of both
have been reported since, as a 400 with code ``invalid_json_schema`` and messages like "In context=('properties',
'quote'), 'minLength' is not permitted." (and the same for ``'uniqueItems'``). We read the guide as quoted in public
repositories (2025-10 to 2026-09 copies, found with the search tool's code corpus), not from the live page.

Unreferenced ``$defs`` (for instance enums that were inlined everywhere) are pruned. The output is built in a fixed
keyword order from the input's order, so equal inputs give byte-identical output; the input is never mutated.
This module does no IO.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

import orjson

__all__ = [
    "LOCAL_ONLY_KEYWORDS",
    "MAX_JSON_DEPTH",
    "MAX_NESTING_LEVELS",
    "SUPPORTED_FORMATS",
    "SchemaError",
    "canonical_schema_json",
    "check_json_depth",
    "drop_nulls_for_optional",
    "local_constraints",
    "object_nesting",
    "schema_name",
    "to_local_validation_schema",
    "to_strict_json_schema",
]


class SchemaError(ValueError):
    """A schema that cannot be expressed in OpenAI's strict subset of JSON Schema (or is not a schema at all)."""


SUPPORTED_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
"""String ``format`` values strict mode accepts; other formats are dropped (the description still guides the model)."""

LOCAL_ONLY_KEYWORDS = ("minLength", "maxLength", "uniqueItems")
"""Constraints the API refuses in a strict schema: left out of what is sent, kept in what our validator checks."""

MAX_NESTING_LEVELS = 10
"""Levels of objects a strict schema may nest: OpenAI's Structured Outputs guide ("Supported schemas", as quoted in
``OPENAI-FACTS.md`` section 7) allows 10; its 2024 copy allowed 5, and the API's refusal then read "6 levels of
nesting exceeds limit of 5" (tidyverse/ellmer#671). Counted in objects, as :func:`object_nesting` does: the guide does
not say what a level is, and counting every subschema (``anyOf`` wrappers, arrays) would refuse ordinary nullable
nested models the API accepts."""

MAX_JSON_DEPTH = 64
"""How deep a schema document may nest as JSON (objects and arrays) before anything recursive reads it. A schema
within :data:`MAX_NESTING_LEVELS` stays far below it (about four JSON levels per object level, with nullable unions);
a far deeper one -- generated or hostile -- would exhaust Python's recursion in the JSON Schema validator."""

_JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
_NUMERIC_KEYWORDS = (
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
)
"""Numeric constraints strict mode supports (the guide's "Supported properties")."""
_LOCAL_LENGTHS = ("minLength", "maxLength")
# Keywords that change what a schema means; a $ref (or single allOf) with any of these beside it is not a mere
# annotated reference.
_STRUCTURAL = frozenset(
    {"type", "properties", "required", "additionalProperties", "items", "prefixItems", "anyOf", "oneOf", "allOf"}
    | {"enum", "const", "pattern", "format", *_NUMERIC_KEYWORDS, *LOCAL_ONLY_KEYWORDS}
)
# Sibling keywords of a $ref that survive conversion; if a $ref has none, it stays a bare $ref.
_SURVIVING_SIBLINGS = _STRUCTURAL | {"description"}
_DEF_KEYS = ("$defs", "definitions")
_NULL_SCHEMA: dict[str, Any] = {"type": "null"}
_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_-]+")


def to_strict_json_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a JSON Schema (pydantic's ``model_json_schema()`` or a user's file) to OpenAI's strict subset.

    This is the schema sent to the API. See the module docstring for the exact rules.

    Args:
        schema: The source schema. Local ``$ref`` pointers (``#/...``) are resolved against it. It is not mutated.

    Returns:
        A new schema, deterministic for a given input, whose every object has ``additionalProperties: false`` and
        lists all of its properties in ``required``, without :data:`LOCAL_ONLY_KEYWORDS`.

    Raises:
        SchemaError: The root is not an object schema, or some part cannot be expressed in strict mode. The message
            names the location (``properties.line_items.items``) so the user can fix it.
    """
    return _convert_root(schema, keep_local=False)


def to_local_validation_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The strict conversion with :data:`LOCAL_ONLY_KEYWORDS` kept: what our own validator checks an answer against.

    It accepts exactly the answers :func:`to_strict_json_schema`'s schema accepts, less those that break a
    ``minLength``, ``maxLength`` or ``uniqueItems`` of the source.

    Args:
        schema: The source schema (not mutated).

    Returns:
        A new schema; equal to :func:`to_strict_json_schema`'s when the source has no local-only constraint.

    Raises:
        SchemaError: As :func:`to_strict_json_schema`.
    """
    return _convert_root(schema, keep_local=True)


def local_constraints(schema: Any) -> list[list[Any]]:
    """Every local-only constraint in a schema, as ``[path, keyword, value]`` in document order.

    A plain walk of the JSON (a ``minLength`` key inside an ``enum`` value would be listed too, which only makes
    a fingerprint a little more specific). Empty for a schema without any, so fingerprints of such schemas are
    unaffected.

    Args:
        schema: A source schema.

    Returns:
        The constraints, e.g. ``[["properties/code", "minLength", 3]]``.
    """
    found: list[list[Any]] = []
    _collect_local(schema, "", found)
    return found


def _collect_local(node: Any, path: str, found: list[list[Any]]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if (key in _LOCAL_LENGTHS and _is_number(value)) or (key == "uniqueItems" and isinstance(value, bool)):
                found.append([path, key, value])
            else:
                _collect_local(value, f"{path}/{key}" if path else str(key), found)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _collect_local(value, f"{path}/{index}", found)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_json_depth(document: Any) -> None:
    """Raise :class:`SchemaError` when ``document`` nests deeper than :data:`MAX_JSON_DEPTH` as JSON. Iterative: it
    is the guard that runs before anything recursive (the validator, the conversion) sees the document."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise SchemaError(
                f"the schema nests more than {MAX_JSON_DEPTH} levels deep as JSON; strict mode accepts at most "
                f"{MAX_NESTING_LEVELS} levels of objects"
            )
        children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else ()
        pending.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list))


def object_nesting(schema: Mapping[str, Any]) -> tuple[int, str]:
    """How many levels of objects a strict schema nests, and the path to the deepest: ``(3, "a.b[]")``.

    The root object is level 1; an object in a property, in an array's ``items`` or in a union branch of an object is
    one level deeper. A ``$ref`` counts as its target, except a recursive one (the API accepts recursion: it ends the
    count there). The walk stops as soon as it passes :data:`MAX_NESTING_LEVELS`, and expands each definition at most
    once per level, so a wide or hostile schema costs no more than a walk per level.
    """
    deepest, where = 0, "<root>"
    expanded: dict[str, int] = {}
    pending: list[tuple[Any, int, str, frozenset[str]]] = [(schema, 0, "", frozenset({"#"}))]
    while pending:
        node, level, path, refs = pending.pop()
        if not isinstance(node, Mapping):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = _try_resolve(schema, ref)
            if target is None or ref in refs or expanded.get(ref, -1) >= level:
                continue
            expanded[ref] = level
            pending.append((target, level, path, refs | {ref}))
            continue
        declared = node.get("type")
        if declared == "object" or (isinstance(declared, list) and "object" in declared) or "properties" in node:
            level += 1
            if level > deepest:
                deepest, where = level, path or "<root>"
                if deepest > MAX_NESTING_LEVELS:
                    break
        for name, sub in _mapping_or_empty(node.get("properties")).items():
            pending.append((sub, level, f"{path}.{name}" if path else str(name), refs))
        pending.append((node.get("items"), level, f"{path}[]", refs))
        for keyword in ("anyOf", "oneOf"):
            branches = node.get(keyword)
            if isinstance(branches, list):
                pending.extend((branch, level, path, refs) for branch in branches)
    return deepest, where


def _check_nesting(schema: Mapping[str, Any]) -> None:
    levels, where = object_nesting(schema)
    if levels > MAX_NESTING_LEVELS:
        raise SchemaError(
            f"{where}: the schema nests {levels} levels of objects here; strict mode accepts at most "
            f"{MAX_NESTING_LEVELS} levels (OpenAI Structured Outputs limits): flatten it"
        )


def _convert_root(schema: Mapping[str, Any], *, keep_local: bool) -> dict[str, Any]:
    if not isinstance(schema, Mapping):
        raise SchemaError(f"a JSON Schema must be a JSON object, got {type(schema).__name__}")
    check_json_depth(schema)
    converter = _Converter(schema, keep_local=keep_local)
    root = converter.deref_and_flatten(schema, "<root>")
    _check_root_is_object(root)
    converter.stack.append("#")
    body = converter.convert({k: v for k, v in root.items() if k not in _DEF_KEYS}, "<root>")
    defs = {key: converter.convert_defs(key) for key in _DEF_KEYS if isinstance(schema.get(key), Mapping)}
    _prune_unreferenced_defs(body, defs)
    for key, converted in defs.items():
        if converted:
            body[key] = converted
    _check_nesting(body)
    return body


def canonical_schema_json(schema: Mapping[str, Any]) -> bytes:
    """Serialize a schema canonically (sorted keys, no whitespace, UTF-8) for fingerprints and equality checks.

    Args:
        schema: Any JSON-compatible mapping.

    Returns:
        The canonical bytes; equal schemas give equal bytes whatever their key order.
    """
    return orjson.dumps(schema, default=_mapping_to_dict, option=orjson.OPT_SORT_KEYS)


def schema_name(name: str) -> str:
    """Sanitize a name into the ``^[a-zA-Z0-9_-]{1,64}$`` form the API requires for a response format name.

    Accents are transliterated (``Rechnungsübersicht`` → ``Rechnungsubersicht``), every other run of invalid
    characters becomes one ``_``, and the result is cut to 64 characters.

    Args:
        name: A class name, a schema ``title`` or a file stem.

    Returns:
        A valid name; ``"schema"`` when nothing usable is left.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _NAME_INVALID.sub("_", ascii_name).strip("_")
    return cleaned[:64].rstrip("_") or "schema"


def drop_nulls_for_optional(data: Any, source_schema: Mapping[str, Any]) -> Any:
    """Undo the optional → nullable rewrite on a model output, before validating it with the original model.

    Strict mode forces the model to send every property, so for a field that was optional it sends ``null``. If
    the source schema for that property does not itself allow ``null`` (``currency: str = "USD"``), the key is
    removed so that pydantic applies the default instead of rejecting ``None``. Properties that allow ``null``
    (``str | None = None``) keep their ``null``. The walk follows nested objects, arrays, ``$ref``, ``allOf`` and,
    for unions, the object branch that best fits the data.

    Args:
        data: The decoded model output. Not mutated.
        source_schema: The schema *before* :func:`to_strict_json_schema` (its ``required`` lists say what was
            optional). ``$ref`` pointers are resolved against it; unresolvable parts are treated as unknown.

    Returns:
        A new structure with those nulls removed; everything else copied unchanged.
    """
    return _NullDropper(source_schema).walk(data, source_schema)


# --------------------------------------------------------------------------------------------------------------
# conversion


class _Converter:
    """One conversion: holds the source root for ``$ref`` resolution and the pointers being expanded."""

    def __init__(self, root: Mapping[str, Any], *, keep_local: bool = False) -> None:
        self.root = root
        self.keep_local = keep_local
        """Keep :data:`LOCAL_ONLY_KEYWORDS` (the local validation schema) instead of leaving them out."""
        # Pointers whose target is being converted right now (root, current $defs entry, inlined refs). A $ref to
        # one of them is recursive and must stay a bare $ref.
        self.stack: list[str] = []

    def convert_defs(self, key: str) -> dict[str, Any]:
        """Convert every entry of a root-level ``$defs``/``definitions`` section."""
        out: dict[str, Any] = {}
        for name, sub in self.root[key].items():
            self.stack.append(f"#/{key}/{_escape_pointer_token(name)}")
            try:
                out[name] = self.convert(sub, f"{key}.{name}")
            finally:
                self.stack.pop()
        return out

    def deref_and_flatten(self, node: Any, path: str) -> Mapping[str, Any]:
        """Follow ``$ref`` chains and flatten ``allOf`` at source level; for the root and for ``allOf`` merging."""
        seen: set[str] = set()
        current = self.flatten_all_of(_require_mapping(node, path), path)
        while "$ref" in current:
            ref = _require_ref(current, path)
            if ref in seen:
                raise SchemaError(f"{path}: $ref {ref!r} refers to itself without any content")
            seen.add(ref)
            target = _resolve_pointer(self.root, ref, path)
            siblings = {k: v for k, v in current.items() if k != "$ref"}
            current = self.flatten_all_of({**_without_defs(target), **siblings}, path)
        return current

    def flatten_all_of(self, node: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        """Remove ``allOf``: unwrap a single element, merge several object schemas, reject the rest."""
        all_of = node.get("allOf")
        if all_of is None:
            return node
        if not isinstance(all_of, list) or not all_of:
            raise SchemaError(f"{path}: allOf must be a non-empty list of schemas")
        rest = {k: v for k, v in node.items() if k != "allOf"}
        if len(all_of) == 1 and not (rest.keys() & _STRUCTURAL):
            # pydantic's {"allOf": [{"$ref": ...}], "description": ...}: the siblings only annotate the element.
            entry = _require_mapping(all_of[0], f"{path}.allOf[0]")
            return self.flatten_all_of({**entry, **rest}, path)
        return self._merge_objects(rest, all_of, path)

    def _merge_objects(self, rest: dict[str, Any], all_of: list[Any], path: str) -> dict[str, Any]:
        merged = {k: v for k, v in rest.items() if k not in ("properties", "required")}
        properties: dict[str, Any] = dict(_mapping_or_empty(rest.get("properties")))
        required: list[str] = [r for r in rest.get("required", []) if isinstance(r, str)]
        for i, entry in enumerate(all_of):
            part = self.deref_and_flatten(entry, f"{path}.allOf[{i}]")
            if not _is_plain_object(part):
                raise SchemaError(
                    f"{path}: allOf is only supported when every part is an object schema (it is merged into one "
                    f"object); part {i} is not. Rewrite it as a single schema."
                )
            for name, sub in _mapping_or_empty(part.get("properties")).items():
                if name in properties and properties[name] != sub:
                    raise SchemaError(f"{path}: allOf parts define property {name!r} differently; cannot merge them")
                properties[name] = sub
            required += [r for r in part.get("required", []) if isinstance(r, str) and r not in required]
            if "description" in part:
                merged.setdefault("description", part["description"])
        merged.update(type="object", properties=properties, required=required)
        return merged

    def convert(self, node: Any, path: str) -> dict[str, Any]:
        """Convert one schema node (recursively) into its strict form."""
        node = self.flatten_all_of(_require_mapping(node, path), path)
        if "$ref" in node:
            return self._convert_ref(node, path)
        types = _types_of(node, path)
        out: dict[str, Any] = {}
        if isinstance(node.get("description"), str):
            out["description"] = node["description"]
        if types:
            out["type"] = types[0] if len(types) == 1 else types
        if isinstance(node.get("enum"), list):
            out["enum"] = copy.deepcopy(node["enum"])
        if "const" in node:
            out["const"] = copy.deepcopy(node["const"])
        self._copy_constraints(node, out)
        self._convert_union(node, path, out)
        if "array" in types:
            out["items"] = self._convert_items(node, path)
        if "object" in types:
            self._convert_object(node, path, out)
        if not out.keys() & {"type", "anyOf", "enum", "const"}:
            raise SchemaError(
                f"{path}: schema has no type (typing.Any, an empty schema or only annotations); strict mode needs "
                "a concrete type, enum or union"
            )
        return out

    def _copy_constraints(self, node: Mapping[str, Any], out: dict[str, Any]) -> None:
        """The value constraints: the supported ones always, :data:`LOCAL_ONLY_KEYWORDS` only with ``keep_local``."""
        if node.get("format") in SUPPORTED_FORMATS:
            out["format"] = node["format"]
        if isinstance(node.get("pattern"), str):
            out["pattern"] = node["pattern"]
        for key in _NUMERIC_KEYWORDS:
            if _is_number(node.get(key)):
                out[key] = node[key]
        if self.keep_local:
            for key in _LOCAL_LENGTHS:
                if _is_number(node.get(key)):
                    out[key] = node[key]
            if isinstance(node.get("uniqueItems"), bool):
                out["uniqueItems"] = node["uniqueItems"]

    def _convert_ref(self, node: Mapping[str, Any], path: str) -> dict[str, Any]:
        ref = _require_ref(node, path)
        target = _resolve_pointer(self.root, ref, path)  # fail early on dangling references
        if not (node.keys() & _SURVIVING_SIBLINGS) or ref in self.stack:
            return {"$ref": ref}
        merged = {**_without_defs(target), **{k: v for k, v in node.items() if k != "$ref"}}
        self.stack.append(ref)
        try:
            return self.convert(merged, path)
        finally:
            self.stack.pop()

    def _convert_union(self, node: Mapping[str, Any], path: str, out: dict[str, Any]) -> None:
        if "anyOf" in node and "oneOf" in node:
            raise SchemaError(f"{path}: both anyOf and oneOf on one schema are not supported; use one of them")
        key = "anyOf" if "anyOf" in node else "oneOf" if "oneOf" in node else None
        if key is None:
            return
        branches = node[key]
        if not isinstance(branches, list) or not branches:
            raise SchemaError(f"{path}: {key} must be a non-empty list of schemas")
        converted: list[dict[str, Any]] = []
        for i, branch in enumerate(branches):
            result = self.convert(branch, f"{path}.{key}[{i}]")
            # A branch that is itself only a union adds nothing as a level of nesting.
            converted.extend(result["anyOf"] if result.keys() == {"anyOf"} else [result])
        out["anyOf"] = converted

    def _convert_items(self, node: Mapping[str, Any], path: str) -> dict[str, Any]:
        items = node.get("items")
        prefix = node.get("prefixItems")
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, node.get("additionalItems")
        if items is True or (items is None and prefix is None):
            raise SchemaError(f"{path}: array without an items schema; strict mode needs the item type")
        if prefix is None:
            return self.convert(items, f"{path}.items")
        if not isinstance(prefix, list) or not prefix:
            raise SchemaError(f"{path}: prefixItems must be a non-empty list of schemas")
        variants: list[dict[str, Any]] = []
        for i, sub in enumerate(prefix):
            variants.append(self.convert(sub, f"{path}.prefixItems[{i}]"))
        if isinstance(items, Mapping):
            variants.append(self.convert(items, f"{path}.items"))
        unique = list({canonical_schema_json(v): v for v in variants}.values())
        return unique[0] if len(unique) == 1 else {"anyOf": unique}

    def _convert_object(self, node: Mapping[str, Any], path: str, out: dict[str, Any]) -> None:
        properties = node.get("properties")
        if properties is None:
            if node.get("additionalProperties") is not False:
                raise SchemaError(
                    f"{path}: an object without declared properties (a free-form mapping such as dict[str, X]) "
                    "cannot be expressed in strict mode; declare its properties or use a list of key/value objects"
                )
            properties = {}
        if not isinstance(properties, Mapping):
            raise SchemaError(f"{path}: properties must be an object")
        required = node.get("required", [])
        converted: dict[str, Any] = {}
        for name, sub in properties.items():
            prop_path = name if path == "<root>" else f"{path}.{name}"
            result = self.convert(sub, prop_path)
            if name not in required and not _allows_null(sub, self.root, set()):
                result = _make_nullable(result)
            converted[name] = result
        out["properties"] = converted
        out["required"] = list(converted)
        out["additionalProperties"] = False


def _make_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """Wrap a converted schema so that it also accepts ``null`` (the description moves to the wrapper)."""
    out: dict[str, Any] = {}
    if "description" in schema:
        out["description"] = schema["description"]
    inner = {k: v for k, v in schema.items() if k != "description"}
    out["anyOf"] = [*inner["anyOf"], dict(_NULL_SCHEMA)] if inner.keys() == {"anyOf"} else [inner, dict(_NULL_SCHEMA)]
    return out


def _types_of(node: Mapping[str, Any], path: str) -> list[str]:
    """The node's JSON types; inferred from ``enum``/``const``/``properties``/``items`` when ``type`` is absent."""
    declared = node.get("type")
    if declared is None:
        if "enum" in node or "const" in node:
            values = node["enum"] if isinstance(node.get("enum"), list) else [node.get("const")]
            types = [_json_type_of(value, path) for value in values]
        elif "properties" in node:
            types = ["object"]
        elif "items" in node or "prefixItems" in node:
            types = ["array"]
        else:
            types = []
    elif isinstance(declared, str):
        types = [declared]
    elif isinstance(declared, list) and declared and all(isinstance(t, str) for t in declared):
        types = declared
    else:
        raise SchemaError(f"{path}: type must be a string or a non-empty list of strings, got {declared!r}")
    unknown = [t for t in types if t not in _JSON_TYPES]
    if unknown:
        raise SchemaError(f"{path}: unknown type {unknown[0]!r}")
    return list(dict.fromkeys(types))


def _json_type_of(value: Any, path: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    raise SchemaError(f"{path}: enum/const values must be scalars in strict mode, got {value!r}")


def _check_root_is_object(root: Mapping[str, Any]) -> None:
    if "anyOf" in root or "oneOf" in root:
        raise SchemaError(
            "the root of the schema must be an object, not a union (anyOf/oneOf); wrap the union in a property"
        )
    if not _is_plain_object(root):
        found = root.get("type", "no type")
        raise SchemaError(
            f"the root of the schema must be an object (type: object with properties), found {found!r}; wrap the "
            "value in an object property"
        )


def _is_plain_object(node: Mapping[str, Any]) -> bool:
    declared = node.get("type")
    return declared == "object" or (declared is None and "properties" in node)


def _prune_unreferenced_defs(body: dict[str, Any], defs: dict[str, dict[str, Any]]) -> None:
    """Drop definitions nothing refers to any more (typically enums that were inlined at every use)."""
    reachable: set[tuple[str, str]] = set()
    pending = list(_iter_refs(body))
    while pending:
        entry = _def_of_ref(pending.pop())
        if entry is None or entry in reachable or entry[1] not in defs.get(entry[0], {}):
            continue
        reachable.add(entry)
        pending.extend(_iter_refs(defs[entry[0]][entry[1]]))
    for key, section in defs.items():
        for name in [n for n in section if (key, n) not in reachable]:
            del section[name]


def _iter_refs(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _iter_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _iter_refs(value)


def _def_of_ref(ref: str) -> tuple[str, str] | None:
    parts = ref.split("/")
    if len(parts) >= 3 and parts[0] == "#" and parts[1] in _DEF_KEYS:
        return parts[1], _unescape_pointer_token(parts[2])
    return None


# --------------------------------------------------------------------------------------------------------------
# null handling shared by the conversion and the inverse step


def _allows_null(schema: Any, root: Mapping[str, Any], seen: set[str]) -> bool:
    """Whether ``null`` is valid under ``schema`` (as far as type/enum/const/unions/$ref tell)."""
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, Mapping):
        return False
    checks: list[bool] = []
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if ref in seen:
            return False
        target = _try_resolve(root, ref)
        checks.append(target is not None and _allows_null(target, root, seen | {ref}))
    declared = schema.get("type")
    if isinstance(declared, str):
        checks.append(declared == "null")
    elif isinstance(declared, list):
        checks.append("null" in declared)
    if isinstance(schema.get("enum"), list):
        checks.append(None in schema["enum"])
    if "const" in schema:
        checks.append(schema["const"] is None)
    checks.extend(
        any(_allows_null(branch, root, seen) for branch in schema[key])
        for key in ("anyOf", "oneOf")
        if isinstance(schema.get(key), list)
    )
    if isinstance(schema.get("allOf"), list):
        checks.append(all(_allows_null(part, root, seen) for part in schema["allOf"]))
    return all(checks)


class _NullDropper:
    """The walk behind :func:`drop_nulls_for_optional`; lenient: unknown schema parts just copy the data."""

    def __init__(self, root: Mapping[str, Any], *, keep_local: bool = False) -> None:
        self.root = root
        self.keep_local = keep_local
        """Keep :data:`LOCAL_ONLY_KEYWORDS` (the local validation schema) instead of leaving them out."""

    def walk(self, data: Any, schema: Any) -> Any:
        if isinstance(data, dict):
            return self._walk_object(data, self._effective(schema))
        if isinstance(data, list):
            return self._walk_array(data, self._effective(schema))
        return data

    def _effective(self, schema: Any) -> Mapping[str, Any]:
        """Follow ``$ref`` chains and merge ``allOf`` parts into one view (properties and required united)."""
        seen: set[str] = set()
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and schema["$ref"] not in seen:
            seen.add(schema["$ref"])
            target = _try_resolve(self.root, schema["$ref"])
            schema = {**(target or {}), **{k: v for k, v in schema.items() if k != "$ref"}}
        if not isinstance(schema, Mapping):
            return {}
        if not isinstance(schema.get("allOf"), list):
            return schema
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        properties = dict(_mapping_or_empty(merged.get("properties")))
        required = list(merged.get("required", []))
        for part in schema["allOf"]:
            view = self._effective(part)
            properties.update(_mapping_or_empty(view.get("properties")))
            required += list(view.get("required", []))
            for key in ("items", "prefixItems", "anyOf", "oneOf"):
                if key in view:
                    merged.setdefault(key, view[key])
        merged.update(properties=properties, required=required)
        return merged

    def _walk_object(self, data: dict[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
        schema = self._pick_object_branch(data, schema)
        properties = _mapping_or_empty(schema.get("properties"))
        required = schema.get("required", [])
        out: dict[str, Any] = {}
        for key, value in data.items():
            sub = properties.get(key)
            if sub is None:
                out[key] = _copy_json(value)
            elif value is None and key not in required and not _allows_null(sub, self.root, set()):
                continue
            else:
                out[key] = self.walk(value, sub)
        return out

    def _walk_array(self, data: list[Any], schema: Mapping[str, Any]) -> list[Any]:
        if "items" not in schema and "prefixItems" not in schema:
            schema = next((b for b in self._branches(schema) if "items" in b or "prefixItems" in b), schema)
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items")
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems")
        return [self.walk(value, prefix[i] if i < len(prefix) else items) for i, value in enumerate(data)]

    def _branches(self, schema: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        """The union branches of a schema, nested unions flattened, each as an effective view."""
        for key in ("anyOf", "oneOf"):
            for branch in schema.get(key) or []:
                view = self._effective(branch)
                if "anyOf" in view or "oneOf" in view:
                    yield from self._branches(view)
                else:
                    yield view

    def _pick_object_branch(self, data: dict[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """For a union, the object branch that fits ``data`` best: all keys declared, constants matching."""
        if isinstance(schema.get("properties"), Mapping):
            return schema
        best: tuple[int, Mapping[str, Any]] | None = None
        for branch in self._branches(schema):
            properties = branch.get("properties")
            if not isinstance(properties, Mapping):
                continue
            score = 2 * (data.keys() <= properties.keys()) + _constants_match(data, properties)
            if best is None or score > best[0]:
                best = (score, branch)
        return best[1] if best is not None else schema


def _constants_match(data: Mapping[str, Any], properties: Mapping[str, Any]) -> bool:
    """Whether every ``const``/single-value ``enum`` property (a discriminator, typically) agrees with ``data``."""
    for key, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        enum = sub.get("enum")
        expected = [sub["const"]] if "const" in sub else enum if isinstance(enum, list) and len(enum) == 1 else None
        if expected is not None and key in data and data[key] != expected[0]:
            return False
    return True


# --------------------------------------------------------------------------------------------------------------
# small helpers


def _require_mapping(node: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(node, Mapping):
        raise SchemaError(f"{path}: expected a schema object, got {node!r}")
    return node


def _require_ref(node: Mapping[str, Any], path: str) -> str:
    ref = node["$ref"]
    if not isinstance(ref, str):
        raise SchemaError(f"{path}: $ref must be a string, got {ref!r}")
    return ref


def _resolve_pointer(root: Mapping[str, Any], ref: str, path: str) -> Mapping[str, Any]:
    target = _try_resolve(root, ref)
    if target is None:
        if not ref.startswith("#"):
            raise SchemaError(f"{path}: only local $ref pointers ('#/...') are supported, got {ref!r}")
        raise SchemaError(f"{path}: $ref {ref!r} does not point to a schema in this document")
    return target


def _try_resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any] | None:
    """Resolve a local JSON pointer (``#``, ``#/$defs/Name``); ``None`` when it does not resolve to an object."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for raw in ref[2:].split("/"):
        token = _unescape_pointer_token(unquote(raw))
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node if isinstance(node, Mapping) else None


def _escape_pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape_pointer_token(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _without_defs(node: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``node`` without definition sections, which must not be duplicated where a target is inlined."""
    return {k: v for k, v in node.items() if k not in _DEF_KEYS}


def _mapping_or_empty(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _copy_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def _mapping_to_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
