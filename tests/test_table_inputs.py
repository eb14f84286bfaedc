"""Parquet and CSV inputs -- a file, a glob of them, on a disk or on S3 -- through ``producer submit`` and the library.

Each row is checked by the same rules as a native JSONL line and named ``row N of FILE`` when it is refused; every
pass (scan, index, feed, retry, resubmit) numbers the rows alike; an input that cannot be read at all is one line,
never a traceback. S3 is moto's real server over HTTP behind the fault proxy (``tests/s3_server.py``).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from PIL import Image
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer import collect, plan_submit, read_status, retry_batch, submit_plan
from producer.cli import main
from producer.errors import EXIT_INVALID_INPUT, InputError
from producer.input.readers import LineShape
from producer.input.tables import TableInputError, TableSource
from producer.submit.plan import InvalidLinesError
from schemas.results import Status
from schemas.settings import ProducerSettings
from store.fields import F
from store.keys import Keys
from store.lines import decode_entry
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.helpers import results_by_id, sim_post
from tests.s3_server import S3Server

KEYS = Keys("test:")


# ------------------------------------------------------------------------------------------------------- helpers
def _parquet(path: Path, columns: dict[str, list[Any]], **options: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, **options)
    return path


def _docs(count: int, prefix: str = "doc") -> dict[str, list[Any]]:
    return {
        "custom_id": [f"{prefix}-{n}" for n in range(count)],
        "text": [f"{INVOICE_TEXTS[n % len(INVOICE_TEXTS)]} Ref {prefix}-{n}." for n in range(count)],
    }


def _submit(location: str | Path, *extra: str, batch_id: str = "tab") -> Result:
    args = ["submit", str(location), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", batch_id, *extra]
    return CliRunner().invoke(main, args)


def _indexed_ids(client: SyncRedis, batch_id: str = "tab") -> list[str]:
    return [decode_entry(entry)[1] for entry in client.lrange(KEYS.batch(batch_id).lines, 0, -1)]  # type: ignore[union-attr]


def _recorded_input(client: SyncRedis, batch_id: str = "tab") -> dict[str, Any]:
    raw = client.hget(KEYS.batch(batch_id).record, F.INPUT)
    assert isinstance(raw, bytes)
    found: dict[str, Any] = orjson.loads(raw)
    return found


def _one_clean_line(result: Result) -> str:
    """The error a refused input ends with: exit 2, one ``Error:`` line, no traceback."""
    assert result.exit_code == EXIT_INVALID_INPUT, result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, TableInputError | OSError | pa.ArrowException | TypeError)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def _settings(redis_url: str, sim: Any, **flags: Any) -> ProducerSettings:
    return ProducerSettings(
        redis_url=redis_url,
        key_prefix="test:",
        openai_api_key=API_KEY,
        openai_base_url=sim.base_url,
        **{"model": "gpt-4o-mini", "schema_spec": "invoice", **flags},
    )


# ------------------------------------------------------------------------------------------------ the CLI, local
def test_a_parquet_file_is_submitted_row_by_row(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = _parquet(tmp_path / "in.parquet", {**_docs(5), "unused": list(range(5))})
    result = _submit(path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "tab"
    assert _indexed_ids(cli_env) == [f"doc-{n}" for n in range(5)]
    assert cli_env.zcard(KEYS.queue) == 5
    recorded = _recorded_input(cli_env)
    assert recorded["table"] == "parquet"
    assert recorded["files"] == [str(path.resolve())]
    assert recorded["id_field"] == "custom_id"


def test_a_csv_file_keeps_leading_zeros_quoted_newlines_and_skips_a_bom(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(
        b'\xef\xbb\xbfcustom_id,amount,text\n007,12,"Invoice 7 from ACME,\ntotal 12 USD."\n0042,1,Invoice 42, 1 EUR\n'
    )
    assert _submit(path).exit_code != 0  # the unquoted comma makes a 4th field: the row is refused, not guessed
    path.write_bytes(
        b'\xef\xbb\xbfcustom_id,amount,text\n007,12,"Invoice 7 from ACME,\ntotal 12 USD."\n0042,1,"Invoice 42, 1 EUR"\n'
    )
    result = _submit(path)
    assert result.exit_code == 0, result.output
    assert _indexed_ids(cli_env) == ["007", "0042"]
    (line,) = [line for line in TableSource.open(path).lines() if line.custom_id == "007"]
    assert line.text == "Invoice 7 from ACME,\ntotal 12 USD."
    assert line.place == f"row 1 of {path}"


def test_a_gzipped_csv_and_named_columns(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = tmp_path / "in.csv.gz"
    path.write_bytes(gzip.compress(b"id,doc\n1,Invoice from ACME total 5 USD\n2,Invoice from Globex total 7 EUR\n"))
    result = _submit(path, "--id-field", "id", "--text-field", "doc")
    assert result.exit_code == 0, result.output
    assert _indexed_ids(cli_env) == ["1", "2"]


def test_integer_ids_are_their_decimal_strings(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = _parquet(tmp_path / "ints.parquet", {"id": pa.array([7, 8, 9], pa.int64()), "text": ["a b", "c d", "e f"]})
    result = _submit(path, "--id-field", "id")
    assert result.exit_code == 0, result.output
    assert _indexed_ids(cli_env) == ["7", "8", "9"]


def test_bad_rows_are_each_named_by_row_and_file_and_nothing_is_enqueued(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = _parquet(
        tmp_path / "bad.parquet",
        {
            "custom_id": ["a", "", "c", "a", None, "f"],
            "text": ["fine", "no id", None, "again", "null id", "   "],
        },
    )
    result = _submit(path)
    assert result.exit_code == EXIT_INVALID_INPUT
    out = result.output
    assert f"row 2 of {path}: field 'custom_id' is empty" in out
    assert f"row 3 of {path}: missing text field 'text'" in out  # a null text is a missing text
    assert f"row 4 of {path}: duplicate id 'a' (first on row 1 of {path})" in out
    assert f"row 5 of {path}: missing id field 'custom_id'" in out
    assert f"row 6 of {path}: field 'text' is empty" in out
    assert "5 invalid line(s); nothing was enqueued" in out
    assert cli_env.zcard(KEYS.queue) == 0
    assert not cli_env.exists(KEYS.batch("tab").record)
    skipped = _submit(path, "--skip-invalid")
    assert skipped.exit_code == 0, skipped.output
    assert _indexed_ids(cli_env) == ["a"]


def test_an_id_of_another_type_is_refused_as_on_a_jsonl_line(tmp_path: Path) -> None:
    path = _parquet(tmp_path / "floats.parquet", {"custom_id": [1.5, 2.5], "text": ["x y", "z w"]})
    scan = TableSource.open(path).scan
    assert [str(e) for e in scan.errors] == [
        f"row {n} of {path}: field 'custom_id' must be a string or an integer, got float" for n in (1, 2)
    ]


def test_a_wrong_column_name_is_one_line_naming_the_columns(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = _parquet(tmp_path / "cols.parquet", {"custom_id": ["a"], "body": ["x"]})
    line = _one_clean_line(_submit(path))
    assert f"{path}: no column 'text' for the text (set another with --text-field)" in line
    assert "its columns: 'custom_id', 'body'" in line
    assert _submit(path, "--text-field", "body").exit_code == 0
    line = _one_clean_line(_submit(path, "--id-field", "key", batch_id="other"))
    assert "no column 'key' for the ids (set another with --id-field)" in line


def test_a_glob_reads_its_files_in_path_order_as_one_input(cli_env: SyncRedis, tmp_path: Path) -> None:
    data = tmp_path / "data"
    for part in (2, 0, 1):
        _parquet(data / f"part-{part}.parquet", _docs(3, prefix=f"p{part}"))
    (data / "notes.txt").write_text("not matched")
    result = _submit(data / "part-*.parquet")
    assert result.exit_code == 0, result.output
    assert _indexed_ids(cli_env) == [f"p{part}-{n}" for part in range(3) for n in range(3)]
    recorded = _recorded_input(cli_env)
    assert recorded["input"] == str(data / "part-*.parquet")
    assert recorded["files"] == [str(data / f"part-{part}.parquet") for part in range(3)]


def test_a_bad_row_of_a_glob_is_named_by_its_own_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _parquet(data / "part-1.parquet", _docs(4, prefix="a"))
    _parquet(data / "part-2.parquet", {"custom_id": ["b-0", "a-1", "b-2"], "text": ["x y", "dup", None]})
    source = TableSource.open(str(data / "part-*.parquet"))
    assert [str(e) for e in source.scan.errors] == [
        f"row 2 of {data}/part-2.parquet: duplicate id 'a-1' (first on row 2 of {data}/part-1.parquet)",
        f"row 3 of {data}/part-2.parquet: missing text field 'text' (set another with --text-field) and no "
        "attachments ('files', 'urls', 'file_ids')",
    ]
    assert [(line.line, line.custom_id, line.place) for line in source.lines()][-2:] == [
        (4, "a-3", f"row 4 of {data}/part-1.parquet"),
        (5, "b-0", f"row 1 of {data}/part-2.parquet"),
    ]


def test_a_glob_that_mixes_formats_or_matches_nothing_is_one_line(cli_env: SyncRedis, tmp_path: Path) -> None:
    _parquet(tmp_path / "a.parquet", _docs(1))
    (tmp_path / "b.csv").write_text("custom_id,text\nx,y z\n")
    assert "matches both Parquet and CSV files" in _one_clean_line(_submit(tmp_path / "*"))
    assert f"{tmp_path}/*.pq: no file matches" in _one_clean_line(_submit(tmp_path / "*.pq"))
    missing = CliRunner().invoke(main, ["submit", str(tmp_path / "gone.parquet"), "--schema", "invoice"])
    assert missing.exit_code == EXIT_INVALID_INPUT
    assert "does not exist" in missing.output
    assert "Traceback" not in missing.output


def test_empty_tables_have_no_lines(cli_env: SyncRedis, tmp_path: Path) -> None:
    empty = _parquet(
        tmp_path / "empty.parquet", {"custom_id": pa.array([], pa.string()), "text": pa.array([], pa.string())}
    )
    header_only = tmp_path / "header.csv"
    header_only.write_text("custom_id,text\n")
    no_bytes = tmp_path / "none.csv"
    no_bytes.write_bytes(b"")
    for path in (empty, header_only, no_bytes):
        result = _submit(path)
        assert result.exit_code == EXIT_INVALID_INPUT, result.output
        assert "the input has no lines" in result.output
    assert cli_env.zcard(KEYS.queue) == 0


def test_a_corrupt_parquet_file_is_one_clean_line(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1" + os.urandom(4096))
    line = _one_clean_line(_submit(path))
    assert f"cannot read {path}:" in line
    truncated = _parquet(tmp_path / "cut.parquet", _docs(50))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    assert f"cannot read {truncated}:" in _one_clean_line(_submit(truncated))


def test_many_row_groups_are_read_in_order_in_small_batches(tmp_path: Path) -> None:
    docs = _docs(2000)
    docs["text"][1234] = ""
    path = _parquet(tmp_path / "groups.parquet", docs, row_group_size=37)
    assert pq.ParquetFile(path).metadata.num_row_groups == 55
    source = TableSource.open(path)
    assert [str(e) for e in source.scan.errors] == [f"row 1235 of {path}: field 'text' is empty"]
    lines = list(source.lines())
    assert [line.custom_id for line in lines] == [f"doc-{n}" for n in range(2000) if n != 1234]
    assert lines[1234].line == 1236  # the row number; its ordinal is 1234, as every pass counts


def test_a_csv_row_longer_than_a_block_is_read_with_larger_blocks(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    small = [f"r{n},Invoice {n} total {n} USD\n" for n in range(3000)]  # about 90 KB: more than the header's block
    long_text = "word " * 500_000  # 2.5 MB: more than the 1 MiB block
    path.write_text(
        "custom_id,text\n" + "".join(small) + f'long,"{long_text}"\n' + "".join(small[:1]).replace("r0", "after")
    )
    lines = list(TableSource.open(path).lines())
    assert [line.custom_id for line in lines] == [f"r{n}" for n in range(3000)] + ["long", "after"]
    assert lines[3000].text == long_text
    assert lines[3001].place == f"row 3002 of {path}"


def test_estimate_reads_the_same_table(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = _parquet(tmp_path / "est.parquet", _docs(6))
    result = CliRunner().invoke(
        main, ["estimate", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["lines"] == 6
    assert not cli_env.exists(KEYS.batch("tab").record)


def test_the_same_table_again_is_nothing_new_and_a_changed_row_is_named(cli_env: SyncRedis, tmp_path: Path) -> None:
    path = _parquet(tmp_path / "again.parquet", _docs(4))
    assert _submit(path).exit_code == 0
    again = _submit(path)
    assert again.exit_code == 0, again.output
    assert "nothing new to enqueue" in again.output
    assert cli_env.zcard(KEYS.queue) == 4
    changed = _docs(4)
    changed["text"][2] = "Invoice from Umbrella Corp, total 1 USD."
    moved = _parquet(tmp_path / "moved" / "again.parquet", changed)
    refused = _submit(moved)
    assert refused.exit_code == EXIT_INVALID_INPUT, refused.output
    assert f"row 3 of {moved}: the document of 'doc-2' differs" in refused.output


# ----------------------------------------------------------------------------------------------- the library
async def test_a_table_is_planned_drained_collected_and_retried_from_its_rows(
    redis: Redis, keys: Keys, flushed_redis: str, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    _parquet(data / "part-0.parquet", _docs(4, prefix="a"), row_group_size=3)
    _parquet(data / "part-1.parquet", _docs(3, prefix="b"))
    settings = _settings(flushed_redis, sim)
    plan = plan_submit(settings, data / "part-*.parquet", "lib-t")
    assert plan.source.count == 7
    # the third row of part-0 (Initech's invoice) is refused once by the model: it fails
    await sim_post(sim, "/_sim/faults", [{"match": "Ref a-2.", "fault": "refusal", "times": 1}])
    report = await submit_plan(redis, keys, settings, plan)
    assert (report.result.created, report.result.enqueued) == (True, 7)
    await run_worker()
    assert (await results_by_id(redis, keys, "lib-t"))["a-2"].status is Status.FAILED

    _parquet(data / "part-2.parquet", _docs(2, prefix="c"))  # new under the glob: retry reads what was recorded
    retried = await retry_batch(redis, keys, settings, "lib-t")
    assert retried.enqueued == 1
    await run_worker()
    record = await read_status(redis, keys, "lib-t")
    assert (record.succeeded, record.failed) == (7, 0)
    out = tmp_path / "out.jsonl"
    assert await collect(redis, keys, "lib-t", out) == (7, 0)
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [line["custom_id"] for line in lines] == [f"a-{n}" for n in range(4)] + [f"b-{n}" for n in range(3)]

    with pytest.raises(InvalidLinesError) as invalid:
        plan_submit(settings, _parquet(tmp_path / "bad.parquet", {"custom_id": ["x"], "text": [None]}), "lib-bad")
    assert [error.where for error in invalid.value.source.scan.errors] == [f"row 1 of {tmp_path}/bad.parquet"]
    with pytest.raises(InputError, match="no file matches"):
        plan_submit(settings, tmp_path / "nothing-*.csv", "lib-none")


async def test_retry_refuses_a_recorded_table_that_changed(
    redis: Redis, keys: Keys, flushed_redis: str, sim: Any, tmp_path: Path
) -> None:
    path = _parquet(tmp_path / "in.parquet", _docs(3))
    settings = _settings(flushed_redis, sim)
    await submit_plan(redis, keys, settings, plan_submit(settings, path, "lib-c"))
    _parquet(path, _docs(5))
    with pytest.raises(InputError, match="not the batch's input"):
        await retry_batch(redis, keys, settings, "lib-c")
    path.unlink()
    with pytest.raises(TableInputError, match="no such file"):
        await retry_batch(redis, keys, settings, "lib-c")


def test_files_are_relative_to_each_tables_folder(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (40, 30), "white").save(tmp_path / folder / "scan.png")
        _parquet(tmp_path / folder / "t.parquet", {"custom_id": [folder], "files": [["scan.png"]]})
    source = TableSource.open(str(tmp_path / "*" / "t.parquet"))
    assert source.scan.errors == []
    assert [(line.custom_id, len(line.attachments)) for line in source.lines()] == [("one", 1), ("two", 1)]


# ---------------------------------------------------------------------------------------------------------- S3
def _put_parquet(s3: S3Server, key: str, columns: dict[str, list[Any]]) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink)
    s3.client().put_object(Bucket="bucket", Key=key, Body=sink.getvalue().to_pybytes())


def test_a_parquet_object_on_s3(cli_env: SyncRedis, s3: S3Server) -> None:
    _put_parquet(s3, "in/data.parquet", _docs(4))
    result = _submit("s3://bucket/in/data.parquet")
    assert result.exit_code == 0, result.output
    assert _indexed_ids(cli_env) == [f"doc-{n}" for n in range(4)]
    recorded = _recorded_input(cli_env)
    assert (recorded["input"], recorded["files"]) == ("s3://bucket/in/data.parquet", ["s3://bucket/in/data.parquet"])
    assert b"testing-secret" not in cli_env.hget(KEYS.batch("tab").record, F.INPUT)  # type: ignore[operator]
    assert _submit("s3://bucket/in/data.parquet").exit_code == 0  # the same again: nothing new


def test_a_glob_of_csv_objects_on_s3(cli_env: SyncRedis, s3: S3Server) -> None:
    client = s3.client()
    client.put_object(Bucket="bucket", Key="in/b.csv", Body=b"custom_id,text\n03,Invoice three 3 USD\n")
    client.put_object(Bucket="bucket", Key="in/a.csv", Body=b"custom_id,text\n01,Invoice one 1 USD\n02,Two 2 USD\n")
    client.put_object(Bucket="bucket", Key="in/deeper/c.csv", Body=b"custom_id,text\n09,not matched\n")
    client.put_object(Bucket="bucket", Key="other/d.csv", Body=b"custom_id,text\n10,not matched\n")
    result = _submit("s3://bucket/in/*.csv")
    assert result.exit_code == 0, result.output
    assert _indexed_ids(cli_env) == ["01", "02", "03"]
    assert _recorded_input(cli_env)["files"] == ["s3://bucket/in/a.csv", "s3://bucket/in/b.csv"]
    deep = TableSource.open("s3://bucket/**/*.csv")
    assert [file.shown for file in deep.files] == [
        "s3://bucket/in/a.csv",
        "s3://bucket/in/b.csv",
        "s3://bucket/in/deeper/c.csv",
        "s3://bucket/other/d.csv",
    ]


def test_a_missing_object_or_bucket_is_one_clean_line(cli_env: SyncRedis, s3: S3Server) -> None:
    assert "s3://bucket/in/gone.parquet: no such object" in _one_clean_line(_submit("s3://bucket/in/gone.parquet"))
    assert "no object matches" in _one_clean_line(_submit("s3://bucket/in/*.parquet"))
    assert "s3://no-such-bucket/x.parquet" in _one_clean_line(_submit("s3://no-such-bucket/x.parquet"))
    assert "an S3 URL is" in _one_clean_line(_submit("s3://user:secret@bucket/x.parquet"))


def test_an_s3_failure_is_one_clean_line(cli_env: SyncRedis, s3: S3Server) -> None:
    _put_parquet(s3, "in/data.parquet", _docs(3))
    s3.arm("fail", "GET", 10)
    line = _one_clean_line(_submit("s3://bucket/in/data.parquet"))
    assert "cannot read s3://bucket/in/data.parquet" in line
    assert "testing-secret" not in line
    assert not cli_env.exists(KEYS.batch("tab").record)


def test_an_s3_tables_files_must_be_absolute_local_paths(s3: S3Server, tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    _put_parquet(s3, "in/f.parquet", {"custom_id": ["a", "b"], "text": ["x y", "z w"], "files": ["scan.pdf", None]})
    source = TableSource.open("s3://bucket/in/f.parquet", shape=LineShape())
    assert [str(e) for e in source.scan.errors] == [
        "row 1 of s3://bucket/in/f.parquet: field 'files': 'scan.pdf' is relative, and an S3 table's files are "
        "absolute local paths (nothing a table names is fetched from S3)"
    ]
    assert [line.custom_id for line in source.lines()] == ["b"]


def test_the_cli_names_a_bad_row_by_row_and_file(cli_env: SyncRedis, s3: S3Server, tmp_path: Path) -> None:
    path = _parquet(tmp_path / "bad.parquet", {"custom_id": ["a", ""], "text": ["x y", "z w"]})
    local = _submit(path)
    assert f"error row 2 of {path}: field 'custom_id' is empty" in local.output
    _put_parquet(s3, "in/bad.parquet", {"custom_id": ["a", ""], "text": ["x y", "z w"]})
    remote = _submit("s3://bucket/in/bad.parquet")
    assert remote.exit_code == EXIT_INVALID_INPUT, remote.output
    assert "error row 2 of s3://bucket/in/bad.parquet: field 'custom_id' is empty" in remote.output
