"""What strict mode cannot carry is said at submit, by estimate and by status: each lossy step of the schema's
conversion with its place and what is checked locally instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from click.testing import CliRunner

from producer.cli import main as producer

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "code": {"type": "string", "not": {"const": "none"}},
        "homepage": {"type": "string", "format": "uri"},
    },
    "required": ["code"],
}


def test_submit_estimate_and_status_name_what_is_checked_locally(cli_env: Any, tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_bytes(orjson.dumps(SCHEMA))
    lines = tmp_path / "in.jsonl"
    lines.write_bytes(b'{"custom_id": "a", "text": "ACME, code X1, https://acme.example"}\n')
    args = ["--schema", str(schema), "--model", "gpt-4o-mini", "--batch-id", "lossy"]
    env = {"OPENAI_API_KEY": "sk-test"}
    estimated = CliRunner().invoke(producer, ["estimate", str(lines), *args], env=env)
    assert estimated.exit_code == 0, estimated.output
    submitted = CliRunner().invoke(producer, ["submit", str(lines), *args], env=env)
    assert submitted.exit_code == 0, submitted.output
    for said in (estimated.stderr, submitted.stderr):
        assert "$.properties.code" in said
        assert "$.properties.homepage" in said
    status = CliRunner().invoke(producer, ["status", "lossy", "--json"], env=env)
    assert status.exit_code == 0, status.output
    checked = orjson.loads(status.stdout)["schema_checked_locally"]
    assert any("$.properties.code" in line and "not" in line for line in checked)
    assert any("$.properties.homepage" in line and "uri" in line for line in checked)
    table = CliRunner().invoke(producer, ["status", "lossy"], env=env)
    assert "checked locally" in table.stdout
