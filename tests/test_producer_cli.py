"""`producer submit` input validation: every bad line named with its number; nothing enqueued."""

from __future__ import annotations

from pathlib import Path

import orjson
from click.testing import CliRunner
from redis import Redis as SyncRedis

from producer.cli import main
from producer.errors import EXIT_INVALID_INPUT
from schemas.jobs import DEFAULT_INSTRUCTIONS
from store.fields import F
from store.keys import Keys
from store.lines import decode_entry

KEYS = Keys("test:")


def _indexed_ids(client: SyncRedis, batch_id: str) -> list[str]:
    return [decode_entry(entry)[1] for entry in client.lrange(KEYS.batch(batch_id).lines, 0, -1)]  # type: ignore[union-attr]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "input.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


def _submit(path: Path, *extra: str):
    args = ["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "cli", *extra]
    return CliRunner().invoke(main, args)


def test_malformed_lines_are_each_reported_and_nothing_is_enqueued(cli_env, tmp_path) -> None:
    path = _write(
        tmp_path,
        '{"custom_id": "a", "text": "fine"}\n'
        "{not json\n"
        "[1, 2]\n"
        '{"custom_id": "d", "body": "x"}\n'
        '{"custom_id": "a", "text": "again"}\n'
        '{"custom_id": "f", "text": ""}\n',
    )
    result = _submit(path)
    assert result.exit_code == EXIT_INVALID_INPUT
    out = result.output
    assert f"{path}:2: not valid JSON" in out
    assert f"{path}:3: expected a JSON object, got list" in out
    assert f"{path}:4: missing text field 'text'" in out
    assert f"{path}:5: duplicate id 'a' (first on line 1)" in out
    assert f"{path}:6: field 'text' is empty" in out
    assert "nothing was enqueued" in out
    assert cli_env.zcard(KEYS.queue) == 0
    assert not cli_env.exists(KEYS.batch("cli").record)


def test_skip_invalid_enqueues_the_valid_lines(cli_env, tmp_path) -> None:
    path = _write(tmp_path, '{"custom_id": "a", "text": "fine"}\n{oops\n{"custom_id": "b", "text": "ok"}\n')
    result = _submit(path, "--skip-invalid")
    assert result.exit_code == 0, result.output
    assert "line 2" in result.output or ":2:" in result.output
    assert cli_env.zcard(KEYS.queue) == 2
    assert _indexed_ids(cli_env, "cli") == ["a", "b"]


def test_missing_text_field_names_the_line_and_the_flag(cli_env, tmp_path) -> None:
    path = _write(tmp_path, '{"custom_id": "a", "body_text": "x"}\n')
    result = _submit(path)
    assert result.exit_code == EXIT_INVALID_INPUT
    assert f"{path}:1: missing text field 'text' (set another with --text-field)" in result.output
    assert _submit(path, "--text-field", "body_text").exit_code == 0


def test_custom_id_and_text_fields(cli_env, tmp_path) -> None:
    path = _write(tmp_path, '{"id": 7, "doc": "Invoice from ACME"}\n')
    result = _submit(path, "--id-field", "id", "--text-field", "doc")
    assert result.exit_code == 0, result.output
    assert _indexed_ids(cli_env, "cli") == ["7"]


def test_empty_file_is_an_error(cli_env, tmp_path) -> None:
    result = _submit(_write(tmp_path, "\n\n"))
    assert result.exit_code == EXIT_INVALID_INPUT
    assert "the input has no lines" in result.output
    assert cli_env.zcard(KEYS.queue) == 0


def test_unknown_schema_lists_the_builtins(cli_env, tmp_path) -> None:
    path = _write(tmp_path, '{"custom_id": "a", "text": "x"}\n')
    result = CliRunner().invoke(main, ["submit", str(path), "--schema", "nope", "--model", "m"])
    assert result.exit_code == 2
    assert "nope" in result.output
    assert "invoice" in result.output
    assert cli_env.zcard(KEYS.queue) == 0


def test_schema_and_model_come_from_the_environment(cli_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EXTRACT_SCHEMA", "contact")
    monkeypatch.setenv("EXTRACT_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("EXTRACT_API", "chat")
    path = _write(tmp_path, '{"custom_id": "a", "text": "Jane Doe, CTO at Initech"}\n')
    result = CliRunner().invoke(main, ["submit", str(path), "--batch-id", "env"])
    assert result.exit_code == 0, result.output
    spec = orjson.loads(cli_env.hget(KEYS.batch("env").record, F.SPEC))
    assert (spec["schema_ref"], spec["model"], spec["api"]) == ("contact", "gpt-4.1-mini", "chat")


def test_openai_batch_input_format_is_detected(cli_env, tmp_path) -> None:
    lines = [
        {
            "custom_id": "r1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "messages": [{"role": "system", "content": DEFAULT_INSTRUCTIONS}, {"role": "user", "content": "Doc 1"}],
            },
        },
        {"custom_id": "r2", "method": "POST", "url": "/v1/responses", "body": {"input": "Doc 2"}},
    ]
    path = _write(tmp_path, "\n".join(orjson.dumps(line).decode() for line in lines) + "\n")
    result = _submit(path)
    assert result.exit_code == 0, result.output
    assert "OpenAI batch input format" in result.output
    assert cli_env.zcard(KEYS.queue) == 2


def test_openai_batch_lines_that_ask_for_something_else_are_reported(cli_env, tmp_path) -> None:
    """A Batch API file's own model, parameters, instructions and format must agree with the batch's, or the line is
    reported with its number, the field and both values: no line is sent another way than its file says."""

    def line(custom_id: str, body: dict[str, object], method: str = "POST", url: str = "/v1/chat/completions") -> str:
        return orjson.dumps({"custom_id": custom_id, "method": method, "url": url, "body": body}).decode()

    user = [{"role": "user", "content": "Invoice 1, 10 EUR"}]
    lines = [
        line("ok", {"model": "gpt-4o-mini", "messages": user}),
        line("model", {"model": "gpt-4.1", "messages": user}),
        line("temp", {"messages": user, "temperature": 0.7}),
        line("max", {"messages": user, "max_tokens": 50}),
        line("format", {"messages": user, "response_format": {"type": "json_object"}}),
        line("system", {"messages": [{"role": "system", "content": "Be a pirate."}, *user]}),
        line("get", {"messages": user}, method="GET"),
        line("host", {"messages": user}, url="https://evil.example/v1/chat/completions"),
        line("text-format", {"input": "Invoice 2", "text": {"format": {"type": "json_object"}}}, url="/v1/responses"),
    ]
    path = _write(tmp_path, "\n".join(lines) + "\n")
    result = _submit(path)
    assert result.exit_code == EXIT_INVALID_INPUT, result.output
    output = " ".join(result.output.split())  # rich may wrap long lines
    for expected in (
        ":2: body.model is 'gpt-4.1' but the batch's model is 'gpt-4o-mini' (--model)",
        ":3: body.temperature is 0.7 but the batch's is None (--temperature)",
        ":4: body.max_tokens is 50 but the batch's is None (--max-output-tokens)",
        ":5: body.response_format is set; the batch's output format comes from --schema (invoice)",
        ":6: body has a system/developer message",
        ":7: 'method' is 'GET'; the Batch API format sends POST",
        ":8: 'url' is 'https://evil.example/v1/chat/completions'; it must be a path",
        ":9: body.text.format is set",
    ):
        assert expected in output, expected
    assert ":1:" not in output
    assert cli_env.zcard(KEYS.queue) == 0  # nothing written
    matching = _submit(path, "--skip-invalid", "--temperature", "0.7")
    assert matching.exit_code == 0, matching.output
    assert cli_env.zcard(KEYS.queue) == 2  # "ok" and "temp" agree with a batch at temperature 0.7


def test_resubmitting_the_same_batch_enqueues_nothing_new(cli_env, tmp_path) -> None:
    path = _write(tmp_path, '{"custom_id": "a", "text": "x"}\n{"custom_id": "b", "text": "y"}\n')
    assert _submit(path).exit_code == 0
    again = _submit(path)
    assert again.exit_code == 0, again.output
    assert "nothing new to enqueue" in again.output
    assert cli_env.zcard(KEYS.queue) == 2
    assert cli_env.hget(KEYS.batch("cli").record, F.LINES) == b"2"
    assert again.stdout.strip() == "cli"  # the batch id, on stdout


def test_another_input_under_a_known_batch_id_is_refused(cli_env, tmp_path) -> None:
    first = _write(tmp_path, '{"custom_id": "a", "text": "x"}\n')
    assert _submit(first).exit_code == 0
    other = tmp_path / "other.jsonl"
    other.write_text('{"custom_id": "a", "text": "x"}\n{"custom_id": "b", "text": "y"}\n')
    again = _submit(other)
    assert again.exit_code == 2  # a refused resubmit is an input error
    assert "refused line 2: the batch has no line 'b' (--append adds it)" in again.output
    assert _indexed_ids(cli_env, "cli") == ["a"]
    assert cli_env.zcard(KEYS.queue) == 1
    # ... and the batch still names its own input as the file `retry` reads (a refusal changes nothing).
    assert orjson.loads(cli_env.hget(KEYS.batch("cli").record, F.INPUT))["path"] == str(first.resolve())


def test_a_changed_document_under_a_known_batch_id_is_refused(cli_env, tmp_path) -> None:
    path = _write(tmp_path, '{"custom_id": "a", "text": "x"}\n{"custom_id": "b", "text": "y"}\n')
    assert _submit(path).exit_code == 0
    path.write_text('{"custom_id": "a", "text": "x"}\n{"custom_id": "b", "text": "y, changed"}\n')
    again = _submit(path)
    assert again.exit_code == 2  # a refused resubmit is an input error
    assert "refused line 2: the document of 'b' differs from the one the batch has" in again.output
    assert "nothing was changed" in again.output
    assert cli_env.zcard(KEYS.queue) == 2


def test_resubmitting_with_other_parameters_is_refused(cli_env, tmp_path) -> None:
    path = _write(tmp_path, '{"custom_id": "a", "text": "x"}\n')
    assert _submit(path).exit_code == 0
    other = CliRunner().invoke(
        main, ["submit", str(path), "--schema", "contact", "--model", "gpt-4o-mini", "--batch-id", "cli"]
    )
    assert other.exit_code == 1
    assert "already exists with other parameters" in other.output
    assert cli_env.zcard(KEYS.queue) == 1


def test_list_status_and_delete_commands(cli_env, tmp_path) -> None:
    path = _write(tmp_path, "".join(f'{{"custom_id": "l{n}", "text": "Invoice {n}"}}\n' for n in range(5)))
    assert _submit(path).exit_code == 0
    other = CliRunner().invoke(
        main, ["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "second"]
    )
    assert other.exit_code == 0, other.output
    listed = CliRunner().invoke(main, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert [row["batch_id"] for row in rows] == ["second", "cli"]  # newest first
    assert all(row["state"] == "running" and row["total"] == 5 and row["redis_bytes"] > 0 for row in rows)
    status = CliRunner().invoke(main, ["status", "cli", "--json"])
    assert status.exit_code == 0, status.output
    data = orjson.loads(status.stdout)
    assert (data["state"], data["enqueued"], data["queued"]) == ("running", 5, 5)
    assert data["redis_bytes"] >= rows[1]["redis_bytes"] // 2
    table = CliRunner().invoke(main, ["status", "cli"])
    assert "Redis" in table.output
    assert "queued jobs" in table.output
    deleted = CliRunner().invoke(main, ["delete", "cli"])
    assert deleted.exit_code == 0, deleted.output
    assert "5 waiting job(s) taken off the queue" in deleted.output
    assert not [key for key in cli_env.scan_iter() if b":cli" in key]
    assert cli_env.zcard(KEYS.queue) == 5  # the other batch's jobs
    gone = CliRunner().invoke(main, ["status", "cli"])
    assert gone.exit_code == 1
    assert "no batch 'cli'" in gone.output
    assert [
        orjson.loads(line)["batch_id"] for line in CliRunner().invoke(main, ["list", "--json"]).stdout.splitlines()
    ] == ["second"]


def test_an_invalid_batch_id_is_refused_before_anything_is_written(cli_env, tmp_path) -> None:
    path = _write(tmp_path, '{"custom_id": "a", "text": "x"}\n')
    for bad in ("cc:results", "has space", "../up"):
        result = CliRunner().invoke(
            main, ["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", bad]
        )
        assert result.exit_code == 2
        assert "invalid batch id" in result.output
    assert list(cli_env.scan_iter()) == []
