"""Compare two extraction runs over the same documents, field by field (``producer compare``). Pure: no Redis, no
I/O; callers pass the result lines (dicts, as the native result line JSON) and the batch's strict JSON Schema.

**Matching.** Lines are matched by ``custom_id`` (a run's later line with the same id replaces an earlier one, as
``collect`` keeps each line's latest; the replaced ones are counted as ``duplicates``) or by document
(``by="document"``): a line's ``document_fingerprint`` when it carries one, else its ``fingerprint``. The
``fingerprint`` covers the API, model, schema, instructions and parameters too, so two runs that differ in any of
those match by it only through ``document_fingerprint``. When matching by document the same document may occur
several times in a run: its k-th occurrence in A is matched with its k-th occurrence in B.

**Status.** Every matched pair is counted by (status A, status B); "succeeded" means ``status == "succeeded"`` with
an ``output`` object; anything else (failed, cancelled) is "failed" here. Only pairs that succeeded on both sides
enter field agreement; the others are in the status section (counts, error types, examples).

**Fields.** The JSON Schema gives every path (``$ref``/``$defs`` resolved; nullable as ``anyOf [..., null]`` or
``type: [x, "null"]``): a leaf per scalar (``vendor``, ``vendor_address.city``, ``line_items[].quantity``), an entry
per list for its length (``line_items``) and one per nullable object for its presence (``vendor_address``), so every
path is listed even when both runs have it null. A value missing from an output counts as null. Rules: exact for
enums, booleans and integers (a bool is never equal to a number); strings normalised (Unicode NFKC, casefold,
whitespace collapsed and stripped), their exact agreement recorded too; numbers within the relative tolerance
(``|a - b| <= tol * max(|a|, |b|)``); a union of several kinds, or a schema without a type, by the values' own
types; a recursive ``$ref`` as JSON equality. Null in both is agreement (counted as ``null_both``); null in one only
is a disagreement of kind ``null vs value``. List items are matched by position, or by an item field
(``CompareOptions.list_keys``, key values compared as strings are, normalised); an item only on one side is a
disagreement (``only in A`` / ``only in B``) of every field below it, so item fields are compared over the longer
list. The length entry's agreement is the lists' lengths being equal. A record agrees when all its entries do.

**Usage.** Token totals, cost and latency p50/p95 (linear interpolation between the closest ranks, as numpy's
default) over the matched lines, whatever their status, with B - A and B / A. The percentiles are exact up to
:data:`LATENCY_SAMPLE` matched lines per run; past it they are taken over a uniform sample of that many (reservoir
sampling, Algorithm R, seeded: the same runs give the same figures).

**Streaming, in bounded memory.** Both runs are read as streams of chunks (:class:`CompareStream`,
:func:`compare_chunks`; :func:`compare_runs` chunks two iterables), a chunk of A then a chunk of B, and folded as
they come: the comparison keeps counters, a bounded number of disagreement patterns per field
(:data:`MAX_PATTERNS`) with ``CompareOptions.examples`` custom_ids each, :data:`STATUS_EXAMPLES` examples per status
difference, and the lines still waiting for their partner. The join is a merge: a line is matched the moment its
partner from the other run has been read, so two runs in the same input order (a shadow batch, a re-run of the same
input) hold about one chunk. Runs in different orders hold the lines read on one side and not yet on the other; at
most ``CompareOptions.max_pending`` of them (:data:`MAX_PENDING`), past which :class:`PendingLimitError` is raised,
saying so. The lines left waiting at the end are the lines only in one run. Within a pair of chunks, matched pairs
are folded in A's order. A ``custom_id`` repeated within a run replaces its earlier line while that line is still
waiting (counted in ``duplicates``); one repeated after its earlier line was matched is a line of its own.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import random
import unicodedata
from collections import Counter, deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, TypeGuard, cast

from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from producer.errors import InputError

__all__ = [
    "DEFAULT_OPTIONS",
    "CompareOptions",
    "CompareStream",
    "Comparison",
    "Delta",
    "Disagreement",
    "Example",
    "FieldKind",
    "FieldStats",
    "PendingLimitError",
    "RecordAgreement",
    "RunInfo",
    "RunUsage",
    "StatusComparison",
    "StatusExample",
    "TopDisagreement",
    "UsageComparison",
    "compare_chunks",
    "compare_runs",
    "comparison_html",
    "comparison_json",
    "comparison_table",
    "normalise_string",
    "percentile",
    "printable",
]

FieldKind = Literal["enum", "boolean", "integer", "number", "string", "object", "array", "any"]
DisagreementKind = Literal["value", "null vs value", "only in A", "only in B", "length"]

MAX_PATTERNS = 1_000
"""Distinct (A, B) disagreement pairs tracked per field; past it, new pairs are counted in the field's totals but not
ranked (so a pair first seen after 1,000 others cannot be among the field's most frequent)."""
MAX_PENDING = 100_000
"""Default cap on lines held waiting for their partner from the other run (``CompareOptions.max_pending``)."""
LATENCY_SAMPLE = 10_000
"""Latencies kept per run for the percentiles: all of them up to this many, then a uniform sample of this size."""
CHUNK = 1_000
"""Lines read from each run per step by :func:`compare_runs`."""
_MAX_NAMES = 100
"""Distinct models, APIs, tiers, status pairs and error types counted apart per run; later new ones are not listed
(models, APIs, tiers) or are counted under ``(other)`` (status pairs, error types)."""
STATUS_EXAMPLES = 5
"""custom_ids kept per status difference and for lines only in one run."""
_VALUE_CHARS = 120
"""A value shown in the table or the HTML page is cut to this many characters (the JSON form keeps it whole)."""


@dataclass(frozen=True)
class CompareOptions:
    by: Literal["custom_id", "document"] = "custom_id"
    """Match lines by ``custom_id``, or by the line's document fingerprint (see the module docstring)."""
    number_tolerance: float = 0.01
    """Relative tolerance for numbers: ``|a - b| <= tol * max(|a|, |b|)``. Integers are compared exactly."""
    list_keys: Mapping[str, str] = field(default_factory=dict)
    """List path -> the item field to match items by (else by position), e.g. ``{"line_items": "description"}``."""
    examples: int = 3
    """Most frequent disagreements kept per field, and custom_ids kept per disagreement."""
    top_disagreements: int = 10
    """Disagreements listed across all fields (most frequent first)."""
    max_pending: int = MAX_PENDING
    """Lines held waiting for their partner from the other run; past it :class:`PendingLimitError` (see the module
    docstring). A chunk of A waits for the chunk of B read with it: keep it above the chunk size."""

    def __post_init__(self) -> None:
        if self.by not in ("custom_id", "document"):
            raise ValueError(f"by must be 'custom_id' or 'document', not {self.by!r}")
        if not (self.number_tolerance >= 0 and math.isfinite(self.number_tolerance)):
            raise ValueError(f"number_tolerance must be a finite number >= 0, not {self.number_tolerance!r}")
        if self.examples < 0 or self.top_disagreements < 0:
            raise ValueError("examples and top_disagreements must be >= 0")
        if self.max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, not {self.max_pending!r}")


DEFAULT_OPTIONS = CompareOptions()


@dataclass(frozen=True)
class RunInfo:
    name: str
    models: tuple[str, ...]
    """Models of the run's lines, most frequent first (one, normally)."""
    apis: tuple[str, ...]
    service_tiers: tuple[str, ...]
    lines: int
    """Lines read (duplicates and lines without the matching key included)."""
    duplicates: int
    """Lines replaced by a later line with the same custom_id (``by="custom_id"`` only)."""
    unkeyed: int
    """Lines without a custom_id (or fingerprint, by document): not matched."""
    venues: tuple[str, ...] = ()
    """Where the run's lines were answered (``sync``, ``batch-api``), most frequent first."""

    @property
    def model(self) -> str:
        return ", ".join(self.models) if self.models else "?"

    @property
    def api(self) -> str:
        return ", ".join(self.apis) if self.apis else "?"


@dataclass(frozen=True)
class StatusExample:
    custom_id: str
    status_a: str
    status_b: str
    error_a: str | None
    """The error type on side A (``None`` when it succeeded or has none)."""
    error_b: str | None


@dataclass(frozen=True)
class StatusComparison:
    both_succeeded: int
    succeeded_a_only: int
    """Succeeded in A, failed (or cancelled) in B."""
    succeeded_b_only: int
    both_failed: int
    """Failed or cancelled on both sides."""
    pairs: tuple[tuple[str, str, int], ...]
    """(status A, status B, lines), most frequent first."""
    errors_b: tuple[tuple[str, int], ...]
    """Error types of B on the lines that succeeded in A only, most frequent first."""
    errors_a: tuple[tuple[str, int], ...]
    """Error types of A on the lines that succeeded in B only."""
    examples_a_only: tuple[StatusExample, ...]
    examples_b_only: tuple[StatusExample, ...]
    examples_both_failed: tuple[StatusExample, ...]


@dataclass(frozen=True)
class RecordAgreement:
    compared: int
    """Lines that succeeded in both runs."""
    agree: int
    """Lines whose every field agrees by its rule."""
    agree_exact: int
    """Lines whose every field agrees exactly (strings unnormalised, numbers without tolerance)."""

    @property
    def rate(self) -> float | None:
        return self.agree / self.compared if self.compared else None

    @property
    def exact_rate(self) -> float | None:
        return self.agree_exact / self.compared if self.compared else None


@dataclass(frozen=True)
class Example:
    custom_id: str
    """A's custom_id of the line (``"a-id | b-id"`` when the runs name the matched line differently)."""
    location: str | None
    """Inside a list, where: ``line_items[2].quantity`` or ``line_items["Widget"].quantity``; else None."""


@dataclass(frozen=True)
class Disagreement:
    kind: DisagreementKind
    value_a: Any
    """A's value (for a list's length entry, its length; None for an item only in B)."""
    value_b: Any
    count: int
    examples: tuple[Example, ...]


@dataclass(frozen=True)
class FieldStats:
    path: str
    kind: FieldKind
    rule: str
    compared: int
    """Observations: one per line that succeeded in both (per item inside lists: matched pairs plus items on one
    side only)."""
    agree: int
    agree_exact: int
    null_both: int
    """Null in both (counted as agreement)."""
    null_a: int
    """Null in A only, a value in B (a disagreement)."""
    null_b: int
    only_a: int
    """Items only in A (inside lists)."""
    only_b: int
    disagreements: tuple[Disagreement, ...]
    """The most frequent (A, B) pairs that disagree, most frequent first."""

    @property
    def rate(self) -> float | None:
        return self.agree / self.compared if self.compared else None

    @property
    def exact_rate(self) -> float | None:
        return self.agree_exact / self.compared if self.compared else None

    @property
    def disagree(self) -> int:
        return self.compared - self.agree


@dataclass(frozen=True)
class TopDisagreement:
    path: str
    disagreement: Disagreement


@dataclass(frozen=True)
class RunUsage:
    lines: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float | None
    """Summed over the lines with a price; None when none has one."""
    unpriced: int
    """Lines with ``cost_usd: null`` (their model has no price)."""
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_lines: int
    """Lines with a ``latency_ms`` (the percentiles are over them)."""


@dataclass(frozen=True)
class Delta:
    metric: str
    a: float | None
    b: float | None
    diff: float | None
    """B - A."""
    ratio: float | None
    """B / A (None when A is 0 or unknown)."""


@dataclass(frozen=True)
class UsageComparison:
    a: RunUsage
    b: RunUsage
    deltas: tuple[Delta, ...]

    def delta(self, metric: str) -> Delta:
        return next(d for d in self.deltas if d.metric == metric)


@dataclass(frozen=True)
class Comparison:
    a: RunInfo
    b: RunInfo
    options: CompareOptions
    matched: int
    only_a: int
    """Lines of A with no match in B."""
    only_b: int
    only_a_examples: tuple[str, ...]
    only_b_examples: tuple[str, ...]
    status: StatusComparison
    records: RecordAgreement
    fields: tuple[FieldStats, ...]
    """In schema order (see ``fields_by_agreement``)."""
    top_disagreements: tuple[TopDisagreement, ...]
    usage: UsageComparison

    @property
    def names(self) -> tuple[str, str]:
        return (self.a.name, self.b.name)

    def field(self, path: str) -> FieldStats:
        for stats in self.fields:
            if stats.path == path:
                return stats
        raise KeyError(path)

    def fields_by_agreement(self) -> list[FieldStats]:
        """Lowest agreement first; fields never compared last; ties in schema order."""
        order = {stats.path: i for i, stats in enumerate(self.fields)}
        return sorted(
            self.fields,
            key=lambda s: (s.rate is None, s.rate if s.rate is not None else 0.0, order[s.path]),
        )


# --- values --------------------------------------------------------------------------------------------------------


_INVISIBLE_FORMATS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
"""Bidirectional controls: they reorder what a terminal shows after them ("Trojan source")."""


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: control characters (C0, DEL, C1: ESC starts a terminal command, BEL
    ends one), line and paragraph separators and bidirectional controls become visible escapes (``\\x1b``,
    ``\\u202e``); everything else is kept. Rich markup is not this function's concern: print the result as a
    ``Text``, never as a markup string."""
    if text.isprintable() and not _INVISIBLE_FORMATS.intersection(text):
        return text
    out: list[str] = []
    for char in text:
        code = ord(char)
        if code < 0x20 or 0x7F <= code < 0xA0:
            out.append(f"\\x{code:02x}")
        elif char in _INVISIBLE_FORMATS or unicodedata.category(char) in ("Zl", "Zp"):
            out.append(f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out)


def normalise_string(value: str) -> str:
    """NFKC, casefold, whitespace collapsed and stripped: ``" ACME\\tCorp "`` (or full-width) -> ``"acme corp"``."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    return " ".join(folded.split())


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _exact_equal(a: Any, b: Any) -> bool:
    """JSON equality where a bool is not a number (``True != 1``) and ``1 == 1.0``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_exact_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_exact_equal(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    return bool(a == b)


def _within(a: float, b: float, tolerance: float) -> bool:
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th quantile (0..1) by linear interpolation between the closest ranks; None for no values. Computed
    exactly (``q`` as written in decimal), so the p95 of 100, 200, ..., 1000 is 955.0, not 954.9999999999999."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * Fraction(str(q))
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    share = position - low
    return float(Fraction(ordered[low]) + (Fraction(ordered[high]) - Fraction(ordered[low])) * share)


# --- the schema as a tree of compared entries ----------------------------------------------------------------------


@dataclass
class _Entry:
    path: str
    kind: FieldKind
    rule: str
    compared: int = 0
    agree: int = 0
    agree_exact: int = 0
    null_both: int = 0
    null_a: int = 0
    null_b: int = 0
    only_a: int = 0
    only_b: int = 0
    patterns: dict[str, _Pattern] = field(default_factory=dict)


@dataclass
class _Pattern:
    kind: DisagreementKind
    value_a: Any
    value_b: Any
    order: int
    count: int = 0
    examples: list[Example] = field(default_factory=list)


@dataclass
class _Node:
    kind: FieldKind
    entry: _Entry | None
    """What this node is compared as: a leaf, a list's length, a nullable object's presence; None for an object
    that cannot be null (only its properties are compared)."""
    props: tuple[tuple[str, _Node], ...] = ()
    items: _Node | None = None
    key: str | None = None
    """For a list: the item field items are matched by."""


_UNION_KINDS = {"string", "integer", "number", "boolean", "object", "array"}


class _SchemaReader:
    def __init__(self, root: Mapping[str, Any], options: CompareOptions) -> None:
        self.root = root
        self.options = options
        self.entries: list[_Entry] = []
        self.used_keys: set[str] = set()

    def _deref(self, schema: Any, seen: frozenset[str]) -> tuple[Mapping[str, Any] | None, frozenset[str]]:
        """The schema behind ``$ref``s; None when a ref recurses into itself."""
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            ref: str = schema["$ref"]
            if ref in seen:
                return None, seen
            seen = seen | {ref}
            schema = self._pointer(ref)
        return (schema if isinstance(schema, Mapping) else {}), seen

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"json_schema: only local $refs can be resolved, not {ref!r}")
        node: Any = self.root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise ValueError(f"json_schema: $ref {ref!r} points at nothing")
        return node

    def classify(self, schema: Any, seen: frozenset[str]) -> tuple[str, Mapping[str, Any], bool, frozenset[str]]:
        """(kind, resolved schema, nullable, refs followed); kind is a FieldKind, "null" or "recursive"."""
        resolved, seen = self._deref(schema, seen)
        if resolved is None:
            return "recursive", {}, True, seen
        for keyword in ("anyOf", "oneOf"):
            variants = resolved.get(keyword)
            if isinstance(variants, list) and variants:
                return self._union(resolved, variants, seen)
        all_of = resolved.get("allOf")
        if isinstance(all_of, list) and all_of:
            return self.classify(all_of[0], seen) if len(all_of) == 1 else ("any", resolved, True, seen)
        if "const" in resolved:
            return ("null", resolved, True, seen) if resolved["const"] is None else ("enum", resolved, False, seen)
        if isinstance(resolved.get("enum"), list):
            values = resolved["enum"]
            return "enum", resolved, None in values, seen
        declared = resolved.get("type")
        types = [declared] if isinstance(declared, str) else list(declared) if isinstance(declared, list) else []
        nullable = "null" in types
        types = [t for t in types if t != "null"]
        if not types:
            if declared is not None:
                return "null", resolved, True, seen
            if "properties" in resolved:
                return "object", resolved, False, seen
            if "items" in resolved:
                return "array", resolved, False, seen
            return "any", resolved, True, seen
        if set(types) == {"integer", "number"}:
            return "number", resolved, nullable, seen
        if len(types) > 1 or types[0] not in _UNION_KINDS:
            return "any", resolved, nullable, seen
        return types[0], resolved, nullable, seen

    def _union(
        self, schema: Mapping[str, Any], variants: list[Any], seen: frozenset[str]
    ) -> tuple[str, Mapping[str, Any], bool, frozenset[str]]:
        nullable = False
        kept: list[tuple[str, Mapping[str, Any], frozenset[str]]] = []
        for variant in variants:
            kind, resolved, variant_nullable, variant_seen = self.classify(variant, seen)
            nullable = nullable or variant_nullable
            if kind != "null":
                kept.append((kind, resolved, variant_seen))
        if not kept:
            return "null", schema, True, seen
        if len(kept) == 1:
            kind, resolved, variant_seen = kept[0]
            return kind, resolved, nullable, variant_seen
        kinds = {kind for kind, _, _ in kept}
        if kinds == {"integer", "number"}:
            return "number", schema, nullable, seen
        return "any", schema, nullable, seen

    def _entry(self, path: str, kind: FieldKind, rule: str) -> _Entry:
        entry = _Entry(path=path or "(root)", kind=kind, rule=rule)
        self.entries.append(entry)
        return entry

    def _leaf_rule(self, kind: FieldKind) -> str:
        if kind == "string":
            return "normalised"
        if kind == "number":
            return f"±{self.options.number_tolerance * 100:g} % relative"
        if kind == "any":
            return "by value type"
        return "exact"

    def build(self, schema: Any, path: str, seen: frozenset[str]) -> _Node:
        kind, resolved, nullable, seen = self.classify(schema, seen)
        if kind == "recursive":
            return _Node(kind="object", entry=self._entry(path, "object", "JSON equality (recursive schema)"))
        if kind == "null":
            return _Node(kind="any", entry=self._entry(path, "any", "exact (always null)"))
        properties = resolved.get("properties")
        if kind == "object" and isinstance(properties, Mapping) and properties:
            entry = self._entry(path, "object", "presence (null or object)") if nullable else None
            props = tuple(
                (name, self.build(sub, f"{path}.{name}" if path else name, seen)) for name, sub in properties.items()
            )
            return _Node(kind="object", entry=entry, props=props)
        if kind == "object":
            return _Node(kind="object", entry=self._entry(path, "object", "JSON equality"))
        if kind == "array":
            return self._array(resolved, path, seen)
        leaf = cast(FieldKind, kind)
        return _Node(kind=leaf, entry=self._entry(path, leaf, self._leaf_rule(leaf)))

    def _array(self, schema: Mapping[str, Any], path: str, seen: frozenset[str]) -> _Node:
        key = self.options.list_keys.get(path)
        rule = f"length; items by {key!r}" if key is not None else "length; items by position"
        entry = self._entry(path, "array", rule)
        items_schema = schema.get("items")
        items = self.build(items_schema if isinstance(items_schema, Mapping) else {}, f"{path}[]", seen)
        if key is not None:
            self.used_keys.add(path)
            if key not in {name for name, _ in items.props}:
                raise ValueError(f"list_keys: the items of {path!r} have no field {key!r}")
        return _Node(kind="array", entry=entry, items=items, key=key)


# --- comparing one pair of outputs ---------------------------------------------------------------------------------


@dataclass
class _Line:
    label: str
    agree: bool = True
    exact: bool = True


class _Walker:
    def __init__(self, options: CompareOptions) -> None:
        self.options = options
        self.order = 0

    def observe(
        self,
        entry: _Entry,
        line: _Line,
        location: str,
        *,
        agree: bool,
        exact: bool,
        kind: DisagreementKind = "value",
        value_a: Any = None,
        value_b: Any = None,
    ) -> None:
        entry.compared += 1
        entry.agree += agree
        entry.agree_exact += exact
        line.agree = line.agree and agree
        line.exact = line.exact and exact
        if agree:
            return
        key = f"{kind}\n{_canonical(value_a)}\n{_canonical(value_b)}"
        pattern = entry.patterns.get(key)
        if pattern is None:
            if len(entry.patterns) >= MAX_PATTERNS:
                return
            self.order += 1
            pattern = entry.patterns[key] = _Pattern(kind, value_a, value_b, self.order)
        pattern.count += 1
        if len(pattern.examples) < self.options.examples:
            pattern.examples.append(Example(line.label, location if "[]" in entry.path else None))

    def nulls(self, entry: _Entry, a: Any, b: Any, line: _Line, location: str, shown: tuple[Any, Any]) -> bool:
        """Count a null on either side; True when there was one (the pair is done)."""
        if a is None and b is None:
            entry.null_both += 1
            self.observe(entry, line, location, agree=True, exact=True)
            return True
        if a is None or b is None:
            if a is None:
                entry.null_a += 1
            else:
                entry.null_b += 1
            self.observe(
                entry,
                line,
                location,
                agree=False,
                exact=False,
                kind="null vs value",
                value_a=shown[0],
                value_b=shown[1],
            )
            return True
        return False

    def pair(self, node: _Node, a: Any, b: Any, line: _Line, location: str) -> None:
        if node.items is not None:
            self._list(node, a, b, line, location)
            return
        entry = node.entry
        if node.props:
            if entry is not None and not self.nulls(entry, a, b, line, location, (a, b)):
                self.observe(entry, line, location, agree=True, exact=True)
            for name, child in node.props:
                self.pair(child, _get(a, name), _get(b, name), line, _join(location, name))
            return
        assert entry is not None
        if self.nulls(entry, a, b, line, location, (a, b)):
            return
        agree, exact = self._values(node.kind, a, b)
        self.observe(entry, line, location, agree=agree, exact=exact, value_a=a, value_b=b)

    def _values(self, kind: FieldKind, a: Any, b: Any) -> tuple[bool, bool]:
        exact = _exact_equal(a, b)
        if kind == "any":
            if isinstance(a, str) and isinstance(b, str):
                kind = "string"
            elif _is_number(a) and _is_number(b) and not (isinstance(a, int) and isinstance(b, int)):
                kind = "number"
        if kind == "string" and isinstance(a, str) and isinstance(b, str):
            return exact or normalise_string(a) == normalise_string(b), exact
        if kind == "number" and _is_number(a) and _is_number(b):
            return exact or _within(float(a), float(b), self.options.number_tolerance), exact
        return exact, exact

    def _list(self, node: _Node, a: Any, b: Any, line: _Line, location: str) -> None:
        assert node.entry is not None
        assert node.items is not None
        list_a = a if isinstance(a, list) else []
        list_b = b if isinstance(b, list) else []
        shown = (len(a) if isinstance(a, list) else a, len(b) if isinstance(b, list) else b)
        if not self.nulls(node.entry, a, b, line, location, shown):
            if isinstance(a, list) and isinstance(b, list):
                same = len(a) == len(b)
                self.observe(
                    node.entry, line, location, agree=same, exact=same, kind="length", value_a=len(a), value_b=len(b)
                )
            else:  # not a list (an output off its schema): compared as values
                same = _exact_equal(a, b)
                self.observe(node.entry, line, location, agree=same, exact=same, value_a=a, value_b=b)
        for i, j, label in _match_items(node.key, list_a, list_b):
            where = location + label
            if i is not None and j is not None:
                self.pair(node.items, list_a[i], list_b[j], line, where)
            elif i is not None:
                self.one_side(node.items, list_a[i], "A", line, where)
            elif j is not None:
                self.one_side(node.items, list_b[j], "B", line, where)

    def one_side(self, node: _Node, value: Any, side: Literal["A", "B"], line: _Line, location: str) -> None:
        """An item only on one side: a disagreement of every entry below it."""
        if node.entry is not None:
            shown = len(value) if node.items is not None and isinstance(value, list) else value
            if side == "A":
                node.entry.only_a += 1
                self.observe(node.entry, line, location, agree=False, exact=False, kind="only in A", value_a=shown)
            else:
                node.entry.only_b += 1
                self.observe(node.entry, line, location, agree=False, exact=False, kind="only in B", value_b=shown)
        if node.items is not None:
            items = value if isinstance(value, list) else []
            for i, item in enumerate(items):
                self.one_side(node.items, item, side, line, f"{location}[{i}]")
        for name, child in node.props:
            self.one_side(child, _get(value, name), side, line, _join(location, name))


def _get(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, Mapping) else None


def _join(location: str, name: str) -> str:
    return f"{location}.{name}" if location else name


def _item_key(item: Any, key: str) -> str:
    value = _get(item, key)
    return "s:" + normalise_string(value) if isinstance(value, str) else "j:" + _canonical(value)


def _match_items(key: str | None, list_a: list[Any], list_b: list[Any]) -> list[tuple[int | None, int | None, str]]:
    """(index in A, index in B, label) for every item; one index is None for an item on one side only."""
    if key is None:
        longest = max(len(list_a), len(list_b))
        return [(i if i < len(list_a) else None, i if i < len(list_b) else None, f"[{i}]") for i in range(longest)]
    in_b: dict[str, deque[int]] = {}
    for j, item in enumerate(list_b):
        in_b.setdefault(_item_key(item, key), deque()).append(j)
    matched: list[tuple[int | None, int | None, str]] = []
    taken: set[int] = set()
    for i, item in enumerate(list_a):
        waiting = in_b.get(_item_key(item, key))
        partner = waiting.popleft() if waiting else None
        if partner is not None:
            taken.add(partner)
        matched.append((i, partner, f"[{_canonical(_get(item, key))}]"))
    matched.extend((None, j, f"[{_canonical(_get(item, key))}]") for j, item in enumerate(list_b) if j not in taken)
    return matched


# --- lines: matching, status, usage --------------------------------------------------------------------------------


@dataclass
class _Run:
    name: str
    lines: int = 0
    duplicates: int = 0
    unkeyed: int = 0
    models: Counter[str] = field(default_factory=Counter)
    apis: Counter[str] = field(default_factory=Counter)
    tiers: Counter[str] = field(default_factory=Counter)
    venues: Counter[str] = field(default_factory=Counter)

    def info(self) -> RunInfo:
        return RunInfo(
            name=self.name,
            models=tuple(m for m, _ in self.models.most_common()),
            apis=tuple(a for a, _ in self.apis.most_common()),
            service_tiers=tuple(t for t, _ in self.tiers.most_common()),
            lines=self.lines,
            duplicates=self.duplicates,
            unkeyed=self.unkeyed,
            venues=tuple(v for v, _ in self.venues.most_common()),
        )


def _line_key(line: Mapping[str, Any], by: str) -> str | None:
    value = line.get("custom_id") if by == "custom_id" else line.get("document_fingerprint") or line.get("fingerprint")
    return value if isinstance(value, str) and value else None


def _note(run: _Run, line: Mapping[str, Any]) -> None:
    run.lines += 1
    named = ((run.models, "model"), (run.apis, "api"), (run.tiers, "service_tier"), (run.venues, "venue"))
    for counter, attribute in named:
        value = line.get(attribute)
        if isinstance(value, str) and value and (value in counter or len(counter) < _MAX_NAMES):
            counter[value] += 1


def _succeeded(line: Mapping[str, Any]) -> bool:
    return line.get("status") == "succeeded" and isinstance(line.get("output"), Mapping)


def _error_type(line: Mapping[str, Any]) -> str | None:
    error = line.get("error")
    kind = error.get("type") if isinstance(error, Mapping) else None
    return str(kind) if kind is not None else None


def _label(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    id_a, id_b = str(a.get("custom_id", "?")), str(b.get("custom_id", "?"))
    return id_a if id_a == id_b else f"{id_a} | {id_b}"


def _capped(counter: Counter[str], key: str) -> str:
    return key if key in counter or len(counter) < _MAX_NAMES else "(other)"


class _StatusCounter:
    def __init__(self) -> None:
        self.pairs: Counter[tuple[str, str]] = Counter()
        self.groups: Counter[str] = Counter()
        self.errors_a: Counter[str] = Counter()
        self.errors_b: Counter[str] = Counter()
        self.examples: dict[str, list[StatusExample]] = {"a": [], "b": [], "none": []}

    def add(self, a: Mapping[str, Any], b: Mapping[str, Any], ok_a: bool, ok_b: bool) -> None:
        status_a, status_b = str(a.get("status", "?")), str(b.get("status", "?"))
        pair = (status_a, status_b)
        self.pairs[pair if pair in self.pairs or len(self.pairs) < _MAX_NAMES else ("(other)", "(other)")] += 1
        group = "both" if ok_a and ok_b else "a" if ok_a else "b" if ok_b else "none"
        self.groups[group] += 1
        if group == "both":
            return
        error_a, error_b = (None if ok_a else _error_type(a)), (None if ok_b else _error_type(b))
        if group == "a":
            self.errors_b[_capped(self.errors_b, error_b or status_b)] += 1
        elif group == "b":
            self.errors_a[_capped(self.errors_a, error_a or status_a)] += 1
        if len(self.examples[group]) < STATUS_EXAMPLES:
            self.examples[group].append(StatusExample(_label(a, b), status_a, status_b, error_a, error_b))

    def result(self) -> StatusComparison:
        return StatusComparison(
            both_succeeded=self.groups["both"],
            succeeded_a_only=self.groups["a"],
            succeeded_b_only=self.groups["b"],
            both_failed=self.groups["none"],
            pairs=tuple((sa, sb, n) for (sa, sb), n in self.pairs.most_common()),
            errors_b=tuple(self.errors_b.most_common()),
            errors_a=tuple(self.errors_a.most_common()),
            examples_a_only=tuple(self.examples["a"]),
            examples_b_only=tuple(self.examples["b"]),
            examples_both_failed=tuple(self.examples["none"]),
        )


_TOKENS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens")


class _UsageFold:
    """A run's usage over its matched lines, folded line by line: token sums, the exact cost (a ``Fraction``: the
    same correctly rounded total as ``math.fsum``) and at most :data:`LATENCY_SAMPLE` latencies (reservoir)."""

    def __init__(self) -> None:
        self.lines = 0
        self.totals = dict.fromkeys(_TOKENS, 0)
        self.cost = Fraction(0)
        self.priced = 0
        self.unpriced = 0
        self.latency_lines = 0
        self.latencies: list[float] = []
        self._random = random.Random(0)  # noqa: S311 - a reproducible sample, not a secret

    def add(self, line: Mapping[str, Any]) -> None:
        self.lines += 1
        usage = line.get("usage")
        if isinstance(usage, Mapping):
            for name in self.totals:
                value = usage.get(name)
                if _is_number(value):
                    self.totals[name] += int(value)
        cost = line.get("cost_usd")
        if _is_number(cost) and math.isfinite(cost):
            self.cost += Fraction(cost)
            self.priced += 1
        else:
            self.unpriced += 1
        latency = line.get("latency_ms")
        if _is_number(latency):
            self.latency_lines += 1
            if len(self.latencies) < LATENCY_SAMPLE:
                self.latencies.append(float(latency))
            else:
                slot = self._random.randrange(self.latency_lines)
                if slot < LATENCY_SAMPLE:
                    self.latencies[slot] = float(latency)

    def result(self) -> RunUsage:
        return RunUsage(
            lines=self.lines,
            **self.totals,
            cost_usd=float(self.cost) if self.priced else None,
            unpriced=self.unpriced,
            latency_p50_ms=percentile(self.latencies, 0.50),
            latency_p95_ms=percentile(self.latencies, 0.95),
            latency_lines=self.latency_lines,
        )


_USAGE_METRICS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "latency_p50_ms",
    "latency_p95_ms",
)


def _deltas(a: RunUsage, b: RunUsage) -> tuple[Delta, ...]:
    deltas: list[Delta] = []
    for metric in _USAGE_METRICS:
        value_a, value_b = getattr(a, metric), getattr(b, metric)
        diff = value_b - value_a if value_a is not None and value_b is not None else None
        ratio = value_b / value_a if value_a and value_b is not None else None
        deltas.append(Delta(metric, value_a, value_b, diff, ratio))
    return tuple(deltas)


# --- the comparison ------------------------------------------------------------------------------------------------


class PendingLimitError(InputError):
    """More lines wait for their partner than ``CompareOptions.max_pending``: the runs are not in the same order."""


_Waiting = dict[str, deque[tuple[int, Mapping[str, Any]]]]
"""Lines of one run waiting for their partner: key -> (arrival number, line), oldest first."""


class CompareStream:
    """Compare run B with run A as both stream by, chunk by chunk (see the module docstring): :meth:`add` a chunk of
    each (either may be empty), then :meth:`result`. Raises ``ValueError`` (at construction) for a ``list_keys`` path
    that is not a list of objects in the schema (or whose items lack the key), or a non-local ``$ref``; and
    :class:`PendingLimitError` from :meth:`add` past ``options.max_pending`` lines waiting."""

    def __init__(
        self,
        *,
        json_schema: Mapping[str, Any],
        names: tuple[str, str] = ("A", "B"),
        options: CompareOptions = DEFAULT_OPTIONS,
    ) -> None:
        reader = _SchemaReader(json_schema, options)
        self._root = reader.build(json_schema, "", frozenset())
        unknown = sorted(set(options.list_keys) - reader.used_keys)
        if unknown:
            lists = ", ".join(e.path for e in reader.entries if e.kind == "array") or "none"
            raise ValueError(f"list_keys: {', '.join(map(repr, unknown))} is not a list in the schema (lists: {lists})")
        self._entries = reader.entries
        self._options = options
        self._runs = (_Run(names[0]), _Run(names[1]))
        self._waiting: tuple[_Waiting, _Waiting] = ({}, {})
        self._held = 0
        self._arrivals = 0
        self._walker = _Walker(options)
        self._statuses = _StatusCounter()
        self._usage = (_UsageFold(), _UsageFold())
        self._matched = self._both_ok = self._records_agree = self._records_exact = 0

    @property
    def held(self) -> int:
        """Lines waiting for their partner now."""
        return self._held

    def add(self, a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]]) -> None:
        """Read the next chunk of each run; fold the pairs it completes, in A's order."""
        pairs: list[tuple[int, Mapping[str, Any], Mapping[str, Any]]] = []
        for side, lines in ((0, a), (1, b)):
            for line in lines:
                self._take(side, line, pairs)
        pairs.sort(key=lambda pair: pair[0])
        for _, line_a, line_b in pairs:
            self._fold(line_a, line_b)

    def _take(
        self, side: int, line: Mapping[str, Any], pairs: list[tuple[int, Mapping[str, Any], Mapping[str, Any]]]
    ) -> None:
        run, mine, theirs = self._runs[side], self._waiting[side], self._waiting[1 - side]
        _note(run, line)
        key = _line_key(line, self._options.by)
        if key is None:
            run.unkeyed += 1
            return
        self._arrivals += 1
        arrival = self._arrivals
        if self._options.by == "custom_id" and key in mine:
            run.duplicates += 1  # the later line takes the earlier's place, at the end of the order
            del mine[key]
            self._held -= 1
        partners = theirs.get(key)
        if partners:
            other_arrival, other = partners.popleft()
            if not partners:
                del theirs[key]
            self._held -= 1
            pairs.append((arrival, line, other) if side == 0 else (other_arrival, other, line))
            return
        mine.setdefault(key, deque()).append((arrival, line))
        self._held += 1
        if self._held > self._options.max_pending:
            a, b = self._runs
            raise PendingLimitError(
                f"more than {self._options.max_pending:,} lines wait for their partner (after {a.lines:,} lines of "
                f"{a.name} and {b.lines:,} of {b.name}): the runs are not in the same input order, or most lines are "
                f"in one run only; compare holds at most that many lines (CompareOptions.max_pending)"
            )

    def _fold(self, line_a: Mapping[str, Any], line_b: Mapping[str, Any]) -> None:
        self._matched += 1
        self._usage[0].add(line_a)
        self._usage[1].add(line_b)
        ok_a, ok_b = _succeeded(line_a), _succeeded(line_b)
        self._statuses.add(line_a, line_b, ok_a, ok_b)
        if not (ok_a and ok_b):
            return
        self._both_ok += 1
        line = _Line(_label(line_a, line_b))
        self._walker.pair(self._root, line_a["output"], line_b["output"], line, "")
        self._records_agree += line.agree
        self._records_exact += line.exact

    def _only(self, side: int) -> tuple[int, tuple[str, ...]]:
        waiting = self._waiting[side]
        count = sum(len(lines) for lines in waiting.values())
        firsts = sorted((arrival, key, line) for key, lines in waiting.items() for arrival, line in lines)
        return count, tuple(str(line.get("custom_id", key)) for _, key, line in firsts[:STATUS_EXAMPLES])

    def result(self) -> Comparison:
        """The comparison of what was read; lines still waiting are the lines only in one run."""
        options = self._options
        only_a, only_a_examples = self._only(0)
        only_b, only_b_examples = self._only(1)
        fields = tuple(_field_stats(entry, options.examples) for entry in self._entries)
        top = sorted(
            ((s.path, d) for s in fields for d in s.disagreements),
            key=lambda item: -item[1].count,
        )[: options.top_disagreements]
        usage_a, usage_b = self._usage[0].result(), self._usage[1].result()
        return Comparison(
            a=self._runs[0].info(),
            b=self._runs[1].info(),
            options=options,
            matched=self._matched,
            only_a=only_a,
            only_b=only_b,
            only_a_examples=only_a_examples,
            only_b_examples=only_b_examples,
            status=self._statuses.result(),
            records=RecordAgreement(compared=self._both_ok, agree=self._records_agree, agree_exact=self._records_exact),
            fields=fields,
            top_disagreements=tuple(TopDisagreement(path, d) for path, d in top),
            usage=UsageComparison(a=usage_a, b=usage_b, deltas=_deltas(usage_a, usage_b)),
        )


def _chunks(lines: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    it = iter(lines)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def compare_runs(
    a: Iterable[Mapping[str, Any]],
    b: Iterable[Mapping[str, Any]],
    *,
    json_schema: Mapping[str, Any],
    names: tuple[str, str] = ("A", "B"),
    options: CompareOptions = DEFAULT_OPTIONS,
) -> Comparison:
    """Compare run ``b`` with run ``a`` (see the module docstring), reading :data:`CHUNK` lines of each at a time
    (generators are fine). Raises as :class:`CompareStream` does."""
    stream = CompareStream(json_schema=json_schema, names=names, options=options)
    empty: list[Mapping[str, Any]] = []
    for chunk_a, chunk_b in itertools.zip_longest(_chunks(a, CHUNK), _chunks(b, CHUNK), fillvalue=empty):
        stream.add(chunk_a, chunk_b)
    return stream.result()


async def compare_chunks(
    a: AsyncIterable[Iterable[Mapping[str, Any]]],
    b: AsyncIterable[Iterable[Mapping[str, Any]]],
    *,
    json_schema: Mapping[str, Any],
    names: tuple[str, str] = ("A", "B"),
    options: CompareOptions = DEFAULT_OPTIONS,
) -> Comparison:
    """:func:`compare_runs` over two async streams of chunks (``producer.batch.collect.final_result_chunks``), read in
    lockstep: one chunk of each in memory at a time, plus the lines waiting for their partner."""
    stream = CompareStream(json_schema=json_schema, names=names, options=options)
    streams: list[AsyncIterator[Iterable[Mapping[str, Any]]] | None] = [aiter(a), aiter(b)]
    while any(s is not None for s in streams):
        chunks: list[Iterable[Mapping[str, Any]]] = [(), ()]
        for side, source in enumerate(streams):
            if source is None:
                continue
            try:
                chunks[side] = await anext(source)
            except StopAsyncIteration:
                streams[side] = None
        stream.add(chunks[0], chunks[1])
    return stream.result()


def _field_stats(entry: _Entry, examples: int) -> FieldStats:
    patterns = sorted(entry.patterns.values(), key=lambda p: (-p.count, p.order))[:examples]
    return FieldStats(
        path=entry.path,
        kind=entry.kind,
        rule=entry.rule,
        compared=entry.compared,
        agree=entry.agree,
        agree_exact=entry.agree_exact,
        null_both=entry.null_both,
        null_a=entry.null_a,
        null_b=entry.null_b,
        only_a=entry.only_a,
        only_b=entry.only_b,
        disagreements=tuple(Disagreement(p.kind, p.value_a, p.value_b, p.count, tuple(p.examples)) for p in patterns),
    )


# --- output forms --------------------------------------------------------------------------------------------------


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate * 100:.1f} %"


def _show(value: Any, limit: int = _VALUE_CHARS) -> str:
    text = _canonical(value) if not isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _side_value(d: Disagreement, side: Literal["A", "B"]) -> str:
    if (side == "A" and d.kind == "only in B") or (side == "B" and d.kind == "only in A"):
        return "(no item)"
    value = d.value_a if side == "A" else d.value_b
    return f"{value} items" if d.kind == "length" else _show(value)


def _examples(d: Disagreement) -> str:
    return ", ".join(e.custom_id if e.location is None else f"{e.custom_id} {e.location}" for e in d.examples)


def _metric_value(metric: str, value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "-"
    sign = "+" if signed else ""
    if metric == "cost_usd":
        return f"{'-' if value < 0 else sign if signed else ''}${abs(value):.6f}"
    if metric.startswith("latency"):
        return f"{value:{sign},.1f} ms"
    return f"{int(value):{sign},}"


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"×{ratio:.3f}"


def _counted(pairs: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in pairs)


def _summary_rows(c: Comparison) -> list[tuple[str, str]]:
    a, b, s, r = c.a.name, c.b.name, c.status, c.records
    rows = [
        ("matched by", c.options.by),
        ("lines read", f"{c.a.lines:,} in {a}, {c.b.lines:,} in {b}"),
        ("matched", f"{c.matched:,}"),
        (f"only in {a}", f"{c.only_a:,}" + (f" (e.g. {', '.join(c.only_a_examples)})" if c.only_a_examples else "")),
        (f"only in {b}", f"{c.only_b:,}" + (f" (e.g. {', '.join(c.only_b_examples)})" if c.only_b_examples else "")),
        ("both succeeded", f"{s.both_succeeded:,}"),
    ]
    for label, count, errors, examples in (
        (f"succeeded in {a} only", s.succeeded_a_only, s.errors_b, s.examples_a_only),
        (f"succeeded in {b} only", s.succeeded_b_only, s.errors_a, s.examples_b_only),
    ):
        text = f"{count:,}"
        if count:
            other = b if label.startswith(f"succeeded in {a} ") else a
            text += f" ({other}: {_counted(errors)}; e.g. {', '.join(e.custom_id for e in examples)})"
        rows.append((label, text))
    rows.append(("both failed", f"{s.both_failed:,}"))
    rows.append(("records agree", f"{r.agree:,} of {r.compared:,} ({_pct(r.rate)})"))
    rows.append(("records agree exactly", f"{r.agree_exact:,} of {r.compared:,} ({_pct(r.exact_rate)})"))
    rows.extend(
        (f"{side.name}: not matched", f"{side.duplicates:,} replaced by a later line, {side.unkeyed:,} without a key")
        for side in (c.a, c.b)
        if side.duplicates or side.unkeyed
    )
    return rows


def _title(c: Comparison) -> str:
    return f"compare: {c.a.name} ({_described(c.a)}) vs {c.b.name} ({_described(c.b)})"


def _described(run: RunInfo) -> str:
    """A run's model and API, and its venue when any line was answered through the Batch API."""
    venue = f", {' + '.join(run.venues)}" if "batch-api" in run.venues else ""
    return f"{run.model}, {run.api}{venue}"


def _nulls(s: FieldStats) -> str:
    return f"{s.null_both:,} / {s.null_a:,} / {s.null_b:,}"


def _first_disagreement(s: FieldStats) -> str:
    if not s.disagreements:
        return ""
    d = s.disagreements[0]
    return f"{_side_value(d, 'A')} → {_side_value(d, 'B')} ({d.kind}, {d.count:,}×)"


def _cell(value: str, style: str = "") -> Text:
    """A table cell or title: printed as it is (never as markup), control characters escaped (:func:`printable`)."""
    return Text(printable(value), style=style)


def comparison_table(c: Comparison) -> RenderableType:
    """Rich tables: the summary, the usage, the fields (lowest agreement first), the top disagreements. Every text is
    a :func:`_cell`: what comes from the runs (custom_ids, values, batch and model names) cannot drive the terminal."""
    summary = Table(title=_cell(_title(c)), show_header=False)
    summary.add_column("")
    summary.add_column("")
    for label, value in _summary_rows(c):
        summary.add_row(_cell(label), _cell(value))

    usage = Table(title=_cell(f"usage over the {c.matched:,} matched lines"))
    for header in ("", c.a.name, c.b.name, f"{c.b.name} − {c.a.name}", f"{c.b.name} / {c.a.name}"):
        usage.add_column(_cell(header), justify="right" if header else "left")
    for d in c.usage.deltas:
        usage.add_row(
            _cell(d.metric),
            _cell(_metric_value(d.metric, d.a)),
            _cell(_metric_value(d.metric, d.b)),
            _cell(_metric_value(d.metric, d.diff, signed=True)),
            _cell(_ratio(d.ratio)),
        )

    fields = Table(title=_cell("fields (lowest agreement first)"))
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("field", "left"),
        ("kind", "left"),
        ("rule", "left"),
        ("compared", "right"),
        ("agree", "right"),
        ("exact", "right"),
        (f"null both / {c.a.name} only / {c.b.name} only", "right"),
        (f"items only in {c.a.name} / {c.b.name}", "right"),
        ("most frequent disagreement", "left"),
    )
    for header, justify in columns:
        fields.add_column(_cell(header), justify=justify)
    for s in c.fields_by_agreement():
        rate = s.rate
        style = "" if rate is None or rate >= 1 else "red" if rate < 0.9 else "yellow"
        fields.add_row(
            _cell(s.path, style),
            _cell(s.kind),
            _cell(s.rule),
            _cell(f"{s.compared:,}"),
            _cell(_pct(rate), style),
            _cell(_pct(s.exact_rate)),
            _cell(_nulls(s)),
            _cell(f"{s.only_a:,} / {s.only_b:,}" if "[]" in s.path else ""),
            _cell(_first_disagreement(s)),
        )

    renderables: list[RenderableType] = [summary, usage, fields]
    if c.top_disagreements:
        top = Table(title=_cell("top disagreements"))
        for header in ("field", "kind", c.a.name, c.b.name, "count", "examples"):
            top.add_column(_cell(header), justify="right" if header == "count" else "left")
        for t in c.top_disagreements:
            top.add_row(
                _cell(t.path),
                _cell(t.disagreement.kind),
                _cell(_side_value(t.disagreement, "A")),
                _cell(_side_value(t.disagreement, "B")),
                _cell(f"{t.disagreement.count:,}"),
                _cell(_examples(t.disagreement)),
            )
        renderables.append(top)
    return Group(*renderables)


def _disagreement_json(d: Disagreement) -> dict[str, Any]:
    return {
        "kind": d.kind,
        "value_a": d.value_a,
        "value_b": d.value_b,
        "count": d.count,
        "examples": [{"custom_id": e.custom_id, "location": e.location} for e in d.examples],
    }


def _status_example_json(e: StatusExample) -> dict[str, Any]:
    return {
        "custom_id": e.custom_id,
        "status_a": e.status_a,
        "status_b": e.status_b,
        "error_a": e.error_a,
        "error_b": e.error_b,
    }


def _run_json(run: RunInfo, usage: RunUsage) -> dict[str, Any]:
    return {
        "name": run.name,
        "models": list(run.models),
        "apis": list(run.apis),
        "service_tiers": list(run.service_tiers),
        "venues": list(run.venues),
        "lines": run.lines,
        "duplicates": run.duplicates,
        "unkeyed": run.unkeyed,
        "usage": {
            "lines": usage.lines,
            "input_tokens": usage.input_tokens,
            "cached_input_tokens": usage.cached_input_tokens,
            "output_tokens": usage.output_tokens,
            "reasoning_tokens": usage.reasoning_tokens,
            "total_tokens": usage.total_tokens,
            "cost_usd": usage.cost_usd,
            "unpriced": usage.unpriced,
            "latency_p50_ms": usage.latency_p50_ms,
            "latency_p95_ms": usage.latency_p95_ms,
            "latency_lines": usage.latency_lines,
        },
    }


def comparison_json(c: Comparison) -> dict[str, Any]:
    """The comparison as one JSON-serialisable object (fields in schema order, values whole)."""
    s = c.status
    return {
        "a": _run_json(c.a, c.usage.a),
        "b": _run_json(c.b, c.usage.b),
        "options": {
            "by": c.options.by,
            "number_tolerance": c.options.number_tolerance,
            "list_keys": dict(c.options.list_keys),
            "examples": c.options.examples,
        },
        "lines": {
            "matched": c.matched,
            "only_a": c.only_a,
            "only_b": c.only_b,
            "only_a_examples": list(c.only_a_examples),
            "only_b_examples": list(c.only_b_examples),
        },
        "status": {
            "both_succeeded": s.both_succeeded,
            "succeeded_a_only": s.succeeded_a_only,
            "succeeded_b_only": s.succeeded_b_only,
            "both_failed": s.both_failed,
            "pairs": [{"status_a": sa, "status_b": sb, "count": n} for sa, sb, n in s.pairs],
            "errors_b_when_only_a_succeeded": dict(s.errors_b),
            "errors_a_when_only_b_succeeded": dict(s.errors_a),
            "examples_a_only": [_status_example_json(e) for e in s.examples_a_only],
            "examples_b_only": [_status_example_json(e) for e in s.examples_b_only],
            "examples_both_failed": [_status_example_json(e) for e in s.examples_both_failed],
        },
        "records": {
            "compared": c.records.compared,
            "agree": c.records.agree,
            "agree_exact": c.records.agree_exact,
            "rate": c.records.rate,
            "exact_rate": c.records.exact_rate,
        },
        "fields": [
            {
                "path": f.path,
                "kind": f.kind,
                "rule": f.rule,
                "compared": f.compared,
                "agree": f.agree,
                "agree_exact": f.agree_exact,
                "rate": f.rate,
                "exact_rate": f.exact_rate,
                "null_both": f.null_both,
                "null_a": f.null_a,
                "null_b": f.null_b,
                "only_a": f.only_a,
                "only_b": f.only_b,
                "disagreements": [_disagreement_json(d) for d in f.disagreements],
            }
            for f in c.fields
        ],
        "top_disagreements": [{"path": t.path, **_disagreement_json(t.disagreement)} for t in c.top_disagreements],
        "usage": {
            "deltas": [
                {"metric": d.metric, "a": d.a, "b": d.b, "diff": d.diff, "ratio": d.ratio} for d in c.usage.deltas
            ]
        },
    }


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #1d2430; }
h1 { font-size: 1.35em; } h2 { font-size: 1.1em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .5em 0; }
th, td { border: 1px solid #d5dae1; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f1f3f6; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap; word-break: break-all; }
.bar { display: inline-block; width: 80px; height: .7em; background: #e6e9ee; margin-right: .4em; }
.bar span { display: block; height: 100%; background: #3c8d5a; }
tr.low td.rate { color: #b3261e; font-weight: 600; } tr.mid td.rate { color: #9a6700; }
.muted { color: #6b7480; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_table(headers: Sequence[str], rows: Iterable[str]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _rate_cell(rate: float | None) -> str:
    width = 0 if rate is None else round(rate * 100)
    return f'<td class="n rate"><span class="bar"><span style="width:{width}%"></span></span>{_e(_pct(rate))}</td>'


def comparison_html(c: Comparison) -> str:
    """A self-contained HTML page (inline CSS, no script); every value from the runs is escaped."""
    summary = "".join(f"<tr><th>{_e(label)}</th><td>{_e(value)}</td></tr>" for label, value in _summary_rows(c))
    usage_rows = (
        f"<tr><th>{_e(d.metric)}</th><td class='n'>{_e(_metric_value(d.metric, d.a))}</td>"
        f"<td class='n'>{_e(_metric_value(d.metric, d.b))}</td>"
        f"<td class='n'>{_e(_metric_value(d.metric, d.diff, signed=True))}</td>"
        f"<td class='n'>{_e(_ratio(d.ratio))}</td></tr>"
        for d in c.usage.deltas
    )
    field_rows = []
    for s in c.fields_by_agreement():
        level = "" if s.rate is None or s.rate >= 1 else "low" if s.rate < 0.9 else "mid"
        disagreements = "<br>".join(
            f"<code>{_e(_side_value(d, 'A'))}</code> → <code>{_e(_side_value(d, 'B'))}</code> "
            f"<span class='muted'>{_e(d.kind)}, {d.count:,}×: {_e(_examples(d))}</span>"
            for d in s.disagreements
        )
        field_rows.append(
            f"<tr class='{level}'><td><code>{_e(s.path)}</code></td><td>{_e(s.kind)}</td><td>{_e(s.rule)}</td>"
            f"<td class='n'>{s.compared:,}</td>{_rate_cell(s.rate)}<td class='n'>{_e(_pct(s.exact_rate))}</td>"
            f"<td class='n'>{_e(_nulls(s))}</td>"
            f"<td class='n'>{_e(f'{s.only_a:,} / {s.only_b:,}' if '[]' in s.path else '')}</td>"
            f"<td>{disagreements}</td></tr>"
        )
    top_rows = (
        f"<tr><td><code>{_e(t.path)}</code></td><td>{_e(t.disagreement.kind)}</td>"
        f"<td><code>{_e(_side_value(t.disagreement, 'A'))}</code></td>"
        f"<td><code>{_e(_side_value(t.disagreement, 'B'))}</code></td>"
        f"<td class='n'>{t.disagreement.count:,}</td><td>{_e(_examples(t.disagreement))}</td></tr>"
        for t in c.top_disagreements
    )
    a, b = c.a.name, c.b.name
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(_title(c))}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(_title(c))}</h1>",
        f"<table><tbody>{summary}</tbody></table>",
        f"<h2>usage over the {c.matched:,} matched lines</h2>",
        _html_table(["", a, b, f"{b} − {a}", f"{b} / {a}"], usage_rows),
        "<h2>fields (lowest agreement first)</h2>",
        _html_table(
            [
                "field",
                "kind",
                "rule",
                "compared",
                "agree",
                "exact",
                f"null both / {a} only / {b} only",
                f"items only in {a} / {b}",
                "most frequent disagreements",
            ],
            field_rows,
        ),
    ]
    if c.top_disagreements:
        parts += ["<h2>top disagreements</h2>", _html_table(["field", "kind", a, b, "count", "examples"], top_rows)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
