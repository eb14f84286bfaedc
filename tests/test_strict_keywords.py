"""Strict schemas the API accepts: keywords strict mode refuses are left out of the request and enforced by us.

The simulator refuses them as the real API does (400 ``invalid_json_schema``), so a schema that still carried one
would fail here, not in production.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from schemas.codec import build_codec
from schemas.jobs import DEFAULT_INSTRUCTIONS, BatchSpec, Fingerprinter, GenerationParams
from schemas.registry import OutputValidationError, load_schema_from_record, resolve_schema, validator_for
from schemas.results import ErrorType, Status
from schemas.strict import LOCAL_ONLY_KEYWORDS, local_constraints
from simulator.schema_checks import NOT_PERMITTED_IN_STRICT
from tests.conftest import API_KEY
from tests.helpers import results_by_id, sim_get

CODE_SCHEMA: dict[str, Any] = {
    "title": "Coded",
    "type": "object",
    "properties": {
        "code": {"type": "string", "minLength": 12, "maxLength": 80, "description": "The document's code."},
        "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "minItems": 1, "maxItems": 3},
        "note": {"type": "string", "pattern": "^[a-z ]*$"},
    },
    "required": ["code", "tags"],
}


def _write_schema(tmp_path: Path, schema: dict[str, Any], name: str = "coded.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(schema), encoding="utf-8")
    return str(path)


def _keys_in(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        return set(schema) | {key for value in schema.values() for key in _keys_in(value)}
    if isinstance(schema, list):
        return {key for value in schema for key in _keys_in(value)}
    return set()


# -- conversion ---------------------------------------------------------------------------------------------------


def test_api_schema_leaves_out_what_strict_mode_refuses_and_the_users_schema_checks_it() -> None:
    """minLength, maxLength and uniqueItems are not sent; the supported constraints are; the user's own schema checks
    the rest, and each one left out is a lossy step naming its place."""
    codec = build_codec(CODE_SCHEMA, open_objects="closed")
    sent = codec.strict_schema

    assert not _keys_in(sent) & set(NOT_PERMITTED_IN_STRICT)
    assert sent["properties"]["code"] == {"description": "The document's code.", "type": "string"}
    assert sent["properties"]["tags"] == {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string"}}
    assert codec.validate({"code": "short", "tags": ["a", "a"]}) == [
        "code: 'short' is too short",
        "tags: ['a', 'a'] has non-unique elements",
    ]
    assert {(step.path, step.note.split()[0]) for step in codec.lossy_steps} == {
        ("$.properties.code", "minLength"),
        ("$.properties.code", "maxLength"),
        ("$.properties.tags", "uniqueItems"),
    }


def test_schema_without_local_constraints_has_no_lossy_step() -> None:
    """For the built-in schemas (no such keywords) nothing is left to the local check."""
    schema = resolve_schema("invoice")
    assert schema.codec is not None
    assert schema.codec.lossy_steps == ()
    assert local_constraints(schema.source_schema) == []


def test_local_constraints_lists_every_one_with_its_place() -> None:
    assert local_constraints(CODE_SCHEMA) == [
        ["properties/code", "minLength", 12],
        ["properties/code", "maxLength", 80],
        ["properties/tags", "uniqueItems", True],
    ]
    assert set(LOCAL_ONLY_KEYWORDS) <= set(NOT_PERMITTED_IN_STRICT)  # what we keep back is what the API refuses


# -- validation ---------------------------------------------------------------------------------------------------


def test_validator_of_a_file_schema_enforces_the_constraints_the_api_never_saw(tmp_path: Path) -> None:
    schema = resolve_schema(_write_schema(tmp_path, CODE_SCHEMA))
    assert "minLength" not in _keys_in(schema.json_schema)
    validator = validator_for(schema)

    ok = {"code": "ACME-2026-000017", "tags": ["a", "b"], "note": None, "__extra__": []}
    assert validator.validate(ok) == {"code": "ACME-2026-000017", "tags": ["a", "b"]}  # strict mode's null removed
    with pytest.raises(OutputValidationError) as short:
        validator.validate({**ok, "code": "AC-17"})
    assert short.value.errors == ["code: 'AC-17' is too short"]
    with pytest.raises(OutputValidationError) as dupes:
        validator.validate({**ok, "tags": ["a", "a"]})
    assert dupes.value.errors == ["tags: ['a', 'a'] has non-unique elements"]


def test_a_worker_loading_the_record_validates_alike(tmp_path: Path) -> None:
    """The worker rebuilds the schema from the batch record; the local constraints come from the recorded source."""
    resolved = resolve_schema(_write_schema(tmp_path, CODE_SCHEMA))
    loaded = load_schema_from_record(resolved.ref, resolved.json_schema, resolved.source_schema, name=resolved.name)
    with pytest.raises(OutputValidationError, match="is too short"):
        validator_for(loaded).validate({"code": "short", "tags": ["x"], "note": None})


def _spec(schema: Any) -> BatchSpec:
    return BatchSpec(
        batch_id="b",
        api="responses",
        model="gpt-4o-mini",
        schema_ref=schema.ref,
        schema_name=schema.name,
        json_schema=schema.json_schema,
        source_schema=schema.source_schema,
        instructions=DEFAULT_INSTRUCTIONS,
        params=GenerationParams(),
        created_at="2026-12-01T00:00:00Z",
    )


def test_fingerprint_covers_the_local_constraints_and_nothing_else_changes(tmp_path: Path) -> None:
    """Two schemas differing only in minLength send the same schema but must not share cached answers; a schema
    without local constraints keeps the fingerprint it always had."""
    loose = resolve_schema(_write_schema(tmp_path, CODE_SCHEMA, "loose.json"))
    stricter = {**CODE_SCHEMA, "properties": {**CODE_SCHEMA["properties"], "code": {"type": "string", "minLength": 40}}}
    tight = resolve_schema(_write_schema(tmp_path, stricter, "tight.json"))
    loose_spec, tight_spec = _spec(loose), _spec(tight)
    assert loose_spec.json_schema["properties"]["code"]["type"] == tight_spec.json_schema["properties"]["code"]["type"]
    assert Fingerprinter(loose_spec)("doc") != Fingerprinter(tight_spec)("doc")

    invoice = _spec(resolve_schema("invoice"))
    stable = orjson.dumps(
        {
            "api": invoice.api,
            "model": invoice.model,
            "schema": invoice.json_schema,
            "instructions": invoice.instructions,
            # The parameters as fingerprints have always spelled them (fields added later are left out while unset).
            "params": {"max_output_tokens": None, "temperature": None},
        },
        option=orjson.OPT_SORT_KEYS,
    )
    assert Fingerprinter(invoice)("doc") == "sha256:" + hashlib.sha256(stable + b"\ndoc").hexdigest()


# -- the simulator refuses them, as the API does --------------------------------------------------------------------


def _responses_body(schema: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "input": "Invoice ACME-17",
        "text": {"format": {"type": "json_schema", "name": "coded", "schema": schema, "strict": strict}},
    }


def _chat_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Invoice ACME-17"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "coded", "schema": schema, "strict": True}},
    }


def _with(where: str, **extra: Any) -> dict[str, Any]:
    """A strict-valid schema with ``extra`` keywords on property ``code`` (or on the root)."""
    code: dict[str, Any] = {"type": "string"}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"code": code},
        "required": ["code"],
        "additionalProperties": False,
    }
    (code if where == "code" else schema).update(extra)
    return schema


async def _post(sim: Any, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession() as http, http.post(f"{sim.base_url}{path}", json=body, headers=headers) as r:
        return r.status, await r.json()


@pytest.mark.parametrize(
    ("schema", "keyword", "context"),
    [
        (_with("code", minLength=3), "minLength", "('properties', 'code')"),
        (_with("code", maxLength=8), "maxLength", "('properties', 'code')"),
        (
            _with("code", type="array", items={"type": "string"}, uniqueItems=True),
            "uniqueItems",
            "('properties', 'code')",
        ),
        (_with("root", allOf=[{"type": "object"}]), "allOf", "()"),
        (_with("code", **{"not": {"const": "x"}}), "not", "('properties', 'code')"),
        (_with("root", minProperties=1), "minProperties", "()"),
    ],
    ids=["minLength", "maxLength", "uniqueItems", "allOf", "not", "minProperties"],
)
async def test_simulator_refuses_keywords_strict_mode_does_not_permit(
    sim: Any, schema: dict[str, Any], keyword: str, context: str
) -> None:
    status, body = await _post(sim, "/responses", _responses_body(schema))
    assert status == 400
    assert body == {
        "error": {
            "message": f"Invalid schema for response_format 'coded': In context={context}, '{keyword}' is not "
            "permitted.",
            "type": "invalid_request_error",
            "param": "text.format.schema",
            "code": "invalid_json_schema",
        }
    }
    status, body = await _post(sim, "/chat/completions", _chat_body(schema))
    assert (status, body["error"]["code"], body["error"]["param"]) == (
        400,
        "invalid_json_schema",
        "response_format.json_schema.schema",
    )
    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["billed"]["total_tokens"] == 0


async def test_simulator_accepts_the_supported_constraints_and_non_strict_schemas(sim: Any) -> None:
    supported = _with("code", pattern="^[A-Z]+-\\d+$", format="date")
    supported["properties"]["n"] = {"type": "number", "minimum": 0, "exclusiveMaximum": 10, "multipleOf": 0.5}
    supported["properties"]["xs"] = {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2}
    supported["required"] += ["n", "xs"]
    status, _ = await _post(sim, "/responses", _responses_body(supported))
    assert status == 200
    # Without strict mode the schema is only a hint, and any keyword goes.
    status, _ = await _post(sim, "/responses", _responses_body(_with("code", minLength=3), strict=False))
    assert status == 200


# -- end to end: sent without them, and a too-short answer is ours to repair or fail --------------------------------


async def test_too_short_answer_is_failed_by_our_validator_not_refused_by_the_api(
    sim, redis, keys, submit_batch, run_worker, tmp_path: Path
) -> None:
    """A minLength the model cannot know about (it is not sent) is checked by us: the line is repaired once, then
    fails as schema_validation; the API accepted every request."""
    unreachable = {**CODE_SCHEMA, "properties": {"code": {"type": "string", "minLength": 200}}, "required": ["code"]}
    await submit_batch({"d1": "a b c d e f g"}, schema=_write_schema(tmp_path, unreachable))
    await run_worker()

    result = (await results_by_id(redis, keys, "b1"))["d1"]
    assert result.status is Status.FAILED
    assert result.error is not None
    assert result.error.type is ErrorType.SCHEMA_VALIDATION
    assert "is too short" in result.error.message
    assert (result.attempts, result.repairs) == (2, 1)
    requests = await sim_get(sim, "/_sim/requests")
    assert len(requests) == 2
    for entry in requests:
        assert entry["status"] == 200
        sent = entry["body"]["text"]["format"]["schema"]
        assert "minLength" not in _keys_in(sent)
    ledger = await sim_get(sim, "/_sim/ledger")
    assert ledger["requests"]["by_status"] == {"200": 2}


async def test_too_short_answers_are_repaired(sim, redis, keys, submit_batch, run_worker, tmp_path: Path) -> None:
    """Documents of one-letter words make every first answer too short for minLength 12 (at most 4 words, 7
    characters); the repair call, which carries our validation message, gets a longer one for some lines. Every line
    was repaired by us, and every output we let through meets the constraint the API was never sent."""
    path = _write_schema(tmp_path, CODE_SCHEMA)
    letters = "abcdefghijklmnopqrstuvwxyz"
    texts = {f"d{i}": " ".join(letters[(i + k) % 26] for k in range(7)) for i in range(12)}
    await submit_batch(texts, schema=path)
    await run_worker()

    results = await results_by_id(redis, keys, "b1")
    assert set(results) == set(texts)
    succeeded = [r for r in results.values() if r.status is Status.SUCCEEDED]
    assert succeeded, "no line was repaired into a valid answer"
    for result in results.values():
        assert (result.attempts, result.repairs) == (2, 1), result
        if result.status is Status.SUCCEEDED:
            assert result.output is not None
            assert 12 <= len(result.output["code"]) <= 80
            assert len(set(result.output["tags"])) == len(result.output["tags"])
        else:
            assert result.error is not None
            assert result.error.type is ErrorType.SCHEMA_VALIDATION
    for entry in await sim_get(sim, "/_sim/requests"):
        assert entry["status"] == 200
        assert not _keys_in(entry["body"]["text"]["format"]["schema"]) & set(LOCAL_ONLY_KEYWORDS)
