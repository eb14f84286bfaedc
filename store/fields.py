"""The fields of a batch record (``{p}batch:{id}``, a hash), spelled once.

Lua scripts take these names through ``$NAME`` placeholders (``store.scripts``), so no field is spelled twice.
"""

from __future__ import annotations

from typing import Final


class F:
    """Batch hash fields. Counters are integers; ``cost_usd`` a float; times ISO-8601 UTC."""

    SPEC: Final = "spec"
    """The BatchSpec as JSON: what every worker needs to process any line."""
    CREATED_AT: Final = "created_at"
    TTL_MS: Final = "ttl_ms"
    """Retention once complete: every key of the batch expires this long after its last line (0 = kept)."""
    INPUT: Final = "input"
    """Where the lines came from (path and field names, JSON): what ``retry`` reads the failed lines' text from."""
    LINES: Final = "lines"
    """The number of lines the input has (known before any is enqueued)."""
    INDEXED: Final = "indexed"
    """Lines written to the line index so far; the submit has finished writing the batch when it equals LINES."""
    FED: Final = "fed"
    """Feed cursor: lines [0, fed) have been enqueued (at least once)."""
    QUEUED: Final = "queued"
    """Jobs of this batch in the queue or running: what the feed window bounds."""
    DONE: Final = "done"
    SUCCEEDED: Final = "succeeded"
    FAILED: Final = "failed"
    CANCELLED: Final = "cancelled"
    RETRIED: Final = "retried"
    """Lines re-enqueued by ``retry`` (cumulative)."""
    ROUND: Final = "round"
    """How many times ``retry`` ran: retried jobs get fresh arq ids ``…:{ordinal}.{round}``."""
    CANCELLED_AT: Final = "cancelled_at"
    CANCEL_FROM: Final = "cancel_from"
    """Set by ``cancel``: lines from this ordinal on were never enqueued and end ``cancelled`` without a record."""
    COMPLETED_MS: Final = "completed_ms"
    """Redis time (ms) when the last line got its final result; retention counts from here."""
    CREATED_MS: Final = "created_ms"
    COST_USD: Final = "cost_usd"
    # The token totals of every recorded line sit beside these, one field per usage kind: see store.usage.

    @classmethod
    def lua_names(cls) -> dict[str, str | int]:
        """Every field as a ``$NAME`` substitution for Lua sources."""
        return {name: value for name, value in vars(cls).items() if name.isupper() and isinstance(value, str)}
