"""Property tests of schemas.codec on generated schemas: it never crashes, what it sends is within strict mode's rules,
every strict-shaped answer decodes (or is a located CodecError), validation never raises, and what is valid under the
user's schema survives encode -> decode."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from schemas.codec import CodecError, SchemaError, build_codec, strict_problems

NAMES = st.sampled_from(["a", "b", "c", "id", "x-y", "n_1"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("ab", max_size=3))


def leaves() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just({"type": "string"}),
        st.fixed_dictionaries(
            {"type": st.just("string")},
            optional={
                "format": st.sampled_from(["date", "uri", "email", "int32", "shoe-size"]),
                "minLength": st.integers(0, 3),
                "pattern": st.just("^[a-z]*$"),
            },
        ),
        st.fixed_dictionaries({"type": st.just("integer")}, optional={"minimum": st.integers(-3, 3)}),
        st.just({"type": "number"}),
        st.just({"type": "boolean"}),
        st.just({"type": ["string", "null"]}),
        st.lists(SCALARS, min_size=1, max_size=3).map(lambda vs: {"enum": vs}),
        st.just({"const": {"k": 1}}),
        st.just({}),
        st.just(True),
        st.just({"$ref": "#/$defs/D"}),
        st.just({"$ref": "#/$defs/D", "description": "documented"}),
    )


def composite(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    objects = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["object", ["object"], ["object", "null"]]),
            "properties": st.dictionaries(NAMES, children, max_size=3),
        },
        optional={
            "required": st.lists(NAMES, max_size=3, unique=True),
            "additionalProperties": st.one_of(st.booleans(), children),
            "patternProperties": st.dictionaries(st.sampled_from(["^x-", "^n_"]), children, max_size=1),
            "minProperties": st.integers(0, 2),
            "not": st.just({"required": ["c"]}),
        },
    )
    untyped_objects = st.fixed_dictionaries({"properties": st.dictionaries(NAMES, children, max_size=2)})
    arrays = st.fixed_dictionaries(
        {"type": st.just("array")},
        optional={"items": children, "minItems": st.integers(0, 2), "uniqueItems": st.booleans()},
    )
    tuples = st.lists(children, min_size=1, max_size=2).map(lambda xs: {"type": "array", "prefixItems": xs})
    unions = st.tuples(st.sampled_from(["anyOf", "oneOf"]), st.lists(children, min_size=1, max_size=3)).map(
        lambda t: {t[0]: t[1]}
    )
    all_of = st.lists(children, min_size=1, max_size=3).map(lambda xs: {"allOf": xs})
    return st.one_of(objects, untyped_objects, arrays, tuples, unions, all_of)


SCHEMAS = st.recursive(leaves(), composite, max_leaves=8)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    root = draw(SCHEMAS)
    definition = draw(st.recursive(leaves().filter(lambda s: s != {"$ref": "#/$defs/D"}), composite, max_leaves=3))
    if isinstance(root, dict):
        return {**root, "$defs": {"D": definition}}
    return {"anyOf": [root], "$defs": {"D": definition}}


def strict_answers(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid (mostly) under a strict schema."""
    if "$ref" in schema:
        ref = schema["$ref"]
        target = root if ref == "#" else root["$defs"][ref.removeprefix("#/$defs/")]
        if depth > 4:
            return st.none()
        return st.deferred(lambda: strict_answers(target, root, depth + 1))
    if "anyOf" in schema:
        return st.one_of([strict_answers(b, root, depth + 1) for b in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    options: list[st.SearchStrategy[Any]] = []
    for kind in types:
        if kind == "object":
            props = schema["properties"]
            options.append(st.fixed_dictionaries({k: strict_answers(v, root, depth + 1) for k, v in props.items()}))
        elif kind == "array":
            options.append(st.lists(strict_answers(schema["items"], root, depth + 1), max_size=0 if depth > 4 else 2))
        elif kind == "string":
            options.append(st.one_of(st.text('ab{}[]":1 ', max_size=6), st.just('{"a": 1}'), st.just("2024-01-02")))
        elif kind == "integer":
            options.append(st.integers(-3, 10))
        elif kind == "number":
            options.append(st.floats(-3, 10, allow_nan=False))
        elif kind == "boolean":
            options.append(st.booleans())
        else:
            options.append(st.none())
    return st.one_of(options)


# The same 300 examples on every run (CI must not turn red on a new random find); CODEC_EXAMPLES=N explores N new
# ones at random (a find goes into tests/test_codec.py as a regression, as the absent-null one did).
PROPERTIES = settings(
    max_examples=int(os.environ.get("CODEC_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not os.environ.get("CODEC_EXAMPLES"),
)


@PROPERTIES
@given(schema=documents(), data=st.data())
def test_any_generated_schema_converts_within_the_rules_and_answers_read_back(schema: Any, data: st.DataObject) -> None:
    try:
        codec = build_codec(schema)
    except SchemaError as exc:
        refusal = str(exc)
        assert refusal.startswith("$"), refusal  # refused with its location, never a crash
        return
    assert strict_problems(codec.strict_schema) == []
    strict = Draft202012Validator(codec.strict_schema)
    for _ in range(3):
        answer = data.draw(strict_answers(codec.strict_schema, codec.strict_schema), label="answer")
        try:
            instance = codec.decode(answer)
        except CodecError:
            continue  # a located error of the answer, which a repair prompt carries
        errors = codec.validate(instance)
        assert all(isinstance(e, str) for e in errors)
        if errors:
            continue
        try:
            encoded = codec.encode(instance)
        except CodecError:
            continue
        assert strict.is_valid(encoded), (instance, encoded)
        assert codec.check(encoded)[1] == []  # what the service stores validates


@PROPERTIES
@given(
    schema=documents(),
    value=st.recursive(
        SCALARS, lambda c: st.lists(c, max_size=2) | st.dictionaries(NAMES, c, max_size=2), max_leaves=5
    ),
)
def test_encode_then_decode_is_the_identity_on_what_encode_takes(schema: Any, value: Any) -> None:
    try:
        codec = build_codec(schema)
    except SchemaError:
        return
    if codec.validate(value):
        return
    try:
        encoded = codec.encode(value)
    except CodecError:
        return
    stored, errors = codec.check(encoded)  # what the service stores: decoded, then validated (absent/null read)
    assert errors == []
    assert codec.validate(stored) == []
    assert Draft202012Validator(codec.strict_schema).is_valid(encoded)
