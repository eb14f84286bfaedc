"""The codec end to end: a worker answers a schema strict mode cannot take as it is (a root that is an array, typed
maps, optional non-nullable fields), through the simulator over real HTTP, and stores the user's shape, valid under
the user's own schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from schemas.registry import resolve_schema
from schemas.results import Status
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
