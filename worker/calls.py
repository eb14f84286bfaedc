"""What surrounds each API call of a job: admission before, usage account and reservation settlement after (one
round trip: ``store.scripts.RoundTrip``)."""

from __future__ import annotations

from collections.abc import Callable

from store.scripts import RoundTrip
from worker.account import JobAccount
from worker.adapters.base import ApiCallError, ModelReply
from worker.admission import AdmissionController, Reservation
from worker.classify import Settle, classify_call_error
from worker.metrics import WorkerMetrics
from worker.prompt import ModelRequest
from worker.tokens import RawEstimate, TokenEstimator


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
    ) -> None:
        self._admission = admission
        self._estimator = estimator
        self._account = account
        self._metrics = metrics
        self._trip = trip
        self._api = api
        self._default_output_reserve = default_output_reserve
        self._open: tuple[Reservation, ModelRequest, RawEstimate] | None = None

    async def before_call(self, request: ModelRequest, *, first: bool) -> None:
        estimate, raw = self._estimator.estimate(request)
        output = request.max_output_tokens or self._default_output_reserve
        # The call is counted as sent in the admission's own round trip, if and once it is admitted.
        reservation = await self._admission.acquire(
            request.model,
            estimate,
            output,
            may_defer=first,
            explicit_max=request.max_output_tokens is not None,
            with_admission=lambda trip, key: self._account.queue_begin_call(trip, estimate, if_reserved=key),
        )
        self._metrics.admission_wait.labels(request.model).observe(reservation.waited_s)
        self._open = (reservation, request, raw)

    async def after_call(self, reply: ModelReply | None, error: ApiCallError | None, *, repair: bool) -> None:
        latency_ms = reply.latency_ms if reply is not None else (error.latency_ms if error is not None else 0)
        verdict = classify_call_error(error) if error is not None else None
        # No reply, no answer (a timeout, a dropped connection): the provider may have billed it anyway.
        possibly_billed = reply is None and (verdict is None or verdict.possibly_billed)
        estimate = self._open[0].input_tokens if self._open is not None else 0
        # The call's usage and its reservation's settlement go in one round trip.
        trip = self._trip()
        added = self._account.queue_add_call(
            trip, reply, latency_ms, repair, possibly_billed=possibly_billed, estimate=estimate
        )
        opened, self._open = self._open, None
        if opened is not None:
            reservation, request, raw = opened
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
