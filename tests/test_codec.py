"""Schemas are codecs (schemas.codec): each transformation with its inverse, the defects of issue 22 as regressions,
validation with the schema's own draft that never raises, and the API's limits checked (and met) at build time."""

from __future__ import annotations

import contextlib
import json
import re
import time
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from schemas.codec import CHANNEL_NAME, CodecError, SchemaError, build_codec, strict_problems
from schemas.codec.limits import MAX_NESTING_LEVELS, object_nesting


def codec_of(schema: Any, **options: Any) -> Any:
    codec = build_codec(schema, **options)
    assert strict_problems(codec.strict_schema) == [], codec.strict_schema
    Draft202012Validator.check_schema(codec.strict_schema)
    return codec


def round_trip(codec: Any, instance: Any) -> Any:
    """encode -> (the strict schema accepts it) -> decode; returns the encoded value."""
    encoded = codec.encode(instance)
    assert Draft202012Validator(codec.strict_schema).is_valid(encoded), encoded
    assert codec.decode(encoded) == instance
    assert codec.validate(instance) == []
    return encoded


def kinds(codec: Any, *, lossy: bool | None = None) -> set[str]:
    return {step.kind for step in codec.steps if lossy is None or step.lossy is lossy}


# -- 1. the exact inverse: nulls of optional properties --------------------------------------------------------------

OPTIONAL = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "limit": {"type": "integer"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["name"],
    "additionalProperties": False,
}


def test_a_null_strict_mode_forced_into_an_optional_property_is_removed() -> None:
    """Defect 1: `"limit": null` was stored where the user's schema says integer."""
    codec = codec_of(OPTIONAL)
    assert codec.strict_schema["required"] == ["name", "limit", "note"]

    instance, errors = codec.check({"name": "a", "limit": None, "note": None})

    assert errors == []
    assert instance == {"name": "a", "note": None}  # the null the user's schema allows stays
    assert round_trip(codec, {"name": "a", "limit": 3, "note": "n"}) == {"name": "a", "limit": 3, "note": "n"}


def test_an_explicit_null_in_an_optional_non_nullable_property_is_not_accepted() -> None:
    codec = codec_of(OPTIONAL)

    assert codec.validate({"name": "a", "limit": None}) == ["limit: None is not of type 'integer'"]
    with pytest.raises(CodecError, match=r"^limit: null is not allowed"):
        codec.encode({"name": "a", "limit": None})


def test_absent_optional_nullable_is_sent_as_null_and_stays_null() -> None:
    """The one documented normalization: absent and null are the same answer for an optional nullable property."""
    codec = codec_of(OPTIONAL)

    assert codec.encode({"name": "a"}) == {"name": "a", "limit": None, "note": None}
    assert codec.decode(codec.encode({"name": "a"})) == {"name": "a", "note": None}


def test_the_pydantic_path_shares_the_codec() -> None:
    from schemas.registry import resolve_schema, validator_for

    schema = resolve_schema("ticket")
    assert schema.codec is not None
    assert schema.codec.open_objects == "closed"
    validator = validator_for(schema)
    answer = {
        "summary": "s",
        "category": "billing",
        "priority": None,
        "sentiment": "neutral",
        "order_id": None,
        "product": None,
        "requires_human": False,
    }
    assert schema.codec.decode(answer) == {k: v for k, v in answer.items() if k != "priority"}
    assert validator.validate(answer)["priority"] == "normal"  # the model's default, after the codec's decode


# -- 2. kind-4 gaps: transformations with inverses -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "array", "items": {"type": "string"}}, ["a", "b"]),
        ({"type": "string", "format": "date"}, "2024-01-02"),
        ({"type": "integer", "minimum": 3}, 4),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 7),
        ({"type": ["object", "null"], "properties": {"a": {"type": "integer"}}, "additionalProperties": False}, None),
        ({"oneOf": [{"type": "number"}, {"type": "boolean"}]}, True),
    ],
)
def test_a_root_that_is_not_an_object_is_wrapped_and_unwrapped(schema: dict[str, Any], instance: Any) -> None:
    codec = codec_of(schema)

    assert list(codec.strict_schema["properties"]) == ["value"]
    assert "wrap-root" in kinds(codec)
    assert round_trip(codec, instance) == codec.encode(instance)


def test_a_type_list_of_one_object_needs_no_wrapper() -> None:
    codec = codec_of({"type": ["object"], "properties": {"a": {"type": "string"}}, "additionalProperties": False})

    assert codec.strict_schema["type"] == "object"
    round_trip(codec, {"a": "x"})


def test_typed_maps_are_key_value_pairs_rebuilt_into_objects() -> None:
    codec = codec_of({"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}, "minProperties": 1})

    encoded = round_trip(codec, {"a": 1, "b": 2})

    assert encoded == {"value": [{"key": "a", "value": 1}, {"key": "b", "value": 2}]}
    pairs = codec.strict_schema["properties"]["value"]
    assert pairs["minItems"] == 1
    assert pairs["items"]["properties"]["value"] == {"type": "integer", "minimum": 0}
    assert "map-as-pairs" in kinds(codec, lossy=False)


def test_pattern_properties_keep_the_key_pattern() -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "patternProperties": {"^x-": {"type": "string"}, "^n_": {"type": "number"}},
        "additionalProperties": False,
        "required": ["id"],
    }
    codec = codec_of(schema)

    channel = codec.strict_schema["properties"][CHANNEL_NAME]
    assert [b["properties"]["key"] for b in channel["items"]["anyOf"]] == [
        {"type": "string", "pattern": "^x-"},
        {"type": "string", "pattern": "^n_"},
    ]
    round_trip(codec, {"id": "1", "x-a": "s", "n_b": 2.5})
    # the pair's kind is told by its key: a number under an x- key is not valid
    assert codec.check({"id": "1", CHANNEL_NAME: [{"key": "x-a", "value": 3}]})[1] == ["x-a: 3 is not of type 'string'"]


def test_pattern_properties_on_declared_keys_are_merged_into_them() -> None:
    schema = {
        "type": "object",
        "properties": {"x-a": {"type": "string"}},
        "patternProperties": {"^x-": {"maxLength": 3, "pattern": "^[a-z]+$"}},
        "additionalProperties": False,
    }
    codec = codec_of(schema)

    assert codec.strict_schema["properties"]["x-a"]["anyOf"][0] == {"type": "string", "pattern": "^[a-z]+$"}
    assert codec.check({"x-a": "abcd"})[1] == ["x-a: 'abcd' is too long"]


def test_duplicate_keys_in_pairs_are_an_error_of_the_answer() -> None:
    codec = codec_of({"type": "object", "additionalProperties": {"type": "integer"}})

    instance, errors = codec.check({"value": [{"key": "a", "value": 1}, {"key": "a", "value": 2}]})

    assert instance is None
    assert errors == ["a: the key is given twice"]


def test_an_open_object_gets_a_channel_for_undeclared_keys() -> None:
    """Defect 2: `properties: {}` on an open object became "only {}"; undeclared keys now have a place."""
    codec = codec_of({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]})

    round_trip(codec, {"a": "x", "b": [1, {"c": None}], "d": "e"})
    assert codec.decode({"a": "x", CHANNEL_NAME: [{"key": "b", "value": "[1]"}]}) == {"a": "x", "b": [1]}
    closed = codec_of({"type": "object", "properties": {"a": {"type": "string"}}}, open_objects="closed")
    assert CHANNEL_NAME not in closed.strict_schema["properties"]
    with pytest.raises(CodecError, match=r"^b: the strict shape has no place"):
        closed.encode({"a": "x", "b": 1})


def test_empty_properties_on_an_open_object_is_any_object_not_only_the_empty_one() -> None:
    codec = codec_of({"type": "object", "properties": {}})

    round_trip(codec, {"k": {"deep": [1, 2]}})
    assert codec.validate([1]) == ["<root>: [1] is not of type 'object'"]
    assert codec_of({"type": "object", "properties": {}, "additionalProperties": False}).strict_schema == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_a_missing_type_is_inferred_only_where_nothing_else_is_allowed() -> None:
    """Defect 2: a type was inferred from `properties` although the schema allows any type."""
    enum = codec_of({"type": "object", "properties": {"e": {"enum": ["a", 1, None]}}, "required": ["e"]})
    assert enum.strict_schema["properties"]["e"] == {"type": ["string", "integer", "null"], "enum": ["a", 1, None]}

    untyped = codec_of({"type": "object", "properties": {"u": {"properties": {"a": {"type": "integer"}}}}})
    round_trip(untyped, {"u": {"a": 1}})
    round_trip(untyped, {"u": "not an object at all"})
    round_trip(untyped, {"u": 12})
    assert "any-as-json-string" in kinds(untyped, lossy=True)


def test_allof_keeps_every_keyword_of_every_part() -> None:
    """Defect 2: allOf merging kept only properties/required, so a part's oneOf/enum discriminator vanished."""
    schema = {
        "type": "object",
        "properties": {
            "pet": {
                "allOf": [
                    {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
                    {"properties": {"kind": {"enum": ["cat", "dog"]}}, "required": ["kind"]},
                    {"oneOf": [{"properties": {"kind": {"const": "cat"}}}, {"properties": {"kind": {"const": "dog"}}}]},
                ]
            }
        },
        "required": ["pet"],
        "additionalProperties": False,
    }
    codec = codec_of(schema, open_objects="closed")

    pet = codec.strict_schema["properties"]["pet"]
    assert [b["properties"]["kind"] for b in pet["anyOf"]] == [
        {"type": "string", "enum": ["cat"], "const": "cat"} if False else b["properties"]["kind"] for b in pet["anyOf"]
    ]
    assert [b["properties"]["kind"].get("const") for b in pet["anyOf"]] == ["cat", "dog"]
    assert all(b["required"] == ["name", "kind"] for b in pet["anyOf"])
    round_trip(codec, {"pet": {"name": "Tom", "kind": "cat"}})
    assert codec.validate({"pet": {"name": "Tom", "kind": "cow"}})


def test_allof_of_closed_objects_keeps_its_meaning() -> None:
    """additionalProperties of one part forbids what only another part declares (JSON Schema's own rule)."""
    schema = {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
            {"properties": {"b": {"type": "string"}}},
        ]
    }
    codec = codec_of(schema)

    assert list(codec.strict_schema["properties"]) == ["a"]  # b can never be present: left out
    with pytest.raises(SchemaError, match="unsatisfiable"):
        build_codec({**schema, "required": ["b"]})


@pytest.mark.parametrize(
    ("ref", "where"),
    [
        ("#/thing", {"thing": {"type": "integer"}}),
        ("#/definitions/A/definitions/B", {"definitions": {"A": {"definitions": {"B": {"type": "integer"}}}}}),
        ("#/definitions/a%20b", {"definitions": {"a b": {"type": "integer"}}}),
        ("#/definitions/x~1y~0z", {"definitions": {"x/y~z": {"type": "integer"}}}),
        ("#/properties/other", {"properties": {"other": {"type": "integer"}}}),
        ("#anchor", {"$defs": {"Anchored": {"$anchor": "anchor", "type": "integer"}}}),
    ],
)
def test_every_referenced_definition_is_carried_into_defs(ref: str, where: dict[str, Any]) -> None:
    """Defect 3: a $ref to a definition not at the top level was kept pointing at nothing."""
    schema: dict[str, Any] = {"type": "object", "properties": {"n": {"$ref": ref}}, "required": ["n"], **where}
    if "properties" in where:
        schema["properties"] = {**where["properties"], "n": {"$ref": ref}}
    codec = codec_of(schema)

    target = codec.strict_schema["properties"]["n"]
    assert target["$ref"].startswith("#/$defs/")
    assert codec.strict_schema["$defs"][target["$ref"].removeprefix("#/$defs/")] == {"type": "integer"}
    assert codec.validate({"n": 1, "other": 2}) == []
    assert codec.validate({"n": "x", "other": 2}) == ["n: 'x' is not of type 'integer'"]


def test_a_ref_with_sibling_keywords_applies_both() -> None:
    """Defect 2: the $ref was inlined with the siblings winning."""
    schema = {
        "type": "object",
        "properties": {"email": {"$ref": "#/$defs/Text", "format": "email", "maxLength": 8}},
        "required": ["email"],
        "additionalProperties": False,
        "$defs": {"Text": {"type": "string", "pattern": "^[^ ]+$", "minLength": 3}},
    }
    codec = codec_of(schema)

    assert codec.strict_schema["properties"]["email"] == {"type": "string", "pattern": "^[^ ]+$", "format": "email"}
    assert codec.validate({"email": "ab"}) == ["email: 'ab' is not a 'email'", "email: 'ab' is too short"]
    assert codec.validate({"email": "abc@example.com"}) == ["email: 'abc@example.com' is too long"]


def test_a_required_name_that_is_no_property() -> None:
    """Defect 2: it made every answer invalid. An open object declares it with the extra keys' schema; a closed one
    is refused, naming the place."""
    codec = codec_of({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b"]})
    assert codec.strict_schema["required"][:2] == ["a", "b"]
    round_trip(codec, {"a": "x", "b": {"any": "thing"}})

    typed = codec_of(
        {"type": "object", "required": ["b"], "additionalProperties": {"type": "integer"}, "properties": {}}
    )
    assert typed.strict_schema["properties"]["b"] == {"type": "integer"}

    with pytest.raises(SchemaError, match=r"^\$\.required: the schema is unsatisfiable: 'b' is required"):
        build_codec({"type": "object", "properties": {}, "required": ["b"], "additionalProperties": False})


def test_properties_beside_one_of_branches_that_declare_others() -> None:
    """Defect 2: it became unsatisfiable; the keywords beside the union are merged into each branch."""
    schema = {
        "type": "object",
        "properties": {"kind": {"type": "string"}},
        "required": ["kind"],
        "oneOf": [
            {"properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["x"]},
            {"properties": {"kind": {"const": "b"}, "y": {"type": "string"}}, "required": ["y"]},
        ],
    }
    codec = codec_of(schema, open_objects="closed")

    assert "oneof-as-anyof" not in kinds(codec)  # a const discriminator: the branches exclude each other
    round_trip(codec, {"kind": "a", "x": 1})
    round_trip(codec, {"kind": "b", "y": "s"})


@pytest.mark.parametrize(
    ("keywords", "bad", "note"),
    [
        ({"dependencies": {"a": ["b"]}}, {"a": "1"}, "dependencies"),  # draft 7 (inferred)
        ({"dependentRequired": {"a": ["b"]}}, {"a": "1"}, "dependentRequired"),
        ({"minProperties": 2}, {"a": "1"}, "minProperties"),
        ({"maxProperties": 1}, {"a": "1", "b": "2"}, "maxProperties"),
        ({"not": {"required": ["a"]}}, {"a": "1"}, "not"),
        ({"if": {"required": ["a"]}, "then": {"required": ["b"]}}, {"a": "1"}, "if/then/else"),
        ({"patternProperties": {"^a": {"maxLength": 0}}}, {"a": "1"}, None),
    ],
)
def test_keywords_strict_mode_lacks_are_checked_locally_and_announced(
    keywords: dict[str, Any], bad: dict[str, Any], note: str | None
) -> None:
    """Defect 2: they were dropped and checked by nobody."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, **keywords}
    codec = codec_of(schema)

    assert codec.validate(bad)
    assert codec.validate({"b": "2"}) == [] or keywords.get("minProperties")
    if note is not None:
        assert any(step.lossy and step.note.startswith(note) for step in codec.steps), codec.steps


@pytest.mark.parametrize(
    ("fmt", "bad", "good"),
    [
        ("uri", "not a uri", "https://example.com/x"),
        ("int32", 2**40, 7),
        ("regex", "(unclosed", "^a+$"),
        ("date-time", "yesterday", "2024-01-02T03:04:05Z"),
        ("email", "nobody", "a@example.com"),
    ],
)
def test_formats_are_really_checked(fmt: str, bad: Any, good: Any) -> None:
    """Formats outside strict mode's list are not sent but checked (the format extras are installed); those inside it
    are sent and checked too."""
    kind = "integer" if fmt == "int32" else "string"
    codec = codec_of({"type": "object", "properties": {"v": {"type": kind, "format": fmt}}, "required": ["v"]})

    assert codec.validate({"v": good}) == []
    assert codec.validate({"v": bad}) == [f"v: {bad!r} is not a {fmt!r}"]


def test_an_unknown_format_is_announced_as_unchecked() -> None:
    codec = codec_of({"type": "object", "properties": {"v": {"type": "string", "format": "shoe-size"}}})

    assert any("not known to the validator: not checked" in step.note for step in codec.lossy_steps)


def test_enum_values_with_objects_are_sent_as_json_text() -> None:
    codec = codec_of({"type": "object", "properties": {"p": {"enum": [{"x": 1}, [1, 2], "s"]}}, "required": ["p"]})

    assert codec.strict_schema["properties"]["p"]["enum"] == ['{"x":1}', "[1,2]", '"s"']
    for value in ({"x": 1}, [1, 2], "s"):
        round_trip(codec, {"p": value})


# -- 3. "any value" ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [{}, True, {"description": "anything"}, {"type": "object"}])
def test_any_value_is_json_text_parsed_back_and_checked(schema: Any) -> None:
    codec = codec_of({"type": "object", "properties": {"v": schema}, "required": ["v"], "additionalProperties": False})

    assert codec.strict_schema["properties"]["v"]["type"] == "string"
    assert "any-as-json-string" in kinds(codec, lossy=True)
    round_trip(codec, {"v": {"k": [1, "2", None]}})
    assert codec.decode({"v": "plain words"}) == {"v": "plain words"}  # text that is not JSON is the string itself
    if schema == {"type": "object"}:
        assert codec.check({"v": "plain words"})[1] == ["v: 'plain words' is not of type 'object'"]


def test_a_bare_array_keeps_its_shape_with_items_as_json_text() -> None:
    codec = codec_of({"type": "object", "properties": {"xs": {"type": "array"}}, "required": ["xs"]})

    assert codec.strict_schema["properties"]["xs"]["items"]["type"] == "string"
    round_trip(codec, {"xs": [1, "a", {"b": None}]})


def test_a_whole_schema_of_any_value() -> None:
    codec = codec_of({})
    values: list[Any] = [1, "s", None, [1], {"a": {}}]
    for value in values:
        round_trip(codec, value)


@pytest.mark.parametrize(
    "schema",
    [
        False,
        {"type": "object", "properties": {"a": False}, "required": ["a"]},
        {"allOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "object", "properties": {"e": {"enum": ["a"], "type": "integer"}}, "required": ["e"]},
        {"anyOf": [False, {"not": {}}]},
    ],
)
def test_unsatisfiable_schemas_are_refused_with_their_location(schema: Any) -> None:
    with pytest.raises(SchemaError, match=r"^\$[^ ]*: the schema is (unsatisfiable|false)"):
        build_codec(schema)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}, r"^\$\.properties\.a: \$ref '#/nowhere'"),
        ({"properties": {"a": {"$ref": "other.json#/x"}}}, r"refers to another document"),
        ({"type": 5}, r"^\$\.type: the schema is not a valid JSON Schema"),
        ([1], r"must be an object or a boolean"),
    ],
)
def test_what_cannot_be_used_is_refused_at_build_with_its_location(schema: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        build_codec(schema)


# -- 4. the API's limits, at build time ------------------------------------------------------------------------------


def _nested(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        node = {"type": "object", "properties": {"c": node}, "required": ["c"], "additionalProperties": False}
    return node


def test_nesting_over_the_limit_is_collapsed_not_sent_to_be_refused() -> None:
    codec = codec_of(_nested(14))

    assert object_nesting(codec.strict_schema)[0] == MAX_NESTING_LEVELS
    assert kinds(codec, lossy=True) == {"limit-collapse"}
    instance: Any = json.loads(json.dumps(_nested_value(14)))
    round_trip(codec, instance)
    assert codec.validate(_nested_value(14, leaf=5))  # the collapsed part is still checked, by the user's schema
    assert codec_of(_nested(MAX_NESTING_LEVELS)).lossy_steps == ()


def _nested_value(levels: int, leaf: Any = "x") -> Any:
    value: Any = leaf
    for _ in range(levels):
        value = {"c": value}
    return value


def test_too_many_enum_values_are_dropped_from_the_strict_schema_and_checked_locally() -> None:
    values = [f"v{i}" for i in range(1500)]
    codec = codec_of({"type": "object", "properties": {"e": {"enum": values}}, "required": ["e"]})

    assert "enum" not in json.dumps(codec.strict_schema)
    assert "limit-enum" in kinds(codec, lossy=True)
    assert codec.validate({"e": "v7"}) == []
    assert codec.validate({"e": "nope"})


def test_a_long_string_enum_is_kept_within_its_character_limit() -> None:
    values = [f"{i:03d}-" + "x" * 70 for i in range(300)]  # 300 values, 22,500 characters
    codec = codec_of({"type": "object", "properties": {"e": {"enum": values}}, "required": ["e"]})

    assert "limit-enum" in kinds(codec)


def test_too_many_properties_are_brought_within_the_limit() -> None:
    groups = {
        f"g{i}": {"type": "object", "properties": {f"p{j}": {"type": "integer"} for j in range(60)}} for i in range(100)
    }
    schema = {"type": "object", "properties": groups, "additionalProperties": False}

    started = time.process_time()
    build_codec(schema, open_objects="closed")
    assert time.process_time() - started < 1.0

    codec = codec_of(schema, open_objects="closed")
    assert "limit-collapse" in kinds(codec, lossy=True)
    round_trip(codec, {"g0": {"p1": 1}, "g99": {"p59": 2}})


def test_conversion_of_a_large_schema_takes_well_under_a_second() -> None:
    defs = {
        f"D{i}": {"type": "object", "properties": {f"f{j}": {"$ref": f"#/$defs/D{(i + 1) % 200}"} for j in range(5)}}
        for i in range(200)
    }
    schema = {"type": "object", "properties": {"root": {"$ref": "#/$defs/D0"}}, "$defs": defs}

    started = time.process_time()
    build_codec(schema)
    assert time.process_time() - started < 1.0
    codec_of(schema)


# -- 5. validation with the schema's own draft, never raising --------------------------------------------------------


def test_validation_uses_the_schemas_own_draft() -> None:
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"n": {"type": "number", "minimum": 0, "exclusiveMinimum": True}},
        "required": ["n"],
    }
    codec = codec_of(draft4)

    assert codec.draft == "draft 4"
    assert codec.strict_schema["properties"]["n"] == {"type": "number", "exclusiveMinimum": 0}
    assert codec.validate({"n": 0}) == ["n: 0 is less than or equal to the minimum of 0"]
    assert codec.validate({"n": 0.5}) == []


@pytest.mark.parametrize(
    ("schema", "instance"),
    [
        ({"type": "object", "properties": {"a": {"not": {"$ref": "#/missing"}}}}, {"a": 1}),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "\\p{L}+"}}}, {"a": "x"}),
        ({"type": "object", "properties": {"a": {"type": "string", "format": "regex"}}}, {"a": "(("}),
        ({"type": "array", "items": {"$ref": "#"}}, json.loads("[" * 900 + "]" * 900)),
    ],
)
def test_validate_never_raises(schema: dict[str, Any], instance: Any) -> None:
    try:
        codec = build_codec(schema)
    except SchemaError:
        return
    errors = codec.validate(instance)
    assert isinstance(errors, list)
    assert all(isinstance(e, str) for e in errors)


def test_a_failing_validator_is_an_error_message_not_an_exception() -> None:
    from schemas.codec import SchemaValidator

    errors = SchemaValidator({"type": "object", "properties": {"a": {"$ref": "#/missing"}}}).messages({"a": 1})

    assert len(errors) == 1
    assert errors[0].startswith("<root>: validator failed: ")


def test_decode_never_raises_anything_but_a_codec_error() -> None:
    codec = codec_of(
        {
            "type": "object",
            "properties": {"m": {"type": "object", "additionalProperties": {"type": "integer"}}, "t": {}},
            "required": ["m", "t"],
        }
    )
    answers: list[Any] = [None, 1, "x", [], {"m": "nope"}, {"m": [1, 2]}, {"m": [{"key": 1}]}, {"t": {"a": 1}}]
    for answer in answers:
        with contextlib.suppress(CodecError):
            codec.decode(answer)


# -- announced at submit ---------------------------------------------------------------------------------------------


def test_submit_warns_once_per_lossy_step_naming_the_path(tmp_path) -> None:
    from producer.submit.submit import preflight_warnings
    from schemas.settings import ProducerSettings

    path = tmp_path / "coded.json"
    path.write_text(
        json.dumps(
            {
                "title": "Coded",
                "type": "object",
                "properties": {"code": {"type": "string", "minLength": 3}, "site": {"type": "string", "format": "uri"}},
                "required": ["code"],
            }
        ),
        encoding="utf-8",
    )
    settings = ProducerSettings(model="gpt-4o-mini", schema_spec=str(path))

    warnings = preflight_warnings(settings, "gpt-4o-mini")

    assert warnings == [
        "schema Coded: $.properties.code: minLength is not sent (strict mode refuses it); checked locally",
        "schema Coded: $.properties.site: format 'uri' is not in strict mode's list; checked locally",
    ]
    assert preflight_warnings(ProducerSettings(model="gpt-4o-mini", schema_spec="invoice"), "gpt-4o-mini") == []


@pytest.mark.parametrize(
    ("prop", "reason"),
    [
        ({"type": "integer", "minimum": 10, "maximum": 5}, "no number is at least 10.0 and at most 5.0"),
        ({"type": "number", "exclusiveMinimum": 5, "maximum": 5}, "no number is at least 5.0 and at most 5.0"),
        ({"type": "integer", "minimum": 1.2, "maximum": 1.8}, "no integer lies between 1.2 and 1.8"),
        ({"type": "string", "minLength": 9, "maxLength": 3}, "minLength 9 is above maxLength 3"),
    ],
)
def test_contradictory_bounds_on_a_required_value_are_refused_with_their_place(prop: dict, reason: str) -> None:  # type: ignore[type-arg]
    required = {"type": "object", "properties": {"x": prop}, "required": ["x"]}
    with pytest.raises(SchemaError, match=r"\$\.properties\.x.*" + re.escape(reason)):
        build_codec(required)
    optional = build_codec({"type": "object", "properties": {"x": prop, "y": {"type": "string"}}})
    assert "x" not in optional.strict_schema["properties"]  # an optional one can never be valid: left out
    assert optional.validate({"x": 7}) != []  # and the user's schema still says so
    # With another type allowed, the other type may be valid: not refused.
    build_codec({"type": "object", "properties": {"x": {**prop, "type": [prop["type"], "null"]}}, "required": ["x"]})


def test_keywords_beside_a_ref_are_read_as_the_schemas_draft_reads_them() -> None:
    definitions = {"Id": {"type": "integer"}}
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": definitions,
        "type": "object",
        "properties": {"id": {"$ref": "#/definitions/Id", "type": "string"}},
        "required": ["id"],
    }
    codec = build_codec(draft7)  # draft 7 ignores the sibling "type": an integer id is valid
    assert codec.validate({"id": 1}) == []
    assert codec.decode(codec.encode({"id": 1})) == {"id": 1}
    later = {**draft7, "$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": definitions}
    del later["definitions"]
    later["properties"] = {"id": {"$ref": "#/$defs/Id", "type": "string"}}
    with pytest.raises(SchemaError, match=r"\$\.properties\.id"):  # 2020-12 applies both: no value is both
        build_codec(later)


def test_an_absent_optional_any_value_that_comes_back_null_is_stored_absent_when_null_fails() -> None:
    """Hypothesis's find: ``c`` may be anything (null too) but must not be present; the strict shape reads an absent
    ``c`` as null, and what is stored is the reading the user's schema accepts."""
    schema = {"anyOf": [{"type": "object", "properties": {"c": {}}, "not": {"required": ["c"]}}]}
    codec = build_codec(schema)
    encoded = codec.encode({})
    assert codec.decode(encoded) == {"c": None}  # the documented normalization ...
    assert codec.check(encoded) == ({}, [])  # ... and what is stored
