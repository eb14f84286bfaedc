"""What surrounds each API call of a job: admission and the budget reservation before, usage account and both
settlements after (one round trip each: ``store.scripts.RoundTrip``)."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable

from schemas.pricing import ModelPrice, cost_usd
from schemas.records import now_iso
from store.accounts import NO_CHARGE, BudgetCharge
from store.scripts import RoundTrip, Slot
from worker.account import JobAccount
from worker.adapters.base import ModelReply
from worker.adapters.errors import ApiCallError
from worker.admission import AdmissionController, Reservation
from worker.classify import Settle, classify_call_error
from worker.metrics import WorkerMetrics
from worker.prompt import ModelRequest
from worker.tokens import RawEstimate, TokenEstimator

log = logging.getLogger("worker.calls")

PriceOf = Callable[[str | None], ModelPrice | None]
"""The batch model's price at a service tier (None or ``auto``: the default tier)."""


BUDGET_REACHED, BUDGET_IN_FLIGHT = -2, -3
"""What ``store.accounts.BEGIN_CALL`` answers when a call would pass the budget: always, or with the calls in flight."""


Counter = Callable[[ModelRequest], Awaitable[int]]
"""The provider's count of a request's input tokens (``worker.adapters.responses.count_input_tokens``)."""


class BudgetReachedError(Exception):
    """The call would pass the batch's budget: the batch is paused (``store.budget``) and the line waits."""


class BudgetHeldError(Exception):
    """The call would pass the batch's budget only because of its calls in flight: the line waits for them to settle
    (``worker.policy.Ending.HELD``)."""


def worst_case(price: ModelPrice | None, input_tokens: int, output_tokens: int) -> BudgetCharge:
    """What a call may cost at most: its input estimate and its output cap, at ``price`` (tokens x USD per 1M tokens =
    micro-dollars)."""
    micro = 0 if price is None else math.ceil(input_tokens * price.input + output_tokens * price.output)
    return BudgetCharge(micro, input_tokens + output_tokens)


class JobCalls:
    """``CallHooks`` for one try of one job. Calls within a try are sequential, so one reservation is open at most."""

    def __init__(
        self,
        admission: AdmissionController,
        estimator: TokenEstimator,
        account: JobAccount,
        metrics: WorkerMetrics,
        trip: Callable[[], RoundTrip],
        *,
        api: str,
        default_output_reserve: int,
        price_of: PriceOf = lambda _tier: None,
        flex_fallback: bool = False,
        counter: Counter | None = None,
    ) -> None:
        self._admission = admission
        self._estimator = estimator
        self._account = account
        self._metrics = metrics
        self._trip = trip
        self._api = api
        self._default_output_reserve = default_output_reserve
        self._price_of = price_of
        self._flex_fallback = flex_fallback
        self._counter = counter
        self._open: tuple[Reservation, ModelRequest, RawEstimate, BudgetCharge] | None = None

    async def _sized(self, request: ModelRequest) -> tuple[int, RawEstimate]:
        """(input tokens to reserve, the raw estimate to calibrate with): the provider's count with
        ``--count-tokens exact`` (nothing to calibrate then), else our calibrated estimate. A counter that fails
        falls back to the estimate: sizing a call never fails it."""
        if self._counter is not None:
            try:
                counted = await self._counter(request)
            except ApiCallError as exc:
                log.debug("the input-token counter failed (%s); using the estimate", exc.message)
            else:
                return counted, RawEstimate(0, counted)
        return self._estimator.estimate(request)

    async def before_call(self, request: ModelRequest, *, first: bool) -> None:
        estimate, raw = await self._sized(request)
        output = request.max_output_tokens or self._default_output_reserve
        worst = worst_case(self._price_of(request.service_tier), estimate, output)
        begun: list[Slot[int]] = []
        # The call is counted as sent, and its worst case reserved against the budget, in the admission's own round
        # trip, if and once it is admitted.
        reservation = await self._admission.acquire(
            request.model,
            estimate,
            output,
            may_defer=first,
            explicit_max=request.max_output_tokens is not None,
            with_admission=lambda trip, key: begun.append(
                self._account.queue_begin_call(trip, estimate, if_reserved=key, worst=worst, now_iso=now_iso())
            ),
        )
        self._metrics.admission_wait.labels(request.model).observe(reservation.waited_s)
        answer = begun[-1].value if begun else 0
        if answer in (BUDGET_REACHED, BUDGET_IN_FLIGHT):  # nothing was sent: give the admission back
            await self._admission.settle(reservation, outcome=Settle.UNAVAILABLE)
            if answer == BUDGET_REACHED:
                raise BudgetReachedError("the batch reached its budget")
            raise BudgetHeldError("the batch's budget is held by its calls in flight; waiting for them to settle")
        self._open = (reservation, request, raw, worst)

    async def after_call(self, reply: ModelReply | None, error: ApiCallError | None, *, repair: bool) -> None:
        latency_ms = reply.latency_ms if reply is not None else (error.latency_ms if error is not None else 0)
        verdict = classify_call_error(error) if error is not None else None
        # No reply, no answer (a timeout, a dropped connection): the provider may have billed it anyway.
        possibly_billed = reply is None and (verdict is None or verdict.possibly_billed)
        estimate = self._open[0].input_tokens if self._open is not None else 0
        # The call's usage and its reservation's settlement go in one round trip.
        reserved = self._open[3] if self._open is not None else NO_CHARGE
        raw_input = self._open[2].total if self._open is not None and reply is not None else 0
        trip = self._trip()
        added = self._account.queue_add_call(
            trip,
            reply,
            latency_ms,
            repair,
            possibly_billed=possibly_billed,
            estimate=estimate,
            reserved=reserved,
            cost=self._cost(reply, estimate if possibly_billed else 0),
            flex_fallback=self._flex_fallback,
            raw_input=raw_input,
        )
        opened, self._open = self._open, None
        if opened is not None:
            reservation, request, raw, _ = opened
            status = "200" if reply is not None else str(error.status_code if error and error.status_code else "error")
            usage = reply.usage if reply is not None else None
            self._metrics.count_call(self._api, request.model, status, latency_ms / 1000, usage)
            if reply is not None:
                self._estimator.observe(request.model, raw, reply.usage.input_tokens)
                self._admission.queue_settle(
                    trip,
                    reservation,
                    input_tokens=reply.usage.input_tokens,
                    output_tokens=reply.usage.output_tokens,
                    headers=reply.headers,
                )
            elif error is not None and verdict is not None:
                if verdict.settle is Settle.LIMITED:
                    self._metrics.rate_limited.labels(request.model).inc()
                self._admission.queue_settle(
                    trip, reservation, outcome=verdict.settle, cooldown_s=verdict.cooldown_s, headers=error.headers
                )
        await trip.run()
        self._account.remember(added.value)

    def _cost(self, reply: ModelReply | None, unanswered_input: int) -> BudgetCharge:
        """What a call cost against the budget: its usage at the tier that served it; a call without an answer that
        may have been billed, its input estimate at the default tier."""
        if reply is not None:
            usage = reply.usage
            usd = cost_usd(usage, self._price_of(reply.service_tier))
            return BudgetCharge(round((usd or 0.0) * 1_000_000), usage.input_tokens + usage.output_tokens)
        price = self._price_of(None)
        return BudgetCharge(math.ceil(unanswered_input * price.input) if price else 0, unanswered_input)
