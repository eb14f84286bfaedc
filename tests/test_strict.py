"""Tests for the strict JSON Schema conversion and its inverse (schemas.strict)."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Iterator, Mapping
from datetime import UTC, date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ConfigDict, Field, create_model

from examples.custom_schema import JobPosting
from schemas.builtin import BUILTIN_SCHEMAS, Contact, Invoice, SupportTicket
from schemas.strict import (
    SUPPORTED_FORMATS,
    SchemaError,
    canonical_schema_json,
    drop_nulls_for_optional,
    schema_name,
    to_strict_json_schema,
)

RECEIPT_PATH = Path(__file__).resolve().parent.parent / "examples" / "schemas" / "receipt.json"

# Every keyword the converter may emit; anything else in the output is a bug.
ALLOWED_KEYWORDS = {
    "type",
    "description",
    "enum",
    "const",
    "format",
    "pattern",
    "minLength",
    "maxLength",
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
    "definitions",
}


# --------------------------------------------------------------------------------------------------------------
# structural checker


def resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    node: Any = root
    if ref != "#":
        for token in ref.removeprefix("#/").split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
    assert isinstance(node, Mapping), ref
    return node


def iter_subschemas(schema: Mapping[str, Any], path: str = "<root>") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from iter_subschemas(sub, f"{path}.{name}")
    if "items" in schema:
        yield from iter_subschemas(schema["items"], f"{path}.items")
    for i, sub in enumerate(schema.get("anyOf", [])):
        yield from iter_subschemas(sub, f"{path}.anyOf[{i}]")
    for key in ("$defs", "definitions"):
        for name, sub in schema.get(key, {}).items():
            yield from iter_subschemas(sub, f"{key}.{name}")


def assert_strict(schema: Mapping[str, Any]) -> None:
    """Assert that ``schema`` is in OpenAI's strict subset, as far as its structure can tell."""
    Draft202012Validator.check_schema(schema)
    assert schema.get("type") == "object", "root must be an object"
    assert "anyOf" not in schema, "root must not be a union"
    for path, sub in iter_subschemas(schema):
        unexpected = set(sub) - ALLOWED_KEYWORDS
        assert not unexpected, f"{path}: unsupported keywords {unexpected}"
        if "$ref" in sub:
            assert set(sub) == {"$ref"}, f"{path}: $ref with siblings"
            resolve(schema, sub["$ref"])
            continue
        assert sub.keys() & {"type", "anyOf", "enum", "const"}, f"{path}: no type"
        if "format" in sub:
            assert sub["format"] in SUPPORTED_FORMATS, path
        types = sub.get("type")
        if types == "object" or (isinstance(types, list) and "object" in types):
            assert sub.get("additionalProperties") is False, f"{path}: additionalProperties must be false"
            assert isinstance(sub.get("properties"), dict), f"{path}: properties missing"
            assert sub["required"] == list(sub["properties"]), f"{path}: required != properties"
        if types == "array" or (isinstance(types, list) and "array" in types):
            assert isinstance(sub.get("items"), dict), f"{path}: array without items"


def builtin_and_example_schemas() -> list[tuple[str, dict[str, Any]]]:
    schemas = [(name, model.model_json_schema()) for name, model in BUILTIN_SCHEMAS.items()]
    schemas.append(("receipt.json", json.loads(RECEIPT_PATH.read_text(encoding="utf-8"))))
    schemas.append(("JobPosting", JobPosting.model_json_schema()))
    return schemas


@pytest.mark.parametrize(
    ("label", "source"), builtin_and_example_schemas(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_builtins_and_examples_are_strict(label: str, source: dict[str, Any]) -> None:
    assert_strict(to_strict_json_schema(source))


# --------------------------------------------------------------------------------------------------------------
# conversion rules


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


class Inner(BaseModel):
    x: int
    label: str = "none"


class Outer(BaseModel):
    inner: Inner
    inners: list[Inner]
    maybe_inner: Inner | None = None


def test_nested_objects_and_arrays_of_objects() -> None:
    strict = to_strict_json_schema(Outer.model_json_schema())

    assert_strict(strict)
    assert strict["properties"]["inner"] == {"$ref": "#/$defs/Inner"}
    assert strict["properties"]["inners"] == {"type": "array", "items": {"$ref": "#/$defs/Inner"}}
    assert strict["properties"]["maybe_inner"] == {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}]}
    assert strict["$defs"]["Inner"] == {
        "type": "object",
        "properties": {"x": {"type": "integer"}, "label": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "required": ["x", "label"],
        "additionalProperties": False,
    }


def test_enum_becomes_def_and_ref() -> None:
    class Painted(BaseModel):
        color: Color
        colors: list[Color]

    strict = to_strict_json_schema(Painted.model_json_schema())

    assert strict["properties"]["color"] == {"$ref": "#/$defs/Color"}
    assert strict["properties"]["colors"]["items"] == {"$ref": "#/$defs/Color"}
    assert strict["$defs"]["Color"] == {"type": "string", "enum": ["red", "blue"]}


def test_documented_ref_is_inlined_with_its_description() -> None:
    class Painted(BaseModel):
        color: Color = Field(description="The main colour.")
        shade: Color = Field(default=Color.RED, description="Optional shade.")

    strict = to_strict_json_schema(Painted.model_json_schema())

    assert strict["properties"]["color"] == {
        "description": "The main colour.",
        "type": "string",
        "enum": ["red", "blue"],
    }
    # optional with a non-null default: inlined, then made nullable; the description moves to the wrapper
    assert strict["properties"]["shade"] == {
        "description": "Optional shade.",
        "anyOf": [{"type": "string", "enum": ["red", "blue"]}, {"type": "null"}],
    }
    assert "$defs" not in strict  # Color is no longer referenced anywhere: pruned


def test_optional_becomes_required_and_nullable_without_double_wrapping() -> None:
    class Model(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)

        plain: str = "x"
        """A plain optional."""
        nullable_default: str | None = None
        required_nullable: int | None
        union_default: int | str = 0
        literal: Literal["a", "b"] = "a"

    strict = to_strict_json_schema(Model.model_json_schema())
    props = strict["properties"]

    assert strict["required"] == list(props)
    assert props["plain"] == {"description": "A plain optional.", "anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["nullable_default"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert props["required_nullable"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    # an existing union gets a null branch appended rather than being wrapped again
    assert props["union_default"] == {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]}
    assert props["literal"] == {"anyOf": [{"type": "string", "enum": ["a", "b"]}, {"type": "null"}]}


def test_type_list_with_null_counts_as_nullable() -> None:
    source = {"type": "object", "properties": {"a": {"type": ["string", "null"]}, "b": {"enum": ["x", None]}}}

    strict = to_strict_json_schema(source)

    assert strict["properties"] == {
        "a": {"type": ["string", "null"]},
        "b": {"type": ["string", "null"], "enum": ["x", None]},
    }


def test_defs_and_refs_in_a_hand_written_schema() -> None:
    """Definitions from ``definitions`` and ``$defs`` are both carried into ``$defs`` (the one place strict mode
    reads them), references rewritten; unreferenced ones are left out."""
    source = {
        "type": "object",
        "properties": {"point": {"$ref": "#/definitions/Point"}, "other": {"$ref": "#/$defs/Other"}},
        "required": ["point", "other"],
        "definitions": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}, "required": ["x"]}},
        "$defs": {
            "Other": {"type": "object", "properties": {"p": {"$ref": "#/definitions/Point"}}},
            "Unused": {"type": "string"},
        },
    }

    strict = to_strict_json_schema(source)

    assert_strict(strict)
    assert "definitions" not in strict
    assert strict["properties"]["point"] == {"$ref": "#/$defs/Point"}
    assert strict["$defs"]["Point"]["required"] == ["x"]
    assert strict["$defs"]["Other"]["properties"]["p"] == {"anyOf": [{"$ref": "#/$defs/Point"}, {"type": "null"}]}
    assert "Unused" not in strict["$defs"]


def test_single_allof_is_unwrapped_to_the_ref() -> None:
    source = {
        "type": "object",
        "properties": {
            "bare": {"allOf": [{"$ref": "#/$defs/Color"}], "default": "red", "title": "Bare"},
            "described": {"allOf": [{"$ref": "#/$defs/Color"}], "description": "Described."},
        },
        "required": ["bare", "described"],
        "$defs": {"Color": {"enum": ["red", "blue"], "title": "Color", "type": "string"}},
    }

    strict = to_strict_json_schema(source)

    assert strict["properties"]["bare"] == {"$ref": "#/$defs/Color"}
    assert strict["properties"]["described"] == {
        "description": "Described.",
        "type": "string",
        "enum": ["red", "blue"],
    }


def test_allof_of_objects_is_merged() -> None:
    source = {
        "type": "object",
        "properties": {"item": {"allOf": [{"$ref": "#/$defs/Base"}, {"properties": {"b": {"type": "integer"}}}]}},
        "required": ["item"],
        "$defs": {"Base": {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}},
    }

    strict = to_strict_json_schema(source)

    assert strict["properties"]["item"] == {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]}},
        "required": ["a", "b"],
        "additionalProperties": False,
    }


def test_allof_of_non_objects_is_merged() -> None:
    """allOf of same-type parts is merged keeping every keyword (it used to be refused)."""
    source = {"type": "object", "properties": {"n": {"allOf": [{"type": "integer"}, {"minimum": 1}]}}}

    assert to_strict_json_schema(source)["properties"]["n"] == {
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]
    }


def test_oneof_becomes_anyof() -> None:
    class Cat(BaseModel):
        kind: Literal["cat"]
        lives: int

    class Dog(BaseModel):
        kind: Literal["dog"]
        good: bool

    class Owner(BaseModel):
        pet: Annotated[Cat | Dog, Field(discriminator="kind")]

    source = Owner.model_json_schema()
    assert "oneOf" in source["properties"]["pet"]

    strict = to_strict_json_schema(source)

    assert_strict(strict)
    assert strict["properties"]["pet"] == {"anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]}
    assert strict["$defs"]["Cat"]["properties"]["kind"] == {"type": "string", "const": "cat"}


def test_defaults_titles_examples_and_unsupported_keywords_are_stripped() -> None:
    source = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://example.com/s",
        "title": "Root",
        "type": "object",
        "properties": {
            "a": {
                "type": "string",
                "title": "A",
                "default": "x",
                "examples": ["y"],
                "format": "uri",
                "deprecated": True,
                "minLength": 1,
                "maxLength": 5,
                "pattern": "^[a-z]+$",
            },
            "b": {"type": "string", "format": "date-time", "readOnly": True},
            "n": {"type": "number", "minimum": 0, "exclusiveMaximum": 10, "multipleOf": 0.5},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "minItems": 1, "maxItems": 3},
        },
        "required": ["a", "b", "n", "tags"],
    }

    strict = to_strict_json_schema(source)

    assert_strict(strict)
    assert set(strict) == {"type", "properties", "required", "additionalProperties"}
    assert strict["properties"] == {
        # minLength/maxLength: refused in strict mode, so not sent (our validator checks them: test_strict_keywords)
        "a": {"type": "string", "pattern": "^[a-z]+$"},
        "b": {"type": "string", "format": "date-time"},
        "n": {"type": "number", "minimum": 0, "exclusiveMaximum": 10, "multipleOf": 0.5},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
    }


def test_tuple_becomes_array_of_union() -> None:
    class Model(BaseModel):
        pair: tuple[int, str]
        same: tuple[int, int]

    strict = to_strict_json_schema(Model.model_json_schema())

    assert strict["properties"]["pair"] == {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
    }
    assert strict["properties"]["same"]["items"] == {"type": "integer"}


def test_recursive_model_keeps_bare_refs_and_terminates() -> None:
    class Node(BaseModel):
        name: str
        children: list[Node] = Field(default_factory=list)
        first: Node | None = Field(default=None, description="The first child.")

    strict = to_strict_json_schema(Node.model_json_schema())

    assert_strict(strict)
    node = strict["$defs"]["Node"]
    assert node["properties"]["children"]["anyOf"][0] == {"type": "array", "items": {"$ref": "#/$defs/Node"}}
    assert node["properties"]["first"] == {
        "description": "The first child.",
        "anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}],
    }


def test_recursive_ref_with_description_drops_the_description() -> None:
    source = {
        "type": "object",
        "properties": {"child": {"$ref": "#", "description": "Recursion."}, "name": {"type": "string"}},
        "required": ["name"],
    }

    strict = to_strict_json_schema(source)

    assert strict["properties"]["child"] == {"anyOf": [{"$ref": "#"}, {"type": "null"}]}


def test_root_ref_is_resolved_to_the_object() -> None:
    source = {
        "$ref": "#/$defs/Thing",
        "$defs": {"Thing": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}},
    }

    strict = to_strict_json_schema(source)

    assert strict == {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize(
    "source",
    [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}},
        {"type": ["object", "null"], "properties": {}},
        {"anyOf": [{"type": "object", "properties": {}}, {"type": "null"}]},
        {"$ref": "#/$defs/S", "$defs": {"S": {"type": "string"}}},
    ],
)
def test_non_object_root_is_wrapped(source: dict[str, Any]) -> None:
    """A root that is not an object is sent as the property "value" of one (it used to be refused)."""
    strict = to_strict_json_schema(source)

    assert_strict(strict)
    assert list(strict["properties"]) == ["value"]


@pytest.mark.parametrize(
    ("prop", "message"),
    [
        ({"$ref": "https://example.com/other.json"}, r"refers to another document"),
        ({"$ref": "#/$defs/Missing"}, r"does not point to a schema"),
        ({"type": "strng"}, r"^\$\.properties\.m\.type: the schema is not a valid JSON Schema"),
        (False, r"unsatisfiable"),
    ],
)
def test_unusable_schemas_raise(prop: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        to_strict_json_schema({"type": "object", "properties": {"m": prop}, "required": ["m"]})


def test_dict_field_in_a_pydantic_model_becomes_key_value_pairs() -> None:
    """dict[str, X] (a typed map) is sent as an array of {key, value} items (it used to be refused)."""

    class Model(BaseModel):
        counts: dict[str, int]

    strict = to_strict_json_schema(Model.model_json_schema())

    assert_strict(strict)
    assert strict["properties"]["counts"]["items"]["properties"] == {
        "key": {"type": "string"},
        "value": {"type": "integer"},
    }


def test_empty_object_with_additional_properties_false_is_allowed() -> None:
    strict = to_strict_json_schema({"type": "object", "additionalProperties": False})

    assert strict == {"type": "object", "properties": {}, "required": [], "additionalProperties": False}


def test_input_is_not_mutated_and_output_does_not_alias_it() -> None:
    source = Invoice.model_json_schema()
    snapshot = copy.deepcopy(source)

    strict = to_strict_json_schema(source)
    assert source == snapshot

    strict["$defs"]["LineItem"]["properties"]["amount"]["type"] = "string"
    strict["properties"]["currency"]["pattern"] = "changed"
    assert source == snapshot


@pytest.mark.parametrize(
    ("label", "source"), builtin_and_example_schemas(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_conversion_is_deterministic(label: str, source: dict[str, Any]) -> None:
    first = to_strict_json_schema(source)
    second = to_strict_json_schema(json.loads(json.dumps(source)))

    assert json.dumps(first) == json.dumps(second)  # same key order, not only equal
    assert to_strict_json_schema(first) == first  # idempotent


def test_property_order_is_preserved() -> None:
    strict = to_strict_json_schema(Invoice.model_json_schema())

    assert list(strict["properties"]) == list(Invoice.model_fields)


# --------------------------------------------------------------------------------------------------------------
# canonical serialization and names


def test_canonical_schema_json_sorts_keys_without_whitespace() -> None:
    assert canonical_schema_json({"b": 1, "a": {"d": [1, 2], "c": "é"}}) == '{"a":{"c":"é","d":[1,2]},"b":1}'.encode()
    assert canonical_schema_json({"x": 1, "y": 2}) == canonical_schema_json({"y": 2, "x": 1})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Invoice", "Invoice"),
        ("support_ticket", "support_ticket"),
        ("My Receipt (v2).json", "My_Receipt_v2_json"),
        ("Rechnungsübersicht", "Rechnungsubersicht"),
        ("a-b_c", "a-b_c"),
        ("???", "schema"),
        ("", "schema"),
        ("x" * 100, "x" * 64),
    ],
)
def test_schema_name(raw: str, expected: str) -> None:
    assert schema_name(raw) == expected


@given(st.text())
def test_schema_name_is_always_valid(raw: str) -> None:
    name = schema_name(raw)

    assert 1 <= len(name) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in name)


# --------------------------------------------------------------------------------------------------------------
# drop_nulls_for_optional


def test_drop_nulls_removes_nulls_only_where_the_source_forbids_them() -> None:
    source = SupportTicket.model_json_schema()
    data = {
        "summary": "s",
        "category": "billing",
        "priority": None,  # optional, not nullable: dropped so the default applies
        "sentiment": "neutral",
        "order_id": None,  # required and nullable: kept
        "product": None,
        "requires_human": False,
    }

    cleaned = drop_nulls_for_optional(data, source)

    assert "priority" not in cleaned
    assert cleaned["order_id"] is None
    assert SupportTicket.model_validate(cleaned).priority == "normal"
    assert data["priority"] is None  # input untouched


def test_drop_nulls_recurses_through_refs_arrays_and_unions() -> None:
    source = Outer.model_json_schema()
    data = {
        "inner": {"x": 1, "label": None},
        "inners": [{"x": 2, "label": None}, {"x": 3, "label": "kept"}],
        "maybe_inner": {"x": 4, "label": None},
    }

    cleaned = drop_nulls_for_optional(data, source)

    assert cleaned == {
        "inner": {"x": 1},
        "inners": [{"x": 2}, {"x": 3, "label": "kept"}],
        "maybe_inner": {"x": 4},
    }
    assert Outer.model_validate(cleaned).inners[0].label == "none"


def test_drop_nulls_keeps_nullable_optional_and_unknown_keys() -> None:
    source = Contact.model_json_schema()
    data = {"full_name": "A", "email": None, "social_profiles": None, "unknown": None}

    cleaned = drop_nulls_for_optional(data, source)

    assert cleaned == {"full_name": "A", "email": None, "unknown": None}


def test_drop_nulls_picks_the_matching_union_branch() -> None:
    class Cat(BaseModel):
        kind: Literal["cat"]
        lives: int = 9

    class Dog(BaseModel):
        kind: Literal["dog"]
        name: str = "Rex"

    class Owner(BaseModel):
        pets: list[Annotated[Cat | Dog, Field(discriminator="kind")]]

    source = Owner.model_json_schema()
    data = {"pets": [{"kind": "dog", "name": None}, {"kind": "cat", "lives": None}]}

    cleaned = drop_nulls_for_optional(data, source)

    assert cleaned == {"pets": [{"kind": "dog"}, {"kind": "cat"}]}
    assert Owner.model_validate(cleaned).model_dump() == {
        "pets": [{"kind": "dog", "name": "Rex"}, {"kind": "cat", "lives": 9}]
    }


def test_drop_nulls_handles_allof_and_non_object_data() -> None:
    source = {
        "type": "object",
        "properties": {"item": {"allOf": [{"$ref": "#/$defs/Base"}], "description": "x"}},
        "$defs": {"Base": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }

    assert drop_nulls_for_optional({"item": {"a": None}}, source) == {"item": {}}
    assert drop_nulls_for_optional([1, None], source) == [1, None]
    assert drop_nulls_for_optional("text", source) == "text"


# --------------------------------------------------------------------------------------------------------------
# property tests: everything strict mode lets the model say is accepted by the original model


def strategy_for(schema: Mapping[str, Any], root: Mapping[str, Any], *, all_null: bool) -> st.SearchStrategy[Any]:
    """Values valid under a strict schema; ``all_null`` picks ``null`` wherever the schema allows it."""
    if "$ref" in schema:
        target = resolve(root, schema["$ref"])
        return st.deferred(lambda: strategy_for(target, root, all_null=all_null))
    if "anyOf" in schema:
        branches = schema["anyOf"]
        if all_null and {"type": "null"} in branches:
            return st.none()
        return st.one_of([strategy_for(branch, root, all_null=all_null) for branch in branches])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    if all_null and "null" in types:
        return st.none()
    return st.one_of([_strategy_for_type(t, schema, root, all_null=all_null) for t in types])


def _strategy_for_type(
    type_: str, schema: Mapping[str, Any], root: Mapping[str, Any], *, all_null: bool
) -> st.SearchStrategy[Any]:
    if type_ == "object":
        properties = schema["properties"]
        return st.fixed_dictionaries({k: strategy_for(v, root, all_null=all_null) for k, v in properties.items()})
    if type_ == "array":
        return st.lists(
            strategy_for(schema["items"], root, all_null=all_null),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 3), 3),
        )
    if type_ == "string":
        if schema.get("format") == "date":
            return st.dates().map(date.isoformat)
        if schema.get("format") == "date-time":
            return st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat())
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(max_size=12)
    if type_ == "number":
        return st.floats(
            min_value=schema.get("minimum"), max_value=schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if type_ == "integer":
        return st.integers(min_value=schema.get("minimum"), max_value=schema.get("maximum"))
    if type_ == "boolean":
        return st.booleans()
    assert type_ == "null", type_
    return st.none()


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("model", [*BUILTIN_SCHEMAS.values(), JobPosting], ids=lambda m: m.__name__)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_any_strict_output_validates_with_the_original_model(model: type[BaseModel], data: st.DataObject) -> None:
    source = model.model_json_schema()
    strict = to_strict_json_schema(source)
    all_null = data.draw(st.booleans(), label="all_null")
    output = data.draw(strategy_for(strict, strict, all_null=all_null), label="output")
    Draft202012Validator(strict).validate(output)  # the generator itself is right

    model.model_validate(drop_nulls_for_optional(output, source))


_model_ids = itertools.count()
_SCALARS: dict[str, tuple[Any, Any]] = {  # annotation, a valid default
    "int": (int, 0),
    "float": (float, 1.5),
    "str": (str, "d"),
    "bool": (bool, False),
    "date": (date, date(2000, 1, 1)),
    "enum": (Color, Color.BLUE),
    "literal": (Literal["p", "q"], "q"),
    "list": (list[int], None),  # default via default_factory
}
_MODES = ("required", "required_nullable", "default", "default_none")


@st.composite
def random_models(draw: st.DrawFn, depth: int = 0) -> type[BaseModel]:
    """Random pydantic models mixing required, nullable, defaulted and nested fields."""
    fields: dict[str, Any] = {}
    for i in range(draw(st.integers(min_value=1, max_value=5))):
        kind = draw(st.sampled_from([*_SCALARS, "nested"] if depth < 2 else list(_SCALARS)))
        if kind == "nested":
            annotation: Any = draw(random_models(depth + 1))
            mode = draw(st.sampled_from(("required", "required_nullable", "default_none")))
            default: Any = None
        else:
            annotation, default = _SCALARS[kind]
            mode = draw(st.sampled_from(_MODES))
        if mode == "required":
            fields[f"f{i}"] = (annotation, ...)
        elif mode == "required_nullable":
            fields[f"f{i}"] = (annotation | None, ...)
        elif mode == "default_none":
            fields[f"f{i}"] = (annotation | None, None)
        elif kind == "list":
            fields[f"f{i}"] = (annotation, Field(default_factory=list))
        else:
            fields[f"f{i}"] = (annotation, default)
    model: type[BaseModel] = create_model(f"Random{next(_model_ids)}", **fields)
    return model


@PROPERTY_SETTINGS
@given(data=st.data())
def test_random_models_accept_every_strict_output(data: st.DataObject) -> None:
    model = data.draw(random_models(), label="model")
    source = model.model_json_schema()
    strict = to_strict_json_schema(source)
    assert_strict(strict)
    all_null = data.draw(st.booleans(), label="all_null")
    output = data.draw(strategy_for(strict, strict, all_null=all_null), label="output")

    instance = model.model_validate(drop_nulls_for_optional(output, source))

    if all_null:  # every field the model left null is None (nullable) or its declared default
        for name, field in model.model_fields.items():
            if output[name] is None:
                expected = None if field.is_required() else field.get_default(call_default_factory=True)
                assert getattr(instance, name) == expected
