"""Read the schema corpus, or any folder of plain ``*.json`` schema files, and validate with each schema's own draft.

A corpus file is an envelope: ``{"schema": ..., "valid": [...], "invalid": [...], "source": "..."}``. Any other
``*.json`` file is read as a bare schema with no instances (a large outside corpus is checked this way). The kind of
an entry is the folder it sits in, relative to the root (``plain-objects``; ``github/easy`` for a nested outside
folder; the root's own name for files directly in it). Files that are not JSON, or not a schema (neither an object nor
a boolean), are listed as :class:`Unreadable` instead of stopping the load.

Validation of instances (:func:`instance_errors`) uses the draft the schema names in ``$schema`` (draft-04 to
2020-12), 2020-12 when it names none or one jsonschema does not know (Snowplow's self-describing meta-schema), with
format checking on: the formats jsonschema can check here are checked (``date-time``, ``uri``, ``hostname`` ... need
``jsonschema``'s ``format-nongpl`` extra; :func:`uncheckable_formats` says which a schema uses that cannot be).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

__all__ = [
    "CORPUS_DIR",
    "ENVELOPE_KEYS",
    "KINDS",
    "Corpus",
    "Entry",
    "Unreadable",
    "instance_errors",
    "load",
    "schema_validator",
    "uncheckable_formats",
    "validator_class",
]

CORPUS_DIR = Path(__file__).resolve().parent
KINDS = (
    "plain-objects",
    "optional-fields",
    "nested-deep",
    "roots-nonobject",
    "maps",
    "allof",
    "refs",
    "any-value",
    "open-objects",
    "constraints",
    "limits",
    "drafts",
    "unsatisfiable",
)
"""The corpus's kinds, in the order the bench prints them."""
ENVELOPE_KEYS = frozenset({"schema", "valid", "invalid", "source"})

_KNOWN_FORMATS = frozenset(
    {
        "date-time",
        "date",
        "time",
        "duration",
        "email",
        "idn-email",
        "hostname",
        "idn-hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "iri",
        "iri-reference",
        "uuid",
        "uri-template",
        "json-pointer",
        "relative-json-pointer",
        "regex",
    }
)
"""The formats JSON Schema defines (and jsonschema can check, given its extras)."""


@dataclass(frozen=True)
class Entry:
    """One schema of a corpus, with its instances when the file carried them."""

    kind: str
    name: str
    path: Path
    schema: Any
    valid: tuple[Any, ...] = ()
    invalid: tuple[Any, ...] = ()
    source: str = ""
    has_instances: bool = False

    @property
    def key(self) -> str:
        """``kind/name``: how tests and the bench name an entry."""
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Unreadable:
    """A file that could not be read as a schema, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Corpus:
    root: Path
    entries: list[Entry] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)

    def kinds(self) -> list[str]:
        """The kinds present, the corpus's own first in :data:`KINDS` order, then any other in name order."""
        present = {entry.kind for entry in self.entries}
        return [kind for kind in KINDS if kind in present] + sorted(present - set(KINDS))


def load(root: Path = CORPUS_DIR) -> Corpus:
    """Every ``*.json`` file under ``root`` (recursively, in path order), as entries or as unreadable files."""
    corpus = Corpus(root=root)
    for path in _json_files(root):
        kind = path.parent.relative_to(root).as_posix()
        if kind == ".":
            kind = root.name
        try:
            corpus.entries.append(read_entry(path, kind))
        except (OSError, ValueError) as exc:
            corpus.unreadable.append(Unreadable(path, str(exc)))
    return corpus


def _json_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.json")):
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(root).parts):
            yield path


def read_entry(path: Path, kind: str) -> Entry:
    """One file as an entry; ``ValueError`` when it is not JSON, or neither an envelope nor a schema."""
    document = json.loads(path.read_text(encoding="utf-8"))
    name = path.stem
    if _is_envelope(document):
        valid, invalid = document.get("valid", []), document.get("invalid", [])
        if not isinstance(valid, list) or not isinstance(invalid, list):
            raise ValueError("'valid' and 'invalid' must be lists of instances")
        source = document.get("source", "")
        if not isinstance(source, str):
            raise ValueError("'source' must be a string")
        return Entry(kind, name, path, document["schema"], tuple(valid), tuple(invalid), source, has_instances=True)
    if not isinstance(document, dict | bool):
        raise ValueError(f"not a schema: a JSON {type(document).__name__}")
    return Entry(kind, name, path, document)


def _is_envelope(document: Any) -> bool:
    return (
        isinstance(document, dict)
        and "schema" in document
        and set(document) <= ENVELOPE_KEYS
        and isinstance(document["schema"], dict | bool)
    )


def validator_class(schema: Any) -> type[Validator]:
    """The validator of the draft ``schema`` names in ``$schema``; 2020-12 when it names none or an unknown one."""
    return validator_for(schema, default=Draft202012Validator)


def schema_validator(schema: Any) -> Validator:
    """A validator for ``schema`` under its own draft, checking formats."""
    cls = validator_class(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def instance_errors(schema: Any, instance: Any) -> list[str]:
    """What is wrong with ``instance`` under ``schema`` (its own draft, formats checked); ``[]`` when it is valid."""
    return [f"{error.json_path}: {error.message}" for error in schema_validator(schema).iter_errors(instance)]


def uncheckable_formats(schema: Any) -> set[str]:
    """The standard formats ``schema`` uses that jsonschema cannot check here (an extra is not installed)."""
    return (_formats_in(schema) & _KNOWN_FORMATS) - set(FormatChecker().checkers)


def _formats_in(node: Any) -> set[str]:
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("format"), str):
                found.add(item["format"])
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found
