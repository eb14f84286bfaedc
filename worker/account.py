"""A job's view of its line's account of API calls (kept in Redis by ``store.accounts``, across tries and restarts).

Every call is counted the moment it returns, billed or not, so the usage in the final result line covers every
billed call of every try (a repair, a retry after a 5xx on the second call) and matches the provider's bill.
"""

from __future__ import annotations

from schemas.records import CallTotals
from store.accounts import NO_CHARGE, Account, Accounts, BudgetCharge
from store.keys import BatchKeys
from store.scripts import RoundTrip, Slot
from worker.adapters.base import ModelReply
from worker.policy import Ending, History


class JobAccount:
    """One try's handle on its line's account. It remembers the account as the last script that changed it returned
    it, so recording the line needs no read of its own when nothing else changed it since."""

    def __init__(self, accounts: Accounts, keys: BatchKeys, ordinal: int) -> None:
        self._accounts = accounts
        self._keys = keys
        self._ordinal = ordinal
        self._known: Account | None = None

    def queue_begin_try(self, trip: RoundTrip) -> Slot[Account]:
        """The try begins: what earlier tries left in flight is settled (``store.accounts.BEGIN_TRY``); the account
        after that."""
        return self._accounts.queue_begin_try(trip, self._keys, self._ordinal)

    def remember(self, account: Account | None) -> None:
        """The account as a step of a round trip just read or wrote it (None: unknown, read it when needed)."""
        self._known = account

    @property
    def flex_unavailable_since_ms(self) -> int | None:
        """When a flex call of the line was first refused for capacity (as the account was last seen)."""
        return self._known.flex_unavailable_since_ms if self._known is not None else None

    def queue_begin_call(
        self, trip: RoundTrip, estimate: int, *, if_reserved: str, worst: BudgetCharge = NO_CHARGE, now_iso: str = ""
    ) -> Slot[int]:
        """A call is about to go out, once admitted (``if_reserved``: its reservation key): if nobody sees it return
        (SIGTERM, SIGKILL), it stays possibly billed. Its ``worst`` case is reserved against the batch's budget; the
        slot says -2 when that was refused and the batch paused, -3 when it must wait for the calls in flight
        (``store.budget``), 0 when the call was not admitted, -1 when the batch is gone."""
        return self._accounts.queue_begin_call(
            trip, self._keys, self._ordinal, estimate=estimate, if_reserved=if_reserved, worst=worst, now_iso=now_iso
        )

    def queue_add_call(
        self,
        trip: RoundTrip,
        reply: ModelReply | None,
        latency_ms: int,
        repair: bool,
        *,
        possibly_billed: bool,
        estimate: int,
        reserved: BudgetCharge = NO_CHARGE,
        cost: BudgetCharge = NO_CHARGE,
        flex_fallback: bool = False,
        raw_input: int = 0,
    ) -> Slot[Account | None]:
        """A call returned: with a reply (billed), or without one (``possibly_billed``: no answer, maybe counted).
        Its budget reservation is replaced by its ``cost``. After the trip ran, pass the slot's value to
        :meth:`remember`."""
        return self._accounts.queue_add_call(
            trip,
            self._keys,
            self._ordinal,
            usage=reply.usage if reply is not None else None,
            response_id=reply.response_id if reply is not None else None,
            latency_ms=latency_ms,
            repair=repair,
            possibly_billed=possibly_billed,
            estimate=estimate,
            request_id=reply.request_id if reply is not None else None,
            service_tier=reply.service_tier if reply is not None else None,
            reserved=reserved,
            cost=cost,
            flex_fallback=flex_fallback,
            raw_input=raw_input,
        )

    async def note_ending(self, ending: Ending, now_ms: int, *, capacity: bool = False) -> History | None:
        """Count how a try ended (``capacity``: a flex call refused for capacity); the line's whole history after it
        (None: the batch is gone)."""
        self._known = None
        counts = await self._accounts.note_ending(
            self._keys, self._ordinal, now_ms, ending.value, flex_unavailable=capacity
        )
        if counts is None:
            return None
        return History(counts.errors, counts.internal, counts.waits, counts.first_error_ms, counts.cut_offs)

    async def totals(self) -> CallTotals:
        if self._known is not None:
            return self._known.totals
        return (await self._accounts.get(self._keys, self._ordinal)).totals
