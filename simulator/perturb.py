"""Answers that differ on purpose: chosen output fields changed on one endpoint, for tests of ``producer compare``.

``--perturb ENDPOINT:PATH`` (``SimulatorConfig.perturb``; ENDPOINT is ``responses`` or ``chat.completions``, PATH a
dotted field path such as ``total`` or ``vendor.name``) makes every answer on that endpoint differ at that field, and
only there, in a way that stays valid for the schema: a number is multiplied by 1.5 (an integer gets 1 added), a
boolean flips, an enum takes its next value, a string without a pattern gets `` (revised)`` appended; a null, a
patterned string or a missing field is left alone. Without a rule the two endpoints answer a document alike (the
output seed does not depend on the endpoint), so a comparison between them shows exactly the perturbed fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SUFFIX = " (revised)"


def perturb(instance: Any, schema: dict[str, Any], paths: Iterable[str]) -> Any:
    """``instance`` with each of ``paths`` changed as the module note says (a new object; the input is not changed)."""
    for path in paths:
        instance = _at(instance, schema, schema, path.split("."))
    return instance


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/"):
        target: Any = root
        for part in node["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        node = target if isinstance(target, dict) else {}
    for key in ("anyOf", "oneOf"):
        options = [o for o in node.get(key, []) if isinstance(o, dict) and o.get("type") != "null"]
        if options:
            return _resolve(options[0], root)
    return node


def _at(value: Any, node: dict[str, Any], root: dict[str, Any], parts: list[str]) -> Any:
    node = _resolve(node, root)
    if not parts:
        return _changed(value, node)
    if not isinstance(value, dict) or parts[0] not in value:
        return value
    child = node.get("properties", {}).get(parts[0], {})
    return {**value, parts[0]: _at(value[parts[0]], child, root, parts[1:])}


def _changed(value: Any, node: dict[str, Any]) -> Any:
    if value is None:
        return None
    enum = node.get("enum")
    if isinstance(enum, list) and value in enum and len(enum) > 1:
        return enum[(enum.index(value) + 1) % len(enum)]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value * 1.5, 6) if value else 1.0
    if isinstance(value, str) and "pattern" not in node and "format" not in node:
        return value + SUFFIX
    return value
