"""Parquet and CSV inputs, on a disk or on S3, one file or a glob of them: each row is a line, read as a stream.

``INPUT`` names tables when it is an ``s3://`` URL, a glob pattern (``'data/part-*.parquet'``, quoted so the shell
leaves it; ``**`` spans folders) or a file ending in ``.parquet``/``.pq`` (Parquet) or ``.csv``/``.csv.gz`` (CSV).
A glob's files are read in sorted path order as one input, and must all be of one format.

Design note. A row is made into the object a JSONL line would parse to -- ``{id_field: ..., text_field: ...,
files_field: ..., ...}`` with the columns ``LineShape`` names, a null cell left out as a missing field -- and checked
by ``producer.input.readers.scan_objects``, the code that checks every native JSONL line: the same rules (an integer
id is its decimal string, an empty or missing text is an error, duplicates are found across the whole input), the
same ``check``. Only the numbering differs: rows are numbered 1, 2, ... across the whole input in file order (that
number is the line's ``line``, unique in the input, and what later passes skip by), and every error and every line
names its place as ``row 17 of data/part-2.parquet``, the row's number within its own file (CSV: after the header;
a quoted newline does not start a row). A line's *ordinal* is its position among the valid rows, so every pass --
scan, index, feed, retry, resubmit -- numbers them alike, as ``FileSource`` does.

Nothing is held: each pass opens the files again and reads them in record batches (Parquet: only the named
columns, :data:`READ_BUFFER` bytes of a column chunk at a time, so a row group of a gigabyte is never read whole, and
at most :data:`BATCH_BYTES` of rows decoded at once; CSV: ``pyarrow.csv.open_csv``, a block at a time, every named
column read as a string so an id ``007`` keeps its zeros). The filesystem is ``store.objects``' (``open_location``),
configured from the ``AWS_*`` variables. ``describe()`` records the input as given (a local one made absolute) and
the files it matched, never a credential; ``retry`` reads exactly those files again, so files that appear later
under a glob change nothing. A later pass checks each file still has the rows it had.

What a table names: relative ``files`` are relative to the table file's folder (and must stay below it, as for a
JSONL file). On S3 they would have to be fetched from the bucket, which we never do for what a user's data names, so
an S3 table's ``files`` must be absolute local paths, and (for the same reason a JSONL line cannot name
``/etc/passwd``) below the current directory, as for standard input.

An input that cannot be read at all -- no such file or object, a glob matching nothing, a missing column, a corrupt
file, S3 failing after its retries -- is a :class:`TableInputError` naming it, during any pass.
"""

from __future__ import annotations

import glob as globbing
import os
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from producer.errors import InputError
from producer.input.readers import (
    DocumentCheck,
    InputLine,
    InputScan,
    LineError,
    LineShape,
    scan_objects,
    valid_objects,
)
from store.objects import Location, LocationError, is_remote, open_location

TableKind = Literal["parquet", "csv"]

SUFFIXES: dict[str, TableKind] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".csv.gz": "csv"}
READ_BUFFER = 1 << 20
"""Bytes of a Parquet column chunk read at a time (unbuffered, pyarrow reads a row group's chunk whole)."""
BATCH_BYTES = 8 << 20
"""About this many bytes of rows decoded at once (by the row group's mean row size), and at most BATCH_ROWS rows."""
BATCH_ROWS = 1024
CSV_BLOCK = 1 << 20
"""A CSV is parsed a block at a time, and pyarrow reads up to about 40 blocks ahead: 1 MiB blocks keep that near
40 MB. A row must fit in a block: a file with a longer row is read again (from where it was) with blocks 4 times
larger, up to CSV_MAX_BLOCK (its memory grows alike; the default document limit is 1 MB)."""
CSV_MAX_BLOCK = 16 << 20
CSV_HEADER_BLOCK = 64 << 10
"""The header is read with small blocks (the same read-ahead costs 40 times less), grown like the others."""
SHOWN_COLUMNS = 20
DEFAULT_SHAPE = LineShape()


class TableInputError(InputError):
    """A table input that cannot be read at all (missing, corrupt, a missing column, S3 failing); names it."""


def table_kind(name: str) -> TableKind | None:
    """The format a file's name says, or None."""
    lower = name.lower()
    return next((kind for suffix, kind in SUFFIXES.items() if lower.endswith(suffix)), None)


def has_magic(text: str) -> bool:
    return any(char in text for char in "*?[")


def is_table_location(text: str) -> bool:
    """An ``s3://`` URL or a glob pattern (not an existing path): tables, found when they are read."""
    return is_remote(text) or (has_magic(text) and not os.path.lexists(text))


def is_table_input(location: str | os.PathLike[str]) -> bool:
    """Whether ``INPUT`` names tables (module note) rather than a JSONL file, a folder or standard input."""
    text = os.fspath(location)
    return is_table_location(text) or (table_kind(text) is not None and not os.path.isdir(text))


@dataclass(frozen=True)
class TableFile:
    shown: str
    """As messages name it: as matched (``data/part-2.parquet``), or its ``s3://`` URL."""
    path: str
    """In the filesystem: an absolute local path, or ``bucket/key``."""

    @property
    def recorded(self) -> str:
        return self.shown if is_remote(self.shown) else self.path


@dataclass
class TableSource:
    """The valid rows of one or more tables, read from their files each time they are needed (module note)."""

    input: str
    """The input as given (a pattern, a URL, a path)."""
    location: Location
    kind: TableKind
    files: tuple[TableFile, ...]
    shape: LineShape = DEFAULT_SHAPE
    check: DocumentCheck | None = None
    scan: InputScan = field(default_factory=InputScan)
    starts: list[int] = field(default_factory=list)
    """Rows before each file (from the first pass): row ``n`` of the input is in the last file starting before it."""
    total: int = 0
    """Rows in all the files (valid or not), from the first pass."""
    _shapes: list[LineShape] = field(default_factory=list)
    """Each file's shape: its own folder for relative ``files`` (an S3 table's: the current directory)."""
    _columns_of: dict[int, list[str]] = field(default_factory=dict)
    """Each file's columns read (a CSV's header is read once, by the first pass)."""
    _last: int = 0
    """The file of the row last asked about (rows are asked about in order: no search for most)."""

    @classmethod
    def open(
        cls, location: str | os.PathLike[str], *, shape: LineShape = DEFAULT_SHAPE, check: DocumentCheck | None = None
    ) -> TableSource:
        """Find the files ``location`` names and check every row (``scan.errors``); raises TableInputError when the
        input cannot be read at all."""
        text = os.fspath(location)
        if is_remote(text) and "?" in text:  # else the URL's query, which open_location refuses for another reason
            raise TableInputError(f"{text}: an S3 URL cannot hold '?' (it starts a URL's query): use * or [...]")
        where = _open_location(text)
        if is_remote(text):
            paths = _s3_matches(where) if has_magic(where.root) else [_s3_object(where)]
            files = [TableFile(f"s3://{path}", path) for path in paths]
        else:
            files = [TableFile(match, os.path.abspath(match)) for match in _local_matches(text)]
        return cls._scanned(text, where, files, shape, check)

    @classmethod
    def reopen(cls, recorded: dict[str, Any], *, shape: LineShape, check: DocumentCheck | None = None) -> TableSource:
        """The input a batch recorded (its ``describe()``): the same files, not the glob matched again."""
        names = recorded.get("files")
        text = str(recorded.get("input", ""))
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise TableInputError(f"batch records table input {text!r} without its files: retry with --input")
        where = _open_location(names[0])
        files = [TableFile(name, _open_location(name).root if is_remote(name) else name) for name in names]
        for file in files:
            if _file_type(where, file.shown, file.path) != pafs.FileType.File:
                raise TableInputError(f"{file.shown}: no such file, and the batch was submitted from it (--input)")
        return cls._scanned(text, where, files, shape, check)

    @classmethod
    def _scanned(
        cls, text: str, where: Location, files: list[TableFile], shape: LineShape, check: DocumentCheck | None
    ) -> TableSource:
        kinds = {table_kind(file.path) for file in files}
        if None in kinds:
            odd = next(file.shown for file in files if table_kind(file.path) is None)
            raise TableInputError(f"{text}: {odd} is not a Parquet (.parquet, .pq) or CSV (.csv, .csv.gz) file")
        if len(kinds) > 1:
            raise TableInputError(f"{text}: matches both Parquet and CSV files; one input is of one format")
        kind: TableKind = "parquet" if kinds == {"parquet"} else "csv"
        source = cls(text, where, kind, tuple(sorted(files, key=lambda f: f.path)), shape, check)
        base = None if where.is_local else Path.cwd()
        source._shapes = [replace(shape, base_dir=base or Path(file.path).parent) for file in source.files]
        source.scan = scan_objects(source._objects, shape=source._shape, check=check, fmt="native", where=source.where)
        return source

    # ------------------------------------------------------------------------------------------ the LineSource
    @property
    def count(self) -> int:
        return self.scan.count

    first_ordinal = 0

    def lines(self) -> Iterator[InputLine]:
        return valid_objects(
            self._objects(None), fmt="native", shape=self._shape, skip=self.scan.invalid_lines, where=self.where
        )

    def describe(self) -> dict[str, Any]:
        given = self.input if is_remote(self.input) else os.path.abspath(self.input)
        files = [file.recorded for file in self.files]
        return {"table": self.kind, "input": given, "files": files, **self.shape.describe()}

    def where(self, number: int) -> str:
        """``row 17 of data/part-2.parquet``: row ``number`` of the input, by its place in its own file."""
        index = self._file_index(number)
        return f"row {number - self.starts[index]} of {self.files[index].shown}"

    # ------------------------------------------------------------------------------------------------ reading
    def _file_index(self, number: int) -> int:
        starts, last = self.starts, self._last
        if starts[last] < number and (last + 1 == len(starts) or number <= starts[last + 1]):
            return last
        self._last = max(0, bisect_right(starts, number - 1) - 1)
        return self._last

    @property
    def _shape(self) -> LineShape | Callable[[int], LineShape]:
        """One file's shape, or each row's by its file."""
        return self._shapes[0] if len(self._shapes) == 1 else self._shape_at

    def _shape_at(self, number: int) -> LineShape:
        return self._shapes[self._file_index(number)]

    def _objects(self, scan: InputScan | None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(row number, object) of every row of every file; the first pass (``scan`` given) records where each file
        starts, later ones check each file still has its rows."""
        first_pass = not self.starts
        number = 0
        for index, file in enumerate(self.files):
            if first_pass:
                self.starts.append(number)
            start = number
            for obj in self._rows(index, file):
                number += 1
                problem = None if self.location.is_local else self._remote_files(obj)
                if problem is None:
                    yield number, obj
                elif scan is not None:
                    scan.add_error(LineError(number, problem, where=self.where(number)))
            if first_pass:
                self.total = number
            else:
                had = (self.starts[index + 1] if index + 1 < len(self.starts) else self.total) - start
                if number - start != had:
                    raise TableInputError(
                        f"{file.shown} changed since it was read: {had:,} row(s) then, {number - start:,} now"
                    )

    def _remote_files(self, obj: dict[str, Any]) -> str | None:
        """Why an S3 table's ``files`` cannot be read (module note), or None."""
        name = self.shape.files_field
        value = obj.get(name)
        if not value:
            return None
        cwd = os.path.abspath(os.getcwd())
        for entry in value if isinstance(value, list) else [value]:
            if not isinstance(entry, str):
                continue  # the usual check says what is wrong with it
            if not os.path.isabs(entry):
                return (
                    f"field {name!r}: {entry!r} is relative, and an S3 table's files are absolute local paths "
                    "(nothing a table names is fetched from S3)"
                )
            if os.path.commonpath([cwd, os.path.abspath(entry)]) != cwd:
                return (
                    f"field {name!r}: {entry!r} is not below the current directory {cwd}, where an S3 table's files "
                    "are read from (as for standard input): run from a folder that holds them"
                )
        return None

    def _rows(self, index: int, file: TableFile) -> Iterator[dict[str, Any]]:
        """The file's rows as objects: its named columns, nulls left out."""
        try:
            for batch in self._batches(index, file):
                names = batch.schema.names
                for values in zip(*(column.to_pylist() for column in batch.columns), strict=True):
                    yield {name: value for name, value in zip(names, values, strict=True) if value is not None}
        except (OSError, pa.ArrowException) as exc:
            reason = _one_line(exc)
            if _straddles(exc):
                reason = f"a row is longer than {CSV_MAX_BLOCK >> 20} MiB, the most a CSV row may hold (use Parquet)"
            raise TableInputError(f"cannot read {file.shown}: {reason}") from None

    def _batches(self, index: int, file: TableFile) -> Iterator[Any]:
        if self.kind == "parquet":
            with self.location.fs.open_input_file(file.path) as handle:
                # buffer_size: read a column chunk a piece at a time (else pyarrow reads a row group's chunk whole)
                parquet = pq.ParquetFile(handle, buffer_size=READ_BUFFER, pre_buffer=False)
                columns = self._columns(file, parquet.schema_arrow.names)
                yield from parquet.iter_batches(
                    batch_size=_batch_rows(parquet.metadata), columns=columns, use_threads=False
                )
            return
        if index not in self._columns_of:
            self._columns_of[index] = self._csv_columns(file)
        columns = self._columns_of[index]
        if not columns:  # a file of no bytes: no header, no rows
            return
        convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(columns, pa.string()),
            include_columns=columns,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        block, done = CSV_BLOCK, 0
        while True:  # once more with larger blocks, from the row it got to, for a row longer than a block
            try:
                with self.location.fs.open_input_stream(file.path) as handle:  # .gz: decompressed as it is read
                    skip = done
                    for batch in pacsv.open_csv(handle, _csv_read(block), _CSV_PARSE, convert):
                        if skip:
                            cut = min(skip, batch.num_rows)
                            batch, skip = batch.slice(cut), skip - cut
                        done += batch.num_rows
                        yield batch
                return
            except pa.ArrowInvalid as exc:
                if not _straddles(exc) or block >= CSV_MAX_BLOCK:
                    raise
                block *= 4

    def _csv_columns(self, file: TableFile) -> list[str]:
        """The columns to read from a CSV, by its header; none for a file with no header (no rows, not an error)."""
        block = CSV_HEADER_BLOCK
        while True:
            try:
                with self.location.fs.open_input_stream(file.path) as handle:
                    header = pacsv.open_csv(handle, _csv_read(block), _CSV_PARSE).schema.names
                return self._columns(file, header)
            except pa.ArrowInvalid as exc:
                if "Empty CSV file" in str(exc):
                    return []
                if not _straddles(exc) or block >= CSV_MAX_BLOCK:
                    raise
                block *= 4

    def _columns(self, file: TableFile, names: list[str]) -> list[str]:
        """The columns the shape names that the file has; a TableInputError if it lacks the id or any document."""
        shape, present = self.shape, set(names)
        listed = ", ".join(repr(name) for name in names[:SHOWN_COLUMNS]) + (
            ", ..." if len(names) > SHOWN_COLUMNS else ""
        )
        if shape.id_field not in present:
            raise TableInputError(
                f"{file.shown}: no column {shape.id_field!r} for the ids (set another with --id-field); "
                f"its columns: {listed}"
            )
        wanted = [shape.id_field, shape.text_field, shape.files_field, shape.urls_field, shape.file_ids_field]
        columns = list(dict.fromkeys(name for name in wanted if name in present))
        if len(columns) == 1:
            raise TableInputError(
                f"{file.shown}: no column {shape.text_field!r} for the text (set another with --text-field), nor "
                f"{shape.files_field!r}, {shape.urls_field!r} or {shape.file_ids_field!r}; its columns: {listed}"
            )
        return columns


_CSV_PARSE = pacsv.ParseOptions(newlines_in_values=True)  # a quoted value may hold a newline


def _csv_read(block: int) -> Any:
    return pacsv.ReadOptions(block_size=block, use_threads=False)


def _straddles(exc: BaseException) -> bool:
    """pyarrow's words for a CSV row longer than a block."""
    return "straddl" in str(exc)


def _batch_rows(metadata: Any) -> int:
    """Rows per record batch: BATCH_BYTES by the widest row group's mean row size (all columns: an upper bound of
    the ones read), at most BATCH_ROWS."""
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    widest = max((group.total_byte_size / max(1, group.num_rows) for group in groups), default=1.0)
    return max(1, min(BATCH_ROWS, int(BATCH_BYTES // max(1.0, widest))))


def _open_location(text: str) -> Location:
    try:
        return open_location(text)
    except LocationError as exc:
        raise TableInputError(str(exc)) from None


def _local_matches(text: str) -> list[str]:
    """The local files ``text`` names: itself, or what the glob matches (files only, sorted)."""
    if not is_table_location(text):
        if not os.path.isfile(text):
            raise TableInputError(f"{text}: no such file")
        matches = [text]
    else:
        matches = sorted(m for m in globbing.glob(text, recursive=True) if os.path.isfile(m))
        if not matches:
            raise TableInputError(f"{text}: no file matches")
    for match in matches:
        try:
            os.path.abspath(match).encode("utf-8")
        except UnicodeEncodeError:
            raise TableInputError(
                f"{os.fsencode(match).decode('utf-8', 'backslashreplace')}: its path is not valid UTF-8, and a batch "
                "records where its input is: rename it"
            ) from None
    return matches


def _s3_object(where: Location) -> str:
    """The one object a URL names (TableInputError if it is not there)."""
    if _file_type(where, where.url, where.root) != pafs.FileType.File:
        raise TableInputError(f"{where.url}: no such object (or no such bucket, or hidden from these credentials)")
    return str(where.root)


def _file_type(where: Location, shown: str, path: str) -> Any:
    try:
        return where.fs.get_file_info(path).type
    except (OSError, pa.ArrowException) as exc:
        raise TableInputError(f"cannot read {shown}: {_one_line(exc)}") from None


def _s3_matches(where: Location) -> list[str]:
    """The objects a pattern (``bucket/in/*.csv``, ``**`` for any depth) matches, sorted by key."""
    parts = where.root.split("/")
    fixed = next(i for i, part in enumerate(parts) if has_magic(part))
    if fixed == 0:
        raise TableInputError(f"{where.url}: the bucket name cannot be a pattern")
    recursive = fixed < len(parts) - 1 or "**" in parts
    selector = pafs.FileSelector("/".join(parts[:fixed]), recursive=recursive, allow_not_found=True)
    try:
        infos = where.fs.get_file_info(selector)
    except (OSError, pa.ArrowException) as exc:
        raise TableInputError(f"cannot list {where.url}: {_one_line(exc)}") from None
    found = sorted(
        str(info.path) for info in infos if info.type == pafs.FileType.File and _matches(info.path.split("/"), parts)
    )
    if not found:
        raise TableInputError(f"{where.url}: no object matches")
    return found


def _matches(path: list[str], pattern: list[str]) -> bool:
    """A key's parts against a pattern's: each part by ``fnmatch`` (``*`` stays within a part), ``**`` any parts."""
    if not pattern:
        return not path
    if pattern[0] == "**":
        return any(_matches(path[i:], pattern[1:]) for i in range(len(path) + 1))
    return bool(path) and fnmatchcase(path[0], pattern[0]) and _matches(path[1:], pattern[1:])


def _one_line(exc: BaseException) -> str:
    return re.sub(r"\s+", " ", str(exc) or type(exc).__name__).strip()
