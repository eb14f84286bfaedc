"""What the schema codec makes of a corpus of real-world-shaped schemas, per kind (issue 22, item 6).

    .venv/bin/python -m bench.schemas [--corpus DIR] [--kind KIND ...] [--answers 3] [--details FILE]

For every schema of the corpus (default ``tests/schema_corpus``; any folder of plain ``*.json`` schema files works
too, with no instances), ``schemas.codec.build_codec`` is timed in CPU, and per kind the table shows:

- **accepted**: schemas ``build_codec`` converts (a ``SchemaError`` is a refusal; anything else is a *crash*);
- **exact inverse**: valid instances whose ``decode(encode(x))`` equals ``x`` (JSON equality: ``1 == 1.0``,
  ``True != 1``), of those ``encode`` takes;
- **expressible**: valid instances that ``encode`` takes *and* whose encoding validates against ``strict_schema``;
- **valid accepted** / **invalid rejected**: ``codec.validate`` on the corpus's valid and invalid instances;
- **stored valid**: answers the simulator's generator (``simulator.generate.generate_instance``, the simulated
  model) draws for ``strict_schema``, decoded; those ``codec.validate`` passes are what the service would store, and
  the column is the share of them valid under the *original* schema (its own draft, formats checked, by jsonschema);
- **within rules**: sent schemas that pass this module's reading of OpenAI's strict rules and limits
  (OPENAI-FACTS §7: every object closed with every property required, only the supported keywords and formats, a
  ``$ref`` alone and pointing at a top-level ``$defs`` entry, no ``anyOf`` at the root, 5,000 properties, 10 object
  levels, 120,000 characters of names and values, 1,000 enum values, 15,000 characters for a string enum of more
  than 250 values); for a codec with ``strict`` off, only the limits and that it is a valid JSON Schema;
- **CPU ms**: ``build_codec``'s CPU time per schema, p99 and max.

Accepted rows only count instances and answers of accepted schemas. ``crashes`` counts every exception other than
``SchemaError`` from ``build_codec``, any exception from ``validate``, any from ``decode`` of an encoding (and any but
``CodecError`` from ``decode`` of a simulated answer: that is a typed refusal, listed) and any but ``CodecError`` from
``encode``. Every crash, every stored answer the original schema rejects, every sent schema outside the rules and
every accepted unsatisfiable schema is listed under the table (``--details FILE`` writes all findings as JSON lines).
``--codec MODULE`` runs another module with the same contract (a stand-in, or an older codec).

Issue 22's goals on a large outside corpus: accepted >= 97 %, no crash, stored valid 100 %, valid instances
expressible and accepted >= 95 %, invalid rejected >= 98 %, within rules >= 99.9 %, < 1 s of CPU per conversion.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError as JsonSchemaError
from jsonschema.protocols import Validator
from rich.console import Console
from rich.table import Table

from simulator.generate import document_words, generate_instance
from tests.schema_corpus.loader import CORPUS_DIR, Corpus, Entry, load, schema_validator

SUPPORTED_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})
ALLOWED_KEYWORDS = frozenset(
    {
        "type", "description", "title", "enum", "const", "anyOf", "$ref", "$defs",
        "properties", "required", "additionalProperties",
        "pattern", "format",
        "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "items", "minItems", "maxItems",
    }
)  # fmt: skip
"""The keywords a strict schema may carry (OPENAI-FACTS §7), plus the annotations ``description`` and ``title``."""
JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
MAX_PROPERTIES = 5_000
MAX_LEVELS = 10
MAX_CHARACTERS = 120_000
MAX_ENUM_VALUES = 1_000
LONG_ENUM = 250
LONG_ENUM_CHARACTERS = 15_000

SLOW_MS = 1_000
"""A conversion over this much CPU misses the issue's goal and is listed."""
ANSWER_TEXT = (
    "Invoice INV-2025-0042 from Harbour Supplies Ltd, 12 Quay Street, Bristol BS1 4DJ, United Kingdom. "
    "Issued 2025-03-14 to Maple Retail GmbH, Berlin. Contact accounts@harbour.example, +44 117 496 0000. "
    "Items: 4 x copper fittings at 12.50 EUR, 2 x velvet rope at 7.25 EUR. Status paid; priority high. "
    "Reference ORD-000123, tracking https://harbour.example/track/42, session a1b2c3. Total 64.50 EUR."
)
"""The simulated document whose words the generated answers are made of."""


# -- OpenAI's strict rules ---------------------------------------------------------------------------------------------


def strict_rule_problems(schema: Any) -> list[str]:
    """Where a schema sent with ``strict: true`` breaks OpenAI's rules or limits (§7); ``[]`` when it keeps them."""
    if not isinstance(schema, dict):
        return [f"#: the root is {type(schema).__name__}, not an object schema"]
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append(f"#: the root's type is {schema.get('type')!r}, not 'object'")
    if "anyOf" in schema:
        problems.append("#: anyOf at the root")
    defs = schema.get("$defs", {})
    if not isinstance(defs, dict):
        problems.append("#/$defs: not an object")
        defs = {}
    for path, node in _subschemas(schema):
        problems.extend(_node_problems(path, node, defs, root=path == "#"))
    return problems + limit_problems(schema)


def _node_problems(path: str, node: Any, defs: dict[str, Any], *, root: bool) -> Iterator[str]:
    if not isinstance(node, dict):
        yield f"{path}: a boolean schema"
        return
    if "$ref" in node:
        if len(node) > 1:
            yield f"{path}: $ref beside {sorted(k for k in node if k != '$ref')}"
        ref = node["$ref"]
        if ref != "#" and not (isinstance(ref, str) and _def_name(ref) in defs):
            yield f"{path}: $ref {ref!r} is not '#' nor a top-level $defs entry"
        return
    yield from (f"{path}: keyword {key!r} is not supported" for key in node if key not in ALLOWED_KEYWORDS)
    if "$defs" in node and not root:
        yield f"{path}: $defs below the root"
    fmt = node.get("format")
    if fmt is not None and fmt not in SUPPORTED_FORMATS:
        yield f"{path}: format {fmt!r} is not supported"
    types = _types(node)
    if not types and not any(k in node for k in ("anyOf", "enum", "const")):
        yield f"{path}: no type"
    if not types <= JSON_TYPES:
        yield f"{path}: unknown type {sorted(types - JSON_TYPES)}"
    if "object" in types:
        yield from _object_problems(path, node)
    if "array" in types and "items" not in node:
        yield f"{path}: an array without items"


def _object_problems(path: str, node: dict[str, Any]) -> Iterator[str]:
    properties = node.get("properties")
    if not isinstance(properties, dict):
        yield f"{path}: an object without properties"
        properties = {}
    if node.get("additionalProperties") is not False:
        yield f"{path}: additionalProperties is not false"
    required = node.get("required", [])
    if not isinstance(required, list) or set(required) != set(properties):
        yield f"{path}: required {required!r} is not every property"


def _types(node: dict[str, Any]) -> set[str]:
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {t for t in declared if isinstance(t, str)} | (
            {"?"} if not all(isinstance(t, str) for t in declared) else set()
        )
    return set()


def _def_name(ref: str) -> str | None:
    """The ``$defs`` name a ``#/$defs/NAME`` reference points at (unescaped), else ``None``."""
    prefix = "#/$defs/"
    if not ref.startswith(prefix) or "/" in ref[len(prefix) :]:
        return None
    return unquote(ref[len(prefix) :]).replace("~1", "/").replace("~0", "~")


def _subschemas(node: Any, path: str = "#") -> Iterator[tuple[str, Any]]:
    """Every subschema a strict schema can hold, with its JSON pointer, depth first (iterative: schemas nest deep)."""
    stack: list[tuple[str, Any]] = [(path, node)]
    while stack:
        where, item = stack.pop()
        yield where, item
        if not isinstance(item, dict):
            continue
        for key in ("properties", "$defs", "definitions", "patternProperties"):
            children = item.get(key)
            if isinstance(children, dict):
                stack.extend((f"{where}/{key}/{_escape(name)}", child) for name, child in children.items())
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            children = item.get(key)
            if isinstance(children, list):
                stack.extend((f"{where}/{key}/{index}", child) for index, child in enumerate(children))
        for key in ("items", "additionalProperties", "not"):
            child = item.get(key)
            if isinstance(child, dict):
                stack.append((f"{where}/{key}", child))


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def limit_problems(schema: Any) -> list[str]:
    """The guide's size limits: properties, object levels, characters, enum values."""
    properties = characters = enum_values = 0
    problems = []
    for path, node in _subschemas(schema):
        if not isinstance(node, dict):
            continue
        names = node.get("properties")
        if isinstance(names, dict):
            properties += len(names)
            characters += sum(len(name) for name in names)
        for key in ("$defs", "definitions"):
            if isinstance(node.get(key), dict):
                characters += sum(len(name) for name in node[key])
        if "const" in node:
            characters += _value_characters(node["const"])
        enum = node.get("enum")
        if isinstance(enum, list):
            enum_values += len(enum)
            size = sum(_value_characters(value) for value in enum)
            characters += size
            if len(enum) > LONG_ENUM and all(isinstance(v, str) for v in enum) and size > LONG_ENUM_CHARACTERS:
                problems.append(f"{path}: a string enum of {len(enum)} values and {size:,} characters")
    if properties > MAX_PROPERTIES:
        problems.append(f"#: {properties:,} properties in total (limit {MAX_PROPERTIES:,})")
    if characters > MAX_CHARACTERS:
        problems.append(f"#: {characters:,} characters of names and values (limit {MAX_CHARACTERS:,})")
    if enum_values > MAX_ENUM_VALUES:
        problems.append(f"#: {enum_values:,} enum values in total (limit {MAX_ENUM_VALUES:,})")
    levels = object_levels(schema)
    if levels > MAX_LEVELS:
        problems.append(f"#: {levels} object levels (limit {MAX_LEVELS})")
    return problems


def _value_characters(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(json.dumps(value))


def object_levels(schema: Any) -> int:
    """How many object levels the schema nests: the root object is 1; a ``$ref`` counts as its target, except a
    recursive one (the API accepts recursion: the count ends there). Stops counting past 64."""
    deepest = 0
    stack: list[tuple[Any, int, frozenset[str]]] = [(schema, 0, frozenset())]
    while stack:
        node, level, seen = stack.pop()
        if not isinstance(node, dict) or level > 64:
            continue
        ref = node.get("$ref")
        if isinstance(ref, str):
            target = schema if ref == "#" else _resolve_local(schema, ref)
            if target is not None and ref not in seen:
                stack.append((target, level, seen | {ref}))
            continue
        types = _types(node)
        if "object" in types or "properties" in node:
            level += 1
            deepest = max(deepest, level)
        properties = node.get("properties")
        if isinstance(properties, dict):
            stack.extend((child, level, seen) for child in properties.values())
        stack.extend((node.get(key), level, seen) for key in ("items", "additionalProperties"))
        for key in ("anyOf", "oneOf", "allOf"):
            if isinstance(node.get(key), list):
                stack.extend((branch, level, seen) for branch in node[key])
    return deepest


def _resolve_local(root: Any, ref: str) -> Any:
    if not ref.startswith("#/"):
        return None
    node = root
    for raw in ref[2:].split("/"):
        token = unquote(raw).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


def non_strict_problems(schema: Any) -> list[str]:
    """For a schema sent with ``strict: false``: it must be a valid JSON Schema and keep the size limits."""
    try:
        Draft202012Validator.check_schema(schema)
    except JsonSchemaError as exc:
        return [f"not a valid JSON Schema: {exc.message}"]
    return limit_problems(schema)


# -- the run -----------------------------------------------------------------------------------------------------------


def same_json(left: Any, right: Any) -> bool:
    """JSON equality: numbers by value (``1 == 1.0``), but a boolean is no number; keys and order of arrays count."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_json(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same_json(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


@dataclass
class KindStats:
    schemas: int = 0
    accepted: int = 0
    strict_off: int = 0
    crashes: int = 0
    valid: int = 0
    encoded: int = 0
    exact: int = 0
    expressible: int = 0
    valid_accepted: int = 0
    invalid: int = 0
    invalid_rejected: int = 0
    answers: int = 0
    undecodable: int = 0
    stored: int = 0
    stored_valid: int = 0
    within_rules: int = 0
    cpu_ms: list[float] = field(default_factory=list)

    def add(self, other: KindStats) -> None:
        for name, value in vars(other).items():
            if isinstance(value, list):
                getattr(self, name).extend(value)
            else:
                setattr(self, name, getattr(self, name) + value)


@dataclass(frozen=True)
class Finding:
    """Something the codec got wrong on one schema."""

    what: str
    entry: str
    detail: str


CRASHED = object()
"""What :meth:`Bench.guard` returns when the call raised."""


class ConversionTimeout(BaseException):
    """``build_codec`` ran past ``--timeout`` seconds (a BaseException, so no ``except Exception`` in the codec
    turns it into a refusal)."""


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    raise ConversionTimeout


@dataclass
class Bench:
    codec: ModuleType
    answers: int
    timeout_s: float
    words: list[str]
    findings: list[Finding] = field(default_factory=list)

    def note(self, what: str, entry: Entry, detail: str) -> None:
        self.findings.append(Finding(what, entry.key, detail[:500]))

    def run(self, entry: Entry) -> KindStats:
        stats = KindStats(schemas=1)
        started = time.process_time()
        signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
        try:
            codec = self.codec.build_codec(entry.schema, name=entry.name)
        except self.codec.SchemaError as exc:
            codec = None
            if entry.kind != "unsatisfiable" and entry.has_instances:
                self.note("refused", entry, str(exc))
        except ConversionTimeout:
            codec = None
            stats.crashes += 1
            self.note("crash: build_codec", entry, f"no answer after {self.timeout_s} s")
        except Exception as exc:  # any other exception is the finding
            codec = None
            stats.crashes += 1
            self.note("crash: build_codec", entry, f"{type(exc).__name__}: {exc}")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        cpu_ms = (time.process_time() - started) * 1000
        stats.cpu_ms.append(cpu_ms)
        if cpu_ms > SLOW_MS:
            self.note("slow conversion", entry, f"{cpu_ms:,.0f} ms of CPU")
        if codec is None:
            return stats
        stats.accepted = 1
        if entry.kind == "unsatisfiable":
            self.note("unsatisfiable accepted", entry, "build_codec converted a schema no instance satisfies")
        self.check_sent(codec, entry, stats)
        original = schema_validator(entry.schema)
        strict = _strict_validator(codec.strict_schema)
        for instance in entry.valid:
            self.check_valid(codec, entry, instance, strict, stats)
        for instance in entry.invalid:
            stats.invalid += 1
            errors = self.guard("validate", entry, stats, codec.validate, instance)
            if errors is not CRASHED and errors != []:
                stats.invalid_rejected += 1
            elif errors == []:
                self.note("invalid accepted", entry, json.dumps(instance)[:200])
        self.check_answers(codec, entry, original, strict, stats)
        return stats

    def guard(self, step: str, entry: Entry, stats: KindStats, call: Any, *args: Any) -> Any:
        """``call(*args)``, or :data:`CRASHED` after recording a crash."""
        try:
            return call(*args)
        except Exception as exc:  # any exception is the finding
            stats.crashes += 1
            self.note(f"crash: {step}", entry, f"{type(exc).__name__}: {exc}")
            return CRASHED

    def check_sent(self, codec: Any, entry: Entry, stats: KindStats) -> None:
        stats.strict_off += 0 if codec.strict else 1
        problems = (strict_rule_problems if codec.strict else non_strict_problems)(codec.strict_schema)
        if problems:
            self.note("outside the rules", entry, "; ".join(problems[:3]))
        else:
            stats.within_rules += 1

    def check_valid(self, codec: Any, entry: Entry, instance: Any, strict: Validator | None, stats: KindStats) -> None:
        stats.valid += 1
        if self.guard("validate", entry, stats, codec.validate, instance) == []:
            stats.valid_accepted += 1
        else:
            self.note("valid rejected", entry, json.dumps(instance)[:200])
        try:
            encoded = codec.encode(instance)
        except self.codec.CodecError:
            self.note("not expressible", entry, json.dumps(instance)[:200])
            return
        except Exception as exc:  # any exception but CodecError is the finding
            stats.crashes += 1
            self.note("crash: encode", entry, f"{type(exc).__name__}: {exc}")
            return
        stats.encoded += 1
        if strict is not None and _is_valid(strict, encoded):
            stats.expressible += 1
        else:
            self.note("encoding outside strict_schema", entry, json.dumps(encoded)[:200])
        decoded = self.guard("decode", entry, stats, codec.decode, encoded)
        if decoded is not CRASHED:
            if same_json(decoded, instance):
                stats.exact += 1
            else:
                self.note("inverse not exact", entry, f"{json.dumps(instance)[:100]} -> {json.dumps(decoded)[:100]}")

    def check_answers(
        self, codec: Any, entry: Entry, original: Validator, strict: Validator | None, stats: KindStats
    ) -> None:
        if strict is None:
            return
        for seed in range(self.answers):
            try:
                answer = generate_instance(codec.strict_schema, seed, self.words)
            except Exception:  # noqa: S112 - a schema beyond the simulator's generator: no answer to test
                continue
            if not _is_valid(strict, answer):
                continue  # the generator missed (an unmatched pattern); the API would not send this
            stats.answers += 1
            try:
                decoded = codec.decode(answer)
            except self.codec.CodecError as exc:
                stats.undecodable += 1  # a typed refusal: the service repairs or fails the line, stores nothing
                self.note("answer refused by decode", entry, f"{exc} in {json.dumps(answer)[:200]}")
                continue
            except Exception as exc:  # any other exception is the finding
                stats.crashes += 1
                self.note("crash: decode of an answer", entry, f"{type(exc).__name__}: {exc}")
                continue
            errors = self.guard("validate", entry, stats, codec.validate, decoded)
            if errors is CRASHED or errors:
                continue  # repaired or failed by the service, never stored
            stats.stored += 1
            if _is_valid(original, decoded):
                stats.stored_valid += 1
            else:
                first = next(iter(original.iter_errors(decoded)))
                self.note(
                    "stored answer invalid", entry, f"{first.json_path}: {first.message} in {json.dumps(decoded)[:200]}"
                )


def _strict_validator(schema: Any) -> Validator | None:
    try:
        return schema_validator(schema)
    except Exception:  # a sent schema jsonschema cannot even load: nothing is expressible in it
        return None


def _is_valid(validator: Validator, instance: Any) -> bool:
    try:
        return bool(validator.is_valid(instance))
    except Exception:  # an unresolvable $ref or a bad pattern: not valid
        return False


# -- the table ---------------------------------------------------------------------------------------------------------


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}" if whole else "–"


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0


COLUMNS = (
    "kind", "schemas", "accepted %", "crashes", "exact inverse %", "expressible %", "valid accepted %",
    "invalid rejected %", "stored valid %", "within rules %", "CPU ms p99", "CPU ms max",
)  # fmt: skip


def row(kind: str, s: KindStats) -> list[str]:
    return [
        kind,
        str(s.schemas),
        _pct(s.accepted, s.schemas),
        str(s.crashes),
        _pct(s.exact, s.encoded),
        _pct(s.expressible, s.valid),
        _pct(s.valid_accepted, s.valid),
        _pct(s.invalid_rejected, s.invalid),
        _pct(s.stored_valid, s.stored),
        _pct(s.within_rules, s.accepted),
        f"{_p99(s.cpu_ms):.2f}",
        f"{max(s.cpu_ms, default=0):.2f}",
    ]


def run_corpus(bench: Bench, corpus: Corpus, kinds: list[str]) -> dict[str, KindStats]:
    per_kind: dict[str, KindStats] = {kind: KindStats() for kind in kinds}
    for entry in corpus.entries:
        if entry.kind in per_kind:
            per_kind[entry.kind].add(bench.run(entry))
    return per_kind


def render(console: Console, corpus: Corpus, per_kind: dict[str, KindStats], bench: Bench, shown: int) -> None:
    total = KindStats()
    table = Table(title=f"schema codec over {corpus.root} ({bench.codec.__name__})")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, stats in per_kind.items():
        table.add_row(*row(kind, stats))
        total.add(stats)
    table.add_section()
    table.add_row(*row("total", total))
    console.print(table)
    console.print(
        f"{total.valid} valid and {total.invalid} invalid instances of accepted schemas; {total.encoded} encoded; "
        f"{total.answers} simulated answers within strict_schema, {total.undecodable} refused by decode, "
        f"{total.stored} stored (validate passed); strict off for {total.strict_off} of "
        f"{total.accepted} accepted schemas; {len(corpus.unreadable)} unreadable files."
    )
    by_what: dict[str, list[Finding]] = {}
    for finding in bench.findings:
        by_what.setdefault(finding.what, []).append(finding)
    for what in sorted(by_what):
        found = by_what[what]
        console.print(f"\n[bold]{what}[/bold]: {len(found)}")
        for finding in found[:shown]:
            console.print(f"  {finding.entry}: {finding.detail}", markup=False, highlight=False)
        if len(found) > shown:
            console.print(f"  ... {len(found) - shown} more (--details FILE lists them all)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS_DIR, help="a corpus folder, or a folder of *.json schemas"
    )
    parser.add_argument("--kind", action="append", help="only these kinds (folders)")
    parser.add_argument("--answers", type=int, default=3, help="simulated answers per accepted schema")
    parser.add_argument("--codec", default="schemas.codec", help="the module with build_codec (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before a conversion counts as a crash")
    parser.add_argument("--show", type=int, default=8, help="findings listed per sort under the table")
    parser.add_argument("--details", type=Path, help="write every finding to this file, one JSON object a line")
    args = parser.parse_args(argv)
    try:
        codec = importlib.import_module(args.codec)
    except ModuleNotFoundError as exc:
        print(f"bench.schemas: cannot import {args.codec} ({exc})", file=sys.stderr)
        return 2
    corpus = load(args.corpus)
    if not corpus.entries:
        print(f"bench.schemas: no *.json schema under {args.corpus}", file=sys.stderr)
        return 2
    kinds = [kind for kind in corpus.kinds() if not args.kind or kind in args.kind]
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    bench = Bench(codec, args.answers, args.timeout, document_words(ANSWER_TEXT))
    per_kind = run_corpus(bench, corpus, kinds)
    render(Console(width=180), corpus, per_kind, bench, args.show)
    if args.details:
        with args.details.open("w", encoding="utf-8") as handle:
            for finding in bench.findings:
                handle.write(json.dumps(vars(finding)) + "\n")
            for unreadable in corpus.unreadable:
                handle.write(
                    json.dumps({"what": "unreadable", "entry": str(unreadable.path), "detail": unreadable.reason})
                    + "\n"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
