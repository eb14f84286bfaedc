"""``producer.analysis.compare``: two runs over the same documents, field by field (hand-built result lines, no
Redis)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from rich.console import Console

from producer.analysis.compare import (
    CompareOptions,
    Comparison,
    compare_runs,
    comparison_html,
    comparison_json,
    comparison_table,
    normalise_string,
    percentile,
)
from schemas.registry import resolve_schema

INVOICE = resolve_schema("invoice").json_schema

INVOICE_PATHS = [
    "vendor",
    "vendor_address",
    "vendor_address.street",
    "vendor_address.city",
    "vendor_address.region",
    "vendor_address.postal_code",
    "vendor_address.country",
    "invoice_number",
    "invoice_date",
    "due_date",
    "currency",
    "line_items",
    "line_items[].description",
    "line_items[].quantity",
    "line_items[].unit_price",
    "line_items[].amount",
    "subtotal",
    "tax",
    "total",
]


def invoice(n: int = 1, **changes: Any) -> dict[str, Any]:
    output: dict[str, Any] = {
        "vendor": "ACME Corp",
        "vendor_address": {
            "street": "1 Main St",
            "city": "Springfield",
            "region": None,
            "postal_code": "12345",
            "country": "US",
        },
        "invoice_number": f"INV-{n:03d}",
        "invoice_date": "2026-01-02",
        "due_date": None,
        "currency": "USD",
        "line_items": [
            {"description": "Widget", "quantity": 2, "unit_price": 5.0, "amount": 10.0},
            {"description": "Gadget", "quantity": 1, "unit_price": 20.0, "amount": 20.0},
            {"description": "Setup fee", "quantity": None, "unit_price": None, "amount": 3.0},
        ],
        "subtotal": 33.0,
        "tax": 6.27,
        "total": 39.27,
    }
    output.update(copy.deepcopy(changes))
    return output


def line(
    custom_id: str,
    output: dict[str, Any] | None = None,
    *,
    status: str = "succeeded",
    error_type: str | None = None,
    fingerprint: str | None = None,
    model: str = "gpt-4o-mini",
    input_tokens: int = 100,
    cached: int = 0,
    output_tokens: int = 10,
    reasoning: int = 0,
    cost: float | None = 0.001,
    latency: int | None = 500,
) -> dict[str, Any]:
    if status != "succeeded":
        output = None
    elif output is None:
        output = invoice()
    return {
        "custom_id": custom_id,
        "batch_id": "b",
        "status": status,
        "output": output,
        "error": None if error_type is None else {"type": error_type, "message": "boom", "status_code": None},
        "api": "responses",
        "model": model,
        "schema": "invoice",
        "fingerprint": fingerprint or f"sha256:{custom_id}",
        "usage": {
            "input_tokens": input_tokens,
            "cached_input_tokens": cached,
            "output_tokens": output_tokens,
            "reasoning_tokens": reasoning,
            "total_tokens": input_tokens + output_tokens,
        },
        "cost_usd": cost,
        "cache_hit": False,
        "attempts": 1,
        "repairs": 0,
        "latency_ms": latency,
        "finished_at": "2026-01-02T00:00:00Z",
    }


def run(outputs: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    return [line(f"inv-{i}", output, **kw) for i, output in enumerate(outputs)]


def below_100(c: Comparison) -> dict[str, float | None]:
    return {f.path: f.rate for f in c.fields if f.rate is None or f.rate < 1}


def render(c: Comparison) -> str:
    console = Console(record=True, width=200)
    console.print(comparison_table(c))
    return console.export_text()


# --- fields --------------------------------------------------------------------------------------------------------


def test_identical_runs_agree_and_every_schema_path_is_listed() -> None:
    outputs = [invoice(i) for i in range(3)]
    c = compare_runs(run(outputs), run(outputs), json_schema=INVOICE)

    assert [f.path for f in c.fields] == INVOICE_PATHS
    assert below_100(c) == {}
    assert c.records.compared == c.records.agree == c.records.agree_exact == 3
    kinds = {f.path: f.kind for f in c.fields}
    assert kinds["vendor"] == "string"
    assert kinds["vendor_address"] == "object"
    assert kinds["line_items"] == "array"
    assert kinds["total"] == "number"
    # due_date is null everywhere: listed, agreeing, its nulls counted apart.
    due = c.field("due_date")
    assert (due.compared, due.agree, due.null_both) == (3, 3, 3)
    assert c.field("line_items[].quantity").null_both == 3  # the setup fee's


def test_a_run_differing_in_two_fields_reports_exactly_those_two() -> None:
    outputs = [invoice(i) for i in range(4)]
    changed = copy.deepcopy(outputs)
    changed[1]["invoice_number"] = "INV-999"
    changed[2]["invoice_number"] = "INV-998"
    changed[3]["line_items"][1]["amount"] = 25.0

    c = compare_runs(run(outputs), run(changed), json_schema=INVOICE, names=("mini", "full"))

    assert below_100(c) == {"invoice_number": 0.5, "line_items[].amount": 11 / 12}
    assert (c.records.compared, c.records.agree) == (4, 1)
    numbers = c.field("invoice_number")
    assert [(d.kind, d.value_a, d.value_b, d.count) for d in numbers.disagreements] == [
        ("value", "INV-001", "INV-999", 1),
        ("value", "INV-002", "INV-998", 1),
    ]
    assert numbers.disagreements[0].examples[0].custom_id == "inv-1"
    assert numbers.disagreements[0].examples[0].location is None
    amount = c.field("line_items[].amount").disagreements[0]
    assert (amount.value_a, amount.value_b) == (20.0, 25.0)
    assert amount.examples[0].custom_id == "inv-3"
    assert amount.examples[0].location == "line_items[1].amount"
    assert {t.path for t in c.top_disagreements} == {"invoice_number", "line_items[].amount"}
    # Lowest agreement first.
    assert [f.path for f in c.fields_by_agreement()[:2]] == ["invoice_number", "line_items[].amount"]


def test_numbers_agree_within_the_relative_tolerance() -> None:
    a = [invoice(0, total=100.0), invoice(1, total=100.0), invoice(2, total=0.0)]
    b = [invoice(0, total=100.5), invoice(1, total=105.0), invoice(2, total=0.0)]

    c = compare_runs(run(a), run(b), json_schema=INVOICE)
    total = c.field("total")
    assert (total.compared, total.agree, total.agree_exact) == (3, 2, 1)  # 0.5 % off agrees at 1 %, 5 % does not
    assert [(d.value_a, d.value_b) for d in total.disagreements] == [(100.0, 105.0)]
    assert total.rule == "±1 % relative"

    loose = compare_runs(run(a), run(b), json_schema=INVOICE, options=CompareOptions(number_tolerance=0.1))
    assert loose.field("total").agree == 3
    strict = compare_runs(run(a), run(b), json_schema=INVOICE, options=CompareOptions(number_tolerance=0))
    assert strict.field("total").agree == 1


SCALARS = {
    "type": "object",
    "properties": {
        "count": {"type": "integer"},
        "ratio": {"type": ["number", "null"]},
        "flag": {"type": "boolean"},
        "kind": {"$ref": "#/$defs/Kind"},
    },
    "required": ["count", "ratio", "flag", "kind"],
    "additionalProperties": False,
    "$defs": {"Kind": {"type": "string", "enum": ["a", "b"]}},
}


def scalar_line(custom_id: str, **output: Any) -> dict[str, Any]:
    return line(custom_id, {"count": 100, "ratio": 1.0, "flag": True, "kind": "a", **output})


def test_integers_booleans_and_enums_are_exact() -> None:
    a = [scalar_line("x"), scalar_line("y"), scalar_line("z")]
    b = [scalar_line("x", count=101, kind="A"), scalar_line("y", flag=1), scalar_line("z", ratio=True)]

    c = compare_runs(a, b, json_schema=SCALARS, options=CompareOptions(number_tolerance=0.5))

    kinds = {f.path: (f.kind, f.rule) for f in c.fields}
    assert kinds == {
        "count": ("integer", "exact"),
        "ratio": ("number", "±50 % relative"),
        "flag": ("boolean", "exact"),
        "kind": ("enum", "exact"),
    }
    assert c.field("count").agree == 2  # 100 vs 101 is 1 % off, yet an integer: exact
    assert c.field("kind").agree == 2  # "a" vs "A": enums are not normalised
    assert c.field("flag").agree == 2  # True is not 1
    assert c.field("ratio").agree == 2  # nor is 1.0 True


def test_strings_agree_normalised_but_not_exactly() -> None:
    a = [invoice(0), invoice(1), invoice(2), invoice(3)]
    b = [
        invoice(0, vendor="acme corp"),  # case
        invoice(1, vendor="  ACME \t\n Corp "),  # whitespace
        invoice(2, vendor="ＡＣＭＥ Corp"),  # full-width: NFKC
        invoice(3, vendor="ACME Inc"),
    ]
    c = compare_runs(run(a), run(b), json_schema=INVOICE)
    vendor = c.field("vendor")
    assert (vendor.compared, vendor.agree, vendor.agree_exact) == (4, 3, 0)
    assert (vendor.rate, vendor.exact_rate) == (0.75, 0.0)
    assert vendor.rule == "normalised"
    assert [(d.value_a, d.value_b) for d in vendor.disagreements] == [("ACME Corp", "ACME Inc")]
    assert (c.records.agree, c.records.agree_exact) == (3, 0)
    assert normalise_string(" Ｓｔｒａßｅ\u00a0 1 ") == "strasse 1"


def test_nulls_are_counted_apart() -> None:
    a = [invoice(0, tax=None), invoice(1, tax=None), invoice(2), invoice(3, vendor_address=None)]
    b = [invoice(0, tax=None), invoice(1, tax=5.0), invoice(2, tax=None), invoice(3, vendor_address=None)]

    c = compare_runs(run(a), run(b), json_schema=INVOICE)

    tax = c.field("tax")
    assert (tax.compared, tax.agree, tax.null_both, tax.null_a, tax.null_b) == (4, 2, 1, 1, 1)
    assert {(d.kind, d.value_a, d.value_b) for d in tax.disagreements} == {
        ("null vs value", None, 5.0),
        ("null vs value", 6.27, None),
    }
    presence = c.field("vendor_address")
    assert (presence.rule, presence.compared, presence.agree, presence.null_both) == (
        "presence (null or object)",
        4,
        4,
        1,
    )
    city = c.field("vendor_address.city")
    assert (city.agree, city.null_both) == (4, 1)
    region = c.field("vendor_address.region")  # null in every output
    assert (region.compared, region.agree, region.null_both) == (4, 4, 4)
    assert below_100(c) == {"tax": 0.5}


def test_an_object_null_on_one_side() -> None:
    c = compare_runs(run([invoice()]), run([invoice(vendor_address=None)]), json_schema=INVOICE)
    presence = c.field("vendor_address")
    assert (presence.agree, presence.null_b) == (0, 1)
    assert c.field("vendor_address.city").null_b == 1
    assert c.field("vendor_address.region").null_both == 1


# --- lists ---------------------------------------------------------------------------------------------------------


def test_list_items_by_position() -> None:
    dropped = invoice()
    del dropped["line_items"][0]  # B misses the first item: every later one shifts
    c = compare_runs(run([invoice()]), run([dropped]), json_schema=INVOICE)

    length = c.field("line_items")
    assert (length.compared, length.agree, length.rule) == (1, 0, "length; items by position")
    assert [(d.kind, d.value_a, d.value_b) for d in length.disagreements] == [("length", 3, 2)]
    description = c.field("line_items[].description")
    assert (description.compared, description.agree, description.only_a, description.only_b) == (3, 0, 1, 0)
    kinds = sorted((d.kind, d.value_a, d.value_b) for d in description.disagreements)
    assert kinds == [("only in A", "Setup fee", None), ("value", "Gadget", "Setup fee"), ("value", "Widget", "Gadget")]
    only = next(d for d in description.disagreements if d.kind == "only in A")
    assert only.examples[0].location == "line_items[2].description"
    amount = c.field("line_items[].amount")
    assert (amount.compared, amount.agree) == (3, 0)


def test_list_items_by_key() -> None:
    changed = invoice()
    del changed["line_items"][0]
    changed["line_items"].reverse()
    changed["line_items"].append({"description": "Shipping", "quantity": None, "unit_price": None, "amount": 7.0})
    changed["line_items"][0]["description"] = "setup  FEE"  # keys are matched as strings are compared
    options = CompareOptions(list_keys={"line_items": "description"})

    c = compare_runs(run([invoice()]), run([changed]), json_schema=INVOICE, options=options)

    length = c.field("line_items")
    assert (length.agree, length.rule) == (1, "length; items by 'description'")  # 3 and 3
    amount = c.field("line_items[].amount")
    # Widget only in A, Shipping only in B; Gadget and Setup fee matched and equal.
    assert (amount.compared, amount.agree, amount.only_a, amount.only_b) == (4, 2, 1, 1)
    assert sorted((d.kind, d.value_a, d.value_b) for d in amount.disagreements) == [
        ("only in A", 10.0, None),
        ("only in B", None, 7.0),
    ]
    locations = sorted(e.location or "" for d in amount.disagreements for e in d.examples)
    assert locations == ['line_items["Shipping"].amount', 'line_items["Widget"].amount']
    description = c.field("line_items[].description")
    assert (description.agree, description.agree_exact) == (2, 1)
    assert c.field("line_items[].quantity").null_both == 1  # the matched setup fee


def test_list_keys_must_name_a_list_and_an_item_field() -> None:
    with pytest.raises(ValueError, match="not a list"):
        compare_runs([], [], json_schema=INVOICE, options=CompareOptions(list_keys={"items": "description"}))
    with pytest.raises(ValueError, match="no field 'sku'"):
        compare_runs([], [], json_schema=INVOICE, options=CompareOptions(list_keys={"line_items": "sku"}))


def test_nested_lists_and_schema_forms() -> None:
    schema = {
        "type": "object",
        "properties": {
            "groups": {
                "type": "array",
                "items": {"$ref": "#/$defs/Group"},
            },
            "tags": {"type": ["array", "null"], "items": {"type": "string"}},
            "node": {"$ref": "#/$defs/Node"},
            "either": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]},
        },
        "required": ["groups", "tags", "node", "either"],
        "additionalProperties": False,
        "$defs": {
            "Group": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "members": {"type": "array", "items": {"type": "integer"}}},
                "required": ["name", "members"],
                "additionalProperties": False,
            },
            "Node": {
                "type": "object",
                "properties": {"child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
                "required": ["child"],
                "additionalProperties": False,
            },
        },
    }
    out_a = {"groups": [{"name": "x", "members": [1, 2]}], "tags": ["a"], "node": {"child": None}, "either": "Q"}
    out_b = {
        "groups": [{"name": "X", "members": [1, 3, 4]}],
        "tags": None,
        "node": {"child": {"child": None}},
        "either": "q",
    }

    c = compare_runs([line("1", out_a)], [line("1", out_b)], json_schema=schema)

    assert [(f.path, f.kind) for f in c.fields] == [
        ("groups", "array"),
        ("groups[].name", "string"),
        ("groups[].members", "array"),
        ("groups[].members[]", "integer"),
        ("tags", "array"),
        ("tags[]", "string"),
        ("node.child", "object"),
        ("either", "any"),
    ]
    members = c.field("groups[].members[]")
    assert (members.compared, members.agree, members.only_b) == (3, 1, 1)
    assert {e.location for d in members.disagreements for e in d.examples} == {
        "groups[0].members[1]",
        "groups[0].members[2]",
    }
    assert c.field("groups[].name").agree == 1
    assert (c.field("tags").null_b, c.field("tags[]").only_a) == (1, 1)
    assert c.field("node.child").rule == "JSON equality (recursive schema)"
    assert c.field("node.child").agree == 0
    assert c.field("either").agree == 1  # two strings: normalised


# --- lines, status, matching ---------------------------------------------------------------------------------------


def test_status_differences() -> None:
    a = [
        line("ok"),
        line("b-failed"),
        line("b-refused"),
        line("a-failed", status="failed", error_type="truncated"),
        line("both", status="failed", error_type="schema_validation"),
        line("cancel", status="cancelled"),
    ]
    b = [
        line("ok"),
        line("b-failed", status="failed", error_type="schema_validation"),
        line("b-refused", status="failed", error_type="refusal"),
        line("a-failed"),
        line("both", status="failed", error_type="schema_validation"),
        line("cancel", status="cancelled"),
    ]
    c = compare_runs(a, b, json_schema=INVOICE)
    s = c.status

    assert (s.both_succeeded, s.succeeded_a_only, s.succeeded_b_only, s.both_failed) == (1, 2, 1, 2)
    assert dict(s.errors_b) == {"schema_validation": 1, "refusal": 1}
    assert dict(s.errors_a) == {"truncated": 1}
    assert [e.custom_id for e in s.examples_a_only] == ["b-failed", "b-refused"]
    assert [(e.custom_id, e.status_a, e.status_b, e.error_a, e.error_b) for e in s.examples_b_only] == [
        ("a-failed", "failed", "succeeded", "truncated", None)
    ]
    assert {(e.custom_id, e.status_a) for e in s.examples_both_failed} == {("both", "failed"), ("cancel", "cancelled")}
    assert ("succeeded", "failed", 2) in s.pairs
    # Only the line both succeeded on is in field agreement.
    assert c.records.compared == 1
    assert {f.compared for f in c.fields if "[]" not in f.path} == {1}
    text = render(c)
    assert "succeeded in A only" in text
    assert "schema_validation 1" in text


def test_lines_only_in_one_run_and_duplicates() -> None:
    a = [line("1"), line("2"), line("3"), line("1", invoice(vendor="Newer"))]
    b = [line("2"), line("1", invoice(vendor="Newer")), line("4")]

    c = compare_runs(a, b, json_schema=INVOICE)

    assert (c.matched, c.only_a, c.only_b) == (2, 1, 1)
    assert (c.only_a_examples, c.only_b_examples) == (("3",), ("4",))
    assert (c.a.lines, c.a.duplicates, c.b.duplicates) == (4, 1, 0)
    assert c.field("vendor").agree == 2  # the later line of "1" replaced the earlier


def test_matching_by_document_fingerprint() -> None:
    a = [line("a1", fingerprint="sha256:doc1"), line("a2", invoice(total=1.0), fingerprint="sha256:doc2")]
    b = [line("b2", invoice(total=2.0), fingerprint="sha256:doc2"), line("b1", fingerprint="sha256:doc1")]

    by_id = compare_runs(a, b, json_schema=INVOICE)
    assert (by_id.matched, by_id.only_a, by_id.only_b) == (0, 2, 2)

    c = compare_runs(a, b, json_schema=INVOICE, options=CompareOptions(by="document"))
    assert (c.matched, c.only_a, c.only_b) == (2, 0, 0)
    total = c.field("total")
    assert (total.compared, total.agree) == (2, 1)
    assert total.disagreements[0].examples[0].custom_id == "a2 | b2"

    # A document twice in each run: its occurrences are matched in order; a document_fingerprint wins.
    twice_a = [line("x1", invoice(vendor="One")), line("x2", invoice(vendor="Two"))]
    twice_b = [line("y1", invoice(vendor="One")), line("y2", invoice(vendor="Two"))]
    for one in twice_a + twice_b:
        one["document_fingerprint"] = "sha256:same-text"
    twice = compare_runs(twice_a, twice_b, json_schema=INVOICE, options=CompareOptions(by="document"))
    assert (twice.matched, twice.field("vendor").agree) == (2, 2)


def test_models_and_apis_of_each_run() -> None:
    c = compare_runs(
        [line("1"), line("2")],
        [line("1", model="gpt-5-mini"), line("2", model="gpt-5-mini")],
        json_schema=INVOICE,
        names=("old", "new"),
    )
    assert (c.a.name, c.a.models, c.a.apis) == ("old", ("gpt-4o-mini",), ("responses",))
    assert (c.b.name, c.b.model) == ("new", "gpt-5-mini")
    assert c.names == ("old", "new")


# --- usage ---------------------------------------------------------------------------------------------------------


def test_latency_percentiles_and_token_and_cost_deltas() -> None:
    a = [line(f"{i}", input_tokens=100, cached=20, output_tokens=10, latency=100 * (i + 1)) for i in range(10)]
    b = [
        line(f"{i}", input_tokens=150, cached=0, output_tokens=30, reasoning=20, cost=0.0025, latency=200 * (i + 1))
        for i in range(10)
    ]
    b[9]["status"], b[9]["output"] = "failed", None  # failed lines count: their calls were billed
    a.append(line("only-a", input_tokens=10**6, latency=10**6))  # not matched: not counted

    c = compare_runs(a, b, json_schema=INVOICE)
    u = c.usage

    assert (u.a.lines, u.a.input_tokens, u.a.cached_input_tokens, u.a.output_tokens) == (10, 1000, 200, 100)
    assert (u.b.input_tokens, u.b.output_tokens, u.b.reasoning_tokens, u.b.total_tokens) == (1500, 300, 200, 1800)
    assert (u.a.latency_p50_ms, u.a.latency_p95_ms) == (550.0, 955.0)
    assert (u.b.latency_p50_ms, u.b.latency_p95_ms) == (1100.0, 1910.0)
    assert u.a.cost_usd == pytest.approx(0.01)
    assert u.b.cost_usd == pytest.approx(0.025)

    inputs = u.delta("input_tokens")
    assert (inputs.a, inputs.b, inputs.diff, inputs.ratio) == (1000, 1500, 500, 1.5)
    cached = u.delta("cached_input_tokens")
    assert (cached.diff, cached.ratio) == (-200, 0.0)
    reasoning = u.delta("reasoning_tokens")
    assert (reasoning.diff, reasoning.ratio) == (200, None)  # no ratio over 0
    cost = u.delta("cost_usd")
    assert cost.diff == pytest.approx(0.015)
    assert cost.ratio == pytest.approx(2.5)
    p95 = u.delta("latency_p95_ms")
    assert (p95.diff, p95.ratio) == (955.0, 2.0)


def test_unpriced_lines_and_missing_latency() -> None:
    a = [line("1", cost=None, latency=None), line("2", cost=None, latency=300)]
    c = compare_runs(a, a, json_schema=INVOICE)
    assert (c.usage.a.cost_usd, c.usage.a.unpriced) == (None, 2)
    assert (c.usage.a.latency_p50_ms, c.usage.a.latency_lines) == (300.0, 1)
    assert c.usage.delta("cost_usd").diff is None


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7], 0.95) == 7.0
    assert percentile([4, 1, 3, 2], 0.5) == 2.5
    assert percentile([1, 2, 3, 4], 0.95) == pytest.approx(3.85)


# --- output forms --------------------------------------------------------------------------------------------------


def sample() -> Comparison:
    a = [invoice(0), invoice(1), invoice(2)]
    b = [invoice(0, vendor="<script>alert(1)</script>"), invoice(1, tax=None), invoice(2)]
    return compare_runs(run(a), run(b, model="gpt-5-mini"), json_schema=INVOICE, names=("<A>", "B & co"))


def test_json_form() -> None:
    c = sample()
    data = json.loads(json.dumps(comparison_json(c)))

    assert data["a"]["name"] == "<A>"
    assert data["b"]["models"] == ["gpt-5-mini"]
    assert data["lines"] == {"matched": 3, "only_a": 0, "only_b": 0, "only_a_examples": [], "only_b_examples": []}
    assert data["records"]["compared"] == 3
    assert data["records"]["agree"] == 1
    assert [f["path"] for f in data["fields"]] == INVOICE_PATHS
    vendor = next(f for f in data["fields"] if f["path"] == "vendor")
    assert vendor["rate"] == pytest.approx(2 / 3)
    assert vendor["disagreements"][0]["value_b"] == "<script>alert(1)</script>"
    assert vendor["disagreements"][0]["examples"] == [{"custom_id": "inv-0", "location": None}]
    tax = next(f for f in data["fields"] if f["path"] == "tax")
    assert (tax["null_b"], tax["disagreements"][0]["kind"]) == (1, "null vs value")
    assert {d["metric"] for d in data["usage"]["deltas"]} >= {"input_tokens", "cost_usd", "latency_p95_ms"}
    assert data["options"]["by"] == "custom_id"


def test_html_form_escapes_every_value() -> None:
    page = comparison_html(sample())

    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;A&gt;" in page
    assert "B &amp; co" in page
    assert "line_items[].amount" in page
    assert page.index("<code>vendor</code>") < page.index("<code>total</code>")  # lowest agreement first


def test_rich_table_renders() -> None:
    c = sample()
    text = render(c)

    assert "invoice_number" in text
    assert "line_items[].quantity" in text
    assert "<script>alert(1)</script>" in text  # rich markup is not interpreted from values
    assert "gpt-5-mini" in text
    fields = text[text.index("fields (lowest agreement first)") :]
    assert fields.index("vendor ") < fields.index("invoice_number")
    assert "top disagreements" in text


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="by must be"):
        CompareOptions(by="text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="number_tolerance"):
        CompareOptions(number_tolerance=-0.1)
    with pytest.raises(ValueError, match="examples"):
        CompareOptions(examples=-1)


def test_examples_are_capped_per_field() -> None:
    a = [invoice(i) for i in range(6)]
    b = [invoice(i, currency="EUR") for i in range(5)] + [invoice(5, currency="GBP")]
    c = compare_runs(run(a), run(b), json_schema=INVOICE, options=CompareOptions(examples=2))
    currency = c.field("currency")
    assert [(d.value_b, d.count, len(d.examples)) for d in currency.disagreements] == [("EUR", 5, 2), ("GBP", 1, 1)]
    one = compare_runs(run(a), run(b), json_schema=INVOICE, options=CompareOptions(examples=1))
    assert len(one.field("currency").disagreements) == 1
