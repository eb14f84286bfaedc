"""Approximate, deterministic token accounting.

Real tokenizers average about four bytes of English per token; the simulator
uses exactly ``ceil(utf8_bytes / 4)`` so counts are cheap, stable across runs
and easy to predict in tests. Budgets and costs computed by the service from
these numbers are therefore right in shape, not to the token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

BYTES_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
"""Role markers and separators the real chat format adds around every message."""


def count_tokens(text: str) -> int:
    """Tokens in a piece of text: ceil(utf-8 bytes / 4), 0 for the empty string."""
    return -(-len(text.encode()) // BYTES_PER_TOKEN)


def message_tokens(text: str) -> int:
    """Tokens a prompt message costs: its text (at least 1) plus the per-message overhead."""
    return max(count_tokens(text), 1) + MESSAGE_OVERHEAD_TOKENS


def cut_to_tokens(text: str, budget: int) -> str:
    """The longest prefix of ``text`` that fits in ``budget`` tokens (never splitting a UTF-8 character)."""
    limit = max(budget, 0) * BYTES_PER_TOKEN
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode(errors="ignore")


def cut_mid_json(text: str) -> str:
    """Cut ``text`` about halfway, then further until it no longer parses: what a truncated output looks like."""
    cut = text[: len(text) // 2]
    while cut and _parses(cut):
        cut = cut[:-1]
    return cut


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one response; ``output_tokens`` includes ``reasoning_tokens`` as in the real API."""

    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens
