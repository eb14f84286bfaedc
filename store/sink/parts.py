"""What the sink's parts are called, what each holds, and the manifest that lists them (pure: no I/O).

A *part* holds the result lines of one contiguous range of the batch's results stream, ``(after, last]``: every entry
in that range that was still its line's latest result when the part was written (a line's earlier result that a
``retry`` superseded before the part was written is left out). Ranges never overlap and follow each other, so a line
is in the sink as its latest result exactly when its slot's entry id falls in the range of the part that holds it.

Names are ``part-{n:06d}-{digest}{suffix}``: ``n`` counts the parts of the batch from 1, and the digest is a hash of
the entry ids the part holds. The same content always gets the same name (a writer that died after its upload and
runs again rewrites the same object, harmlessly); different content never does (a writer that lost its claim and
uploads late cannot overwrite the part another writer committed: its object is an orphan, removed when the batch is
done). A part rewritten without a superseded row gets a new name the same way.

The manifest (``_manifest.json`` beside the parts) is the list a reader trusts: parts in the order written, each with
its rows and bytes, and ``complete`` once every line of the batch is final and written, with nothing superseded left
in any part. Objects a manifest does not list are not results.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson

MANIFEST = "_manifest.json"
MANIFEST_VERSION = 1
PART_PREFIX = "part-"


def entry_key(entry: str) -> tuple[int, int]:
    """A stream entry id (``ms-seq``) as a sortable pair."""
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)


def next_entry(entry: str) -> str:
    """The smallest entry id after ``entry`` (``XTRIM MINID`` of it keeps only later entries)."""
    ms, seq = entry_key(entry)
    return f"{ms}-{seq + 1}"


def part_name(n: int, entries: Iterable[str], suffix: str) -> str:
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]
    return f"{PART_PREFIX}{n:06d}-{digest}{suffix}"


@dataclass(frozen=True)
class PartRecord:
    """One committed part: its number, object name, the stream range it covers and what it holds."""

    n: int
    name: str
    first: str
    """The first stream entry id of its range (inclusive)."""
    last: str
    """The last stream entry id of its range (inclusive)."""
    rows: int
    size: int
    """Bytes of the object."""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> PartRecord:
        data = orjson.loads(raw)
        return cls(
            int(data["n"]),
            str(data["name"]),
            str(data["first"]),
            str(data["last"]),
            int(data["rows"]),
            int(data["size"]),
        )

    def holds(self, entry: str) -> bool:
        return entry_key(self.first) <= entry_key(entry) <= entry_key(self.last)


class PartIndex:
    """The committed parts of a batch, to find the part that holds a stream entry (binary search by range)."""

    def __init__(self, parts: Sequence[PartRecord]) -> None:
        self.all = sorted(parts, key=lambda p: p.n)
        # A part of a cancel's synthesized lines covers no stream range (``first`` is empty): never found by entry.
        self.parts = sorted((p for p in parts if p.first), key=lambda p: entry_key(p.first))
        self._firsts = [entry_key(p.first) for p in self.parts]

    def find(self, entry: str) -> PartRecord | None:
        key = entry_key(entry)
        at = bisect.bisect_right(self._firsts, key) - 1
        if at >= 0 and self.parts[at].holds(entry):
            return self.parts[at]
        return None

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.all)


def manifest_json(
    *, batch_id: str, fmt: str, lines: int, parts: Sequence[PartRecord], complete: bool, updated_at: str
) -> bytes:
    """The manifest a reader of the sink trusts (see the module docstring)."""
    doc: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "batch_id": batch_id,
        "format": fmt,
        "lines": lines,
        "rows": sum(p.rows for p in parts),
        "complete": complete,
        "updated_at": updated_at,
        "parts": [{"name": p.name, "rows": p.rows, "bytes": p.size} for p in sorted(parts, key=lambda p: p.n)],
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)
