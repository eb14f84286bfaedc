"""Part formats of the results sink (``store.sink.formats``): result lines survive jsonl, jsonl.gz and parquet exactly.

"Exactly" is stricter here than ``==`` on the parsed JSON: :func:`same_json` also tells an int from a float (``3``
from ``3.0``) and ``0.0`` from ``-0.0``. Covered: real-looking result lines (succeeded, failed, cancelled, every
optional field set and unset, unicode ids, unknown keys), which schemas give the parquet ``output`` column typed
struct columns and which JSON text, the schema corpus (every valid instance and simulated stored answers of every
schema round-trip through parquet), the typed columns pyarrow reads, and damaged parts failing with
``PartFormatError``. No timing is asserted; ``python -m tests.test_sink_formats`` measures encode and decode
throughput on a 10,000-line part of invoice results.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import random
import sys
import time
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.builtin import BUILTIN_SCHEMAS, Contact, Invoice, SupportTicket
from schemas.codec import CodecError, SchemaCodec, SchemaError, build_codec
from schemas.results import ErrorInfo, ErrorType, ResultRecord, Status, Usage
from simulator.generate import document_words, generate_instance
from store.sink.formats import PART_FORMATS, PartEncoder, PartFormat, PartFormatError, decode_part, part_suffix
from tests.schema_corpus.loader import Entry, instance_errors, load

INVOICE_SCHEMA = Invoice.model_json_schema()
RECORD_KEYS = [field.alias or name for name, field in ResultRecord.model_fields.items()]
UNICODE_IDS = [
    "facture-é-№7",
    "請求書-001",
    "חשבונית",
    "emoji-🧾-👩🏽‍💼",
    "line\u2028sep",
    'quote"back\\slash',
    "tab\there",
    "controls\x00\x01\x1f\x7f\n\r end",
    "",
]


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON and of the same JSON types: an int is not a float, -0.0 is not 0.0, no key missing."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def test_same_json_tells_what_equality_does_not() -> None:
    assert same_json({"a": [1, 2.5, None]}, {"a": [1, 2.5, None]})
    assert not same_json({"a": 3}, {"a": 3.0})
    assert not same_json({"a": 0.0}, {"a": -0.0})
    assert not same_json({"a": None}, {})
    assert not same_json({"a": True}, {"a": 1})


# -- real-looking result lines -------------------------------------------------------------------------------------


def invoice_output(seed: int, *, full: bool = True) -> dict[str, Any]:
    """An invoice answer as the service stores it: the pydantic model's ``model_dump(mode="json")``."""
    rng = random.Random(seed)
    items = [
        {
            "description": f"Copper widget ×{i} — größe {rng.randint(1, 9)}",
            "quantity": float(rng.randint(1, 20)) if full else None,
            "unit_price": round(rng.uniform(0.5, 400), 2) if full else None,
            "amount": round(rng.uniform(1, 5000), 2),
        }
        for i in range(rng.randint(0 if not full else 1, 5))
    ]
    address = {"street": "12 Harbour St, Suite 4", "city": "Berlin", "region": None, "postal_code": "10115"}
    invoice = {
        "vendor": "Harbour Supplies GmbH & Co. KG",
        "vendor_address": {**address, "country": "DE"} if full else None,
        "invoice_number": f"INV-{rng.randint(1, 99999):05d}",
        "invoice_date": "2025-03-14",
        "due_date": "2025-04-13" if full else None,
        "currency": "EUR",
        "line_items": items,
        "subtotal": round(rng.uniform(10, 9000), 2),
        "tax": round(rng.uniform(0, 900), 2) if full else None,
        "total": 100.0 if seed % 7 == 0 else round(rng.uniform(10, 9900), 2),
    }
    return Invoice.model_validate(invoice).model_dump(mode="json")


def result_record(index: int, **fields: Any) -> dict[str, Any]:
    """A result line as ``producer collect`` writes it; ``fields`` override the defaults of a succeeded line."""
    values: dict[str, Any] = {
        "custom_id": f"doc-{index:06d}",
        "batch_id": "invoices-20250314-101500",
        "status": Status.SUCCEEDED,
        "output": invoice_output(index),
        "api": "responses",
        "model": "gpt-4o-mini",
        "schema": "invoice",
        "fingerprint": "sha256:" + "0f" * 32,
        "usage": Usage(input_tokens=1234, cached_input_tokens=512, output_tokens=210, total_tokens=1444),
        "cost_usd": 0.000311,
        "attempts": 1,
        "latency_ms": 1500 + index,
        "response_id": f"resp_{index:040d}",
        "request_id": f"req_{index:032d}",
        "service_tier": "default",
        "venue": "sync",
        "document_fingerprint": "sha256:" + "d4" * 32,
        "finished_at": "2025-03-14T10:15:00.123456Z",
    }
    values.update(fields)
    return ResultRecord(**values).to_json_dict()


def line_of(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def realistic_records() -> list[dict[str, Any]]:
    """One of each kind of line the service writes, and the odd ones a sink must carry anyway."""
    failed_error = ErrorInfo(
        type=ErrorType.SCHEMA_VALIDATION,
        message="still invalid after 1 repair: $.total: 'n/a' is not of type 'number'",
    )
    records = [
        result_record(0),
        result_record(1, output=invoice_output(1, full=False)),
        result_record(2, status=Status.FAILED, output=None, error=failed_error, invalid_fields=["total", "tax"]),
        result_record(
            3,
            status=Status.FAILED,
            output=None,
            error=ErrorInfo(type=ErrorType.RETRIES_EXHAUSTED, message="HTTP 503 five times", status_code=503),
            retries=5,
            rate_limited=2,
            attempts=5,
        ),
        result_record(4, status=Status.CANCELLED, output=None, cost_usd=None, venue=None, latency_ms=None),
        # Every optional field set ...
        result_record(
            5,
            cache_hit=True,
            repairs=1,
            attempts=2,
            service_tier="flex",
            service_tier_fallback=True,
            venue="batch-api",
            provider_batch_id="batch_abc123",
            usage=Usage(input_tokens=9, cached_input_tokens=0, output_tokens=5, reasoning_tokens=3, total_tokens=14),
        ),
        # ... and every one unset (the model's defaults).
        ResultRecord(
            custom_id="bare",
            batch_id="b",
            status=Status.SUCCEEDED,
            api="chat",
            model="m",
            schema_="invoice",
            fingerprint="f",
            finished_at="2025-03-14T10:15:00Z",
            output=invoice_output(6),
        ).to_json_dict(),
        # Exotic numbers in an output: a huge and a negative-zero float, and an integral one.
        result_record(7, output={**invoice_output(7), "total": 1e300, "subtotal": -0.0, "tax": 5.0}),
    ]
    records += [result_record(10 + i, custom_id=custom_id) for i, custom_id in enumerate(UNICODE_IDS)]
    # A key the result line does not have yet (a newer writer): nothing is lost.
    records.append({**result_record(20), "trace": {"spans": [1, 2.5, None, "x"], "ok": True}})
    return records


def rows_of(records: list[dict[str, Any]], *, start: int = 0, step: int = 3) -> list[tuple[int, bytes]]:
    # Ordinals are the input line's position, not the row's: gaps and any order are allowed.
    return [(start + step * index, line_of(record)) for index, record in enumerate(records)]


def assert_round_trip(rows: list[tuple[int, bytes]], fmt: PartFormat, schema: Any = INVOICE_SCHEMA) -> bytes:
    data = PartEncoder(fmt, schema).encode(rows)
    back = decode_part(data, fmt)
    assert [ordinal for ordinal, _ in back] == [ordinal for ordinal, _ in rows]
    for (_, line), (_, decoded) in zip(rows, back, strict=True):
        assert same_json(orjson.loads(line), orjson.loads(decoded)), (line, decoded)
    return data


def part_metadata(data: bytes) -> dict[str, Any]:
    stored = pq.ParquetFile(pa.BufferReader(data)).metadata.metadata
    return dict(orjson.loads(stored[b"structured_extract"]))


# -- the API ---------------------------------------------------------------------------------------------------------


def test_formats_and_suffixes() -> None:
    assert PART_FORMATS == ("jsonl", "jsonl.gz", "parquet")
    assert [part_suffix(fmt) for fmt in PART_FORMATS] == [".jsonl", ".jsonl.gz", ".parquet"]
    with pytest.raises(ValueError, match="unknown part format"):
        part_suffix("csv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown part format"):
        PartEncoder("csv", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown part format"):
        decode_part(b"", "csv")  # type: ignore[arg-type]
    assert issubclass(PartFormatError, ValueError)


@pytest.mark.parametrize("fmt", PART_FORMATS)
def test_real_looking_lines_round_trip(fmt: PartFormat) -> None:
    assert_round_trip(rows_of(realistic_records(), start=7), fmt)


@pytest.mark.parametrize("fmt", PART_FORMATS)
@pytest.mark.parametrize("schema", [INVOICE_SCHEMA, None, {"type": "array"}])
def test_the_schema_never_changes_what_comes_back(fmt: PartFormat, schema: Any) -> None:
    """Whatever the schema says (struct, json, none), the lines are the same after the trip."""
    assert_round_trip(rows_of(realistic_records()), fmt, schema)


@pytest.mark.parametrize("fmt", PART_FORMATS)
def test_an_empty_part_round_trips(fmt: PartFormat) -> None:
    assert decode_part(PartEncoder(fmt, INVOICE_SCHEMA).encode([]), fmt) == []


@pytest.mark.parametrize("fmt", PART_FORMATS)
def test_rows_that_are_not_result_lines_are_refused(fmt: PartFormat) -> None:
    encoder = PartEncoder(fmt, INVOICE_SCHEMA)
    good = line_of(result_record(0))
    for bad in ([(0, b"[1, 2]")], [(0, good), (1, b"{not json")], [(-1, good)], [(True, good)], [(2**63, good)]):
        with pytest.raises(ValueError, match="row"):
            encoder.encode(bad)


def test_jsonl_appends_the_ordinal_to_the_very_bytes() -> None:
    line = line_of(result_record(0, custom_id="請求書"))
    data = PartEncoder("jsonl", None).encode([(7, line), (0, b"{}")])
    assert data == line[:-1] + b',"ordinal":7}\n{"ordinal":0}\n'
    assert orjson.loads(data.splitlines()[0]) == {**orjson.loads(line), "ordinal": 7}
    assert decode_part(data, "jsonl") == [(7, line), (0, b"{}")]  # the same bytes, not only the same JSON
    # Cut, not re-serialized: even a line orjson would write otherwise comes back byte for byte.
    spaced = b'{"custom_id": "x",  "n": 1.50}'
    assert decode_part(PartEncoder("jsonl", None).encode([(2, spaced)]), "jsonl") == [(2, spaced)]


def test_jsonl_takes_pretty_lines_and_reads_lines_of_other_writers() -> None:
    record = result_record(1)
    pretty = orjson.dumps(record, option=orjson.OPT_INDENT_2)
    data = PartEncoder("jsonl", None).encode([(3, pretty)])
    assert data.count(b"\n") == 1
    assert decode_part(data, "jsonl") == [(3, orjson.dumps(record))]
    # Re-serialized by another tool: the key first, spaces, CRLF.
    other = b'{"ordinal": 4, "custom_id": "x"}\r\n{"custom_id": "y" , "ordinal":5}\n'
    assert [(o, orjson.loads(b)) for o, b in decode_part(other, "jsonl")] == [
        (4, {"custom_id": "x"}),
        (5, {"custom_id": "y"}),
    ]


def test_jsonl_refuses_a_line_that_has_an_ordinal_key() -> None:
    with pytest.raises(ValueError, match='"ordinal"'):
        PartEncoder("jsonl", None).encode([(0, b'{"ordinal": 1}')])


def test_parquet_keeps_an_ordinal_key_of_the_line_itself() -> None:
    """Parquet has its own ordinal column: a line's own "ordinal" key is just one more unknown key."""
    record = {**result_record(0), "ordinal": "mine", "extra": [1]}
    assert_round_trip([(9, line_of(record))], "parquet")


def test_jsonl_gz_is_gzip_of_jsonl_and_reads_several_members() -> None:
    rows = rows_of(realistic_records())
    data = PartEncoder("jsonl.gz", None).encode(rows)
    assert gzip.decompress(data) == PartEncoder("jsonl", None).encode(rows)
    assert PartEncoder("jsonl.gz", None).encode(rows) == data  # deterministic: no timestamp inside
    first, second = PartEncoder("jsonl.gz", None).encode(rows[:3]), PartEncoder("jsonl.gz", None).encode(rows[3:])
    assert decode_part(first + second, "jsonl.gz") == decode_part(data, "jsonl.gz")


# -- parquet: typed columns ----------------------------------------------------------------------------------------


def test_parquet_columns_are_typed() -> None:
    data = assert_round_trip(rows_of(realistic_records()), "parquet")
    table = pq.read_table(pa.BufferReader(data))
    assert table.column_names == ["ordinal", *RECORD_KEYS, "extra"]  # every ResultRecord field has its column
    schema = table.schema
    assert schema.field("ordinal").type == pa.int64()
    output = schema.field("output").type
    assert output.field("total").type == pa.float64()
    assert output.field("vendor").type == pa.string()
    assert output.field("vendor_address").type.field("city").type == pa.string()
    items = output.field("line_items").type
    assert pa.types.is_list(items)
    assert items.value_type.field("amount").type == pa.float64()
    assert schema.field("usage").type == pa.struct([(name, pa.int64()) for name in Usage.model_fields])
    error = schema.field("error").type
    assert [(f.name, f.type) for f in error] == [
        ("type", pa.string()),
        ("message", pa.string()),
        ("status_code", pa.int64()),
    ]
    assert list(ErrorInfo.model_fields) == ["type", "message", "status_code"]
    expected = {
        "custom_id": pa.string(),
        "schema": pa.string(),
        "cost_usd": pa.float64(),
        "cache_hit": pa.bool_(),
        "service_tier_fallback": pa.bool_(),
        "attempts": pa.int64(),
        "latency_ms": pa.int64(),
        "invalid_fields": pa.list_(pa.string()),
        "extra": pa.string(),
    }
    for name, kind in expected.items():
        found = schema.field(name).type
        assert found == kind or (pa.types.is_list(found) and found.value_type == kind.value_type), name
    assert part_metadata(data)["output"] == "struct"
    assert part_metadata(data)["version"] == 1
    # The values, read by pyarrow alone.
    first = table.slice(0, 1).to_pylist()[0]
    assert first["output"]["total"] == invoice_output(0)["total"]
    assert first["usage"]["input_tokens"] == 1234
    assert table.column("extra").to_pylist()[-1] == orjson.dumps({"trace": realistic_records()[-1]["trace"]}).decode()
    assert table.column("extra").null_count == len(realistic_records()) - 1


def test_fields_that_do_not_fit_their_columns_go_to_extra() -> None:
    """A value of another type, an object with another key, a missing key: all come back as they were."""
    base = result_record(0)
    odd = [
        {**base, "cost_usd": 0},  # an int where the column is float64
        {**base, "usage": {**base["usage"], "audio_tokens": 3}},  # a counter Usage does not have (yet)
        {**base, "error": {"type": "x", "message": "y", "status_code": None, "param": "z"}},
        {key: value for key, value in base.items() if key != "document_fingerprint"},  # an older line
        {key: value for key, value in base.items() if key != "output"},
        {**base, "attempts": 2**64 - 1, "invalid_fields": ["ok", 3], "status": None},
        {"custom_id": "only"},
    ]
    data = assert_round_trip(rows_of(odd), "parquet")
    table = pq.read_table(pa.BufferReader(data))
    assert table.column("cost_usd").to_pylist()[0] is None
    assert orjson.loads(table.column("extra").to_pylist()[0]) == {"cost_usd": 0}
    absent = dict(part_metadata(data)["absent"])
    assert absent[3] == ["document_fingerprint"]
    assert absent[4] == ["output"]
    assert len(absent[6]) == len(RECORD_KEYS) - 1


# -- the output column: struct or json -----------------------------------------------------------------------------

STRING = {"type": "string"}
OPTIONAL_NAME = {"type": "object", "properties": {"name": STRING}}


def closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


STRUCT_SCHEMAS: dict[str, dict[str, Any]] = {
    "flat closed": closed({"a": STRING, "n": {"type": "integer"}, "x": {"type": "number"}, "b": {"type": "boolean"}}),
    "nested objects in an array": closed({"items": {"type": "array", "items": closed({"sku": STRING})}}),
    "array of arrays": closed({"grid": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}}),
    "optional, not nullable": closed({"a": STRING, "b": {"type": "integer"}}, required=["a"]),
    "required and nullable": closed({"a": {"type": ["string", "null"]}}),
    "optional and nullable (pydantic's X | None = None)": closed(
        {"a": {"anyOf": [STRING, {"type": "null"}], "default": None}}, required=[]
    ),
    "enum, const, formats, bounds": closed(
        {
            "kind": {"enum": ["a", "b"]},
            "tag": {"const": "v1"},
            "when": {"type": "string", "format": "date-time"},
            "n": {"type": "integer", "minimum": 0, "not": {"const": 3}},
        }
    ),
    "local $ref with annotations": {
        "$defs": {"Money": closed({"amount": {"type": "number"}, "currency": STRING})},
        **closed({"price": {"$ref": "#/$defs/Money", "description": "what it costs"}}),
    },
    "open object (no additionalProperties)": {"type": "object", "properties": {"name": STRING}, "required": ["name"]},
    "allOf of one part": closed({"a": {"allOf": [STRING]}}),
    "integer and number": closed({"n": {"type": ["integer", "number"]}}),
}
JSON_SCHEMAS: dict[str, Any] = {
    "no schema": None,
    "root array": {"type": "array", "items": STRING},
    "root scalar": STRING,
    "union of types": closed({"v": {"type": ["string", "number"]}}),
    "union of shapes": closed({"v": {"anyOf": [closed({"a": STRING}), closed({"b": STRING})]}}),
    "nullable and two shapes": closed({"v": {"oneOf": [STRING, {"type": "integer"}, {"type": "null"}]}}),
    "map": closed({"labels": {"type": "object", "additionalProperties": STRING}}),
    "explicitly open": {"type": "object", "properties": {"name": STRING}, "additionalProperties": True},
    "patternProperties": {**closed({"a": STRING}), "patternProperties": {"^x-": STRING}},
    "recursive $ref": {
        "$defs": {"Node": closed({"name": STRING, "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}})},
        "$ref": "#/$defs/Node",
    },
    "$ref outside": closed({"a": {"$ref": "https://example.com/schema.json"}}),
    "$ref with a type beside it": closed({"a": {"$ref": "#/$defs/S", "type": "string"}}) | {"$defs": {"S": STRING}},
    "any value": closed({"a": {}}),
    "untyped array items": closed({"a": {"type": "array"}}),
    "tuple": closed({"a": {"type": "array", "prefixItems": [STRING]}}),
    "object without properties": closed({"a": {"type": "object"}}),
    "allOf of two parts": {"allOf": [closed({"a": STRING}), {"required": ["a"]}]},
    "bare object root": {"type": "object"},
    "true": True,
}


@pytest.mark.parametrize("name", STRUCT_SCHEMAS)
def test_schemas_of_a_struct_shape(name: str) -> None:
    assert PartEncoder("parquet", STRUCT_SCHEMAS[name]).output_mode == "struct"


@pytest.mark.parametrize("name", JSON_SCHEMAS)
def test_schemas_stored_as_json_text(name: str) -> None:
    assert PartEncoder("parquet", JSON_SCHEMAS[name]).output_mode == "json"


@pytest.mark.parametrize("name", BUILTIN_SCHEMAS)
def test_the_builtin_schemas_are_structs(name: str) -> None:
    """Pydantic models: $ref to $defs, ``X | None = None``, no additionalProperties -- all typed."""
    schema = BUILTIN_SCHEMAS[name].model_json_schema()
    assert PartEncoder("parquet", schema).output_mode == "struct"
    assert PartEncoder("jsonl", schema).output_mode == "json"
    assert PartEncoder("jsonl.gz", schema).output_mode == "json"


def test_builtin_answers_round_trip_as_structs() -> None:
    outputs = {
        "contact": Contact.model_validate(
            {"full_name": "Dr. Jane Q. Smith", "social_profiles": [{"platform": "github", "handle": "jqs"}]}
        ).model_dump(mode="json"),
        "support_ticket": SupportTicket.model_validate(
            {
                "summary": "Refund please",
                "category": "billing",
                "sentiment": "negative",
                "order_id": None,
                "product": "Pro",
                "requires_human": True,
            }
        ).model_dump(mode="json"),
    }
    for name, output in outputs.items():
        schema = BUILTIN_SCHEMAS[name].model_json_schema()
        data = assert_round_trip([(0, line_of(result_record(0, output=output, schema=name)))], "parquet", schema)
        assert part_metadata(data)["output"] == "struct"


NUMBERS = closed(
    {
        "x": {"type": "number"},
        "n": {"type": "integer"},
        "maybe": {"type": ["string", "null"]},
        "opt": {"type": "integer"},
        "opt_null": {"anyOf": [STRING, {"type": "null"}]},
        "list": {"type": "array", "items": closed({"v": {"type": ["number", "null"]}, "w": STRING}, required=["w"])},
    },
    required=["x", "n", "maybe", "list"],
)


def struct_round_trip(outputs: list[Any], schema: dict[str, Any] = NUMBERS, mode: str = "struct") -> dict[str, Any]:
    rows = [(index, line_of(result_record(index, output=output))) for index, output in enumerate(outputs)]
    data = assert_round_trip(rows, "parquet", schema)
    metadata = part_metadata(data)
    assert metadata["output"] == mode
    return metadata


def number_output(x: Any, n: Any = 1, **more: Any) -> dict[str, Any]:
    return {"x": x, "n": n, "maybe": None, "list": [], **more}


def test_ints_and_floats_keep_their_flavour_in_typed_columns() -> None:
    """``3`` and ``3.0`` in one float64 column, ``4.0`` in an int64 one: each comes back as written."""
    outputs = [number_output(3), number_output(3.0), number_output(2.5), number_output(-0.0, n=4.0), number_output(7)]
    outputs.append(number_output(1, list=[{"v": 1, "w": "a"}, {"v": 1.0, "w": "b"}, {"v": None, "w": "c"}]))
    metadata = struct_round_trip([*outputs, None])
    assert {tuple(rule["path"]): rule["integral"] for rule in metadata["numbers"]} == {
        ("x",): "int",
        ("n",): "int",
        ("list", None, "v"): "float",
    }
    struct_round_trip([number_output(float(i)) for i in range(5)])  # all floats: no rule needed
    struct_round_trip([number_output(2**53), number_output(-(2**53))])  # the largest ints a float64 holds exactly


def test_absent_and_null_are_told_apart() -> None:
    outputs = [
        number_output(1.5, opt=3, opt_null="x"),
        number_output(1.5),  # both optional keys absent
        number_output(1.5, opt_null=None),  # the nullable one null
        number_output(1.5, maybe="y", list=[{"w": "no v"}, {"v": None, "w": "null v"}, {"v": 2.0, "w": "v"}]),
        None,
    ]
    metadata = struct_round_trip(outputs)
    rules = {tuple(rule["path"]): (rule["null"], rule["except"]) for rule in metadata["fields"]}
    assert rules[("opt",)] == ("absent", [])
    assert rules[("opt_null",)] == ("absent", [2])
    assert rules[("list", None, "v")] == ("null", [0])  # v is optional there: absent once, null once


def test_undeclared_keys_of_open_objects_keep_the_part_typed() -> None:
    schema = {
        "type": "object",
        "properties": {"name": STRING, "tags": {"type": "array", "items": OPTIONAL_NAME}},
        "required": ["name"],
    }
    outputs = [
        {"name": "a", "tags": [{"name": "t"}, {"name": "u", "colour": "red"}], "score": 3, "nested": {"x": [1]}},
        {"name": "b"},
        {"name": "c", "tags": [{}]},
    ]
    rows = [(i, line_of(result_record(i, output=output))) for i, output in enumerate(outputs)]
    # The line's own unknown key takes the name the set-aside keys would use: they pick another.
    rows.append((9, line_of({**result_record(9, output={"name": "d", "x": 1}), "$output_undeclared": "mine"})))
    data = assert_round_trip(rows, "parquet", schema)
    metadata = part_metadata(data)
    assert metadata["output"] == "struct"
    assert metadata["undeclared"] == "$$output_undeclared"
    extra = orjson.loads(pq.read_table(pa.BufferReader(data)).column("extra").to_pylist()[0])
    assert extra == {
        "$$output_undeclared": [[["tags", 1], {"colour": "red"}], [[], {"score": 3, "nested": {"x": [1]}}]]
    }


def test_odd_property_names_survive() -> None:
    names = ["", ".", "a.b", "é 😀", '"quoted"\\', "ordinal", "extra", "output", "$output_undeclared", "item"]
    schema = closed({name: {"type": "array", "items": closed({name: STRING})} for name in names})
    output = {name: [{name: name * 2}] for name in names}
    struct_round_trip([output, None], schema)


@pytest.mark.parametrize(
    "bad",
    [
        number_output(1.5, n=2**63),  # beyond int64
        number_output(2**53 + 1),  # an int a float64 does not hold exactly
        number_output(1.5, n=-0.0),  # an integral float whose sign an int loses
        number_output(1.5, n=2.5),  # invalid under the schema, stored anyway
        number_output("1.5"),
        number_output(1.5, list=None),
        number_output(1.5, list=[None]),
        {"n": 1, "maybe": None, "list": []},  # a required key absent
        [1, 2],
        "text",
        number_output(1.5, maybe=True),
        number_output(1.5, maybe={"a": 1}),
    ],
)
def test_a_value_that_does_not_fit_makes_the_part_json(bad: Any) -> None:
    """Never an error, never a loss: the whole part is written as JSON text, and says so."""
    struct_round_trip([number_output(1.0), bad, None], mode="json")


# -- random outputs of a schema with every kind of place -----------------------------------------------------------

INNER = {
    "type": "object",
    "properties": {"o1": {"type": "integer"}, "o2": {"type": ["number", "null"]}, "o3": STRING},
    "required": ["o3"],
}
RICH = {
    "type": "object",
    "properties": {
        "first": {"anyOf": [STRING, {"type": "null"}]},  # optional and nullable, and first: its brace is special
        "n": {"type": "number"},
        "i": {"type": ["integer", "null"]},
        "b": {"type": "boolean"},
        "obj": {"anyOf": [INNER, {"type": "null"}]},
        "objs": {"type": "array", "items": {"anyOf": [INNER, {"type": "null"}]}},
        "nums": {"type": ["array", "null"], "items": {"type": ["number", "null"]}},
        "grid": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        "s": STRING,
    },
    "required": ["n"],
}
NUMBER_VALUES = st.one_of(
    st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([3.0, -0.0])
)
INTEGER_VALUES = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-(2**53), 2**53).map(float))
INNER_VALUES = st.fixed_dictionaries(
    {"o3": st.text()}, optional={"o1": INTEGER_VALUES, "o2": st.none() | NUMBER_VALUES}
)
RICH_VALUES = st.fixed_dictionaries(
    {"n": NUMBER_VALUES},
    optional={
        "first": st.none() | st.text(),
        "i": st.none() | INTEGER_VALUES,
        "b": st.booleans(),
        "obj": st.none() | INNER_VALUES,
        "objs": st.lists(st.none() | INNER_VALUES, max_size=3),
        "nums": st.none() | st.lists(st.none() | NUMBER_VALUES, max_size=3),
        "grid": st.lists(st.lists(INTEGER_VALUES, max_size=2), max_size=2),
        "s": st.text(),
    },
)
RICH_ENCODER = PartEncoder("parquet", RICH)


# The same examples on every run (CI must not turn red on a new random find); SINK_EXAMPLES=N explores N new ones.
@settings(
    max_examples=int(os.environ.get("SINK_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not os.environ.get("SINK_EXAMPLES"),
)
@given(outputs=st.lists(st.none() | RICH_VALUES, max_size=8))
def test_random_valid_outputs_round_trip_in_typed_columns(outputs: list[Any]) -> None:
    assert RICH_ENCODER.output_mode == "struct"
    rows = [(index, line_of(result_record(index, output=output))) for index, output in enumerate(outputs)]
    data = RICH_ENCODER.encode(rows)
    assert part_metadata(data)["output"] == "struct"
    back = decode_part(data, "parquet")
    for (_, line), (_, decoded) in zip(rows, back, strict=True):
        assert same_json(orjson.loads(line), orjson.loads(decoded)), (line, decoded)


# -- the schema corpus ---------------------------------------------------------------------------------------------

CORPUS = [entry for entry in load().entries if entry.kind != "unsatisfiable"]
WORDS = document_words("Harbour Supplies invoice INV-42 Berlin 2025-03-14 copper widget paid accounts@harbour.example")
ANSWERS_PER_SCHEMA = 3


@functools.cache
def corpus_codec(key: str) -> SchemaCodec | None:
    entry = next(entry for entry in CORPUS if entry.key == key)
    try:
        return build_codec(entry.schema, name=entry.name)
    except SchemaError:
        return None


def stored_outputs(entry: Entry) -> list[Any]:
    """The corpus's valid instances, and answers the simulator gives that the service would store: the codec's
    decoding of a strict-shaped answer, valid under the user's schema."""
    outputs = list(entry.valid)
    codec = corpus_codec(entry.key)
    if codec is None:
        return outputs
    for seed in range(ANSWERS_PER_SCHEMA):
        try:
            answer = codec.decode(generate_instance(codec.strict_schema, seed, WORDS))
        except CodecError:
            continue
        if codec.validate(answer) == [] and instance_errors(entry.schema, answer) == []:
            outputs.append(answer)
    return outputs


@pytest.mark.parametrize("entry", CORPUS, ids=lambda entry: entry.key)
def test_every_valid_output_of_every_corpus_schema_round_trips_through_parquet(entry: Entry) -> None:
    """The key exactness check: a result line with any output valid under its schema comes back the same."""
    outputs = stored_outputs(entry)
    assert all(instance_errors(entry.schema, output) == [] for output in outputs)
    encoder = PartEncoder("parquet", entry.schema if isinstance(entry.schema, dict) else None)
    records = [result_record(i, output=output, status="succeeded") for i, output in enumerate(outputs)]
    records.append(result_record(len(outputs), status=Status.FAILED, output=None))
    rows = rows_of(records)
    data = encoder.encode(rows)
    back = decode_part(data, "parquet")
    for (_, line), (_, decoded) in zip(rows, back, strict=True):
        assert same_json(orjson.loads(line), orjson.loads(decoded)), (line, decoded)
    # A struct schema keeps its parts typed: the corpus has nothing (int beyond int64 ...) that would not fit.
    assert part_metadata(data)["output"] == encoder.output_mode


def test_how_much_of_the_corpus_is_typed() -> None:
    modes = [PartEncoder("parquet", e.schema if isinstance(e.schema, dict) else None).output_mode for e in CORPUS]
    assert len(modes) >= 300
    assert 150 <= modes.count("struct") <= len(modes) - 100  # about half: the rest are unions, maps, allOf ...


# -- damaged parts -------------------------------------------------------------------------------------------------


def encoded(fmt: PartFormat) -> bytes:
    return PartEncoder(fmt, INVOICE_SCHEMA).encode(rows_of([result_record(i) for i in range(20)]))


@pytest.mark.parametrize("fmt", PART_FORMATS)
def test_a_truncated_part_fails_clearly(fmt: PartFormat) -> None:
    data = encoded(fmt)
    middle = data.index(b"\n", len(data) // 2) - 5 if fmt == "jsonl" else len(data) // 2  # a jsonl cut inside a line
    for size in (1, 2, 10, len(data) // 3 + 1, middle, len(data) - 9, len(data) - 1):
        with pytest.raises(PartFormatError):
            decode_part(data[:size], fmt)


def test_jsonl_cut_at_a_line_end_is_what_plain_text_cannot_tell() -> None:
    data = encoded("jsonl")
    cut = data.index(b"\n", len(data) // 2) + 1
    assert decode_part(data[:cut], "jsonl") == decode_part(data, "jsonl")[: data[:cut].count(b"\n")]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl.gz"])
def test_a_flipped_byte_fails_clearly_or_changes_nothing(fmt: PartFormat) -> None:
    """Checksummed formats: page CRCs and the footer's check (parquet), gzip's CRC. Every 29th byte is flipped."""
    data = encoded(fmt)
    original = decode_part(data, fmt)
    failed = 0
    for position in range(0, len(data), 29):
        damaged = bytearray(data)
        damaged[position] ^= 0x5A
        try:
            assert decode_part(bytes(damaged), fmt) == original, position
        except PartFormatError:
            failed += 1
    assert failed > len(data) // 29 // 2


def test_a_damaged_parquet_page_and_footer_fail_clearly() -> None:
    data = encoded("parquet")
    row_group = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(0)
    for index in range(row_group.num_columns):  # a byte of the last page of every column chunk
        chunk = row_group.column(index)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        damaged = bytearray(data)
        damaged[start + chunk.total_compressed_size - 3] ^= 0xFF
        with pytest.raises(PartFormatError):
            decode_part(bytes(damaged), "parquet")
    renamed = data.replace(b"custom_id", b"custom_ix", 1)  # a column name in the footer
    with pytest.raises(PartFormatError, match="check"):
        decode_part(renamed, "parquet")


def test_foreign_and_garbage_bytes_fail_clearly() -> None:
    plain = pa.BufferOutputStream()
    pq.write_table(pa.table({"ordinal": [1], "output": ["{}"], "extra": [None]}), plain)
    for data, fmt in (
        (plain.getvalue().to_pybytes(), "parquet"),  # a parquet file, but no part
        (b"PAR1" + b"\0" * 40 + b"PAR1", "parquet"),
        (b"", "parquet"),
        (b"", "jsonl.gz"),
        (b"\x1f\x8b\x08\x00garbage", "jsonl.gz"),
        (gzip.compress(b'{"a": 1}\n'), "jsonl.gz"),  # no ordinal
        (b'{"ordinal": 1}\nnot json\n', "jsonl"),
        (b'{"ordinal": -1}\n', "jsonl"),
        (b'["ordinal", 1]\n', "jsonl"),
        (b"\n", "jsonl"),
    ):
        with pytest.raises(PartFormatError):
            decode_part(data, fmt)  # type: ignore[arg-type]


# -- throughput (python -m tests.test_sink_formats) ----------------------------------------------------------------


def measure(lines: int = 10_000, repeats: int = 5) -> None:
    """Encode and decode MB/s of result-line JSON for a part of invoice results, per format (best of ``repeats``;
    wall clock, and CPU time of this process, which a busy machine distorts less)."""
    records = [result_record(i) for i in range(lines)]
    for i in range(0, lines, 20):  # one line in twenty failed
        records[i] = result_record(
            i, status=Status.FAILED, output=None, error=ErrorInfo(type=ErrorType.TIMEOUT, message="t")
        )
    rows = rows_of(records, step=1)
    size = sum(len(line) for _, line in rows) / 1e6
    print(f"{lines} result lines, {size:.1f} MB of JSON; MB/s of that JSON, best of {repeats}")
    print(
        f"{'format':9} {'part MB':>8} {'encode wall':>12} {'cpu':>7} {'decode wall':>12} {'cpu':>7}  (invoice schema)"
    )
    cases: list[tuple[str, PartFormat, Any]] = [(fmt, fmt, INVOICE_SCHEMA) for fmt in PART_FORMATS]
    cases.append(("parquet, output as json text", "parquet", None))
    for label, fmt, schema in cases:
        encoder = PartEncoder(fmt, schema)
        times: dict[str, list[tuple[float, float]]] = {"encode": [], "decode": []}
        data = b""
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            data = encoder.encode(rows)
            times["encode"].append((time.perf_counter() - wall, time.process_time() - cpu))
            wall, cpu = time.perf_counter(), time.process_time()
            decode_part(data, fmt)
            times["decode"].append((time.perf_counter() - wall, time.process_time() - cpu))
        rates = [size / min(t[k] for t in times[step]) for step in ("encode", "decode") for k in (0, 1)]
        print(
            f"{fmt:9} {len(data) / 1e6:8.2f} {rates[0]:12.0f} {rates[1]:7.0f} {rates[2]:12.0f} {rates[3]:7.0f}  {label}"
        )


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
