"""What a careless or hostile user puts on the command line, in the data or in the schema: the CLI answers with one
line it can act on and the right exit code, never a traceback; what it prints from data cannot drive the terminal."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson
import pytest
from click.testing import CliRunner, Result

from producer.cli import main
from producer.errors import EXIT_INVALID_INPUT
from schemas.registry import resolve_schema
from schemas.strict import MAX_NESTING_LEVELS, object_nesting

HOSTILE_IDS = ("\x1b[2J", "\x1b]0;pwned\x07", "[red]x[/red]", "tab\there\u202eevil")
"""custom_ids that, printed raw, clear the screen, set the terminal's title, are rich markup, or reverse the text."""


def _cli(args: list[str], **env: str) -> Result:
    return CliRunner().invoke(main, args, env=env or None)


async def _acli(args: list[str], **env: str) -> Result:
    """The CLI from an async test: it runs its own event loop, so in a thread (the simulator serves from this one)."""
    return await asyncio.to_thread(_cli, args, **env)


def _one_line_error(result: Result) -> str:
    """The error a failed command printed: exactly one line on stderr, and no traceback."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith(("Usage:", "Try "))]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def _input(tmp_path: Path, count: int = 3) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"".join(orjson.dumps({"custom_id": f"d{n}", "text": f"Invoice {n}"}) + b"\n" for n in range(count))
    )
    return path


def _submit_args(path: Path, *extra: str) -> list[str]:
    return ["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "cli", *extra]


# ------------------------------------------------------------------------------------------ compare: what it prints
async def test_compare_prints_hostile_custom_ids_escaped_and_markup_literally(
    cli_env: Any, submit_batch: Any, run_worker: Any
) -> None:
    """Control characters in a custom_id reach the terminal escaped (``\\x1b``), and rich markup prints as written."""
    common = {"common": "Invoice 1 from ACME, total 10 USD."}
    await submit_batch(
        {**common, **{cid: f"Invoice {n} from Globex" for n, cid in enumerate(HOSTILE_IDS)}}, batch_id="a"
    )
    await submit_batch({**common, "only-b": "Invoice 9 from Initech"}, batch_id="b")
    await run_worker()
    result = await _acli(["compare", "a", "b"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for raw in ("\x1b", "\x07", "\u202e", "\t"):
        assert raw not in out
    assert "\\x1b[2J" in out
    assert "\\x1b]0;pwned\\x07" in out
    assert "[red]x[/red]" in out
    assert "\\u202e" in out


# ------------------------------------------------------------------------------------ compare: nothing to compare
async def test_compare_refuses_a_batch_against_itself(cli_env: Any, submit_batch: Any) -> None:
    await submit_batch({"x": "Invoice 1"}, batch_id="a")
    result = await _acli(["compare", "a", "a"])
    assert result.exit_code == EXIT_INVALID_INPUT
    assert "same batch" in _one_line_error(result)


async def test_compare_refuses_two_batches_with_no_line_in_common(
    cli_env: Any, submit_batch: Any, run_worker: Any
) -> None:
    await submit_batch({"x": "Invoice 1 from ACME"}, batch_id="a")
    await submit_batch({"y": "Invoice 2 from Globex"}, batch_id="b")
    await run_worker()
    for extra in ([], ["--json"]):
        result = await _acli(["compare", "a", "b", *extra])
        assert result.exit_code == EXIT_INVALID_INPUT
        line = _one_line_error(result)
        assert "nothing to compare" in line
        assert "by custom_id" in line
        assert result.stdout == ""


async def test_compare_warns_when_the_schemas_differ(cli_env: Any, submit_batch: Any, run_worker: Any) -> None:
    texts = {"x": "Invoice 1 from ACME, contact Jane Doe jane@acme.test"}
    await submit_batch(texts, batch_id="a", schema="invoice")
    await submit_batch(texts, batch_id="b", schema="contact")
    await run_worker()
    result = await _acli(["compare", "a", "b", "--json"])
    assert result.exit_code == 0, result.output
    warning = _one_line_error(result)
    assert "different schemas" in warning
    assert "(invoice and contact)" in warning
    assert "compared by name" in warning
    assert orjson.loads(result.stdout)["lines"]["matched"] == 1


# ------------------------------------------------------------------------------------------- numbers out of range
@pytest.mark.parametrize("value", ["inf", "nan", "-1", "-inf"])
def test_budget_usd_must_be_a_finite_positive_number(cli_env: Any, tmp_path: Path, value: str) -> None:
    result = _cli(_submit_args(_input(tmp_path), f"--budget-usd={value}"))
    assert result.exit_code == EXIT_INVALID_INPUT
    assert "--budget-usd" in _one_line_error(result)
    assert not list(cli_env.scan_iter())


@pytest.mark.parametrize("value", ["inf", "nan"])
def test_a_non_finite_budget_from_the_environment_is_refused(cli_env: Any, tmp_path: Path, value: str) -> None:
    result = _cli(_submit_args(_input(tmp_path)), EXTRACT_BUDGET_USD=value)
    assert result.exit_code == EXIT_INVALID_INPUT
    assert "EXTRACT_BUDGET_USD" in _one_line_error(result)
    assert not list(cli_env.scan_iter())


@pytest.mark.parametrize("value", ["inf", "nan", "-1"])
async def test_producer_budget_must_be_a_finite_number(cli_env: Any, submit_batch: Any, value: str) -> None:
    await submit_batch({"x": "Invoice 1"}, batch_id="a")
    result = await _acli(["budget", "a", f"--usd={value}"])
    assert result.exit_code == EXIT_INVALID_INPUT
    assert "--usd" in _one_line_error(result)


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "a", "b", "--tolerance", "inf"],
        ["compare", "a", "b", "--tolerance", "nan"],
        ["wait", "a", "--timeout", "nan"],
        ["wait", "a", "--timeout", "-5"],
    ],
)
def test_other_float_options_refuse_non_finite_values(cli_env: Any, args: list[str]) -> None:
    result = _cli(args)
    assert result.exit_code == EXIT_INVALID_INPUT
    assert args[-2] in _one_line_error(result)


# ------------------------------------------------------------------------------------- output files: where and how
@pytest.mark.parametrize(
    "command",
    [
        ["report", "a", "--html"],
        ["compare", "a", "b", "--html"],
        ["collect", "a", "--out"],
        ["collect", "a", "--follow", "--out"],
    ],
)
async def test_an_output_into_a_missing_folder_is_one_line_naming_it(
    cli_env: Any, submit_batch: Any, tmp_path: Path, command: list[str]
) -> None:
    """A missing parent folder is more likely a typo than a wish: refused (exit 2) before any work, not created."""
    await submit_batch({"x": "Invoice 1"}, batch_id="a")
    await submit_batch({"x": "Invoice 1"}, batch_id="b")
    missing = tmp_path / "no-such-folder"
    result = await _acli([*command, str(missing / "out.html")])
    assert result.exit_code == EXIT_INVALID_INPUT
    line = _one_line_error(result)
    assert str(missing) in line
    assert "does not exist" in line
    assert not missing.exists()


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_every_output_file_is_readable_by_its_owner_only(
    cli_env: Any, submit_batch: Any, run_worker: Any, tmp_path: Path, umask_022: None
) -> None:
    """Results hold what was extracted from people's documents: every file the CLI writes is 0600, replaced ones too."""
    await submit_batch({"x": "Invoice 1 from ACME", "y": "Invoice 2 from Globex"}, batch_id="a")
    await submit_batch({"x": "Invoice 1 from ACME", "y": "Invoice 3 from Initech"}, batch_id="b")
    await run_worker()
    outputs = {
        "collect.jsonl": ["collect", "a", "--out"],
        "follow.jsonl": ["collect", "a", "--follow", "--out"],
        "report.html": ["report", "a", "--html"],
        "compare.html": ["compare", "a", "b", "--json", "--html"],
    }
    for name, command in outputs.items():
        path = tmp_path / name
        path.write_text("old")
        path.chmod(0o644)  # a file that was there before is replaced by one with the same rule
        result = await _acli([*command, str(path)])
        assert result.exit_code == 0, (name, result.output)
        assert path.read_text() != "old"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        fresh = tmp_path / f"fresh-{name}"
        assert (await _acli([*command, str(fresh)])).exit_code == 0
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o600, name


# ----------------------------------------------------------------------------------------------------- schemas
def _nested_schema(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(levels - 1):
        node = {"type": "object", "properties": {"inner": node}, "required": ["inner"], "additionalProperties": False}
    return {"type": "object", "properties": {"inner": node}, "required": ["inner"], "additionalProperties": False}


def test_a_200_level_schema_is_one_line_naming_the_file_and_the_limit(cli_env: Any, tmp_path: Path) -> None:
    schema = tmp_path / "deep.json"
    schema.write_text(json.dumps(_nested_schema(200)))
    args = ["submit", str(_input(tmp_path)), "--schema", str(schema), "--model", "gpt-4o-mini", "--batch-id", "cli"]
    result = _cli(args)
    assert result.exit_code == EXIT_INVALID_INPUT
    line = _one_line_error(result)
    assert str(schema) in line
    assert f"at most {MAX_NESTING_LEVELS} levels" in line
    assert not list(cli_env.scan_iter())


def test_nesting_is_counted_in_objects_through_refs(tmp_path: Path) -> None:
    """The limit itself (OpenAI strict mode: 10 levels of objects): a schema over it is not refused on every call by
    the API but converted within it (the part past the limit sent as JSON text, a lossy step naming it); counted the
    same through $defs; a recursive $ref is allowed, not unrolled."""
    at_limit = tmp_path / "ten.json"
    at_limit.write_text(json.dumps(_nested_schema(MAX_NESTING_LEVELS)))
    assert resolve_schema(str(at_limit)).codec.lossy_steps == ()  # type: ignore[union-attr]
    over = tmp_path / "eleven.json"
    over.write_text(json.dumps(_nested_schema(MAX_NESTING_LEVELS + 1)))
    converted = resolve_schema(str(over))
    assert object_nesting(converted.json_schema)[0] == MAX_NESTING_LEVELS
    assert [step.kind for step in converted.codec.lossy_steps] == ["limit-collapse"]  # type: ignore[union-attr]
    # The same depth through $defs (the way pydantic writes nested models) counts the same.
    defs: dict[str, Any] = {"L0": {"type": "object", "properties": {"v": {"type": "string"}}, "required": ["v"]}}
    for n in range(1, MAX_NESTING_LEVELS + 1):
        defs[f"L{n}"] = {"type": "object", "properties": {"c": {"$ref": f"#/$defs/L{n - 1}"}}, "required": ["c"]}
    by_ref = tmp_path / "by-ref.json"
    by_ref.write_text(json.dumps({"$defs": defs, "$ref": f"#/$defs/L{MAX_NESTING_LEVELS}"}))
    converted = resolve_schema(str(by_ref))
    assert object_nesting(converted.json_schema)[0] <= MAX_NESTING_LEVELS
    assert "limit-collapse" in {step.kind for step in converted.codec.lossy_steps}  # type: ignore[union-attr]
    tree = tmp_path / "tree.json"
    node = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#"}}},
    }
    tree.write_text(json.dumps(node))
    resolve_schema(str(tree))


def test_a_schema_larger_than_the_context_window_is_reported_once_blaming_the_schema(
    cli_env: Any, tmp_path: Path
) -> None:
    result = _cli(
        _submit_args(_input(tmp_path, count=5)), EXTRACT_CONTEXT_WINDOWS=orjson.dumps({"gpt-4o-mini": 100}).decode()
    )
    assert result.exit_code == EXIT_INVALID_INPUT
    line = _one_line_error(result)  # once, not once per line
    assert line.startswith("Error: the schema (")
    assert "100-token context window of gpt-4o-mini" in line
    assert "in.jsonl" not in result.output  # no line of the input is blamed
    assert not list(cli_env.scan_iter())


# -------------------------------------------------------------------------------------------------- report, list
async def test_report_shows_the_batch_state(cli_env: Any, submit_batch: Any, run_worker: Any, tmp_path: Path) -> None:
    await submit_batch({"x": "Invoice 1 from ACME"}, batch_id="a")
    page = tmp_path / "report.html"
    assert (await _acli(["report", "a", "--html", str(page)])).exit_code == 0
    assert '<td id="param-state">running</td>' in page.read_text()
    await run_worker()
    assert (await _acli(["report", "a", "--html", str(page)])).exit_code == 0
    assert '<td id="param-state">complete</td>' in page.read_text()


async def test_status_prints_a_providers_pause_reason_escaped_and_literally(cli_env: Any, submit_batch: Any) -> None:
    """The pause reason holds a provider's error text: printed raw it could drive the terminal or be rich markup."""
    await submit_batch({"x": "Invoice 1 from ACME"}, batch_id="p")
    cli_env.hset("test:batch:p", mapping={"paused": "401: " + "".join(HOSTILE_IDS), "paused_at": "now"})
    result = await _acli(["status", "p"], COLUMNS="400")
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout  # no raw escape reached the terminal
    assert "\\x1b[2J" in result.stdout
    assert "[red]x[/red]" in result.stdout
    assert "\\u202e" in result.stdout


def test_list_prints_whole_ids_when_piped(cli_env: Any, tmp_path: Path) -> None:
    long_id = "a-very-long-batch-id-" + "x" * 100
    path = _input(tmp_path)
    submitted = _cli(["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", long_id])
    assert submitted.exit_code == 0, submitted.output
    result = _cli(["list"])  # CliRunner's stdout is not a terminal, as in `producer list | grep ...`
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    header, row = result.stdout.splitlines()
    assert header.split("\t")[:3] == ["batch", "state", "lines"]
    assert row.split("\t")[:3] == [long_id, "running", "3"]


# ---------------------------------------------------------------------------------------------------------- help
def _commands(group: click.Group) -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield name, command
        if isinstance(command, click.Group):
            yield from ((f"{name} {sub}", cmd) for sub, cmd in _commands(command))


def test_every_option_of_every_command_says_what_it_does() -> None:
    missing = []
    for name, command in _commands(main):
        assert command.help, f"producer {name} has no help"
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            text = (param.help or "").split("[")[0]
            if not any(word.isalpha() and len(word) > 2 for word in text.split()):
                missing.append(f"producer {name} {param.opts[0]}")
    assert not missing, f"options without a description: {', '.join(missing)}"


def test_required_options_are_marked_in_help() -> None:
    for command in ("submit", "run", "estimate"):
        text = _cli([command, "--help"]).output
        flat = " ".join(text.split())
        for option, variable in (("--schema", "EXTRACT_SCHEMA"), ("--model", "EXTRACT_MODEL")):
            start = flat.index(f"{option} ")
            assert f"[required; or env {variable}]" in flat[start : start + 300], (command, option)
    for command, option, mark in (
        ("collect", "--out", "[required]"),
        ("report", "--html", "[required]"),
        ("run", "--out", "[required unless --results]"),  # with a results sink, `run` ends with them there
    ):
        flat = " ".join(_cli([command, "--help"]).output.split())
        start = flat.index(f"{option} ")
        assert mark in flat[start : start + 300], (command, option)
