"""A job's view of its line's account of API calls (kept in Redis by ``store.accounts``, across tries and restarts).

Every call is counted the moment it returns, billed or not, so the usage in the final result line covers every
billed call of every try (a repair, a retry after a 5xx on the second call) and matches the provider's bill.
"""

from __future__ import annotations

from schemas.records import CallTotals
from store.accounts import Accounts
from store.keys import BatchKeys
from worker.adapters.base import ModelReply


class JobAccount:
    def __init__(self, accounts: Accounts, keys: BatchKeys, ordinal: int) -> None:
        self._accounts = accounts
        self._keys = keys
        self._ordinal = ordinal

    async def add_call(self, reply: ModelReply | None, latency_ms: int, repair: bool) -> None:
        await self._accounts.add_call(
            self._keys,
            self._ordinal,
            usage=reply.usage if reply is not None else None,
            response_id=reply.response_id if reply is not None else None,
            latency_ms=latency_ms,
            repair=repair,
        )

    async def note_transient_error(self, now_ms: int, *, count: bool = True) -> tuple[int, int]:
        """Note a try that ended in a transient error (``count``: against the error budget).

        Returns (errors counted so far, time of the first transient error in ms).
        """
        return await self._accounts.note_error(self._keys, self._ordinal, now_ms, count=count)

    async def totals(self) -> CallTotals:
        return (await self._accounts.get(self._keys, self._ordinal)).totals
