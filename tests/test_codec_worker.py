"""The codec end to end: a worker answers a schema strict mode cannot take as it is (a root that is an array, typed
maps, optional non-nullable fields), through the simulator over real HTTP, and stores the user's shape, valid under
the user's own schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from redis.asyncio import Redis

from producer.submit.submit import SubmitOptions, build_spec, submit
from schemas.jobs import DEFAULT_INSTRUCTIONS, Fingerprinter, GenerationParams
from schemas.registry import resolve_schema
from schemas.results import Status
from schemas.settings import Settings
from store.keys import Keys
from tests.conftest import memory_source
from tests.helpers import results_by_id, sim_get

LINES: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Lines",
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "count": {"type": "integer", "minimum": 0},
            "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "required": ["label"],
        "additionalProperties": False,
    },
}


async def test_an_array_root_with_maps_is_stored_in_the_users_shape(
    sim, redis, keys, submit_batch, run_worker, tmp_path: Path
) -> None:
    path = tmp_path / "lines.json"
    path.write_text(json.dumps(LINES), encoding="utf-8")
    codec = resolve_schema(str(path)).codec
    assert codec is not None
    texts = {f"d{i}": f"Widget {i} blue large, gadget {i} red" for i in range(6)}

    await submit_batch(texts, schema=str(path))
    await run_worker()

    results = await results_by_id(redis, keys, "b1")
    assert set(results) == set(texts)
    validator = Draft202012Validator(LINES)
    for result in results.values():
        assert result.status is Status.SUCCEEDED, result.error
        assert isinstance(result.output, list)  # unwrapped: the user's root is an array
        validator.validate(result.output)  # valid under the user's own schema, as stored
        for line in result.output:
            assert line.get("count", 0) is not None  # a null strict mode forced in is never stored
            assert isinstance(line.get("attributes", {}), dict)  # pairs rebuilt into an object
    for entry in await sim_get(sim, "/_sim/requests"):
        assert entry["status"] == 200  # the sent schema is within strict mode's rules
        assert entry["body"]["text"]["format"]["schema"] == codec.strict_schema


async def test_a_cached_answer_another_schema_stored_is_taken_only_if_valid_under_this_one(
    redis: Redis, keys: Keys, settings: Settings, run_worker: Any, tmp_path: Path
) -> None:
    """Two schemas that differ only in what is checked locally send the same strict schema and so share
    fingerprints and cached answers: a cached answer is taken only if this batch's own schema accepts it."""
    loose = {"type": "object", "properties": {"vendor": {"type": "string"}}, "required": ["vendor"]}
    strict = {"type": "object", "properties": {"vendor": {"type": "string", "format": "uri"}}, "required": ["vendor"]}
    specs = []
    for name, schema in (("loose", loose), ("strict", strict)):
        path = tmp_path / f"{name}.json"
        path.write_bytes(orjson.dumps(schema))
        options = SubmitOptions(
            batch_id=name,
            api="responses",
            model="gpt-4o-mini",
            schema=resolve_schema(str(path)),
            instructions=DEFAULT_INSTRUCTIONS,
            params=GenerationParams(),
        )
        specs.append(build_spec(options))
    assert specs[0].json_schema == specs[1].json_schema  # format uri is checked locally, not sent
    assert Fingerprinter(specs[0])("x") == Fingerprinter(specs[1])("x")  # so the two share cached answers
    texts = {"a": "Invoice from ACME Corp, total 30 USD."}
    await submit(redis, keys, specs[0], memory_source(texts), window=100, ttl_s=0)
    await run_worker()
    await submit(redis, keys, specs[1], memory_source(texts), window=100, ttl_s=0)
    await run_worker()
    first, second = await results_by_id(redis, keys, "loose"), await results_by_id(redis, keys, "strict")
    assert first["a"].status.value == "succeeded"
    assert not second["a"].cache_hit  # the loose batch's answer is no URI: not reused for this schema
    assert second["a"].status.value == "failed"  # and the simulator's vendor names are no URIs either
