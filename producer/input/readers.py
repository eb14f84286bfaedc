"""Read and validate an input file in bounded memory. Every problem gets its line number.

Three forms of input:

- native JSONL: one JSON object per line with an id field and a text field, and/or attachments: ``files`` (paths
  relative to the input file), ``urls`` (``http(s)`` or ``data:`` URLs), ``file_ids`` (OpenAI file ids), each a string
  or a list (every field name configurable: :class:`LineShape`; ``producer.input.documents`` reads and checks them);
- OpenAI Batch API input (detected from the first non-blank line): ``{"custom_id", "method", "url", "body"}``, where
  the document is the last user message of a Chat Completions body (``messages``) or the ``input`` of a Responses
  body: its text and its image and file parts;
- a folder (:class:`FolderSource`): each file a document, its relative path the custom_id, in path order.

A file is read more than once and never held in memory: ``scan_input`` checks every line first (nothing is written
for a file with a bad line, unless invalid lines are skipped; besides the checks here, a caller's ``check`` can
refuse a document, as submit's preflight does for one over the size limits of ``schemas.input_limits``), then
:class:`FileSource` yields the valid lines again whenever the batch needs their text (index, feed, retry). A line's
*ordinal* is its position among the valid lines, so every pass numbers the lines alike (a pass that reopens the file
must give it the same ``check``). Duplicate ids are found with 48-bit keys of their hashes (5 bytes per line,
looked through 1/256 at a time) and confirmed by comparing the ids themselves, so a hash collision is never reported
as a duplicate. A table (Parquet, CSV; ``producer.input.tables``) is checked by the same rules: each row is made into
the object a JSONL line would parse to (``scan_objects``).

An input that can be read only once -- standard input (``-``) or a named pipe (``<(zcat in.jsonl.gz)``) -- is copied
first, in 1 MiB chunks, into a private temporary file that has no name (``tempfile.TemporaryFile``: it goes when the
process does, killed or not), and every pass reads that copy, each at its own position. Its ``files`` are relative to
the current directory, and since nothing can read it again, ``retry`` needs ``--input``.

Every read is bounded: a line is read to at most :data:`MAX_LINE_BYTES` + 1 bytes (a longer one is a bad line and the
rest of it is skipped, never held), and what a line or a folder names is opened as ``producer.input.documents`` says:
only regular files, to at most their limit + 1 byte. A path the batch would record (the input's, a folder's file as its
custom_id) must be valid UTF-8; one that is not is a bad line before anything is written.
"""

from __future__ import annotations

import io
import os
import stat
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Protocol

import orjson

from producer.input.documents import (
    AttachmentError,
    FolderEntry,
    LocalAttachment,
    Together,
    check_glob,
    check_together,
    folder_entries,
    from_data_url,
    from_file,
    from_file_id,
    from_url,
    open_regular,
    read_folder_file,
    shown_path,
)
from schemas.attachments import Attachment
from schemas.jobs import ApiKind, BatchSpec

InputFormat = Literal["native", "openai-batch", "folder"]

_BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})
MAX_ID_LENGTH = 256
MAX_KEPT_ERRORS = 1000
"""Errors kept with their text; beyond this only counted (a file of garbage must not fill the memory)."""
MAX_LINE_BYTES = 512 * 1024 * 1024
"""The longest line read: a line is one request, and the API takes at most 512 MB of payload per request (images
included, ``OPENAI-FACTS.md`` section 1), so a longer line could never be sent; it is a bad line, never held whole."""
SPOOL_CHUNK = 1 << 20

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer


@dataclass(frozen=True)
class InputLine:
    line: int
    """1-based line number in the file (a folder: the file's position)."""
    custom_id: str
    text: str
    attachments: tuple[LocalAttachment, ...] = ()
    where: str | None = None
    """Names the place when the line number would not (a table's row: ``row 17 of data/part-2.parquet``)."""

    @property
    def place(self) -> str:
        """Where the line is, as a message says it: ``line 17``, or ``where``."""
        return self.where or f"line {self.line}"

    @property
    def described(self) -> tuple[Attachment, ...]:
        """The attachments as a job carries them (what the fingerprint covers)."""
        return tuple(a.attachment for a in self.attachments)


@dataclass(frozen=True)
class LineError:
    line: int
    reason: str
    where: str | None = None
    """Names the place when a line number would not (a folder's file)."""

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}" if self.where else f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class LineShape:
    """Where a native line keeps its parts (``--id-field``, ``--text-field``, ``--files-field`` ...), where its
    files are relative to, and which API the batch uses (Chat Completions takes fewer kinds of attachment)."""

    id_field: str = "custom_id"
    text_field: str = "text"
    files_field: str = "files"
    urls_field: str = "urls"
    file_ids_field: str = "file_ids"
    base_dir: Path | None = None
    """Relative ``files`` are found here (the input file's folder); None: the current directory."""
    api: ApiKind = "responses"

    def describe(self) -> dict[str, str]:
        return {
            "id_field": self.id_field,
            "text_field": self.text_field,
            "files_field": self.files_field,
            "urls_field": self.urls_field,
            "file_ids_field": self.file_ids_field,
        }

    @classmethod
    def recorded(cls, data: dict[str, Any], *, base_dir: Path | None, api: ApiKind) -> LineShape:
        """The shape a batch was submitted with (its ``input`` record), for reading the input again."""
        names = {k: str(v) for k, v in data.items() if k in cls.__dataclass_fields__ and k.endswith("_field")}
        return cls(**names, base_dir=base_dir, api=api)


@dataclass
class InputScan:
    """What a first pass over the input found."""

    format: InputFormat = "native"
    count: int = 0
    """Valid lines."""
    errors: list[LineError] = field(default_factory=list)
    """The first ``MAX_KEPT_ERRORS`` problems, in line order."""
    error_count: int = 0
    invalid_lines: set[int] = field(default_factory=set)
    """Line numbers of every invalid line (skipped by later passes, so ordinals agree)."""

    def add_error(self, error: LineError) -> None:
        self.error_count += 1
        self.invalid_lines.add(error.line)
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)


class LineSource(Protocol):
    """The valid lines of an input, in order, as often as they are asked for."""

    @property
    def count(self) -> int:
        """The ordinal after the last line: how many lines the batch has once these are in it."""
        ...

    @property
    def first_ordinal(self) -> int:
        """The ordinal of the first line ``lines()`` yields (0 for a whole input)."""
        ...

    def lines(self) -> Iterator[InputLine]: ...

    def describe(self) -> dict[str, Any] | None:
        """Where the lines can be read again (recorded with the batch for ``retry``); None if nowhere."""
        ...


RawLines = Callable[[], Iterable[bytes]]
"""Opens the input anew: each call yields its raw lines from the start."""
OpenObjects = Callable[["InputScan | None"], Iterable[tuple[int, dict[str, Any]]]]
"""Opens the input anew: each call yields (number, object) of its lines from the start, numbers ascending; a line
that is no object is an error in the scan given (None: a later pass, which only skips it). A JSONL file's lines are
parsed by ``_objects``; a table's rows are made into the same objects (``producer.input.tables``)."""
Places = Callable[[int], str]
"""Says where line ``number`` is, when its number would not (``row 17 of data/part-2.parquet``)."""
Shapes = Callable[[int], "LineShape"]
"""The shape of line ``number`` (a glob of tables: its own file's folder for relative ``files``)."""
DocumentCheck = Callable[[InputLine], str | None]
"""A further check of a well-formed line's document (text and attachments): the reason it is refused, or None."""
LineCheck = Callable[[dict[str, Any]], str | None]
"""A further check of a well-formed line's whole object (an OpenAI Batch line's ``body``): the reason, or None."""


def scan_input(
    open_lines: RawLines,
    *,
    shape: LineShape = LineShape(),
    check: DocumentCheck | None = None,
    batch_check: LineCheck | None = None,
) -> InputScan:
    """Check every line, collecting all errors rather than stopping at the first (users fix them in one go).

    ``check`` runs on the document of every line that is otherwise valid, ``batch_check`` on the whole object of a
    line in the OpenAI Batch format (a native line may well have a ``body`` field of its own); a reason either
    returns makes the line invalid (reported with its number, skipped by later passes) like any other problem.
    """
    return scan_objects(lambda scan: _objects(open_lines(), scan), shape=shape, check=check, batch_check=batch_check)


def scan_objects(
    open_objects: OpenObjects,
    *,
    shape: LineShape | Shapes = LineShape(),
    check: DocumentCheck | None = None,
    batch_check: LineCheck | None = None,
    fmt: InputFormat | None = None,
    where: Places | None = None,
) -> InputScan:
    """``scan_input`` over objects: every line checked by the same rules, whatever it was read from. ``fmt`` None:
    detected from the first object; ``where`` names the place of each error (else its line number does); ``shape``
    may differ by line."""
    scan = InputScan(format=fmt or "native")
    format_known = fmt is not None
    seen = _SeenIds()
    shape_at = _shape_at(shape)
    for number, obj in open_objects(scan):
        if not format_known:
            scan.format = "openai-batch" if obj.keys() >= _BATCH_KEYS else "native"
            format_known = True
        result = _parse(obj, number, scan.format, shape_at(number))
        if (
            isinstance(result, InputLine)
            and scan.format == "openai-batch"
            and batch_check is not None
            and (reason := batch_check(obj)) is not None
        ):
            result = LineError(number, reason)
        if isinstance(result, InputLine) and check is not None and (reason := check(result)) is not None:
            result = LineError(number, reason)
        if isinstance(result, LineError):
            scan.add_error(result if where is None else replace(result, where=where(number)))
            continue
        seen.add(_id_key(result.custom_id))
        scan.count += 1
    suspects = seen.repeated()
    del seen  # 5 bytes a line: gone before the confirming pass reads the input again
    if suspects:
        _confirm_duplicates(open_objects, scan, suspects, shape_at, where)
    if scan.count == 0 and scan.error_count == 0:
        scan.add_error(LineError(0, "the input has no lines"))
    scan.errors.sort(key=lambda e: e.line)
    return scan


def _shape_at(shape: LineShape | Shapes) -> Shapes:
    if callable(shape):
        return shape
    return lambda _number: shape


ID_KEY_BITS = 48
"""Bits of an id's hash the duplicate check keeps: at ten million ids a false suspect is expected once in about five
inputs, and a suspect only costs the confirming pass (which compares the ids themselves)."""
_ID_KEY_MASK = (1 << ID_KEY_BITS) - 1
_STORED_BYTES = (ID_KEY_BITS - 8) // 8


def _id_key(custom_id: str) -> int:
    return hash(custom_id) & _ID_KEY_MASK


class _SeenIds:
    """The 48-bit keys (:func:`_id_key`) of the ids seen, in 256 byte arrays by their low byte, each key's other 5
    bytes stored: 5 bytes per id (a set of them all would take about 64 bytes per id: 640 MB for ten million lines;
    64-bit hashes in arrays took 8). ``repeated`` finds the keys seen more than once a bucket at a time, so only one
    bucket's set (1/256 of the ids) is ever in memory."""

    def __init__(self) -> None:
        self._buckets = [bytearray() for _ in range(256)]

    def add(self, key: int) -> None:
        self._buckets[key & 0xFF] += (key >> 8).to_bytes(_STORED_BYTES, "little")

    def repeated(self) -> set[int]:
        suspects: set[int] = set()
        for low, bucket in enumerate(self._buckets):
            data = bytes(bucket)
            seen: set[bytes] = set()
            for start in range(0, len(data), _STORED_BYTES):
                high = data[start : start + _STORED_BYTES]
                if high in seen:
                    suspects.add(int.from_bytes(high, "little") << 8 | low)
                seen.add(high)
        return suspects


def _confirm_duplicates(
    open_objects: OpenObjects, scan: InputScan, suspects: set[int], shape_of: Shapes, where: Places | None
) -> None:
    """Second look at ids whose hash repeated: the later occurrences of an id really seen before are errors."""
    first_line: dict[str, int] = {}
    for number, obj in open_objects(None):
        if number in scan.invalid_lines:
            continue
        result = _parse(obj, number, scan.format, shape_of(number), inspect=False)
        if isinstance(result, LineError) or _id_key(result.custom_id) not in suspects:
            continue
        if result.custom_id in first_line:
            first = first_line[result.custom_id]
            first_place = where(first) if where is not None else f"line {first}"
            reason = f"duplicate id {result.custom_id!r} (first on {first_place})"
            scan.add_error(LineError(number, reason, where=where(number) if where is not None else None))
            scan.count -= 1
        else:
            first_line[result.custom_id] = number


def valid_lines(
    raw_lines: Iterable[bytes], *, fmt: InputFormat, shape: LineShape = LineShape(), skip: set[int]
) -> Iterator[InputLine]:
    """The valid lines again (the ones ``scan_input`` accepted), in order."""
    return valid_objects(_objects(raw_lines, None), fmt=fmt, shape=shape, skip=skip)


def valid_objects(
    objects: Iterable[tuple[int, dict[str, Any]]],
    *,
    fmt: InputFormat,
    shape: LineShape | Shapes = LineShape(),
    skip: set[int],
    where: Places | None = None,
) -> Iterator[InputLine]:
    """The valid lines again from their objects (the ones ``scan_objects`` accepted), in order; each placed by
    ``where`` when given."""
    shape_at = _shape_at(shape)
    for number, obj in objects:
        if number in skip:
            continue
        result = _parse(obj, number, fmt, shape_at(number))
        if isinstance(result, InputLine):
            if where is not None:
                result = InputLine(result.line, result.custom_id, result.text, result.attachments, where(number))
            yield result


@dataclass(frozen=True)
class FileSource:
    """The valid lines of a JSONL file, read from disk each time they are needed (or from its spooled copy)."""

    path: Path
    scan: InputScan
    shape: LineShape = LineShape()
    spool: Spool | None = None
    """The input's bytes when it could be read only once (standard input, a pipe)."""

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        shape: LineShape = LineShape(),
        check: DocumentCheck | None = None,
        batch_check: LineCheck | None = None,
    ) -> FileSource:
        """Scan ``path`` once (check every line, and each with ``check``/``batch_check`` if given); see
        ``scan.errors``. Relative ``files`` are found beside ``path`` unless ``shape`` says otherwise. A named pipe
        is spooled (see the module docstring); anything else but a regular file is refused as the scan's error."""
        try:
            mode = os.stat(path).st_mode
        except OSError as exc:
            return cls(path, _refused(path, f"cannot read it ({exc.strerror or exc})"), shape)
        if stat.S_ISFIFO(mode):
            try:
                stream = path.open("rb")  # blocks until the pipe has a writer, as reading a named pipe does
            except OSError as exc:
                return cls(path, _refused(path, f"cannot read it ({exc.strerror or exc})"), shape)
            with stream:
                return cls.from_stream(stream, path=path, shape=shape, check=check, batch_check=batch_check)
        if not stat.S_ISREG(mode):
            return cls(path, _refused(path, "not a regular file or a pipe"), shape)
        problem = _unrecordable(path, "rename it, or give the input on standard input (-)")
        if problem is not None:
            return cls(path, _refused(path, problem), shape)
        if shape.base_dir is None:
            shape = replace(shape, base_dir=path.resolve().parent)
        try:
            scan = scan_input(lambda: _read_lines(path), shape=shape, check=check, batch_check=batch_check)
        except AttachmentError as exc:  # the input itself cannot be opened (permissions, swapped for a pipe)
            return cls(path, _refused(path, str(exc).removeprefix(f"{path}: ")), shape)
        return cls(path, scan, shape)

    @classmethod
    def from_stream(
        cls,
        stream: BinaryIO,
        *,
        path: Path = Path("-"),
        shape: LineShape = LineShape(),
        check: DocumentCheck | None = None,
        batch_check: LineCheck | None = None,
    ) -> FileSource:
        """Spool ``stream`` (standard input, a pipe) and scan the copy; relative ``files`` are found in the current
        directory unless ``shape`` says otherwise."""
        if shape.base_dir is None:
            shape = replace(shape, base_dir=Path.cwd().resolve())
        try:
            spool = Spool(stream)
        except OSError as exc:  # a read error, or no room for the copy
            return cls(path, _refused(path, f"cannot keep a copy of it to read ({exc.strerror or exc})"), shape)
        scan = scan_input(spool.lines, shape=shape, check=check, batch_check=batch_check)
        return cls(path, scan, shape, spool)

    @property
    def count(self) -> int:
        return self.scan.count

    first_ordinal = 0

    def lines(self) -> Iterator[InputLine]:
        raw = self.spool.lines() if self.spool is not None else _read_lines(self.path)
        return valid_lines(raw, fmt=self.scan.format, shape=self.shape, skip=self.scan.invalid_lines)

    def describe(self) -> dict[str, Any]:
        if self.spool is not None:  # nothing to read again: retry needs --input
            return {"stream": True, **self.shape.describe()}
        return {"path": str(self.path.resolve()), **self.shape.describe()}


class Spool:
    """A stream's bytes in a private temporary file without a name (see the module docstring)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._file = tempfile.TemporaryFile(prefix="producer-input-")  # noqa: SIM115 - open while the spool lives
        weakref.finalize(self, self._file.close)
        while chunk := stream.read(SPOOL_CHUNK):
            self._file.write(chunk)
        self._file.flush()

    def lines(self) -> Iterator[bytes]:
        """The raw lines from the start (each call its own position, so passes may overlap)."""
        return _bounded_lines(io.BufferedReader(_Positional(self), SPOOL_CHUNK))

    def pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._file.fileno(), size, offset)


class _Positional(io.RawIOBase):
    """Reads a spool from the start at a position of its own (``pread``), whoever else reads it."""

    def __init__(self, spool: Spool) -> None:
        super().__init__()
        self._spool = spool  # and keeps it open while this reads
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self._spool.pread(len(view), self._offset)
        view[: len(data)] = data
        self._offset += len(data)
        return len(data)


def _unrecordable(path: Path, fix: str) -> str | None:
    """Why the batch cannot record ``path`` (retry reads its input from there), or None."""
    try:
        os.path.realpath(path).encode("utf-8")
    except UnicodeEncodeError:
        return f"its path is not valid UTF-8, and a batch records where its input is: {fix}"
    return None


def _refused(path: Path, reason: str) -> InputScan:
    """The scan of an input that cannot be read at all: one error, named by the input's path."""
    scan = InputScan()
    scan.add_error(LineError(0, reason, where=str(path)))
    return scan


@dataclass(frozen=True)
class FolderSource:
    """The files of a folder, each one document: its relative path (``/``-separated) the custom_id, in path order.

    PDFs and images are attachments; ``.txt``, ``.md``, ``.json`` and ``.html`` files are read as the text. A file
    of another type, or one the API would refuse, is a bad line named by its path (its "line" is its position).
    """

    root: Path
    glob: str
    scan: InputScan
    api: ApiKind = "responses"
    max_text_bytes: int | None = None
    """A text file over this many bytes is refused unread (the document byte limit; None: the API's 50 MB)."""

    @classmethod
    def open(
        cls,
        root: Path,
        *,
        glob: str = "**/*",
        api: ApiKind = "responses",
        check: DocumentCheck | None = None,
        max_text_bytes: int | None = None,
    ) -> FolderSource:
        """Scan the folder's files. Raises GlobError for a ``glob`` that cannot select files below ``root``."""
        check_glob(glob)
        scan = InputScan(format="folder")
        source = cls(root, glob, scan, api, max_text_bytes)
        problem = _unrecordable(root, "rename it")
        if problem is not None:
            scan.add_error(LineError(0, problem, where=str(root)))
            return source
        try:
            entries = folder_entries(root, glob)
        except AttachmentError as exc:
            scan.add_error(LineError(0, str(exc), where=str(root)))
            return source
        for number, entry in enumerate(entries, start=1):
            result = _folder_line(number, entry, api, max_text_bytes)
            if isinstance(result, InputLine) and check is not None and (reason := check(result)) is not None:
                result = LineError(number, reason, where=entry.relative)
            if isinstance(result, LineError):
                scan.add_error(result)
            else:
                scan.count += 1
        if scan.count == 0 and scan.error_count == 0:
            scan.add_error(LineError(0, f"no files under {shown_path(str(root))} match {glob!r}", where=str(root)))
        return source

    @property
    def count(self) -> int:
        return self.scan.count

    first_ordinal = 0

    def lines(self) -> Iterator[InputLine]:
        for number, entry in enumerate(folder_entries(self.root, self.glob), start=1):
            if number in self.scan.invalid_lines:
                continue
            result = _folder_line(number, entry, self.api, self.max_text_bytes)
            if isinstance(result, InputLine):
                yield result

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.root.resolve()), "folder": True, "glob": self.glob}


def _folder_line(number: int, entry: FolderEntry, api: ApiKind, max_text_bytes: int | None) -> InputLine | LineError:
    relative = entry.relative
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        reason = "its name is not valid UTF-8 (its path below the folder is the line's custom_id): rename it"
        return LineError(number, reason, where=shown_path(relative))
    try:
        text, attachments = read_folder_file(entry, max_text_bytes=max_text_bytes)
        check_together(attachments, api)
    except AttachmentError as exc:
        return LineError(number, str(exc), where=relative)
    if len(relative) > MAX_ID_LENGTH:
        return LineError(number, f"its path is longer than {MAX_ID_LENGTH} characters (the custom_id)", where=relative)
    return InputLine(number, relative, text, attachments)


@dataclass(frozen=True)
class MemorySource:
    """Lines already in memory (tests, benchmarks, callers of the library)."""

    items: tuple[InputLine, ...]

    @property
    def count(self) -> int:
        return len(self.items)

    first_ordinal = 0

    def lines(self) -> Iterator[InputLine]:
        return iter(self.items)

    def describe(self) -> None:
        return None


def _read_lines(path: Path) -> Iterator[bytes]:
    """The raw lines of a regular file (AttachmentError if it is not one, or no longer)."""
    with open_regular(path, str(path)) as (fd, _size), open(fd, "rb", closefd=False) as handle:
        yield from _bounded_lines(handle)


def _bounded_lines(handle: BinaryIO) -> Iterator[bytes]:
    """The lines of ``handle``; one longer than :data:`MAX_LINE_BYTES` is cut to its first ``MAX_LINE_BYTES + 1``
    bytes (so it is known too long) and the rest of it skipped unread into memory."""
    limit = MAX_LINE_BYTES
    while line := handle.readline(limit + 1):
        if len(line) > limit and not line.endswith(b"\n"):
            while (rest := handle.readline(SPOOL_CHUNK)) and not rest.endswith(b"\n"):
                pass
        yield line


def _objects(raw_lines: Iterable[bytes], scan: InputScan | None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of every non-blank line that is a JSON object; the others are errors in ``scan``."""
    for number, raw in enumerate(raw_lines, start=1):
        if len(raw) - raw.endswith(b"\n") > MAX_LINE_BYTES:
            if scan is not None:
                scan.add_error(
                    LineError(
                        number,
                        f"longer than {MAX_LINE_BYTES:,} bytes "
                        "(a line is one request: the API takes at most 512 MB per request)",
                    )
                )
            continue
        if not raw.strip():
            continue
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if scan is not None:
                scan.add_error(LineError(number, f"not valid JSON ({exc})"))
            continue
        if not isinstance(obj, dict):
            if scan is not None:
                scan.add_error(LineError(number, f"expected a JSON object, got {type(obj).__name__}"))
            continue
        yield number, obj


def _parse(
    obj: dict[str, Any], number: int, fmt: InputFormat, shape: LineShape, *, inspect: bool = True
) -> InputLine | LineError:
    """The line, or why it is refused. ``inspect=False`` skips reading the attachments (only the id is wanted)."""
    if fmt == "openai-batch":
        return _batch_line(obj, number, shape, inspect=inspect)
    return _native_line(obj, number, shape, inspect=inspect)


def _coerce_id(value: Any, number: int, name: str) -> str | LineError:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return LineError(number, f"field {name!r} must be a string or an integer, got {type(value).__name__}")
    custom_id = str(value)
    if not custom_id.strip():
        return LineError(number, f"field {name!r} is empty")
    if len(custom_id) > MAX_ID_LENGTH:
        return LineError(number, f"field {name!r} is longer than {MAX_ID_LENGTH} characters")
    return custom_id


def _text(value: Any, number: int, name: str, *, empty_ok: bool = False) -> str | LineError:
    if not isinstance(value, str):
        return LineError(number, f"field {name!r} must be a string, got {type(value).__name__}")
    if not value.strip() and not empty_ok:
        return LineError(number, f"field {name!r} is empty")
    return value


def _native_line(obj: dict[str, Any], number: int, shape: LineShape, *, inspect: bool) -> InputLine | LineError:
    id_field, text_field = shape.id_field, shape.text_field
    if id_field not in obj:
        return LineError(number, f"missing id field {id_field!r} (set another with --id-field)")
    has_attachments = any(obj.get(name) for name in (shape.files_field, shape.urls_field, shape.file_ids_field))
    if text_field not in obj and not has_attachments:
        return LineError(
            number,
            f"missing text field {text_field!r} (set another with --text-field) and no attachments "
            f"({shape.files_field!r}, {shape.urls_field!r}, {shape.file_ids_field!r})",
        )
    custom_id = _coerce_id(obj[id_field], number, id_field)
    if isinstance(custom_id, LineError):
        return custom_id
    text: str | LineError = ""
    if text_field in obj and (obj[text_field] is not None or not has_attachments):
        text = _text(obj[text_field], number, text_field, empty_ok=has_attachments)
    if isinstance(text, LineError):
        return text
    if not inspect or not has_attachments:
        return InputLine(number, custom_id, text)
    attachments = _native_attachments(obj, shape)
    if isinstance(attachments, str):
        return LineError(number, attachments)
    return InputLine(number, custom_id, text, attachments)


def _listed(value: Any, name: str) -> list[Any] | str:
    if isinstance(value, str | dict):
        return [value]
    if isinstance(value, list):
        return value
    return f"field {name!r} must be a string or a list, got {type(value).__name__}"


def _native_attachments(obj: dict[str, Any], shape: LineShape) -> tuple[LocalAttachment, ...] | str:
    """The line's attachments in field order (files, urls, file ids), or the reason one is refused."""
    found: list[LocalAttachment] = []
    together = Together()
    try:
        for name, read in (
            (shape.files_field, _file_entry),
            (shape.urls_field, _url_entry),
            (shape.file_ids_field, _file_id_entry),
        ):
            if not obj.get(name):
                continue
            entries = _listed(obj[name], name)
            if isinstance(entries, str):
                return entries
            for i, entry in enumerate(entries):
                found.append(read(entry, f"{name}[{i}]", shape))
                if together.over(found[-1].attachment):  # stop at the first one past a request's limits
                    check_together(tuple(found), shape.api)
        check_together(tuple(found), shape.api)
    except AttachmentError as exc:
        return str(exc)
    return tuple(found)


def _file_entry(entry: Any, shown: str, shape: LineShape) -> LocalAttachment:
    """A file named by a line: it must be inside the input file's folder (after symlinks), so an input from someone
    else cannot have us read, and send to the provider, any file this process can read."""
    if not isinstance(entry, str) or not entry.strip():
        raise AttachmentError(f"{shown}: a file is a path (a non-empty string)")
    if "\x00" in entry:
        raise AttachmentError(f"{shown} {entry!r}: a file name cannot contain a NUL character")
    base = Path(os.path.realpath(shape.base_dir or Path.cwd()))
    path = base / entry
    if not Path(os.path.realpath(path)).is_relative_to(base):  # realpath: a symlink loop is the open's error
        raise AttachmentError(
            f"{shown} {entry!r}: outside the input file's folder {base} (files are read from there, and below it)"
        )
    return from_file(path, shown=f"{shown} {entry!r}")


def _url_entry(entry: Any, shown: str, shape: LineShape) -> LocalAttachment:
    if not isinstance(entry, str):
        raise AttachmentError(f"{shown}: a URL is a string")
    if entry.startswith("data:"):
        return from_data_url(entry, shown=shown)
    return from_url(entry, api=shape.api, shown=f"{shown} {entry[:100]!r}")


def _file_id_entry(entry: Any, shown: str, shape: LineShape) -> LocalAttachment:
    return from_file_id(entry, shown=shown)


def _batch_line(obj: dict[str, Any], number: int, shape: LineShape, *, inspect: bool) -> InputLine | LineError:
    missing = sorted(_BATCH_KEYS - obj.keys())
    if missing:
        return LineError(number, f"OpenAI batch line is missing {', '.join(missing)}")
    custom_id = _coerce_id(obj["custom_id"], number, "custom_id")
    if isinstance(custom_id, LineError):
        return custom_id
    body = obj["body"]
    if not isinstance(body, dict):
        return LineError(number, "field 'body' must be an object")
    url = str(obj["url"])
    if url.endswith("/chat/completions"):
        content = _last_user_content(body.get("messages"))
    elif url.endswith("/responses"):
        value = body.get("input")
        content = value if isinstance(value, str) else _last_user_content(value)
    else:
        return LineError(number, f"unsupported url {url!r} (expected /v1/chat/completions or /v1/responses)")
    text = _content_text(content) or ""
    parts = (
        [p for p in content if isinstance(p, dict) and p.get("type") in _ATTACHMENT_PARTS]
        if isinstance(content, list)
        else []
    )
    if not text.strip() and not parts:
        return LineError(number, "no user message text found in 'body'")
    if not inspect or not parts:
        return InputLine(number, custom_id, text)
    try:
        attachments = tuple(_part_attachment(part, f"user content part {i}", shape) for i, part in enumerate(parts))
        check_together(attachments, shape.api)
    except AttachmentError as exc:
        return LineError(number, str(exc))
    return InputLine(number, custom_id, text, attachments)


_ATTACHMENT_PARTS = frozenset({"input_image", "input_file", "image_url", "file"})


def _part_attachment(part: dict[str, Any], shown: str, shape: LineShape) -> LocalAttachment:
    """An image or file part of a Batch API request (either API's shape) as the same attachment a native line has."""
    kind = part["type"]
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        return _url_entry(url, shown, shape)
    if kind == "input_image":
        if part.get("file_id"):
            return from_file_id({"id": part["file_id"], "kind": "image"}, shown=shown)
        return _url_entry(part.get("image_url"), shown, shape)
    file = part.get("file") if kind == "file" else part
    if not isinstance(file, dict):
        raise AttachmentError(f"{shown}: a file part needs file_data, file_id or file_url")
    if file.get("file_id"):
        return from_file_id(file["file_id"], shown=shown)
    if file.get("file_url"):
        return _url_entry(file["file_url"], shown, shape)
    data = file.get("file_data")
    if not isinstance(data, str):
        raise AttachmentError(f"{shown}: a file part needs file_data, file_id or file_url")
    found = from_data_url(data, shown=shown)
    filename = file.get("filename")
    if isinstance(filename, str) and filename:
        found = LocalAttachment(found.attachment.model_copy(update={"filename": filename}), data=found.data)
    return found


_MAX_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
_SYSTEM_ROLES = ("system", "developer")


def batch_body_check(spec: BatchSpec) -> LineCheck:
    """For OpenAI Batch input: refuse a line whose request says something the batch would not do.

    Every line of a batch is sent with the batch's model, generation parameters, instructions and schema, so a
    line's own ``body.model``, ``temperature``, max-token field, system/developer message or response format must
    agree with them (or be absent), else the line is reported -- field, its value and the batch's -- rather than
    silently sent another way. ``method`` must be POST and ``url`` a path (``/v1/chat/completions`` or
    ``/v1/responses``), as the Batch API itself requires.
    """

    def check(line: dict[str, Any]) -> str | None:
        body: dict[str, Any] = line["body"]
        method, url = str(line.get("method", "")), str(line.get("url", ""))
        if method.upper() != "POST":
            return f"'method' is {method!r}; the Batch API format sends POST"
        if not url.startswith("/"):
            return f"'url' is {url!r}; it must be a path such as /v1/chat/completions or /v1/responses"
        return _body_disagreement(body, spec)

    return check


def _body_disagreement(body: dict[str, Any], spec: BatchSpec) -> str | None:
    model = body.get("model")
    if model is not None and model != spec.model:
        return f"body.model is {model!r} but the batch's model is {spec.model!r} (--model)"
    temperature = body.get("temperature")
    if temperature is not None and temperature != spec.params.temperature:
        return f"body.temperature is {temperature!r} but the batch's is {spec.params.temperature!r} (--temperature)"
    for name in _MAX_TOKEN_FIELDS:
        value = body.get(name)
        if value is not None and value != spec.params.max_output_tokens:
            limit = spec.params.max_output_tokens
            return f"body.{name} is {value!r} but the batch's is {limit!r} (--max-output-tokens)"
    if "response_format" in body or "format" in (body.get("text") or {}):
        field = "response_format" if "response_format" in body else "text.format"
        return f"body.{field} is set; the batch's output format comes from --schema ({spec.schema_ref})"
    for item in _items(body):
        parts = item.get("content") if isinstance(item, dict) else None
        for part in parts if isinstance(parts, list) else ():
            image = part.get("image_url") if isinstance(part, dict) else None
            detail = part.get("detail") if isinstance(part, dict) and "detail" in part else None
            if detail is None and isinstance(image, dict):
                detail = image.get("detail")
            if detail is not None and detail != spec.image_detail:
                return f"an image part has detail {detail!r} but the batch's is {spec.image_detail!r} (--image-detail)"
    instructions = _system_text(body)
    if instructions is not None and instructions.strip() != spec.instructions.strip():
        return (
            "body has a system/developer message (or instructions) that differs from the batch's instructions; "
            "they come from --instructions or --instructions-file"
        )
    return None


def _system_text(body: dict[str, Any]) -> str | None:
    """The request's own instructions: Responses ``instructions``, or its system/developer messages."""
    if isinstance(body.get("instructions"), str):
        return str(body["instructions"])
    texts = [
        text
        for item in _items(body)
        if isinstance(item, dict) and item.get("role") in _SYSTEM_ROLES
        if (text := _content_text(item.get("content"))) is not None
    ]
    return "\n".join(texts) if texts else None


def _items(body: dict[str, Any]) -> list[Any]:
    """A request's messages (Chat Completions) or input items (Responses)."""
    items = body.get("messages") if isinstance(body.get("messages"), list) else body.get("input")
    return items if isinstance(items, list) else []


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [str(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        return "\n".join(parts) if parts else None
    return None


def _last_user_content(messages: Any) -> Any:
    """The content of the last user message that has any text or attachment (a string or a list of parts)."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            text = _content_text(content)
            if (text and text.strip()) or (
                isinstance(content, list)
                and any(isinstance(p, dict) and p.get("type") in _ATTACHMENT_PARTS for p in content)
            ):
                return content
    return None
