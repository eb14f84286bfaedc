"""A job's view of its line's account of API calls (kept in Redis by ``store.accounts``, across tries and restarts).

Every call is counted the moment it returns, billed or not, so the usage in the final result line covers every
billed call of every try (a repair, a retry after a 5xx on the second call) and matches the provider's bill.
"""

from __future__ import annotations

from schemas.records import CallTotals
from store.accounts import Accounts
from store.keys import BatchKeys
from worker.adapters.base import ModelReply
from worker.policy import Ending, History


class JobAccount:
    def __init__(self, accounts: Accounts, keys: BatchKeys, ordinal: int) -> None:
        self._accounts = accounts
        self._keys = keys
        self._ordinal = ordinal

    async def begin_call(self, estimate: int) -> None:
        """A call is about to go out: if nobody sees it return (SIGTERM, SIGKILL), it stays possibly billed."""
        await self._accounts.begin_call(self._keys, self._ordinal, estimate=estimate)

    async def add_call(
        self, reply: ModelReply | None, latency_ms: int, repair: bool, *, possibly_billed: bool, estimate: int
    ) -> None:
        """A call returned: with a reply (billed), or without one (``possibly_billed``: no answer, maybe counted)."""
        await self._accounts.add_call(
            self._keys,
            self._ordinal,
            usage=reply.usage if reply is not None else None,
            response_id=reply.response_id if reply is not None else None,
            latency_ms=latency_ms,
            repair=repair,
            possibly_billed=possibly_billed,
            estimate=estimate,
        )

    async def note_ending(self, ending: Ending, now_ms: int) -> History | None:
        """Count how a try ended; the line's whole history after it (None: the batch is gone)."""
        counts = await self._accounts.note_ending(self._keys, self._ordinal, now_ms, ending.value)
        if counts is None:
            return None
        return History(counts.errors, counts.internal, counts.waits, counts.first_error_ms)

    async def totals(self) -> CallTotals:
        return (await self._accounts.get(self._keys, self._ordinal)).totals
