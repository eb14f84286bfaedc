"""Deterministic JSON instances that conform to a JSON Schema: the simulated model's "answer".

The instance depends only on the schema, the random generator (seeded by the
caller from model + schema + input text) and the words of the input document,
so the same request always yields byte-identical output, while a different
document yields a different, plausible-looking one (strings are runs of the
document's own words, as if extracted from it).

Supported: object / array / string / number / integer / boolean / null, type
lists, ``enum`` / ``const``, ``anyOf`` / ``oneOf`` (non-null branch most of the
time), ``allOf`` (merged), ``$ref`` into the same document (``#/$defs/...``,
``#/definitions/...``, ``#``), string formats and length bounds, numeric
bounds and ``multipleOf``, item-count bounds, ``prefixItems``, ``uniqueItems``.
Recursion is bounded: past :data:`SOFT_DEPTH` the generator prefers ``null``,
minimal arrays and required properties only. ``pattern`` is only honoured when
some document word (or one of a few common values) happens to match it. :func:`generate_instance` validates
what it built and retries with other draws, so only schemas beyond this
generator (unmatched patterns, contradictory constraints) yield a non-conforming value.
"""

from __future__ import annotations

import math
import random
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import orjson

from simulator.schema_checks import validator

SOFT_DEPTH = 4
"""Nesting depth from which recursion is wound down (null branches, minimal arrays)."""
HARD_DEPTH = 32
"""Nesting depth at which generation gives up on a branch and emits null."""
NULL_PROBABILITY = 0.15
"""How often a nullable value is null when recursion does not force it."""
ATTEMPTS = 4
PATTERN_SEARCH_WORDS = 500
PATTERN_FALLBACKS = ("USD", "EUR", "ABC", "XYZ", "123", "0000", "A1", "2026-01-01", "info@example.com")
"""Values tried for a ``pattern`` no document word matches (currency codes, digits, a date, an address)."""

_FALLBACK_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
_WORD_RE = re.compile(r"[^\W_](?:[\w'.-]*[^\W_])?")
_LONG_TEXT_HINTS = frozenset(
    {"description", "summary", "text", "notes", "note", "comment", "content", "body", "reason"}
)
_TITLE_HINTS = frozenset({"name", "title", "company", "organization", "organisation", "city", "country", "author"})
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM_RE = re.compile(r"[^a-z0-9]+")
_UNBOUNDED = 1 << 31

Schema = dict[str, Any]


def document_words(text: str, limit: int = 20_000) -> list[str]:
    """The words of a document (at most ``limit``), the raw material for generated strings."""
    words = []
    for match in _WORD_RE.finditer(text):
        words.append(match.group())
        if len(words) >= limit:
            break
    return words or list(_FALLBACK_WORDS)


def generate_instance(schema: Schema, seed: int, words: Sequence[str]) -> Any:
    """A JSON value valid against ``schema``, fully determined by ``(schema, seed, words)``."""
    check = validator(schema)
    instance: Any = None
    for attempt in range(ATTEMPTS):
        instance = _Generator(schema, random.Random(seed + attempt), words or _FALLBACK_WORDS).value(schema, 0, None)
        if check.is_valid(instance):
            return instance
    return instance


def _key_tokens(key: str | None) -> list[str]:
    if not key:
        return []
    return [token for token in _NON_ALNUM_RE.split(_CAMEL_RE.sub("_", key).lower()) if token]


def _merge(base: Schema, extra: Schema) -> Schema:
    """Conjunction of two schemas, approximated: properties and required are unioned, the rest overridden."""
    merged = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(merged.get(key), dict) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        elif key == "required" and isinstance(merged.get(key), list) and isinstance(value, list):
            merged[key] = list(dict.fromkeys([*merged[key], *value]))
        else:
            merged[key] = value
    return merged


def _is_null_schema(schema: object) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "null" or schema.get("const", ...) is None)


class _Generator:
    """One generation pass; holds the root (for ``$ref``), the seeded RNG and the document's words."""

    def __init__(self, root: Schema, rng: random.Random, words: Sequence[str]) -> None:
        self._root = root
        self._rng = rng
        self._words = words
        self._types: dict[str, Callable[[Schema, int, str | None], Any]] = {
            "object": self._object,
            "array": self._array,
            "string": self._string,
            "integer": self._integer,
            "number": self._number,
            "boolean": lambda _schema, _depth, _key: self._rng.random() < 0.5,
            "null": lambda _schema, _depth, _key: None,
        }

    # -- dispatch ---------------------------------------------------------------------------------------------

    def value(self, schema: object, depth: int, key: str | None) -> Any:
        if depth > HARD_DEPTH or schema is False or not isinstance(schema, dict | bool):
            return None
        if schema is True or not schema:
            return self._phrase(key)
        assert isinstance(schema, dict)
        schema = self._resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._rng.choice(schema["enum"])
        for combinator in ("anyOf", "oneOf"):
            branches = schema.get(combinator)
            if isinstance(branches, list) and branches:
                rest = {k: v for k, v in schema.items() if k != combinator}
                branch = self._pick_branch(branches, depth)
                chosen = _merge(rest, self._resolve(branch)) if isinstance(branch, dict) else branch
                return self.value(chosen, depth, key)
        return self._types.get(self._choose_type(schema, depth), self._string)(schema, depth, key)

    def _resolve(self, schema: Schema) -> Schema:
        """Follow ``$ref`` chains (merging sibling keywords) and fold ``allOf`` into one schema."""
        for _ in range(HARD_DEPTH):
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                break
            siblings = {k: v for k, v in schema.items() if k != "$ref"}
            schema = _merge(self._lookup(ref), siblings)
        parts = schema.get("allOf")
        if isinstance(parts, list):
            merged = {k: v for k, v in schema.items() if k != "allOf"}
            for part in parts:
                if isinstance(part, dict):
                    merged = _merge(merged, self._resolve(part))
            schema = merged
        return schema

    def _lookup(self, ref: str) -> Schema:
        """The schema a local ``$ref`` points at; ``{}`` (anything) for refs we cannot follow."""
        if not ref.startswith("#"):
            return {}
        node: Any = self._root
        for raw in ref[1:].split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return {}
        return node if isinstance(node, dict) else {}

    def _pick_branch(self, branches: list[Any], depth: int) -> Any:
        nulls = [branch for branch in branches if _is_null_schema(branch)]
        others = [branch for branch in branches if not _is_null_schema(branch)]
        if not others:
            return nulls[0]
        if nulls and (depth >= SOFT_DEPTH or self._rng.random() < NULL_PROBABILITY):
            return nulls[0]
        if depth >= SOFT_DEPTH:
            flat = [branch for branch in others if not (isinstance(branch, dict) and "$ref" in branch)]
            others = flat or others
        return self._rng.choice(others)

    def _choose_type(self, schema: Schema, depth: int) -> str:
        declared = schema.get("type")
        if isinstance(declared, str):
            return declared
        if isinstance(declared, list) and declared:
            non_null = [t for t in declared if t != "null"]
            if "null" in declared and (not non_null or depth >= SOFT_DEPTH or self._rng.random() < NULL_PROBABILITY):
                return "null"
            return str(self._rng.choice(non_null))
        return _infer_type(schema)

    # -- containers -------------------------------------------------------------------------------------------

    def _object(self, schema: Schema, depth: int, _key: str | None) -> dict[str, Any]:
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = [name for name in schema.get("required") or () if isinstance(name, str)]
        out: dict[str, Any] = {}
        for name, subschema in properties.items():
            if depth < SOFT_DEPTH or name in required:
                out[name] = self.value(subschema, depth + 1, name)
        extra = schema.get("additionalProperties", True)
        for name in required:
            if name not in out:
                out[name] = self.value(extra if isinstance(extra, dict) else True, depth + 1, name)
        return out

    def _array(self, schema: Schema, depth: int, key: str | None) -> list[Any]:
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items", True)
        count = self._item_count(schema, depth, len(prefix), items is False)
        unique = schema.get("uniqueItems") is True
        out: list[Any] = []
        seen: set[bytes] = set()
        for index in range(count):
            subschema = prefix[index] if index < len(prefix) else items
            for _ in range(ATTEMPTS if unique else 1):
                item = self.value(subschema, depth + 1, key)
                fingerprint = orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
                if fingerprint not in seen:
                    break
            else:
                if unique:
                    continue  # no fresh value found: a shorter array beats a duplicate
            seen.add(fingerprint)
            out.append(item)
        return out

    def _item_count(self, schema: Schema, depth: int, prefix_len: int, closed: bool) -> int:
        """1-3 items, within minItems/maxItems; the minimum once recursion is deep."""
        low = _int_or_none(schema.get("minItems")) or 0
        high = _int_or_none(schema.get("maxItems"))
        high = _UNBOUNDED if high is None else high
        if closed:
            high = min(high, prefix_len)
        if high < low or depth >= SOFT_DEPTH:
            return low
        lo, hi = max(low, 1), min(high, 3)
        if lo > hi:  # either at least 4 are required, or at most 0 allowed
            return low if low > 3 else high
        return self._rng.randint(lo, hi)

    # -- scalars ----------------------------------------------------------------------------------------------

    def _string(self, schema: Schema, _depth: int, key: str | None) -> str:
        fmt = schema.get("format")
        maker = _FORMATS.get(fmt) if isinstance(fmt, str) else _hinted_format(_key_tokens(key))
        text = maker(self) if maker is not None else self._phrase(key)
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            text = self._matching_word(pattern) or text
        return self._fit(text, _int_or_none(schema.get("minLength")) or 0, _int_or_none(schema.get("maxLength")))

    def _fit(self, text: str, min_length: int, max_length: int | None) -> str:
        while len(text) < min_length:
            text = f"{text} {self._word()}".strip()
        if max_length is not None and len(text) > max_length:
            text = text[:max_length]
            stripped = text.rstrip()
            text = stripped if len(stripped) >= min_length else text
        return text

    def _integer(self, schema: Schema, _depth: int, key: str | None) -> int:
        low, high = _numeric_bounds(schema, integer=True, default=_default_range(_key_tokens(key)))
        lo, hi = math.ceil(low), math.floor(high)
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            first, last = math.ceil(lo / step), math.floor(hi / step)
            if first <= last:
                return int(self._rng.randint(first, last) * step)
        return self._rng.randint(lo, hi) if lo <= hi else lo

    def _number(self, schema: Schema, _depth: int, key: str | None) -> float:
        low, high = _numeric_bounds(schema, integer=False, default=_default_range(_key_tokens(key)))
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            first, last = math.ceil(low / step), math.floor(high / step)
            if first <= last:
                # as many decimals as the step itself has (0.25 -> 2, 2.5 -> 1): k * step then rounds to a multiple
                decimals = max(0, -int(Decimal(repr(step)).as_tuple().exponent))
                return round(self._rng.randint(first, last) * step, decimals)
        value = round(self._rng.uniform(low, high), 2)
        return value if low <= value <= high else (low + high) / 2

    # -- words ------------------------------------------------------------------------------------------------

    def _word(self) -> str:
        return self._words[self._rng.randrange(len(self._words))]

    def _phrase(self, key: str | None) -> str:
        tokens = _key_tokens(key)
        long_text = any(token in _LONG_TEXT_HINTS for token in tokens)
        count = min(self._rng.randint(5, 12) if long_text else self._rng.randint(1, 4), len(self._words))
        start = self._rng.randrange(len(self._words) - count + 1)
        words = list(self._words[start : start + count])
        if any(token in _TITLE_HINTS for token in tokens):
            words = [word[:1].upper() + word[1:] for word in words]
        return " ".join(words)

    def _matching_word(self, pattern: str) -> str | None:
        """Best effort for ``pattern``: a document word (as is, upper- or lower-cased) that matches it, else one of
        :data:`PATTERN_FALLBACKS`."""
        try:
            compiled = re.compile(pattern)
        except re.error:
            return None
        start = self._rng.randrange(len(self._words))
        for offset in range(min(len(self._words), PATTERN_SEARCH_WORDS)):
            word = self._words[(start + offset) % len(self._words)]
            for candidate in (word, word.upper(), word.lower()):
                if compiled.search(candidate):
                    return candidate
        # A document without a fitting word (an image, whose text the simulator cannot read): a common value.
        return next((word for word in PATTERN_FALLBACKS if compiled.search(word)), None)

    def slug(self) -> str:
        """A lowercase ASCII word from the document, for emails, hostnames and URLs."""
        for _ in range(ATTEMPTS):
            cleaned = re.sub(r"[^a-z0-9]", "", self._word().lower())
            if cleaned:
                return cleaned
        return "item"

    def randint(self, low: int, high: int) -> int:
        return self._rng.randint(low, high)

    def uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _infer_type(schema: Schema) -> str:
    """The type a schema without ``type`` most likely means, from the keywords it uses."""
    if any(k in schema for k in ("properties", "required", "additionalProperties")):
        return "object"
    if any(k in schema for k in ("items", "prefixItems", "minItems", "maxItems")):
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _default_range(tokens: list[str]) -> tuple[float, float]:
    if "year" in tokens:
        return 1990, 2030
    if "age" in tokens:
        return 18, 80
    return 0, 100


def _numeric_bounds(schema: Schema, *, integer: bool, default: tuple[float, float]) -> tuple[float, float]:
    """Inclusive ``(low, high)`` honouring minimum/maximum and exclusive bounds (draft-04 booleans too)."""
    low = _number_or_none(schema.get("minimum"))
    high = _number_or_none(schema.get("maximum"))
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    if ex_low is True:  # draft-04: the flag makes ``minimum`` exclusive
        ex_low, low = low, None
    if ex_high is True:
        ex_high, high = high, None
    if (bound := _number_or_none(ex_low)) is not None:
        above = math.floor(bound) + 1 if integer else bound + 0.01
        low = above if low is None else max(low, above)
    if (bound := _number_or_none(ex_high)) is not None:
        below = math.ceil(bound) - 1 if integer else bound - 0.01
        high = below if high is None else min(high, below)
    span = default[1] - default[0]
    if low is None and high is None:
        return default
    if low is None:
        assert high is not None
        low = high - span if high < default[0] else default[0]
    if high is None:
        high = low + span if low > default[1] else default[1]
    return low, max(high, low) if not integer else high


def _number_or_none(value: object) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _date(gen: _Generator) -> str:
    return f"{gen.randint(1990, 2030):04d}-{gen.randint(1, 12):02d}-{gen.randint(1, 28):02d}"


def _time(gen: _Generator) -> str:
    return f"{gen.randint(0, 23):02d}:{gen.randint(0, 59):02d}:{gen.randint(0, 59):02d}Z"


_FORMATS: dict[str, Callable[[_Generator], str]] = {
    "date": _date,
    "date-time": lambda gen: f"{_date(gen)}T{_time(gen)}",
    "time": _time,
    "email": lambda gen: f"{gen.slug()}.{gen.slug()}@example.com",
    "idn-email": lambda gen: f"{gen.slug()}@example.com",
    "uri": lambda gen: f"https://example.com/{gen.slug()}",
    "iri": lambda gen: f"https://example.com/{gen.slug()}",
    "uri-reference": lambda gen: f"/{gen.slug()}",
    "hostname": lambda gen: f"{gen.slug()}.example.com",
    "ipv4": lambda gen: f"192.0.2.{gen.randint(1, 254)}",
    "ipv6": lambda gen: f"2001:db8::{gen.randint(1, 0xFFFF):x}",
    "uuid": lambda gen: gen.uuid(),
    "duration": lambda gen: f"P{gen.randint(1, 30)}D",
}


def _hinted_format(tokens: list[str]) -> Callable[[_Generator], str] | None:
    """A plausible format for an unconstrained string, guessed from its property name."""
    if "email" in tokens:
        return _FORMATS["email"]
    if {"url", "uri", "website", "link", "homepage"} & set(tokens):
        return _FORMATS["uri"]
    if "date" in tokens or "birthday" in tokens:
        return _date
    if tokens[-1:] == ["at"] or "timestamp" in tokens:
        return _FORMATS["date-time"]
    if "phone" in tokens:
        return lambda gen: f"+1-555-01{gen.randint(0, 99):02d}"
    return None
