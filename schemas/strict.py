"""The strict conversion's public helpers, kept for their callers; the conversion itself is ``schemas.codec``.

``schemas.codec`` owns turning a user's schema into what strict mode accepts *and* back (a codec: the strict schema,
its inverse and the user's own schema as the validator). This module keeps the names other modules and older code
import: :func:`to_strict_json_schema` (the codec's strict schema), :func:`canonical_schema_json` (fingerprints),
:func:`schema_name` (response format names), :func:`local_constraints` (the fingerprint's part for constraints that
are checked but not sent), the limits, and :func:`drop_nulls_for_optional` -- the null-removal of the conversion
before codecs, used to read answers to batches that were submitted with it (``schemas.registry``).

This module does no IO.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any, Literal
from urllib.parse import unquote

import orjson

from schemas.codec import (
    MAX_JSON_DEPTH,
    MAX_NESTING_LEVELS,
    SchemaError,
    build_codec,
    check_json_depth,
    object_nesting,
)
from schemas.codec.keywords import SUPPORTED_FORMATS

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
    "to_strict_json_schema",
]

LOCAL_ONLY_KEYWORDS = ("minLength", "maxLength", "uniqueItems")
"""Constraints the API refuses in a strict schema: never sent, always checked by the user's schema; listed in the
fingerprint (:func:`local_constraints`)."""

_LOCAL_LENGTHS = ("minLength", "maxLength")
_NAME_INVALID = re.compile(r"[^a-zA-Z0-9_-]+")


def to_strict_json_schema(
    schema: Mapping[str, Any], *, open_objects: Literal["extras", "closed"] = "closed"
) -> dict[str, Any]:
    """The strict schema ``schemas.codec.build_codec`` sends for ``schema`` (a copy).

    ``open_objects`` defaults to ``closed`` here, the conversion's behaviour before codecs (every object closed);
    ``schemas.registry`` chooses per source (files: ``extras``).

    Raises:
        SchemaError: As ``build_codec``.
    """
    copied: dict[str, Any] = orjson.loads(orjson.dumps(build_codec(schema, open_objects=open_objects).strict_schema))
    return copied


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
    """The null-removal of the conversion before codecs: remove a ``null`` the model gave for an optional property
    whose source schema does not allow ``null``. ``schemas.codec`` does this exactly (it knows which nulls it
    introduced); this walk is kept to read answers to batches submitted before it (``schemas.registry``).

    The walk follows nested objects, arrays, ``$ref``, ``allOf`` and, for unions, the object branch that best fits
    the data.

    Args:
        data: The decoded model output. Not mutated.
        source_schema: The schema before the strict conversion (its ``required`` lists say what was optional).

    Returns:
        A new structure with those nulls removed; everything else copied unchanged.
    """
    return _NullDropper(source_schema).walk(data, source_schema)


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

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

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


def _unescape_pointer_token(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


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
