"""Schemas are codecs: the strict schema we send, and the exact inverse that gives the user their own shape back.

A user's schema (a pydantic model's JSON Schema or a file, any draft) becomes a :class:`SchemaCodec`:

* ``strict_schema`` -- what is sent with ``strict: true``, within OpenAI's rules and limits (audited by
  ``schemas.codec.limits.strict_problems`` before the codec exists);
* ``decode(answer)`` -- a strict-shaped answer back in the user's shape: the nulls strict mode forced into optional
  properties removed (only those: an explicit ``null`` where the user's schema forbids it stays and is rejected),
  wrappers removed, key/value pairs rebuilt into objects, JSON text parsed; ``encode`` is its inverse;
* ``validate(instance)`` -- the errors of an instance under the user's ORIGINAL schema, with its own draft and its
  formats checked (``schemas.codec.validation``); it never raises;
* ``steps`` -- every transformation, with its place in the user's schema; a lossy one (what strict decoding no
  longer guarantees) is checked by ``validate`` and announced at submit.

Transformations (``schemas.codec.build``; each with its inverse):

=====================  ==========================================================  ==================================
kind                   sent                                                        decoded
=====================  ==========================================================  ==================================
optional-nullable      an optional property as required and nullable               a null the model gives is removed
wrap-root              a root that is not an object as ``{"value": ...}``          unwrapped
map-as-pairs           ``additionalProperties: {schema}`` / ``patternProperties``  rebuilt into an object
                       as an array of ``{"key", "value"}`` (key pattern kept)
extra-keys-channel     an open object's undeclared keys as ``__extra__`` pairs     merged into the object
allof-merge            ``allOf`` (and ``$ref`` with siblings) merged keyword by    --
                       keyword; what cannot merge exactly is checked locally
union-distribute       keywords beside ``anyOf``/``oneOf`` merged into each        --
                       branch
ref-hoist              a definition outside the root's ``$defs`` moved into it     --
type-split             a type list with objects/arrays as ``anyOf``                --
enum-as-json           object/array enum values as their JSON texts                parsed
any-as-json-string     a value of any shape as a string of JSON text (lossy)       parsed (text that is not JSON
                                                                                   is the string itself)
oneof-as-anyof         ``oneOf`` as ``anyOf`` when branches may overlap (lossy)    --
tuple-as-array         ``prefixItems`` as an array of their union (lossy)          --
local-check            a keyword strict mode lacks (``not``, ``if``, ``minLength``,  --
                       formats outside its list ...) left out (lossy)
limit-enum/-collapse   an enum or a subtree over the size limits (lossy)           parsed
=====================  ==========================================================  ==================================

"Any value" (``{}``, ``true``, a bare ``{"type": "object"}``, an untyped schema, array items of any type) has one
strategy: a string holding the value's JSON text. The provider then guarantees only that it is a string; we parse it
and hold the result to the user's schema (a repair prompt says what is wrong). An untyped schema that has object
or array keywords keeps that shape as one branch, with the JSON text as the other.

Refused (:class:`SchemaError`, naming the place): what is not a JSON Schema, a ``$ref`` to nowhere or to another
document, and what no value satisfies (``false``, types or enums with nothing in common, a required key an object
forbids). Nothing else is.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson
from jsonschema import Draft7Validator, Draft201909Validator, Draft202012Validator

from schemas.codec.build import CHANNEL_NAME, Builder, OpenObjects
from schemas.codec.errors import CodecError, SchemaError, data_path, schema_path
from schemas.codec.keywords import iter_subschemas
from schemas.codec.limits import (
    MAX_JSON_DEPTH,
    MAX_NESTING_LEVELS,
    check_json_depth,
    fit,
    object_nesting,
    strict_problems,
)
from schemas.codec.nodes import PREFER_ABSENT, Emitter, Graph, Node
from schemas.codec.steps import Step
from schemas.codec.validation import MAX_REPORTED_ERRORS, SchemaValidator, draft_class

__all__ = [
    "CHANNEL_NAME",
    "MAX_JSON_DEPTH",
    "MAX_NESTING_LEVELS",
    "MAX_REPORTED_ERRORS",
    "CodecError",
    "OpenObjects",
    "SchemaCodec",
    "SchemaError",
    "SchemaValidator",
    "Step",
    "build_codec",
    "check_json_depth",
    "metaschema_problem",
    "object_nesting",
    "strict_problems",
]

_HARMLESS_META = frozenset({"minItems", "uniqueItems"})
"""Meta-schema complaints that change nothing a validator does (draft 4's ``required: []``, a repeated enum value)."""


_LARGE_SCHEMA_BYTES = 100_000
"""Above this, :func:`metaschema_problem` checks the keywords' shapes itself (one walk) instead of running the
meta-schema, which costs most of a second on a schema of thousands of properties."""

_TYPE_NAMES = frozenset({"string", "number", "integer", "boolean", "null", "object", "array", "any"})
_SCHEMA_OR_BOOL = ("additionalProperties", "additionalItems", "not", "if", "then", "else", "contains", "propertyNames")
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum", "multipleOf")


def _shape_problem(schema: Any) -> tuple[str, str] | None:
    """The meta-schema's core checks, as one walk: each keyword's value has the shape its draft requires."""
    for where, node in iter_subschemas(schema):
        if isinstance(node, bool):
            continue
        if not isinstance(node, Mapping):
            return where, f"{where}: {node!r} is not of type 'object', 'boolean'"
        problem = _node_shape(node)
        if problem is not None:
            return schema_path(where, problem), f"{problem}: {node[problem]!r} is not valid here"
    return None


def _node_shape(node: Mapping[str, Any]) -> str | None:  # noqa: C901 -- one test per keyword family
    declared = node.get("type")
    if declared is not None and not (
        (isinstance(declared, str) and declared in _TYPE_NAMES)
        or (isinstance(declared, list) and all(isinstance(t, str | dict) for t in declared))
    ):
        return "type"
    if "required" in node and not isinstance(node["required"], list | bool):
        return "required"
    if "enum" in node and not isinstance(node["enum"], list):
        return "enum"
    if "pattern" in node and not isinstance(node["pattern"], str):
        return "pattern"
    if "$ref" in node and not isinstance(node["$ref"], str):
        return "$ref"
    for key in _SCHEMA_OR_BOOL:
        if key in node and not isinstance(node[key], Mapping | bool):
            return key
    for key in _SCHEMA_MAPS:
        if key in node and not isinstance(node[key], Mapping):
            return key
    for key in _SCHEMA_LISTS:
        if key in node and not (isinstance(node[key], list) and node[key]):
            return key
    if "items" in node and not isinstance(node["items"], Mapping | bool | list):
        return "items"
    for key in _COUNTS:
        if key in node and not (isinstance(node[key], int) and not isinstance(node[key], bool) and node[key] >= 0):
            return key
    for key in _NUMBERS:
        if key in node and (isinstance(node[key], bool) or not isinstance(node[key], int | float)):
            return key
    return None


class SchemaCodec:
    """A user's schema as a codec (see the module docstring). Build with :func:`build_codec`."""

    def __init__(
        self,
        source: Any,
        strict_schema: dict[str, Any],
        root: Node,
        graph: Graph,
        steps: tuple[Step, ...],
        validator: SchemaValidator,
        *,
        name: str,
        open_objects: OpenObjects,
    ) -> None:
        self.source_schema = source
        """The user's original schema (never changed)."""
        self.strict_schema = strict_schema
        """What is sent with ``strict: true``."""
        self.strict = True
        """Whether the schema is sent in strict mode: always, since every shape has a strict form (a value of any
        shape is sent as JSON text); kept so a caller never has to assume it."""
        self.steps = steps
        self.name = name
        self.open_objects: OpenObjects = open_objects
        self._root = root
        self._graph = graph
        self._validator = validator

    @property
    def draft(self) -> str:
        """The draft the user's schema is validated with (``draft 7``, ``draft 2020-12`` ...)."""
        return self._validator.draft

    @property
    def lossy_steps(self) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.lossy)

    def warnings(self) -> list[str]:
        """One line per lossy step: the path and what is checked locally instead (what ``submit`` prints)."""
        return [step.warning(self.name) for step in self.lossy_steps]

    def encode(self, instance: Any) -> Any:
        """An instance of the user's shape in the strict shape.

        Raises:
            CodecError: The strict shape cannot carry it (a key a closed object has no place for, a ``null`` where
                the user's schema forbids it, a value no union branch takes, a value the strict schema rejects), with
                the place in the instance (in the strict shape, for the last).
        """
        try:
            encoded = self._root.encode(instance, "<root>")
        except CodecError:
            raise
        except RecursionError:
            raise CodecError("<root>", "the value nests too deeply") from None
        except Exception as exc:
            raise CodecError("<root>", f"encoder failed: {type(exc).__name__}: {exc}") from None
        problem = self._graph.strict_problem(encoded)
        if problem is not None:  # a constraint of the strict shape the value breaks (minItems of a tuple's union ...)
            raise CodecError(*problem)
        return encoded

    def decode(self, answer: Any) -> Any:
        """A strict-shaped answer in the user's shape (the exact inverse of :meth:`encode`).

        Raises:
            CodecError: The answer carries something that cannot be read back (a key given twice in key/value
                pairs, an item that is not a pair), with the place in the decoded value.
        """
        try:
            return self._root.decode(answer, "<root>")
        except CodecError:
            raise
        except RecursionError:
            raise CodecError("<root>", "the answer nests too deeply") from None
        except Exception as exc:
            raise CodecError("<root>", f"decoder failed: {type(exc).__name__}: {exc}") from None

    def validate(self, instance: Any) -> list[str]:
        """The errors of ``instance`` under the user's original schema (its own draft, formats checked), as
        ``"<path>: <problem>"`` messages; ``[]`` when valid. Never raises."""
        return self._validator.messages(instance)

    def check(self, answer: Any) -> tuple[Any, list[str]]:
        """Decode a strict-shaped answer and validate it: ``(instance, [])`` or ``(None, errors)``.

        The strict shape cannot tell an absent optional property from a null one when the property's own schema
        allows null; decoding keeps the null. When that instance fails the user's schema (a ``dependentRequired``
        that a present key triggers), the same answer read with such nulls as absent is tried: if it passes, that
        is the answer (both readings are the model's answer; only one is valid)."""
        try:
            instance = self.decode(answer)
        except CodecError as exc:
            return None, [f"{exc.path}: {exc.problem}"]
        errors = self.validate(instance)
        if errors:
            token = PREFER_ABSENT.set(True)
            try:
                absent = self.decode(answer)
            except CodecError:
                absent = None
            finally:
                PREFER_ABSENT.reset(token)
            if absent is not None and absent != instance and not self.validate(absent):
                return absent, []
        return (None, errors) if errors else (instance, [])


def metaschema_problem(schema: Any) -> tuple[str, str] | None:
    """Why ``schema`` is not a valid JSON Schema of its own draft, as ``(JSON path, "<place>: <message>")``; None
    if it is.

    Complaints that change nothing a validator does are let through (draft 4's ``"required": []``, a repeated value
    in ``enum``): real-world schemas carry them and validate fine. Drafts 2019-09 and 2020-12 are checked against
    draft 7's meta-schema, which covers the same core keywords at a tenth of the cost (their own meta-schemas take
    seconds on a schema of thousands of properties); what it does not know (``prefixItems``, ``$defs`` ...), the
    conversion checks as it reads it.
    """
    cls = draft_class(schema)
    try:
        large = len(orjson.dumps(schema)) > _LARGE_SCHEMA_BYTES
    except (TypeError, orjson.JSONEncodeError):
        large = False
    if large:
        return _shape_problem(schema)
    if cls in (Draft201909Validator, Draft202012Validator):
        cls = Draft7Validator  # their meta-schemas ($dynamicRef) cost seconds on a large schema; the core is the same
    try:
        meta = cls(cls.META_SCHEMA)
        errors = [e for e in meta.iter_errors(schema) if e.validator not in _HARMLESS_META]
    except RecursionError:
        return "$", "the schema nests too deeply to check"
    if not errors:
        return None
    error = jsonschema.exceptions.best_match(errors)
    return schema_path("$", *error.absolute_path), f"{data_path(error.absolute_path)}: {error.message}"


def build_codec(
    schema: Mapping[str, Any] | bool, *, name: str = "", open_objects: OpenObjects = "extras"
) -> SchemaCodec:
    """Convert a user's schema into a :class:`SchemaCodec` (see the module docstring).

    Args:
        schema: The user's JSON Schema (not mutated; kept as ``source_schema``).
        name: What warnings call it (a file or class name).
        open_objects: What an object without ``additionalProperties`` becomes: ``extras`` (open, as JSON Schema
            says: a channel for undeclared keys) or ``closed`` (pydantic models, which ignore undeclared keys).

    Raises:
        SchemaError: Only for what cannot be used at all (see the module docstring); the message starts with the
            JSON path of the place in the schema.
    """
    try:
        key = orjson.dumps(schema, option=orjson.OPT_NON_STR_KEYS, default=_plain)
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise SchemaError(f"$: the schema is not JSON: {exc}") from None
    return _cached_codec(key, name, open_objects)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


@functools.lru_cache(maxsize=128)
def _cached_codec(key: bytes, name: str, open_objects: OpenObjects) -> SchemaCodec:
    """Built once per distinct schema (key order included: it is the order properties are sent in): a worker asks
    for the same batch's codec often, the producer twice."""
    return _build(orjson.loads(key), name, open_objects)


def _build(schema: Any, name: str, open_objects: OpenObjects) -> SchemaCodec:
    if not isinstance(schema, dict | bool):
        raise SchemaError(f"$: a JSON Schema must be an object or a boolean, got {type(schema).__name__}")
    check_json_depth(schema)
    problem = metaschema_problem(schema)
    if problem is not None:
        where, message = problem
        raise SchemaError(f"{where}: the schema is not a valid JSON Schema at {message}")
    try:
        validator = SchemaValidator(schema)
        builder = Builder(schema, validator, open_objects=open_objects)
        root = builder.build()
        graph = builder.graph
        steps = list(builder.steps.values())
        order = [*builder.reserved.values(), *builder.def_order]
        strict = fit(root, graph, lambda: _emit(root, graph, order), steps)
    except SchemaError:
        raise
    except RecursionError:
        raise SchemaError("$: the schema nests too deeply to convert") from None
    except Exception as exc:  # a bug of ours must not crash a submit: the schema is refused, with the reason
        raise SchemaError(f"$: the schema could not be converted ({type(exc).__name__}: {exc})") from exc
    problems = strict_problems(strict)
    if problems:
        raise SchemaError(f"$: the converted schema would be refused by the API: {problems[0]}")
    graph.seal(strict)
    return SchemaCodec(
        schema, strict, root, graph, tuple(dict.fromkeys(steps)), validator, name=name, open_objects=open_objects
    )


def _emit(root: Node, graph: Graph, order: list[str]) -> dict[str, Any]:
    em = Emitter(graph)
    body = root.emit(em)
    defs: dict[str, Any] = {}
    index = 0
    while index < len(em.used):
        name = em.used[index]
        node = graph.root if name == graph.root_def else graph.defs[name]
        assert node is not None
        defs[name] = node.emit(em)
        index += 1
    if defs:
        rank = {name: i for i, name in enumerate(order)}
        body["$defs"] = {name: defs[name] for name in sorted(defs, key=lambda n: rank.get(n, len(rank)))}
    return body
