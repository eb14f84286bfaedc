"""Part formats of the results sink: a list of result lines to the bytes of one part file, and back.

Pure: bytes in, bytes out, no I/O. A *row* is ``(ordinal, line)``: ``line`` is one result line exactly as
``producer collect`` writes it (``orjson.dumps(ResultRecord.to_json_dict())``) and ``ordinal`` the 0-based position of
its input line among the batch's valid input lines. :func:`decode_part` gives the rows back in the order encoded,
each line JSON-equal to the one encoded: the same keys with the same values -- an int is still an int, a float still
a float (key order may differ in parquet parts). Damaged bytes raise :class:`PartFormatError`.

Formats
-------

``jsonl``
    One line per row: the result line's object with an ``"ordinal"`` key appended, UTF-8, ``\n`` after every line.
    The key is spliced into the line's own bytes (``...}`` becomes ``...,"ordinal":7}``), so decoding cuts it off
    again and gives back the very bytes encoded without parsing them: that is what makes reading parts back fast. A
    line that does not end in that key (edited by hand, written by another tool) is parsed instead. Plain text has
    no checksum: a truncated last line is detected, a part cut at a line end or a changed character is not.
``jsonl.gz``
    The same bytes, gzip-compressed (level 6, ``mtime`` 0 so equal parts are equal bytes; gzip's CRC catches
    damage). Decoding accepts several gzip members one after the other, as ``cat a.gz b.gz`` makes.
``parquet``
    One row group, zstd, page checksums on, and a CRC of the footer's column names and metadata: a flipped bit fails
    the read instead of changing a value. Columns: ``ordinal`` (int64), then one per
    :class:`~schemas.results.ResultRecord` field in its order, by its JSON name (``schema``), with natural types
    (strings, int64, float64 ``cost_usd``, bool, ``usage`` a struct of five int64, ``error`` a struct ``{type,
    message, status_code}``, ``invalid_fields`` list<string>), then ``extra``: a JSON object as text, null when
    empty, of what the typed columns cannot hold -- keys that are not ResultRecord fields, a field whose value does
    not fit its column (that column is then null), an output's undeclared keys (below) -- so nothing is lost when
    the result line changes. A field missing from a line is listed in the metadata and left out again on decoding.

The ``output`` column (parquet)
-------------------------------

``struct`` -- typed nested columns (``output.total`` float64) for pandas, Polars or DuckDB users -- when the batch's
source schema (the user's original JSON Schema) has a shape Arrow holds exactly; ``json`` -- the output as JSON
text -- otherwise. Failed and cancelled lines have a null output in both. Each part's key-value metadata says which
it used, under ``structured_extract``: ``{"version": 1, "output": "struct" | "json", "rows": N, ...}``; decoding
goes by that alone (a part needs no schema to be read back).

The exactness rule: decoding gives back every output JSON-equal, in either mode. Two halves make it hold:

1. *The schema decides the shape* (:class:`PartEncoder`, once per batch). Struct when the root is an object and
   every place in it is one of: an object with non-empty ``properties`` and ``additionalProperties`` false or
   absent, each property a place; an array whose ``items`` is one place; a string (any ``format`` or ``pattern``, an
   enum or const of strings), an integer (int64), a number (float64), a boolean. A place may be nullable (``type:
   [T, "null"]``; ``anyOf``/``oneOf`` of one schema and ``{"type": "null"}``, pydantic's ``X | None``), may be a
   local ``$ref`` (followed; annotations beside it are fine) or an ``allOf`` of one part, and may carry any keyword
   that only narrows what is valid (bounds, ``pattern``, ``not``, ``if``, ``dependentRequired`` ...). Anything else
   makes the whole column json: a union of types or of shapes, ``allOf`` of several parts, a recursive or outside
   ``$ref``, a map or an explicitly open object (``additionalProperties`` true or a schema, ``patternProperties``),
   a tuple, an object without properties, a place of any value, a root that is not an object.
2. *Each part checks its outputs* (:meth:`PartEncoder.encode`) against that shape while it builds their columns.
   What the shape cannot say is kept beside it: an object without ``additionalProperties`` is open in JSON Schema,
   so an output may hold keys it does not declare (a pydantic model's never does; a JSON Schema answer may, through
   the codec's extra-keys channel): they go to the row's ``extra`` with their place, under the key the metadata
   names in ``undeclared``, and are put back on decoding. A value that does not fit at all -- an integer beyond
   int64, an int beyond 2**53 where a float64 holds it, anything invalid under the schema -- turns the part into a
   json part, never an error. So a batch's parts are normally all struct, and each part's metadata says.

The rest that a typed column alone would lose is kept in the metadata, per part and per place (``fields`` and
``numbers``): whether a null in an optional property means "the key was absent" or "the key was null" (pydantic's
``X | None = None`` is written as null, a JSON Schema answer may leave the key out: whichever most of the part's
slots did is the default, the other slots are listed), and whether an integral number in a float64 column was
written ``3`` or ``3.0`` (likewise ``3.0`` in an int64 column: JSON Schema's integer allows it).

Speed: decoding makes no Python object per value. Arrow's string kernels write each column's JSON texts (its own
float formatting is the shortest text that reads back as the same double) and join them into the lines, a json-mode
output as it is; only the rare rows that ``extra`` or a missing key concern go through orjson. Encoding parses each
line once and checks each column in one C-level pass where it can. The garbage collector is paused while a part is
built (no reference cycles are made; it would rescan the growing heap again and again).
"""

from __future__ import annotations

import gc
import gzip
import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate, chain
from operator import itemgetter
from typing import Any, Final, Literal, Protocol, TypeAlias, cast, get_args
from urllib.parse import unquote

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from schemas.results import ResultRecord, Usage

__all__ = [
    "PART_FORMATS",
    "PartEncoder",
    "PartFormat",
    "PartFormatError",
    "decode_part",
    "part_suffix",
]

PartFormat = Literal["jsonl", "jsonl.gz", "parquet"]
PART_FORMATS: tuple[PartFormat, ...] = ("jsonl", "jsonl.gz", "parquet")
OutputMode = Literal["struct", "json"]

METADATA_KEY: Final = b"structured_extract"
"""The parquet key-value metadata entry that says how a part was written."""
METADATA_VERSION: Final = 1
CHECK_KEY: Final = b"structured_extract.crc32"
"""A CRC-32 of that entry and of the columns' names and types. Parquet checksums its pages but not its footer, where
a flipped bit could rename a column or change a rule of the metadata without failing the read."""

_ORDINAL: Final = "ordinal"
_OUTPUT: Final = "output"
_EXTRA: Final = "extra"
_UNDECLARED: Final = "$output_undeclared"
"""Where ``extra`` keeps an output's keys that its schema does not declare (see :func:`_set_aside`)."""
_GZIP_LEVEL: Final = 6
_ZSTD_LEVEL: Final = 3
_I64_MIN: Final = -(2**63)
_I64_MAX: Final = 2**63 - 1
_EXACT_IN_FLOAT: Final = 2**53
"""Every int of at most this magnitude is exactly a float64; above it, some are not."""
_MAX_DEPTH: Final = 32
"""Deeper outputs are stored as json: far beyond any extraction schema, and within what Parquet readers nest."""
_MISSING: Final = object()


@contextmanager
def _bulk() -> Iterator[None]:
    """No garbage collection while a part's values are built: they hold no reference cycles, and the collector would
    otherwise walk the growing heap again and again (a tenth or more of the time). The previous state is restored."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class PartFormatError(ValueError):
    """A part that cannot be decoded: truncated, corrupted, or not written by this module."""


def part_suffix(fmt: PartFormat) -> str:
    """The file name suffix of a part: ``.jsonl``, ``.jsonl.gz`` or ``.parquet``."""
    return "." + _check_format(fmt)


def _check_format(fmt: str) -> PartFormat:
    if fmt not in PART_FORMATS:
        raise ValueError(f"unknown part format {fmt!r}: one of {', '.join(PART_FORMATS)}")
    return fmt


# -- the top-level columns ----------------------------------------------------------------------------------------

_NONE: Final = type(None)


def _types(values: Iterable[Any]) -> set[type]:
    # One C-level pass: a column's values are checked by the set of their types, not one by one in Python.
    return set(map(type, values))


def _strings(values: list[Any]) -> bool:
    return _types(values) <= {str, _NONE}


def _bools(values: list[Any]) -> bool:
    return _types(values) <= {bool, _NONE}


def _floats(values: list[Any]) -> bool:
    # An int in a float column would come back as a float: it goes to ``extra`` instead (pydantic writes none).
    return _types(values) <= {float, _NONE}


def _ints(values: list[Any]) -> bool:
    types = _types(values)
    if not types <= {int, _NONE}:
        return False
    if _NONE in types:
        values = [value for value in values if value is not None]
    return not values or (min(values) >= _I64_MIN and max(values) <= _I64_MAX)


def _string_lists(values: list[Any]) -> bool:
    types = _types(values)
    if not types <= {list, _NONE}:
        return False
    lists = [value for value in values if value is not None] if _NONE in types else values
    return _types(chain.from_iterable(lists)) <= {str}


def _objects_of(fields: dict[str, Callable[[list[Any]], bool]]) -> Callable[[list[Any]], bool]:
    """Objects with exactly these keys, each key's values fitting its check (``usage``, ``error``)."""
    keys = fields.keys()

    def fits(values: list[Any]) -> bool:
        types = _types(values)
        if not types <= {dict, _NONE}:
            return False
        objects = [value for value in values if value is not None] if _NONE in types else values
        return all(obj.keys() == keys for obj in objects) and all(
            check([obj[key] for obj in objects]) for key, check in fields.items()
        )

    return fits


_USAGE_TYPE: Final = pa.struct([pa.field(name, pa.int64()) for name in Usage.model_fields])
_ERROR_TYPE: Final = pa.struct(
    [pa.field("type", pa.string()), pa.field("message", pa.string()), pa.field("status_code", pa.int64())]
)
_STRING: Final = (pa.string(), _strings)
_INT: Final = (pa.int64(), _ints)
_BOOL: Final = (pa.bool_(), _bools)
_FIELD_TYPES: Final[dict[str, tuple[pa.DataType, Callable[[list[Any]], bool]]]] = {
    "custom_id": _STRING,
    "batch_id": _STRING,
    "status": _STRING,
    "error": (_ERROR_TYPE, _objects_of({"type": _strings, "message": _strings, "status_code": _ints})),
    "api": _STRING,
    "model": _STRING,
    "schema": _STRING,
    "fingerprint": _STRING,
    "usage": (_USAGE_TYPE, _objects_of(dict.fromkeys(Usage.model_fields, _ints))),
    "cost_usd": (pa.float64(), _floats),
    "cache_hit": _BOOL,
    "attempts": _INT,
    "repairs": _INT,
    "latency_ms": _INT,
    "response_id": _STRING,
    "request_id": _STRING,
    "service_tier": _STRING,
    "service_tier_fallback": _BOOL,
    "venue": _STRING,
    "provider_batch_id": _STRING,
    "retries": _INT,
    "rate_limited": _INT,
    "document_fingerprint": _STRING,
    "invalid_fields": (pa.list_(pa.string()), _string_lists),
    "finished_at": _STRING,
}
"""The natural Arrow type of each ResultRecord field (by its JSON name), and the check that a column of values fits
it exactly. A field added to ResultRecord without an entry here has no column: its values go to ``extra``,
losslessly (and a test says to add one)."""

RECORD_FIELDS: Final[tuple[str, ...]] = tuple(field.alias or name for name, field in ResultRecord.model_fields.items())
"""ResultRecord's fields by their JSON names, in its order: the result line's keys."""
_COLUMNS: Final[tuple[str, ...]] = tuple(name for name in RECORD_FIELDS if name == _OUTPUT or name in _FIELD_TYPES)
"""The typed columns between ``ordinal`` and ``extra``."""
_COLUMN_SET: Final = frozenset(_COLUMNS)


# -- encoding -----------------------------------------------------------------------------------------------------


class PartEncoder:
    """Encodes lists of rows into part files of one format, for one batch (its source schema fixes the parquet
    ``output`` column once). Holds no state between parts: one encoder may serve any number of parts and threads."""

    def __init__(self, fmt: PartFormat, source_schema: dict[str, Any] | None) -> None:
        """Derive the parquet shape of the output once.

        Args:
            fmt: The part format.
            source_schema: The user's original JSON Schema of the output (``BatchSpec.source_schema``); None when
                unknown (the output is then stored as JSON text).
        """
        self.fmt: PartFormat = _check_format(fmt)
        self._spec: _ObjectSpec | None = None
        self._json_reason = "not parquet" if fmt != "parquet" else "no source schema"
        if fmt == "parquet" and source_schema is not None:
            try:
                self._spec = _struct_spec(source_schema)
            except _NotStructured as exc:
                self._json_reason = str(exc)
            except (RecursionError, TypeError, ValueError, KeyError, AttributeError) as exc:
                self._json_reason = f"an unexpected schema: {exc!r}"  # never a reason to refuse a batch's results
            else:
                self._json_reason = ""
        self.output_mode: OutputMode = "struct" if self._spec is not None else "json"
        """How the parquet ``output`` column is stored; ``json`` for the jsonl formats. A part whose outputs do not
        all fit the struct is written as json anyway: its metadata says so."""

    def encode(self, rows: Sequence[tuple[int, bytes]]) -> bytes:
        """The complete bytes of one part file.

        Args:
            rows: ``(ordinal, result line JSON bytes)`` in the order the part keeps them.

        Returns:
            The file's bytes.

        Raises:
            ValueError: A line that is not a JSON object, an ordinal that is not a non-negative int64, or (jsonl
                formats only) a line that already has an ``"ordinal"`` key.
        """
        if self.fmt == "parquet":
            with _bulk():
                return _encode_parquet(rows, self._spec)
        data = _encode_jsonl(rows)
        if self.fmt == "jsonl.gz":
            return gzip.compress(data, compresslevel=_GZIP_LEVEL, mtime=0)
        return data


def _checked_ordinal(ordinal: Any, index: int) -> int:
    if type(ordinal) is not int or not 0 <= ordinal <= _I64_MAX:
        raise ValueError(f"row {index}: ordinal {ordinal!r} is not a non-negative int64")
    return ordinal


def _loaded_object(line: bytes, index: int) -> dict[str, Any]:
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"row {index}: the result line is not JSON: {exc}") from None
    if type(record) is not dict:
        raise ValueError(f"row {index}: the result line is a JSON {type(record).__name__}, not an object")
    return cast(dict[str, Any], record)


_JSON_SPACE: Final = b" \t\r\n"


def _encode_jsonl(rows: Sequence[tuple[int, bytes]]) -> bytes:
    pieces: list[bytes] = []
    append = pieces.append
    for index, (ordinal, line) in enumerate(rows):
        _checked_ordinal(ordinal, index)
        record = _loaded_object(line, index)  # the one check that the splice below makes a JSON object
        if _ORDINAL in record:
            raise ValueError(f'row {index}: the result line already has an "ordinal" key')
        body = bytes(line).strip(_JSON_SPACE)
        if b"\n" in body or b"\r" in body:
            # Pretty-printed: the line must become one line.
            record[_ORDINAL] = ordinal
            append(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        else:
            # Splice instead of re-serializing: the decoder then gives these very bytes back by cutting.
            append(body[:-1])
            append(b',"ordinal":%d}\n' % ordinal if record else b'"ordinal":%d}\n' % ordinal)
    return b"".join(pieces)


def _encode_parquet(rows: Sequence[tuple[int, bytes]], spec: _ObjectSpec | None) -> bytes:
    ordinals, arrays, outputs, extras, absent = _split_records(rows)
    metadata: dict[str, Any] = {"version": METADATA_VERSION, "output": "json", "rows": len(rows)}
    output_array: pa.Array | None = None
    if spec is not None:
        built = _struct_output(spec, outputs)
        if built is not None:
            output_array, rules, undeclared = built
            metadata.update(output="struct", fields=rules["fields"], numbers=rules["numbers"])
            if undeclared:
                metadata["undeclared"] = _set_aside(undeclared, extras)
    if output_array is None:
        output_array = _json_texts(outputs)
    if absent:
        metadata["absent"] = [[index, names] for index, names in absent.items()]
    arrays[_OUTPUT] = output_array
    columns = [pa.array(ordinals, pa.int64()), *(arrays[name] for name in _COLUMNS), _json_texts(extras)]
    fields = [pa.field(_ORDINAL, pa.int64(), nullable=False)]
    fields += [pa.field(name, arrays[name].type) for name in _COLUMNS]
    fields.append(pa.field(_EXTRA, pa.string()))
    schema = pa.schema(fields)
    meta = orjson.dumps(metadata)
    schema = schema.with_metadata({METADATA_KEY: meta, CHECK_KEY: _footer_check(meta, schema)})
    sink = pa.BufferOutputStream()
    pq.write_table(
        pa.Table.from_arrays(columns, schema=schema),
        sink,
        compression="zstd",
        compression_level=_ZSTD_LEVEL,
        write_page_checksum=True,
        row_group_size=max(len(rows), 1),
    )
    return cast(bytes, sink.getvalue().to_pybytes())


def _footer_check(meta: bytes, schema: pa.Schema) -> bytes:
    shape = ",".join(f"{orjson.dumps(field.name).decode()}:{_shape(field.type)}" for field in schema)
    return b"%08x" % zlib.crc32(shape.encode(), zlib.crc32(meta))


def _shape(kind: pa.DataType) -> str:
    """A type's names and kinds, in a form every pyarrow version writes alike (a list's item is named ``item`` or
    ``element`` depending on the writer: left out)."""
    if pa.types.is_struct(kind):
        fields = (kind.field(i) for i in range(kind.num_fields))
        return "{" + ",".join(f"{orjson.dumps(field.name).decode()}:{_shape(field.type)}" for field in fields) + "}"
    if pa.types.is_list(kind):
        return "[" + _shape(kind.value_type) + "]"
    return str(kind)


def _json_texts(values: list[Any]) -> pa.Array:
    """A string column of JSON texts, null for None."""
    texts = [None if value is None else orjson.dumps(value) for value in values]
    return pa.array(texts, pa.binary()).cast(pa.string())  # orjson writes UTF-8: Arrow checks it once, in bulk


def _split_records(
    rows: Sequence[tuple[int, bytes]],
) -> tuple[list[int], dict[str, pa.Array], list[Any], list[dict[str, Any] | None], dict[int, list[str]]]:
    """The rows as columns: the ordinals, an Arrow array per typed column but the output (null where the value went
    to ``extra`` or the key was absent), the outputs, each row's ``extra`` keys, and the keys absent from each row.
    Column by column: each is checked in bulk, and only a column that does not fit is looked at value by value."""
    ordinals, records = _loaded_rows(rows)
    extras: list[dict[str, Any] | None] = [None] * len(rows)
    absent: dict[int, list[str]] = {}
    columns = _transposed(records, _COLUMNS)
    arrays: dict[str, pa.Array] = {}
    for name in _COLUMNS:
        values = columns[name]
        if name == _OUTPUT:
            if _not_missing(values):
                continue  # checked against the schema's shape later
            fits: Callable[[list[Any]], bool] = _not_missing
        else:
            arrow_type, fits = _FIELD_TYPES[name]
            array = _exact_array(values, arrow_type, fits)
            if array is not None:
                arrays[name] = array  # the usual case: every value fits
                continue
        for index, value in enumerate(values):
            if value is _MISSING:
                values[index] = None
                absent.setdefault(index, []).append(name)
            elif not fits([value]):
                values[index] = None
                extra = extras[index]
                if extra is None:
                    extra = extras[index] = {}
                extra[name] = value
        if name != _OUTPUT:
            arrays[name] = pa.array(values, _FIELD_TYPES[name][0])
    declared_only = _COLUMN_SET.issuperset
    for index, record in enumerate(records):
        if not declared_only(record):
            extra = extras[index] or {}
            extra.update((key, value) for key, value in record.items() if key not in _COLUMN_SET)
            extras[index] = extra
    return ordinals, arrays, columns[_OUTPUT], extras, absent


def _loaded_rows(rows: Sequence[tuple[int, bytes]]) -> tuple[list[int], list[dict[str, Any]]]:
    """The ordinals and the parsed lines, checked in bulk (row by row only to name a bad one)."""
    ordinals = [ordinal for ordinal, _line in rows]
    if not (_types(ordinals) <= {int} and (not ordinals or (min(ordinals) >= 0 and max(ordinals) <= _I64_MAX))):
        for index, ordinal in enumerate(ordinals):
            _checked_ordinal(ordinal, index)
    try:
        records: list[Any] = [orjson.loads(line) for _ordinal, line in rows]
    except orjson.JSONDecodeError:
        records = []
    if len(records) != len(rows) or not _types(records) <= {dict}:
        records = [_loaded_object(line, index) for index, (_ordinal, line) in enumerate(rows)]
    return ordinals, records


def _not_missing(values: list[Any]) -> bool:
    return object not in _types(values)


def _exact_array(values: list[Any], arrow_type: pa.DataType, fits: Callable[[list[Any]], bool]) -> pa.Array | None:
    """The column as an Arrow array if every value fits it exactly, else None."""
    if fits is _strings or fits is _bools:
        # Arrow's conversion refuses anything but str (bytes aside, which JSON has not) or bool: it is the check,
        # and it saves a pass over the column's values.
        try:
            return pa.array(values, arrow_type)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            return None
    return pa.array(values, arrow_type) if fits(values) else None


def _transposed(objects: list[dict[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """The values of each key across the objects (``_MISSING`` where one lacks it): one C-level pass when every
    object has every key, as result lines and pydantic outputs do."""
    if objects and len(names) > 1:
        try:
            columns = zip(*map(itemgetter(*names), objects), strict=True)
            return dict(zip(names, map(list, columns), strict=True))
        except KeyError:
            pass
    return {name: [obj.get(name, _MISSING) for obj in objects] for name in names}


def _set_aside(undeclared: dict[int, list[Any]], extras: list[dict[str, Any] | None]) -> str:
    """Put each row's undeclared output keys into its ``extra`` under a key no row's extra uses; return that key."""
    key = _UNDECLARED
    while any(extra is not None and key in extra for extra in extras):
        key = "$" + key
    for index, found in undeclared.items():
        extras[index] = {**(extras[index] or {}), key: found}
    return key


# -- the struct shape of an output: derived from the schema ---------------------------------------------------------

LeafKind = Literal["string", "integer", "number", "boolean"]


@dataclass(frozen=True)
class _LeafSpec:
    kind: LeafKind


@dataclass(frozen=True)
class _PropSpec:
    name: str
    node: _Spec
    required: bool
    nullable: bool


@dataclass(frozen=True)
class _ObjectSpec:
    props: tuple[_PropSpec, ...]


@dataclass(frozen=True)
class _ArraySpec:
    items: _Spec
    items_nullable: bool


_Spec: TypeAlias = _LeafSpec | _ObjectSpec | _ArraySpec

_LEAF_TYPES: Final[dict[LeafKind, pa.DataType]] = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
}


def _arrow_type(spec: _Spec) -> pa.DataType:
    if isinstance(spec, _LeafSpec):
        return _LEAF_TYPES[spec.kind]
    if isinstance(spec, _ArraySpec):
        return pa.list_(_arrow_type(spec.items))
    return pa.struct([pa.field(prop.name, _arrow_type(prop.node)) for prop in spec.props])


class _NotStructured(Exception):
    """Why a schema's outputs are stored as JSON text (kept for logs and tests)."""


_SHAPE_KEYWORDS: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "unevaluatedProperties",
        "items",
        "prefixItems",
        "additionalItems",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
        "$dynamicRef",
        "$recursiveRef",
    }
)
"""The keywords that say which shapes are valid. Every other keyword either annotates (title, default ...) or only
narrows what is valid (bounds, pattern, format, not, if/then/else, dependentRequired ...): the shape stays exact, and
the check at encoding covers whatever a narrowing keyword might mean."""
_SCALAR_KINDS: Final[frozenset[str]] = frozenset(get_args(LeafKind))


def _struct_spec(schema: Any) -> _ObjectSpec:
    """The struct shape of every output valid under ``schema``; raises :class:`_NotStructured` when there is none
    (or none simple enough to promise exactness)."""
    if not isinstance(schema, dict):
        raise _NotStructured("the schema is not an object")
    spec, _nullable = _Deriver(schema).position(schema, 0, frozenset())
    if not isinstance(spec, _ObjectSpec):
        raise _NotStructured("the root is not an object")
    _check_arrow_accepts(spec)
    return spec


def _check_arrow_accepts(spec: _ObjectSpec) -> None:
    """Parquet must write and read the shape back (odd names, deep nesting): try it once, empty."""
    arrow_type = _arrow_type(spec)
    try:
        table = pa.table({_OUTPUT: pa.array([], arrow_type)})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        back = pq.read_table(pa.BufferReader(sink.getvalue()))
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise _NotStructured(f"parquet does not hold the shape: {exc}") from None
    if _shape(back.schema.field(_OUTPUT).type) != _shape(arrow_type):
        raise _NotStructured("parquet does not give the shape back")


class _Deriver:
    """One walk over a source schema, following local ``$ref``s."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def position(self, schema: Any, depth: int, refs: frozenset[str]) -> tuple[_Spec, bool]:
        """The shape at one place, and whether null is valid there."""
        if depth > _MAX_DEPTH:
            raise _NotStructured(f"nested deeper than {_MAX_DEPTH} levels")
        if schema is True or (isinstance(schema, dict) and not schema.keys() & _SHAPE_KEYWORDS):
            raise _NotStructured("a value of any type")
        if not isinstance(schema, dict):
            raise _NotStructured(f"not a schema here: {schema!r}")
        if depth and isinstance(schema.get("$id"), str):
            raise _NotStructured("a nested $id (a new base for $refs)")
        shape = schema.keys() & _SHAPE_KEYWORDS
        if "$dynamicRef" in shape or "$recursiveRef" in shape:
            raise _NotStructured("a dynamic $ref")
        if "$ref" in shape:
            if shape != {"$ref"}:
                raise _NotStructured("$ref beside other shape keywords")
            ref = schema["$ref"]
            if not isinstance(ref, str):
                raise _NotStructured(f"a $ref that is not a string: {ref!r}")
            if ref in refs:
                raise _NotStructured(f"a recursive $ref {ref!r}")
            return self.position(self.resolve(ref), depth, refs | {ref})
        combinators = shape & {"anyOf", "oneOf", "allOf"}
        if combinators:
            if shape != combinators or len(combinators) > 1:
                raise _NotStructured("a combinator beside other shape keywords")
            (keyword,) = combinators
            return self.combinator(keyword, schema[keyword], depth, refs)
        return self.typed(schema, depth, refs)

    def resolve(self, ref: str) -> Any:
        if ref == "#":
            raise _NotStructured("a recursive $ref '#'")
        if not ref.startswith("#/"):
            raise _NotStructured(f"a $ref outside the schema: {ref!r}")
        node: Any = self.root
        for raw in ref[2:].split("/"):
            token = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise _NotStructured(f"a $ref to nowhere: {ref!r}")
        return node

    def combinator(self, keyword: str, branches: Any, depth: int, refs: frozenset[str]) -> tuple[_Spec, bool]:
        """``allOf`` of one part is that part; ``anyOf``/``oneOf`` of one schema and null is that schema,
        nullable."""
        if not isinstance(branches, list) or not branches:
            raise _NotStructured(f"{keyword} is not a list of schemas")
        if keyword == "allOf":
            if len(branches) != 1:
                raise _NotStructured("allOf of several parts")
            return self.position(branches[0], depth, refs)
        shapes = [branch for branch in branches if not _only_null(branch)]
        if len(shapes) != 1:
            raise _NotStructured(f"{keyword} of several shapes")
        spec, nullable = self.position(shapes[0], depth, refs)
        return spec, nullable or len(shapes) < len(branches)

    def typed(self, schema: dict[str, Any], depth: int, refs: frozenset[str]) -> tuple[_Spec, bool]:
        kinds, nullable = _kinds(schema)
        if kinds == {"integer", "number"}:
            kinds = {"number"}  # every integer is a number; ints keep their flavour (see the metadata)
        if len(kinds) != 1:
            raise _NotStructured(f"a union of types {sorted(kinds)}" if kinds else "null only")
        (kind,) = kinds
        if kind == "object":
            return self.object(schema, depth, refs), nullable
        if kind == "array":
            return self.array(schema, depth, refs), nullable
        if kind not in _SCALAR_KINDS:
            raise _NotStructured(f"type {kind!r}")
        return _LeafSpec(cast(LeafKind, kind)), nullable

    def object(self, schema: dict[str, Any], depth: int, refs: frozenset[str]) -> _ObjectSpec:
        properties = schema.get("properties")
        if not isinstance(properties, dict) or not properties:
            raise _NotStructured("an object without properties")
        additional = schema.get("additionalProperties", _MISSING)
        if additional is not False and additional is not _MISSING:
            raise _NotStructured("additionalProperties allows undeclared keys (a map or an open object)")
        if schema.get("patternProperties"):
            raise _NotStructured("patternProperties")
        if additional is _MISSING and schema.get("unevaluatedProperties", False) is not False:
            raise _NotStructured("unevaluatedProperties allows undeclared keys")
        required = schema.get("required", [])
        if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
            raise _NotStructured("required is not a list of names")
        if not set(required) <= properties.keys():
            raise _NotStructured("a required key that is not a declared property")
        props = []
        for name, sub in properties.items():
            node, nullable = self.position(sub, depth + 1, refs)
            props.append(_PropSpec(name, node, name in required, nullable))
        return _ObjectSpec(tuple(props))

    def array(self, schema: dict[str, Any], depth: int, refs: frozenset[str]) -> _ArraySpec:
        if "prefixItems" in schema or isinstance(schema.get("items"), list):
            raise _NotStructured("a tuple (prefixItems, items as a list)")
        items = schema.get("items", _MISSING)
        if items is _MISSING:
            raise _NotStructured("array items of any type")
        node, nullable = self.position(items, depth + 1, refs)
        return _ArraySpec(node, nullable)


def _kinds(schema: dict[str, Any]) -> tuple[set[str], bool]:
    """The non-null types a schema allows, and whether it allows null (``type``, narrowed by ``enum``/``const``)."""
    declared = schema.get("type", _MISSING)
    values: list[Any] | None = None
    if "const" in schema:
        values = [schema["const"]]
    elif "enum" in schema:
        if not isinstance(schema["enum"], list) or not schema["enum"]:
            raise _NotStructured("an empty enum")
        values = schema["enum"]
    value_types = None if values is None else {_json_type(value) for value in values}
    if declared is _MISSING:
        if value_types is None:
            raise _NotStructured("a value of any type")
        types = value_types
    elif isinstance(declared, str):
        types = {declared}
    elif isinstance(declared, list) and declared and all(isinstance(name, str) for name in declared):
        types = set(declared)
    else:
        raise _NotStructured(f"type {declared!r}")
    if value_types is not None:
        # An enum narrows the declared types to those some value has (an integer value is a number too): ["x", null]
        # under type string allows no null.
        types = {kind for kind in types if kind in value_types or (kind == "number" and "integer" in value_types)}
    return types - {"null"}, "null" in types


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _only_null(schema: Any) -> bool:
    """A branch that matches null alone: ``{"type": "null"}`` (also as ``const``/``enum``), annotations aside."""
    if not isinstance(schema, dict):
        return False
    shape = schema.keys() & _SHAPE_KEYWORDS
    if shape == {"type"}:
        return bool(schema["type"] == "null" or schema["type"] == ["null"])
    if shape == {"const"}:
        return schema["const"] is None
    if shape == {"enum"}:
        return bool(schema["enum"] == [None])
    return False


# -- the struct shape of an output: building it from the rows -------------------------------------------------------


class _Column(Protocol):
    """One place of the shape, filled with the values there for a whole part at once, in Arrow's layout: one slot
    per value, nulls included (a struct's child has a slot for each slot of its parent, a list's child one for each
    element). Column by column, so checking a value is a C-level pass over its column, not a Python call."""

    def fill(self, values: list[Any]) -> bool:
        """Take the values (None for a null slot); False when one does not fit (the part is then written as json)."""
        ...

    def build(self) -> pa.Array: ...

    def rules(self, path: list[str | None], out: dict[str, list[Any]]) -> None:
        """Add what decoding needs besides the values (metadata ``fields`` and ``numbers``)."""
        ...


class _ScalarColumn:
    """string or bool: Arrow's conversion at build() is the check (it takes nothing else: bytes aside, which JSON has
    not), so a misfit makes the build fail and the part json."""

    __slots__ = ("arrow_type", "values")

    def __init__(self, arrow_type: pa.DataType) -> None:
        self.arrow_type = arrow_type
        self.values: list[Any] = []

    def fill(self, values: list[Any]) -> bool:
        self.values = values
        return True

    def build(self) -> pa.Array:
        return pa.array(self.values, self.arrow_type)

    def rules(self, path: list[str | None], out: dict[str, list[Any]]) -> None:
        return None


class _NumberColumn:
    """float64. An int is stored as its float and its slot remembered: decoding gives the int back."""

    __slots__ = ("as_float", "as_int", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self.as_int: list[int] = []  # slots of integral values written as ints
        self.as_float: list[int] = []  # slots of integral values written as floats

    def fill(self, values: list[Any]) -> bool:
        self.values = values
        types = _types(values)
        if not types <= {float, int, _NONE}:
            return False
        if int in types:  # else every value is a float: nothing to remember
            self.as_int = [slot for slot, value in enumerate(values) if type(value) is int]
            if any(abs(values[slot]) > _EXACT_IN_FLOAT for slot in self.as_int):
                return False  # not exactly a float64
            self.as_float = [slot for slot, value in enumerate(values) if type(value) is float and value.is_integer()]
        return True

    def build(self) -> pa.Array:
        return pa.array(self.values, pa.float64())  # Arrow converts the ints (exactly: checked above)

    def rules(self, path: list[str | None], out: dict[str, list[Any]]) -> None:
        # Integral values decode as floats unless most were ints; the others are listed.
        if len(self.as_int) > len(self.as_float):
            out["numbers"].append({"path": path, "integral": "int", "except": self.as_float})
        elif self.as_int:
            out["numbers"].append({"path": path, "integral": "float", "except": self.as_int})


class _IntegerColumn(_NumberColumn):
    """int64. An integral float (JSON Schema's integer allows ``3.0``) is stored as its int and remembered."""

    __slots__ = ()

    def fill(self, values: list[Any]) -> bool:
        types = _types(values)
        if not types <= {int, float, _NONE}:
            return False
        if float in types:  # else every value is an int: nothing to remember
            self.as_float = [slot for slot, value in enumerate(values) if type(value) is float]
            if not all(_int_like(values[slot]) for slot in self.as_float):
                return False
            self.as_int = [slot for slot, value in enumerate(values) if type(value) is int]
            values = list(values)
            for slot in self.as_float:
                values[slot] = int(values[slot])
        self.values = values
        return True  # an int beyond int64 makes build() fail: the part is then json

    def build(self) -> pa.Array:
        return pa.array(self.values, pa.int64())

    def rules(self, path: list[str | None], out: dict[str, list[Any]]) -> None:
        if len(self.as_float) > len(self.as_int):
            out["numbers"].append({"path": path, "integral": "float", "except": self.as_int})
        elif self.as_float:
            out["numbers"].append({"path": path, "integral": "int", "except": self.as_float})


def _int_like(value: float) -> bool:
    """An integral float that an int64 holds and gives back exactly (-0.0 has no int)."""
    return value.is_integer() and abs(value) <= _EXACT_IN_FLOAT and not (value == 0 and math.copysign(1.0, value) < 0)


@dataclass
class _Prop:
    name: str
    column: _Column
    required: bool
    nullable: bool
    absent: list[int]  # slots of the parent where the key was absent
    null: list[int]  # slots of the parent where the key was there and null (counted for optional keys only)


class _ObjectColumn:
    __slots__ = ("arrow_type", "declared", "nulls", "props")

    def __init__(self, spec: _ObjectSpec) -> None:
        self.props = [_Prop(p.name, _column(p.node), p.required, p.nullable, [], []) for p in spec.props]
        self.declared = frozenset(prop.name for prop in self.props)
        self.nulls: list[bool] | None = None
        self.arrow_type = _arrow_type(spec)

    def fill(self, values: list[Any]) -> bool:
        types = _types(values)
        if not types <= {dict, _NONE}:
            return False
        if _NONE in types:
            self.nulls = [value is None for value in values]
            objects = [value for value in values if value is not None]
        else:
            objects = values
        if not all(map(self.declared.issuperset, objects)):
            return False  # an undeclared key
        columns = _transposed(objects, [prop.name for prop in self.props])
        return all(self._fill_prop(prop, columns[prop.name]) for prop in self.props)

    def _fill_prop(self, prop: _Prop, present: list[Any]) -> bool:
        """Fill one property's column from its values in the non-null objects (``present``, in slot order)."""
        nulls = self.nulls
        if nulls is None:
            items = present
        else:
            values = iter(present)
            items = [None if null else next(values) for null in nulls]
        types = _types(items)
        if _NONE in types:  # a null where the parent is an object is the key's own null
            if nulls is None:
                own = [slot for slot, item in enumerate(items) if item is None]
            else:
                own = [slot for slot, item in enumerate(items) if item is None and not nulls[slot]]
            if own and not prop.nullable:
                return False
            if not prop.required:
                prop.null = own
        if object in types:  # the key is absent somewhere (``_MISSING``)
            if prop.required:
                return False
            prop.absent = [slot for slot, item in enumerate(items) if item is _MISSING]
            for slot in prop.absent:
                items[slot] = None
        return prop.column.fill(items)

    def build(self) -> pa.Array:
        children = [prop.column.build() for prop in self.props]
        mask = pa.array(self.nulls, pa.bool_()) if self.nulls is not None else None
        return pa.StructArray.from_arrays(children, fields=list(self.arrow_type), mask=mask)

    def rules(self, path: list[str | None], out: dict[str, list[Any]]) -> None:
        for prop in self.props:
            where = [*path, prop.name]
            # A null where this key was optional: "absent" or "null", whichever most such slots were.
            if len(prop.absent) > len(prop.null):
                out["fields"].append({"path": where, "null": "absent", "except": prop.null})
            elif prop.absent:
                out["fields"].append({"path": where, "null": "null", "except": prop.absent})
            prop.column.rules(where, out)


class _ArrayColumn:
    __slots__ = ("arrow_type", "child", "items_nullable", "nulls", "offsets")

    def __init__(self, spec: _ArraySpec) -> None:
        self.child = _column(spec.items)
        self.items_nullable = spec.items_nullable
        self.offsets: list[int] = [0]
        self.nulls: list[bool] | None = None
        self.arrow_type = _arrow_type(spec)

    def fill(self, values: list[Any]) -> bool:
        types = _types(values)
        if not types <= {list, _NONE}:
            return False
        if _NONE in types:
            self.nulls = [value is None for value in values]
            lists = [value for value in values if value is not None]
            self.offsets = [0, *accumulate(0 if value is None else len(value) for value in values)]
        else:
            lists = values
            self.offsets = [0, *accumulate(map(len, values))]
        if self.offsets[-1] > 2**31 - 1:
            return False  # more elements than a list's 32-bit offsets reach
        items = list(chain.from_iterable(lists))
        if not self.items_nullable and _NONE in _types(items):
            return False
        return self.child.fill(items)

    def build(self) -> pa.Array:
        mask = pa.array(self.nulls, pa.bool_()) if self.nulls is not None else None
        offsets = pa.array(self.offsets, pa.int32())
        return pa.ListArray.from_arrays(offsets, self.child.build(), type=self.arrow_type, mask=mask)

    def rules(self, path: list[str | None], out: dict[str, list[Any]]) -> None:
        self.child.rules([*path, None], out)


def _column(spec: _Spec) -> _Column:
    if isinstance(spec, _ObjectSpec):
        return _ObjectColumn(spec)
    if isinstance(spec, _ArraySpec):
        return _ArrayColumn(spec)
    if spec.kind == "string":
        return _ScalarColumn(pa.string())
    if spec.kind == "boolean":
        return _ScalarColumn(pa.bool_())
    return _IntegerColumn() if spec.kind == "integer" else _NumberColumn()


def _struct_output(
    spec: _ObjectSpec, outputs: list[Any]
) -> tuple[pa.Array, dict[str, list[Any]], dict[int, list[Any]]] | None:
    """The outputs as one struct array, the metadata rules, and per row the undeclared keys set aside (``[[path,
    {key: value}], ...]``); None when an output does not fit the shape (the part is then written as json)."""
    root = _ObjectColumn(spec)
    undeclared: dict[int, list[Any]] = {}
    if not root.fill(outputs):
        # Mostly a key an open object does not declare: set those keys aside and try again, so an open object's
        # extras cost their rows a little room in ``extra`` instead of the part its typed columns.
        stripper = _Stripper()
        stripped: list[Any] = []
        for index, output in enumerate(outputs):
            found: list[Any] = []
            stripped.append(stripper.strip(spec, output, [], found))
            if found:
                undeclared[index] = found
        root = _ObjectColumn(spec)
        if not undeclared or not root.fill(stripped):
            return None
    try:
        array = root.build()
    except (pa.ArrowException, ValueError, OverflowError):
        return None  # what Arrow refuses (an int beyond int64 ...) makes the part json, never an error
    rules: dict[str, list[Any]] = {"fields": [], "numbers": []}
    root.rules([], rules)
    return array, rules, undeclared


class _Stripper:
    """Copies an output without the keys its shape does not declare, noting them with their place."""

    def __init__(self) -> None:
        self._declared: dict[int, dict[str, _PropSpec]] = {}

    def strip(self, spec: _Spec, value: Any, path: list[str | int], found: list[Any]) -> Any:
        if isinstance(spec, _ObjectSpec) and type(value) is dict:
            declared = self._declared.get(id(spec))
            if declared is None:
                declared = self._declared[id(spec)] = {prop.name: prop for prop in spec.props}
            kept: dict[str, Any] = {}
            extra: dict[str, Any] = {}
            for key, item in value.items():
                prop = declared.get(key)
                if prop is None:
                    extra[key] = item
                else:
                    kept[key] = self.strip(prop.node, item, [*path, key], found)
            if extra:
                found.append([path, extra])
            return kept
        if isinstance(spec, _ArraySpec) and type(value) is list:
            return [self.strip(spec.items, item, [*path, index], found) for index, item in enumerate(value)]
        return value  # a leaf, a null, or a value of the wrong type (which the shredding then refuses)


# -- decoding -----------------------------------------------------------------------------------------------------


def decode_part(data: bytes, fmt: PartFormat) -> list[tuple[int, bytes]]:
    """The rows of a part file, in the order encoded: ``(ordinal, result line JSON bytes)``.

    Args:
        data: The part file's bytes.
        fmt: Its format.

    Returns:
        The rows; each line JSON-equal to the one encoded (for ``jsonl`` formats, the same bytes).

    Raises:
        PartFormatError: The bytes are not a complete part of that format (truncated, corrupted, foreign).
    """
    fmt = _check_format(fmt)
    if fmt == "parquet":
        return _decode_parquet(data)
    if fmt == "jsonl.gz":
        data = _gunzip(data)
    return _decode_jsonl(data)


def _gunzip(data: bytes) -> bytes:
    if not data:
        raise PartFormatError("an empty file is not a gzip part")
    try:
        return gzip.decompress(data)  # every member, one after the other
    except (OSError, EOFError, zlib.error) as exc:
        raise PartFormatError(f"not a complete gzip file: {exc}") from None


_KEY: Final = b'"ordinal":'
_KEY_LENGTH: Final = len(_KEY)
_COMMA: Final = ord(",")
_BRACE: Final = ord("{")


def _decode_jsonl(data: bytes) -> list[tuple[int, bytes]]:
    if not data:
        return []
    if not data.endswith(b"\n"):
        raise PartFormatError("truncated: the last line has no newline")
    lines = data.split(b"\n")
    lines.pop()
    rows: list[tuple[int, bytes]] = []
    append = rows.append
    for number, line in enumerate(lines, 1):
        # The encoder's own lines end in ',"ordinal":N}': cut the key off, which restores the bytes encoded. That
        # key closes the top-level object (the line's last byte), so it cannot be part of a nested value or string.
        at = line.rfind(_KEY)
        if at > 0 and line[-1:] == b"}" and line[0] == _BRACE:
            digits = line[at + _KEY_LENGTH : -1]
            before = line[at - 1]
            if digits.isdigit() and (before == _COMMA or at == 1):
                append((int(digits), line[: at - 1] + b"}" if before == _COMMA else b"{}"))
                continue
        append(_parsed_jsonl_row(line, number))
    return rows


def _parsed_jsonl_row(line: bytes, number: int) -> tuple[int, bytes]:
    """A line in another layout (re-serialized, edited): parse it."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise PartFormatError(f"line {number} is not JSON: {exc}") from None
    if type(record) is not dict:
        raise PartFormatError(f"line {number} is not a JSON object")
    ordinal = record.pop(_ORDINAL, None)
    if type(ordinal) is not int or ordinal < 0:
        raise PartFormatError(f'line {number} has no "ordinal" (a non-negative integer)')
    return ordinal, orjson.dumps(record)


@dataclass(frozen=True)
class _Rules:
    """What the typed output column of a struct-mode part does not say by itself (the metadata's rules)."""

    fields: dict[tuple[str | None, ...], tuple[bool, frozenset[int]]]  # path -> (null means absent, except slots)
    numbers: dict[tuple[str | None, ...], tuple[bool, frozenset[int]]]  # path -> (integral as int, except slots)


@dataclass(frozen=True)
class _PartMetadata:
    mode: OutputMode
    rules: _Rules
    absent: dict[int, list[str]]  # row index -> the result line's keys it did not have
    undeclared: str | None  # the key of ``extra`` that holds an output's undeclared keys
    rows: int


def _read_metadata(raw: bytes | None) -> _PartMetadata:
    if raw is None:
        raise PartFormatError(f"a parquet file without {METADATA_KEY.decode()} metadata: not a results part")
    try:
        meta = orjson.loads(raw)
        if meta["version"] != METADATA_VERSION:
            raise PartFormatError(f"a part of format version {meta['version']!r}, this reads {METADATA_VERSION}")
        mode = meta["output"]
        if mode not in ("struct", "json"):
            raise PartFormatError(f"unknown output mode {mode!r}")
        fields = {}
        for rule in meta.get("fields", []):
            fields[_path(rule["path"])] = (_choice(rule["null"], "absent", "null"), _slots(rule))
        numbers = {}
        for rule in meta.get("numbers", []):
            numbers[_path(rule["path"])] = (_choice(rule["integral"], "int", "float"), _slots(rule))
        absent = {int(index): [str(name) for name in names] for index, names in meta.get("absent", [])}
        rows = meta["rows"]
        if type(rows) is not int:
            raise TypeError(f"rows is {rows!r}")
        undeclared = meta.get("undeclared")
        if undeclared is not None and not isinstance(undeclared, str):
            raise TypeError(f"undeclared is {undeclared!r}")
    except PartFormatError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise PartFormatError(f"unreadable {METADATA_KEY.decode()} metadata: {exc!r}") from None
    return _PartMetadata(mode, _Rules(fields, numbers), absent, undeclared, rows)


def _path(raw: Any) -> tuple[str | None, ...]:
    if not isinstance(raw, list) or not all(step is None or isinstance(step, str) for step in raw):
        raise TypeError(f"bad path {raw!r}")
    return tuple(raw)


def _choice(raw: Any, yes: str, no: str) -> bool:
    if raw not in (yes, no):
        raise ValueError(f"{raw!r} is neither {yes!r} nor {no!r}")
    return bool(raw == yes)


def _slots(rule: Mapping[str, Any]) -> frozenset[int]:
    slots = rule.get("except", [])
    if not isinstance(slots, list) or not all(type(slot) is int for slot in slots):
        raise TypeError(f"bad slots {slots!r}")
    return frozenset(slots)


_READ_ERRORS: Final = (pa.ArrowException, OSError, ValueError, EOFError, IndexError, KeyError, TypeError)


def _decode_parquet(data: bytes) -> list[tuple[int, bytes]]:
    try:
        file = pq.ParquetFile(pa.BufferReader(data), page_checksum_verification=True)
        stored = file.metadata.metadata or {}
        meta = _read_metadata(stored.get(METADATA_KEY))
        table = file.read()
        if stored.get(CHECK_KEY) != _footer_check(stored[METADATA_KEY], table.schema):
            raise PartFormatError("the part's footer does not match its check: corrupted")
        if table.num_rows != meta.rows:
            raise PartFormatError(f"{table.num_rows} rows where the part says {meta.rows}: corrupted")
    except PartFormatError:
        raise
    except _READ_ERRORS as exc:
        raise PartFormatError(f"not a readable parquet part: {exc}") from None
    names = table.column_names
    if names[:1] != [_ORDINAL] or names[-1:] != [_EXTRA] or _OUTPUT not in names:
        raise PartFormatError(f"unexpected columns {names}")
    if table.num_rows == 0:
        return []
    try:
        return _rows(table, meta)
    except PartFormatError:
        raise
    except _READ_ERRORS as exc:
        raise PartFormatError(f"a part whose columns do not match its metadata: {exc}") from None


def _rows(table: pa.Table, meta: _PartMetadata) -> list[tuple[int, bytes]]:
    """Each row's result line, written by Arrow's string kernels column by column (no Python object per value):
    every column becomes the JSON texts of its values, and a row is its keys and texts joined. The few rows that
    ``extra`` or a missing key concern are then mended through orjson."""
    ordinal_column = table.column(0).combine_chunks()
    if ordinal_column.type != pa.int64() or ordinal_column.null_count:
        raise PartFormatError("the ordinal column is not a non-null int64")
    ordinals: list[int] = ordinal_column.to_pylist()
    pieces: list[Any] = []
    for index, name in enumerate(table.column_names[1:-1]):
        column = table.column(name).combine_chunks()
        prefix = ("{" if index == 0 else ",") + _key(name)
        pieces.append(_output_text(prefix, column, meta) if name == _OUTPUT else _member(prefix, column, (), _NO_RULES))
    pieces.append(_literal("}"))
    lines: list[bytes] = _concat(*pieces).cast(pa.large_binary()).to_pylist()
    if len(lines) != len(ordinals):
        raise PartFormatError("the columns do not make as many lines as there are rows")
    patches = _extra_keys(table.column(_EXTRA).combine_chunks())
    for index in sorted(patches.keys() | meta.absent.keys()):
        record = orjson.loads(lines[index])
        if index in patches:
            _patch(record, patches[index], meta.undeclared)
        for name in meta.absent.get(index, ()):
            record.pop(name, None)
        lines[index] = orjson.dumps(record)
    return list(zip(ordinals, lines, strict=True))


def _patch(record: dict[str, Any], extra: dict[str, Any], undeclared: str | None) -> None:
    """Put back what ``extra`` holds: the line's other keys, and the output's undeclared keys at their places."""
    if undeclared is not None and undeclared in extra:
        extra = dict(extra)
        for path, keys in extra.pop(undeclared):
            node = record[_OUTPUT]
            for step in path:
                node = node[step]
            if type(node) is not dict or type(keys) is not dict:
                raise PartFormatError(f"undeclared keys at {path!r} that is not an object")
            node.update(keys)
    record.update(extra)


def _extra_keys(extras: pa.Array) -> dict[int, dict[str, Any]]:
    """Row index -> the keys its ``extra`` holds (rare: most parts have none)."""
    patches: dict[int, dict[str, Any]] = {}
    if extras.null_count == len(extras):
        return patches
    for index, text in enumerate(extras.to_pylist()):
        if text is not None:
            patch = orjson.loads(text)
            if type(patch) is not dict:
                raise PartFormatError(f"row {index}: extra is not a JSON object")
            patches[index] = patch
    return patches


# -- decoding: JSON text from Arrow columns ------------------------------------------------------------------------

_TEXT: Final = pa.large_string()  # 64-bit offsets: a part's lines may pass 2 GiB together
_NO_RULES: Final = _Rules({}, {})
_NOT_CONTROL: Final = bytes(range(32, 256))


def _literal(text: str) -> pa.Scalar:
    return pa.scalar(text, _TEXT)


_QUOTE: Final = _literal('"')
_NOTHING: Final = _literal("")
_COMMA_TEXT: Final = _literal(",")


def _key(name: str) -> str:
    return orjson.dumps(name).decode() + ":"


def _concat(*parts: Any) -> pa.Array:
    """Element-wise concatenation; null where any part is null."""
    return pc.binary_join_element_wise(*parts, _NOTHING)


def _output_text(prefix: str, column: pa.Array, meta: _PartMetadata) -> pa.Array:
    if meta.mode == "struct":
        if not pa.types.is_struct(column.type):
            raise PartFormatError("a struct-mode output column that is not a struct")
        return _member(prefix, column, (), meta.rules)
    if not pa.types.is_string(column.type):
        raise PartFormatError("a json-mode output column that is not a string")
    # The JSON text as it is: orjson wrote it, and the page checksums vouch that it is what orjson wrote.
    return pc.fill_null(_concat(_literal(prefix), column.cast(_TEXT)), _literal(prefix + "null"))


def _text(array: pa.Array, path: tuple[str | None, ...], rules: _Rules) -> pa.Array:
    """The JSON text of each value of one place (``null`` for a null), by its type and the metadata's rules."""
    return _member("", array, path, rules)


def _member(prefix: str, array: pa.Array, path: tuple[str | None, ...], rules: _Rules) -> pa.Array:
    """``prefix`` (a key, its comma or brace) and the JSON text of each value, in one concatenation: every byte of a
    part is copied as few times as possible (memory bandwidth is what decoding costs now)."""
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _concat(_literal(prefix + '"'), _escaped(array), _QUOTE)  # the quotes with the key: no copy of its own
    elif pa.types.is_struct(kind):
        return _struct_text(prefix, array, path, rules)
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        text = _concat(_literal(prefix + "["), pc.binary_join(_lists(array, path, rules), _COMMA_TEXT), _literal("]"))
    elif pa.types.is_boolean(kind):
        text = _concat(_literal(prefix), array.cast(_TEXT))  # true / false
    elif pa.types.is_int64(kind):
        text = _concat(_literal(prefix), _integer_text(array, rules.numbers.get(path)))
    elif pa.types.is_float64(kind):
        text = _concat(_literal(prefix), _float_text(array, rules.numbers.get(path)))
    else:
        raise PartFormatError(f"a column of type {kind} at {list(path)}: not a results part")
    return pc.fill_null(text, _literal(prefix + "null"))


def _escaped(array: pa.Array) -> pa.Array:
    """Strings with JSON's escapes (only the backslash, the quote and the control characters need one). They are
    looked for once in the raw bytes (a few cycles a byte), and a replacement pass runs only for those present."""
    text = array.cast(_TEXT)
    data = text.buffers()[2]
    raw = data.to_pybytes() if data is not None else b""
    if b"\\" in raw:
        text = pc.replace_substring(text, "\\", "\\\\")
    if b'"' in raw:
        text = pc.replace_substring(text, '"', '\\"')
    for code in sorted(set(raw.translate(None, _NOT_CONTROL))):
        text = pc.replace_substring(text, chr(code), f"\\u{code:04x}")
    return text


def _integer_text(array: pa.Array, rule: tuple[bool, frozenset[int]] | None) -> pa.Array:
    text = array.cast(_TEXT)
    if rule is None:
        return text
    as_int_by_default, exceptions = rule
    marked = _slots_mask(len(array), exceptions)
    as_float = marked if as_int_by_default else pc.invert(marked)  # integral floats stored as ints: ``3.0``
    return pc.if_else(as_float, _concat(text, _literal(".0")), text)


def _float_text(array: pa.Array, rule: tuple[bool, frozenset[int]] | None) -> pa.Array:
    # Arrow writes the shortest text that reads back as the same double ("0.1", "1e+300"), but an integral one
    # without a point ("3", "-0"): a float gets its ".0" back, so that it reads back as a float.
    text = array.cast(_TEXT)
    as_float = pc.replace_substring_regex(text, r"^(-?[0-9]+)$", r"\1.0")
    if rule is None:
        return as_float
    as_int_by_default, exceptions = rule
    marked = _slots_mask(len(array), exceptions)
    integral = pc.equal(pc.floor(array), array)
    as_int = pc.and_(integral, pc.invert(marked) if as_int_by_default else marked)
    # Ints were stored only up to 2**53, where int64 and float64 agree; an integral float may print as "9e+15",
    # so an int's text comes from its int64 value.
    ints = pc.if_else(as_int, array, pa.scalar(0.0)).cast(pa.int64()).cast(_TEXT)
    return pc.if_else(as_int, ints, as_float)


def _slots_mask(length: int, slots: frozenset[int]) -> pa.Array:
    marks = [False] * length
    for slot in slots:
        marks[slot] = True
    return pa.array(marks, pa.bool_())


def _struct_text(prefix: str, array: pa.StructArray, path: tuple[str | None, ...], rules: _Rules) -> pa.Array:
    kind = array.type
    names = [kind.field(index).name for index in range(kind.num_fields)]
    field_rules = [rules.fields.get((*path, name)) for name in names]
    # The brace opens with the first member when that one is always there. When it may be left out, every member
    # starts with a comma, and the first comma is trimmed off (a copy more, for such objects only).
    trim = field_rules[0] is not None
    pieces = []
    for index, (name, field_rule) in enumerate(zip(names, field_rules, strict=True)):
        child = array.field(index)
        lead = prefix + "{" if index == 0 and not trim else ","
        piece = _member(lead + _key(name), child, (*path, name), rules)
        if field_rule is not None:
            absent_by_default, exceptions = field_rule
            marked = _slots_mask(len(array), exceptions)
            absent = pc.and_(child.is_null(), pc.invert(marked) if absent_by_default else marked)
            piece = pc.if_else(absent, _NOTHING, piece)  # the key left out
        pieces.append(piece)
    if trim:
        body = pc.utf8_ltrim(_concat(*pieces), characters=",")
        text = _concat(_literal(prefix + "{"), body, _literal("}"))
    else:
        text = _concat(*pieces, _literal("}"))
    if array.null_count:
        text = pc.if_else(array.is_valid(), text, _literal(prefix + "null"))
    return text


def _lists(array: pa.Array, path: tuple[str | None, ...], rules: _Rules) -> pa.Array:
    """The lists of the JSON texts of their items (null for a null list), ready for one join."""
    items = _text(array.flatten(), (*path, None), rules)  # flatten: exactly the encoder's child slots
    lengths = pc.fill_null(pc.list_value_length(array), 0).cast(pa.int64())
    offsets = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum(lengths)])
    return pa.LargeListArray.from_arrays(offsets, items, mask=array.is_null() if array.null_count else None)
