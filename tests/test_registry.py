"""Tests for schema resolution, record round-trips and output validation (schemas.registry)."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from examples.custom_schema import JobPosting
from schemas.builtin import BUILTIN_SCHEMAS, Contact, Invoice, SupportTicket
from schemas.registry import (
    ExtractionSchema,
    JsonSchemaOutputValidator,
    OutputValidationError,
    PydanticOutputValidator,
    UnknownSchemaError,
    _import_model,
    load_schema_from_record,
    resolve_schema,
    validator_for,
)
from schemas.strict import SchemaError, to_strict_json_schema

REPO_ROOT = Path(__file__).resolve().parent.parent
RECEIPT_PATH = REPO_ROOT / "examples" / "schemas" / "receipt.json"

VALID_INVOICE: dict[str, Any] = {
    "vendor": "ACME GmbH",
    "vendor_address": None,
    "invoice_number": "2024-0017",
    "invoice_date": "2024-03-01",
    "due_date": None,
    "currency": "EUR",
    "line_items": [{"description": "Widget", "quantity": 2, "unit_price": 5.0, "amount": 10.0}],
    "subtotal": 10.0,
    "tax": 1.9,
    "total": 11.9,
}

VALID_RECEIPT: dict[str, Any] = {
    "merchant": "Café Central",
    "purchase_date": "2024-05-04",
    "payment_method": "card",
    "items": [{"name": "Melange", "quantity": None, "price": 4.5}],
    "currency": "EUR",
    "tax": None,
    "tip": 0.5,
    "total": 5.0,
}


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------------
# resolve_schema: the three spec forms


@pytest.mark.parametrize(
    ("spec", "ref", "model"),
    [
        ("invoice", "invoice", Invoice),
        ("support_ticket", "support_ticket", SupportTicket),
        ("contact", "contact", Contact),
        ("ticket", "support_ticket", SupportTicket),
        ("person", "contact", Contact),
        ("  Support-Ticket ", "support_ticket", SupportTicket),
        ("INVOICE", "invoice", Invoice),
    ],
)
def test_builtin_names_and_aliases(spec: str, ref: str, model: type[Any]) -> None:
    schema = resolve_schema(spec)

    assert schema.ref == ref
    assert schema.name == ref
    assert schema.model is model
    assert schema.source_schema == model.model_json_schema()
    assert schema.json_schema == to_strict_json_schema(schema.source_schema)


def test_every_builtin_resolves() -> None:
    for name in BUILTIN_SCHEMAS:
        assert resolve_schema(name).json_schema["additionalProperties"] is False


@pytest.mark.parametrize("spec", [str(RECEIPT_PATH), "examples/schemas/receipt.json", f"file:{RECEIPT_PATH}"])
def test_json_schema_file(spec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)

    schema = resolve_schema(spec)

    assert schema.ref == "file:Receipt"
    assert schema.name == "Receipt"
    assert schema.model is None
    assert schema.source_schema == json.loads(RECEIPT_PATH.read_text(encoding="utf-8"))
    assert schema.json_schema["required"] == list(schema.json_schema["properties"])


def test_json_schema_file_without_title_is_named_after_its_stem(tmp_path: Path) -> None:
    path = write(tmp_path / "my order (v2).json", '{"type": "object", "properties": {"id": {"type": "string"}}}')

    schema = resolve_schema(str(path))

    assert schema.name == "my_order_v2"
    assert schema.ref == "file:my_order_v2"


def test_json_file_without_json_suffix_is_found_when_it_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "schema.txt", '{"title": "Plain", "type": "object", "properties": {}}')
    monkeypatch.chdir(tmp_path)

    assert resolve_schema("schema.txt").name == "Plain"


def test_a_record_naming_a_module_off_the_allowlist_imports_nothing(tmp_path: Path, monkeypatch) -> None:
    """A batch record is data: naming ``this:Zen`` (or any module) must not make a worker import it."""
    planted = tmp_path / "planted_schema_mod.py"
    planted.write_text(
        "import pathlib\n"
        "pathlib.Path(__file__).with_suffix('.ran').touch()\n"
        "from pydantic import BaseModel\n"
        "class Thing(BaseModel):\n"
        "    a: int\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    strict = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    source = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    for ref in ("planted_schema_mod:Thing", "this:Zen"):
        loaded = load_schema_from_record(ref, strict, source)
        assert loaded.model is None
        assert isinstance(validator_for(loaded), JsonSchemaOutputValidator)
    assert not (tmp_path / "planted_schema_mod.ran").exists()
    assert "planted_schema_mod" not in sys.modules
    assert "this" not in sys.modules
    allowed = load_schema_from_record(
        "planted_schema_mod:Thing", strict, source, allowed_modules=frozenset({"planted_schema_mod"})
    )
    assert (tmp_path / "planted_schema_mod.ran").exists()  # on the allowlist it is imported, as asked
    assert allowed.model is None  # ... and still not used: its schema differs from the recorded one


def test_module_class_spec() -> None:
    schema = resolve_schema("examples.custom_schema:JobPosting")

    assert schema.ref == "examples.custom_schema:JobPosting"
    assert schema.name == "JobPosting"
    assert schema.model is JobPosting
    assert schema.json_schema == to_strict_json_schema(JobPosting.model_json_schema())


def test_module_imports_are_cached() -> None:
    _import_model("examples.custom_schema:JobPosting")
    hits = _import_model.cache_info().hits

    resolve_schema("examples.custom_schema:JobPosting")

    assert _import_model.cache_info().hits == hits + 1


def test_nested_attribute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        tmp_path / "nested_attr_schemas.py",
        "from pydantic import BaseModel\n\nclass Outer:\n    class Inner(BaseModel):\n        a: int\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    schema = resolve_schema("nested_attr_schemas:Outer.Inner")

    assert schema.name == "Inner"
    assert schema.model is not None
    assert schema.model.__qualname__ == "Outer.Inner"


# --------------------------------------------------------------------------------------------------------------
# resolve_schema: errors


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(UnknownSchemaError) as info:
        resolve_schema("receipt")

    message = str(info.value)
    for name in ("invoice", "support_ticket", "contact", "ticket", "person"):
        assert name in message
    assert "package.module:ClassName" in message
    assert isinstance(info.value, ValueError)


def test_unknown_name_suggests_a_close_match() -> None:
    with pytest.raises(UnknownSchemaError, match="Did you mean 'invoice'"):
        resolve_schema("invoce")


def test_empty_spec() -> None:
    with pytest.raises(UnknownSchemaError, match="unknown schema"):
        resolve_schema("  ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"

    with pytest.raises(UnknownSchemaError, match=re.escape(f"{path} does not exist")):
        resolve_schema(str(path))


def test_directory_is_not_readable(tmp_path: Path) -> None:
    directory = tmp_path / "dir.json"
    directory.mkdir()

    with pytest.raises(UnknownSchemaError, match=re.escape(f"cannot read JSON Schema file {directory}")):
        resolve_schema(str(directory))


def test_bad_json(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", '{"type": "object",\n "properties": }')

    with pytest.raises(UnknownSchemaError, match=re.escape(f"{path} is not valid JSON (line 2, column 16")):
        resolve_schema(str(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[1, 2]", "the root must be a JSON object, found an array"),
        ('{"type": 5}', "is not a valid JSON Schema at type"),
        ('{"type": "object", "properties": {"a": false}, "required": ["a"]}', "$.properties.a: the schema is unsat"),
    ],
)
def test_file_that_is_not_a_usable_object_schema(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path / "schema.json", content)

    with pytest.raises(SchemaError) as info:
        resolve_schema(str(path))

    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_module() -> None:
    with pytest.raises(UnknownSchemaError, match="no module named 'no_such_module_xyz'"):
        resolve_schema("no_such_module_xyz.models:Thing")


def test_missing_attribute() -> None:
    with pytest.raises(UnknownSchemaError, match=re.escape("module 'examples.custom_schema' has no attribute 'Nope'")):
        resolve_schema("examples.custom_schema:Nope")


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("json:JSONDecoder", "class JSONDecoder"),
        ("json:dumps", "a function"),
        ("examples.custom_schema:annotations", "a"),
    ],
)
def test_attribute_that_is_not_a_base_model(spec: str, kind: str) -> None:
    with pytest.raises(UnknownSchemaError, match=f"is {kind}.*not a pydantic BaseModel subclass"):
        resolve_schema(spec)


def test_module_that_fails_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "broken_schema_module.py", "raise RuntimeError('boom')\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(UnknownSchemaError, match="importing 'broken_schema_module' failed: RuntimeError: boom"):
        resolve_schema("broken_schema_module:Model")


def test_model_that_cannot_be_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model no value satisfies (a field typed ``Never``-like: an empty enum) is refused with its location."""
    write(
        tmp_path / "unsatisfiable_schema_module.py",
        "from pydantic import BaseModel, Field\n\nclass Bag(BaseModel):\n"
        "    n: int = Field(json_schema_extra={'maximum': 1, 'minimum': 2, 'allOf': [{'type': 'string'}]})\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(SchemaError, match=r"unsatisfiable_schema_module:Bag .*\$\.properties\.n: the schema is unsat"):
        resolve_schema("unsatisfiable_schema_module:Bag")


def test_extraction_schema_is_frozen() -> None:
    schema = resolve_schema("invoice")

    with pytest.raises(dataclasses.FrozenInstanceError):
        schema.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------------------------
# validators


def test_pydantic_validator_success_applies_defaults_and_serializes() -> None:
    validator = validator_for(resolve_schema("ticket"))
    output = {
        "summary": "Refund please",
        "category": "billing",
        "priority": None,
        "sentiment": "negative",
        "order_id": "A-1",
        "product": None,
        "requires_human": True,
    }

    assert isinstance(validator, PydanticOutputValidator)
    assert validator.validate(output) == {**output, "priority": "normal"}


def test_pydantic_validator_returns_json_compatible_output() -> None:
    result = validator_for(resolve_schema("invoice")).validate(VALID_INVOICE)

    assert result["invoice_date"] == "2024-03-01"
    assert result["line_items"][0]["quantity"] == 2.0
    assert json.loads(json.dumps(result)) == result


def test_pydantic_validator_failure_messages() -> None:
    validator = validator_for(resolve_schema("invoice"))
    bad = {**VALID_INVOICE, "currency": "eur", "line_items": [{**VALID_INVOICE["line_items"][0], "quantity": "two"}]}
    del bad["total"]

    with pytest.raises(OutputValidationError) as info:
        validator.validate(bad)

    assert info.value.errors == [
        "currency: String should match pattern '^[A-Z]{3}$' (got \"eur\")",
        'line_items[0].quantity: Input should be a valid number, unable to parse string as a number (got "two")',
        "total: Field required",
    ]
    assert str(info.value) == "; ".join(info.value.errors)


def test_pydantic_validator_rejects_a_non_object() -> None:
    with pytest.raises(OutputValidationError) as info:
        validator_for(resolve_schema("invoice")).validate([1, 2])

    assert info.value.errors == ["<root>: Input should be a valid dictionary or instance of Invoice"]


def test_many_errors_are_capped() -> None:
    validator = validator_for(resolve_schema("invoice"))
    bad = {**VALID_INVOICE, "line_items": [{"description": 1, "amount": "x"} for _ in range(15)]}

    with pytest.raises(OutputValidationError) as info:
        validator.validate(bad)

    assert len(info.value.errors) == 21
    assert info.value.errors[-1] == "... and 10 more errors"


def test_json_schema_validator_success_returns_the_data_in_the_users_shape() -> None:
    """The nulls strict mode forced into optional properties are removed: what is stored is valid under the file."""
    validator = validator_for(resolve_schema(str(RECEIPT_PATH)))

    assert isinstance(validator, JsonSchemaOutputValidator)
    stored = validator.validate(VALID_RECEIPT)
    expected = {k: v for k, v in VALID_RECEIPT.items() if k != "tax"} | {"items": [{"name": "Melange", "price": 4.5}]}
    assert stored == expected


def test_json_schema_validator_failure_messages() -> None:
    validator = validator_for(resolve_schema(str(RECEIPT_PATH)))
    bad = {
        **VALID_RECEIPT,
        "purchase_date": "2024-13-01",
        "payment_method": "cheque",
        "items": [{"name": "Melange", "quantity": "one", "price": "4.50"}],
        "tip": -1,
        "extra": True,
    }
    del bad["total"]

    with pytest.raises(OutputValidationError) as info:
        validator.validate(bad)

    assert info.value.errors == [
        "<root>: 'total' is a required property",
        "<root>: Additional properties are not allowed ('extra' was unexpected)",
        "items[0].price: '4.50' is not of type 'number'",
        "items[0].quantity: 'one' is not of type 'number'",
        "payment_method: 'cheque' is not one of ['cash', 'card', 'mobile', 'voucher', 'other']",
        "purchase_date: '2024-13-01' is not a 'date'",
        "tip: -1 is less than the minimum of 0",
    ]


def test_json_schema_validator_explains_nested_nullable_objects() -> None:
    schema = resolve_schema("contact")
    validator = validator_for(dataclasses.replace(schema, model=None))
    output = Contact(full_name="A").model_dump(mode="json") | {"address": {"city": 5}}

    with pytest.raises(OutputValidationError) as info:
        validator.validate(output)

    # validated by the model's own schema (street is optional there), not by the strict one sent to the API
    assert info.value.errors == ["address.city: 5 is not of type 'string' or 'null'"]


def test_json_schema_validator_rejects_a_non_object() -> None:
    with pytest.raises(OutputValidationError) as info:
        validator_for(resolve_schema(str(RECEIPT_PATH))).validate([1])

    assert info.value.errors == ["<root>: [1] is not of type 'object'"]


# --------------------------------------------------------------------------------------------------------------
# load_schema_from_record


def as_record(schema: ExtractionSchema) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """What a batch record stores, after a JSON round trip."""
    return schema.ref, json.loads(json.dumps(schema.json_schema)), json.loads(json.dumps(schema.source_schema))


@pytest.mark.parametrize(
    "spec", ["invoice", "ticket", "person", "examples.custom_schema:JobPosting", str(RECEIPT_PATH)]
)
def test_record_round_trip(spec: str) -> None:
    original = resolve_schema(spec)

    loaded = load_schema_from_record(*as_record(original), allowed_modules=frozenset({"examples"}))

    assert loaded == original


def test_record_round_trip_validates_the_same_way() -> None:
    loaded = load_schema_from_record(*as_record(resolve_schema("invoice")))

    assert validator_for(loaded).validate(VALID_INVOICE) == validator_for(resolve_schema("invoice")).validate(
        VALID_INVOICE
    )


def test_record_name_can_be_given() -> None:
    ref, strict, source = as_record(resolve_schema("invoice"))

    assert load_schema_from_record(ref, strict, source, name="custom").name == "custom"


def test_record_with_unimportable_module_falls_back_to_json_schema(caplog: pytest.LogCaptureFixture) -> None:
    strict = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    source = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}

    with caplog.at_level(logging.WARNING, logger="schemas.registry"):
        loaded = load_schema_from_record(
            "gone_module_xyz:Thing", strict, source, allowed_modules=frozenset({"gone_module_xyz"})
        )

    assert loaded.model is None
    assert loaded.name == "Thing"
    assert "gone_module_xyz:Thing" in caplog.text
    assert isinstance(validator_for(loaded), JsonSchemaOutputValidator)
    assert validator_for(loaded).validate({"a": 1}) == {"a": 1}


def test_record_whose_model_changed_falls_back_to_json_schema(caplog: pytest.LogCaptureFixture) -> None:
    ref, strict, source = as_record(resolve_schema("invoice"))
    source["properties"]["total"]["description"] = "an older wording"

    with caplog.at_level(logging.WARNING, logger="schemas.registry"):
        loaded = load_schema_from_record(ref, strict, source)

    assert loaded.model is None
    assert "changed since the batch was submitted" in caplog.text
