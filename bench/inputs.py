"""What reading a Parquet or CSV input costs: peak memory (RSS) and rows per second, against JSONL of the same rows.

    .venv/bin/python -m bench.inputs [--rows 1000000] [--text-bytes 1000] [--csv-mb 300] [--many-rows 0]
                                     [--grouped-only] [--workdir DIR] [--keep]

Writes, in a scratch folder: a Parquet file of ``--rows`` rows of about ``--text-bytes`` bytes of random words each
(hardly compressible, so the file is about rows x bytes: 1 GB by default) in row groups of 128 Ki rows (a Spark-like
128 MB each); the same rows again as ONE row group (the worst case: a gigabyte a column chunk); a CSV of about
``--csv-mb`` MB (its texts quoted, with commas and newlines); that CSV's rows as JSONL; and with ``--many-rows N``
a Parquet file of N rows of 16-byte texts, for what grows with the number of rows whatever their size
(``--grouped-only`` writes the first file alone: ``--rows 10000000 --grouped-only`` is the 10 GB case). Then, each
in a fresh process so nothing else counts: ``TableSource.open`` (or ``FileSource.open``) -- the scan, every row
checked as a JSONL line is, duplicates looked for -- and one more pass over its lines, as the index and the feed
make. It prints, per input: its size, its rows, each pass's seconds and rows per second, the process's RSS before
the scan (Python and the imports) and its peak (``VmHWM``). Nothing is asserted; the target is a peak under 300 MB
whatever the file's size (the reading is bounded; what grows with the rows is the duplicate check's 5 bytes a row).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
GROUP_ROWS = 128 * 1024
LETTERS = bytes.maketrans(bytes(range(256)), (b"etaoinshrdlcumwfgypbvkjxqz    " * 9)[:256])
"""Random bytes to lower-case letters and spaces (words of a few letters): text that Parquet's compression (Snappy)
hardly shrinks, so a file of N rows of B bytes is about N x B."""


def texts(count: int, size: int) -> list[str]:
    """``count`` random texts of ``size`` bytes."""
    raw = os.urandom(count * size).translate(LETTERS).decode("ascii")
    return [raw[i * size : (i + 1) * size] for i in range(count)]


def write_parquet(path: Path, rows: int, size: int, *, one_group: bool) -> None:
    schema = pa.schema([("custom_id", pa.string()), ("text", pa.string()), ("amount", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        if one_group:  # the whole table at once: one row group (this process holds it; the measured one does not)
            columns = {"custom_id": [f"doc-{n}" for n in range(rows)], "text": texts(rows, size)}
            writer.write_table(pa.table({**columns, "amount": list(range(rows))}, schema), row_group_size=rows)
            return
        for start in range(0, rows, GROUP_ROWS):
            count = min(GROUP_ROWS, rows - start)
            ids = [f"doc-{n}" for n in range(start, start + count)]
            table = pa.table({"custom_id": ids, "text": texts(count, size), "amount": list(range(count))}, schema)
            writer.write_table(table, row_group_size=GROUP_ROWS)


def write_csv_and_jsonl(csv: Path, jsonl: Path, megabytes: int, size: int) -> None:
    n = 0
    with csv.open("wb") as out, jsonl.open("wb") as lines:
        out.write(b"custom_id,text,amount\n")
        while out.tell() < megabytes * 1_000_000:
            chunk = texts(10_000, size)
            ids = [f"{n + i:09d}" for i in range(len(chunk))]  # leading zeros: read as strings, kept
            rows = [f"{t[: size // 2]}, {t[size // 2 :]}\nend" for t in chunk]  # a comma and a newline in each
            table = pa.table({"custom_id": ids, "text": rows, "amount": list(range(len(chunk)))})
            pacsv.write_csv(table, out, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
            lines.write(
                b"".join(orjson.dumps({"custom_id": i, "text": t}) + b"\n" for i, t in zip(ids, rows, strict=True))
            )
            n += len(chunk)


def peak_mb() -> float:
    """The process's peak resident memory (``VmHWM``; ``getrusage`` where there is no /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return peak_mb()


def measure(path: str) -> dict[str, Any]:
    """In a fresh process: the scan and one more pass, timed, and the memory they took."""
    from producer.input.readers import FileSource  # here: the base RSS counts them
    from producer.input.tables import TableSource, is_table_input

    base = rss_mb()
    started = time.perf_counter()
    source = TableSource.open(path) if is_table_input(path) else FileSource.open(Path(path))
    scanned = time.perf_counter()
    read = sum(1 for _ in source.lines())
    done = time.perf_counter()
    assert not source.scan.errors, source.scan.errors[:3]
    assert read == source.count
    return {"rows": read, "scan_s": scanned - started, "read_s": done - scanned, "base_mb": base, "peak_mb": peak_mb()}


def run_measure(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.inputs", "--measure", str(path)], cwd=REPO, capture_output=True, check=True
    )
    found: dict[str, Any] = orjson.loads(done.stdout)
    return found


def main(args: argparse.Namespace) -> None:
    folder = Path(args.workdir or tempfile.mkdtemp(prefix="bench-inputs-"))
    folder.mkdir(parents=True, exist_ok=True)
    grouped, single = folder / "grouped.parquet", folder / "one-group.parquet"
    csv, jsonl, many = folder / "rows.csv", folder / "rows.jsonl", folder / "many.parquet"
    console = Console(width=130)
    try:
        with console.status("writing the inputs"):
            write_parquet(grouped, args.rows, args.text_bytes, one_group=False)
            if not args.grouped_only:
                write_parquet(single, args.rows, args.text_bytes, one_group=True)
                write_csv_and_jsonl(csv, jsonl, args.csv_mb, args.text_bytes)
            if args.many_rows:
                write_parquet(many, args.many_rows, 16, one_group=False)
        table = Table(
            title="reading an input: each in a fresh process (scan = every row checked; read = one more pass)"
        )
        for column in (
            "input",
            "MB",
            "rows",
            "scan s",
            "scan rows/s",
            "read s",
            "read rows/s",
            "RSS base MB",
            "peak MB",
        ):
            table.add_column(column, justify="left" if column == "input" else "right")
        inputs = [(f"Parquet, {GROUP_ROWS // 1024} Ki-row groups", grouped)]
        if not args.grouped_only:
            inputs += [
                ("Parquet, one row group", single),
                ("CSV (quoted newlines)", csv),
                ("JSONL, the CSV's rows", jsonl),
            ]
        for name, path in inputs + ([("Parquet, 16-byte texts", many)] if args.many_rows else []):
            found = run_measure(path)
            table.add_row(
                name,
                f"{path.stat().st_size / 1e6:,.0f}",
                f"{found['rows']:,}",
                f"{found['scan_s']:.1f}",
                f"{found['rows'] / found['scan_s']:,.0f}",
                f"{found['read_s']:.1f}",
                f"{found['rows'] / found['read_s']:,.0f}",
                f"{found['base_mb']:.0f}",
                f"{found['peak_mb']:.0f}",
            )
        console.print(table)
    finally:
        if not args.keep and not args.workdir:
            for path in (grouped, single, csv, jsonl, many):
                path.unlink(missing_ok=True)
            os.rmdir(folder)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--text-bytes", type=int, default=1000)
    parser.add_argument("--csv-mb", type=int, default=300)
    parser.add_argument("--many-rows", type=int, default=0, help="Also a Parquet file of this many short rows.")
    parser.add_argument(
        "--grouped-only",
        action="store_true",
        help="Only the Parquet file in row groups (at 10 GB its one-group twin would be built in memory).",
    )
    parser.add_argument("--workdir", help="Write the inputs here and keep them (default: a scratch folder).")
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder.")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.measure:
        print(orjson.dumps(measure(parsed.measure)).decode())
    else:
        main(parsed)
