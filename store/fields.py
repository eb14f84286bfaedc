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
    REPLACED: Final = "replaced"
    """Lines given a new document by a ``submit --replace-changed`` (cumulative)."""
    CANCELLED_AT: Final = "cancelled_at"
    CANCEL_FROM: Final = "cancel_from"
    """Set by ``cancel``: lines from this ordinal on were never enqueued and end ``cancelled`` without a record."""
    TRIES_FAILED: Final = "tries_failed"
    """Tries of this batch's lines that ended in an error, not a 429 (cumulative). Counted as each try ends, before the
    retry policy decides (``store.accounts.NOTE_ENDING``): a try its line then gave up on counts too."""
    RATE_LIMITED: Final = "rate_limited"
    """Tries that ended in a 429 for the rate limit or a flex tier's capacity (cumulative; counted the same way)."""
    PAUSED: Final = "paused"
    """Set when the batch paused on a batch-wide error (``store.pause``): the reason; its lines wait until resumed."""
    PAUSED_AT: Final = "paused_at"
    BATCH_WIDE_FAILURES: Final = "batch_wide_failures"
    """Calls of this batch that failed for a batch-wide reason since it last resumed."""
    COMPLETED_MS: Final = "completed_ms"
    """Redis time (ms) when the last line got its final result; retention counts from here."""
    CREATED_MS: Final = "created_ms"
    COST_USD: Final = "cost_usd"
    POSSIBLY_BILLED_CALLS: Final = "possibly_billed_calls"
    """Calls of recorded lines that were sent and never answered (abandoned by a SIGTERM, a SIGKILL or a client
    timeout, or a dropped connection): the provider may have billed them; their usage is in no result line."""
    POSSIBLY_BILLED_TOKENS: Final = "possibly_billed_input_tokens"
    """The input-token estimate of those calls (output tokens unknown: at most their max output tokens each)."""
    BUDGET_MICRO_USD: Final = "budget_micro_usd"
    """The batch's budget in millionths of a dollar (``store.budget``); absent = none."""
    BUDGET_TOKENS: Final = "budget_tokens"
    """The batch's budget in tokens billed (input + output); absent = none."""
    SPENT_MICRO_USD: Final = "spent_micro_usd"
    """What the batch's calls cost so far, as they returned (not as lines were recorded)."""
    SPENT_TOKENS: Final = "spent_tokens"
    RESERVED_MICRO_USD: Final = "reserved_micro_usd"
    """The worst-case cost of the calls in flight (reserved before each went out, settled when it returned)."""
    RESERVED_TOKENS: Final = "reserved_tokens"
    SHADOW_SHARE_USD: Final = "shadow_share_usd"
    """A batch with a shadow: the shadow's share of a dollar budget given to the two, by their estimated costs
    (recorded once, at submit: ``store.budget``)."""
    SHADOW_SHARE_TOKENS: Final = "shadow_share_tokens"
    """The same for a token budget, by their estimated tokens."""
    GROUP_BUDGET_MICRO_USD: Final = "group_budget_micro_usd"
    """A batch with a shadow: the budget given to it and its shadow together; ``BUDGET_MICRO_USD`` is its own part."""
    GROUP_BUDGET_TOKENS: Final = "group_budget_tokens"
    CALIBRATION_RAW_INPUT: Final = "calibration_raw_input"
    """The uncalibrated input estimates of the batch's answered calls, summed (``producer estimate`` learns from
    them and ``CALIBRATION_INPUT``: the ratio of what the provider counted to what we estimated, per model)."""
    CALIBRATION_INPUT: Final = "calibration_input"
    """The input tokens the provider reported for those same calls."""
    CACHE_NUMBER: Final = "cache_number"
    """The batch's number in the result cache's pointers (``store.cache``): given by the first answer of the batch
    that goes into the cache (``{p}cache:batch-seq``), mapped back to the id by ``{p}cache:batch-ids``."""
    # The token totals of every recorded line sit beside these, one field per usage kind: see store.usage.

    @classmethod
    def lua_names(cls) -> dict[str, str | int]:
        """Every field as a ``$NAME`` substitution for Lua sources."""
        return {name: value for name, value in vars(cls).items() if name.isupper() and isinstance(value, str)}
