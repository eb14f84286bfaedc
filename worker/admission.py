"""Shared admission control: token buckets per limit scope, held in Redis, shared by every worker, and corrected
by the provider's own account of them.

Algorithm
---------
A *scope* is one provider limit: a hash of the endpoint and the API key, plus the model (OpenAI limits are per
organisation and model, and every process using the key shares them). Its Redis hash ``{p}rl:{scope}`` holds two
token buckets, refilled continuously on Redis server time (worker clocks never matter):

- requests at ``rpm/60`` per second, capacity ``rpm/60 * limit_window_s * BURST_FRACTION`` (at least 1);
- tokens at ``tpm/60`` per second, capacity ``tpm/60 * limit_window_s * BURST_FRACTION``.

Capacity is seconds of the limit, not a minute: providers enforce limits over sub-minute slices, so a whole
minute's burst would be refused. Both rates are scaled by ``limit_headroom`` (0.98).

**Which limits.** A limit configured for the model (``--rpm/--tpm``, ``EXTRACT_RATE_LIMITS``) and a limit learned
from the provider (``x-ratelimit-limit-requests|tokens`` of its replies, kept in the scope hash, so every worker
shares it, and replaced when a reply says otherwise: a tier change is followed at once) combine as the smaller one:
configured limits are a ceiling, a user may want half of the account. ``-1``, ``0``, absent or unparsable headers
say nothing -- never "exhausted". While neither is known for a scope, it is in **slow start**: a provisional request
rate starts at ``SLOW_START_RPM`` (with a bucket of a second, a fresh scope admits a handful at once, whatever the
fleet's size) and grows by ``SLOW_START_GROWTH_RPM`` per answered call (doubling about every second), by
``AVOIDANCE_GROWTH_RPM`` after its first 429, and shrinks by ``BACKOFF_FACTOR`` at each 429 -- TCP's congestion
window, for a server that sends no limits (a local vLLM or llama.cpp).

**A call** first *reserves* one request and its tokens -- the input estimate plus the output it may be charged --
from both buckets or from neither, atomically (``store.limits.ADMIT``). Denied, it learns how long until both hold
enough. The output reserved is the request's maximum when it sends one (OpenAI charges that), else what this
provider has been seen to charge (below), at most ``default_output_reserve``.

After the reply it *settles* exactly once (``store.limits.SETTLE``, guarded by deleting the reservation key):

- a reply: the input estimate gives way to the real input tokens;
- a 429 for the rate limit: the provider did not count the call, so the reservation comes back; a shared cool-down
  starts (``retry-after``, else the wait the message names, else one second) that blocks every worker of the scope,
  and the fill rate drops to ``SLOW_FACTOR`` of itself, recovering at ``RECOVERY_PER_S`` (``worker.classify``
  decides which 429 is which: one that is not for our limit -- a flex ``resource_unavailable``,
  ``insufficient_quota``, a request too large -- gives the reservation back with no cool-down, and so does a call the
  batch's budget stopped before it went out);
- other failures: the charge stands (the provider may have counted it).

**The provider's account wins, both ways.** A reply's ``x-ratelimit-remaining-*`` and ``-reset-*`` say how far the
provider's bucket is from full: ``reset`` seconds at its own rate -- as the provider stood when it took that call.
Our bucket right after we admitted the call should have shown the same deficit, less the output other calls then
held (``fo``: the provider charges output, if at all, when a call finishes); the difference is applied to our bucket
now, so everything reserved since stays counted ("allowing for the reservations made after"). Corrections made
since that admission were about the same moment, so they are counted into it rather than applied twice (the scope
keeps their running sum). This raises our bucket when the provider charged less than we reserved and lowers it
when it charged more. An output
reservation the provider did not charge so comes back on the next reply. The same correction, attributed to the
call just settled, says what the provider charged it for output (reserved output minus the correction): a running
mean of that, per scope, is what calls without a maximum reserve next, so the reservation converges on what the
provider charges -- the maximum, the actual output, or anything else. Without ``reset`` headers, ``remaining`` can
only lower a bucket.

Reservations not settled (their worker died) lapse after ``RESERVATION_TTL_MS`` and give their in-flight output back.
The two scripts and the scope's keys live in ``store.limits``; this module decides what to ask them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from schemas.settings import WorkerSettings
from store.keys import Keys
from store.limits import BucketParams, LimitStore, ProviderAccount, SettleArgs, scope_id
from store.scripts import RoundTrip, Slot, single
from worker.classify import Settle
from worker.policy import WaitingError
from worker.retry import parse_duration_s

SLOW_FACTOR = 0.8
"""After a 429 the fill rate is multiplied by this (never below MIN_FILL)."""
MIN_FILL = 0.25
RECOVERY_PER_S = 0.05
"""Fill factor regained per second after a slow-down: from 0.8 back to 1.0 in 4 s, from the floor in 15 s."""
BURST_FRACTION = 0.9
"""Our buckets hold this fraction of the provider's burst. Requests admitted here reach the provider a few
milliseconds later and not in the same order or spacing (scheduling on busy hosts), so a burst that fits our
bucket can arrive compressed; the missing tenth absorbs about 100 ms of such compression. Steady-state
throughput is set by the refill rate, so this costs nothing once the first burst is spent."""
SLOW_START_RPM = 240
"""A scope with no known limit starts at 4 requests per second, fleet-wide."""
SLOW_START_CEILING_RPM = 600_000
SLOW_START_GROWTH_RPM = 42.0
"""Per answered call while in slow start: replies come at rpm/60 per second, so the rate doubles about every second."""
AVOIDANCE_GROWTH_RPM = 2.0
"""Per answered call after the first 429: the rate doubles about every 20 s."""
BACKOFF_FACTOR = 0.7
LEARNING_WEIGHT = 0.05
"""Weight of the newest call in the running mean of the provider's output charge."""


@dataclass(frozen=True)
class Scope:
    key: str
    flight: str
    configured_rpm: int
    configured_tpm: int


@dataclass(frozen=True)
class Reservation:
    scope: Scope
    key: str
    id: str
    tokens: int
    input_tokens: int
    """The part of ``tokens`` that estimated the input; settled against the real input tokens. The rest was reserved
    for output (the maximum, or what this provider is seen to charge)."""
    admitted_at_ms: int
    """Redis server time of admission."""
    waited_s: float = 0.0


class AdmissionDeferredError(WaitingError):
    """Admission is further away than the job should sleep: hand the worker slot back and come back later."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(wait_s, f"the shared rate limit admits the call in {wait_s:.2f}s")


WithAdmission = Callable[[RoundTrip, str], object]
"""Queues steps into an admission's round trip, given the reservation key (see ``try_acquire``)."""


def provider_account(headers: Mapping[str, str]) -> ProviderAccount:
    """The limits, remaining and reset a reply's ``x-ratelimit-*`` headers state; a kind whose limit is not a
    positive number says nothing at all (Azure's ``-1``/``0``, a local server's silence)."""

    def number(name: str) -> int | None:
        try:
            return math.floor(float(headers[name]))
        except (KeyError, ValueError):
            return None

    def reset_ms(name: str) -> float | None:
        value = headers.get(name)
        seconds = parse_duration_s(value) if value is not None else None
        return seconds * 1000 if seconds is not None else None

    values: dict[str, int | float | None] = {}
    for kind in ("requests", "tokens"):
        limit = number(f"x-ratelimit-limit-{kind}")
        remaining = number(f"x-ratelimit-remaining-{kind}")
        if limit is None or limit <= 0 or remaining is None or remaining < 0:
            continue
        values[f"limit_{kind}"] = limit
        values[f"remaining_{kind}"] = remaining
        values[f"reset_{kind}_ms"] = reset_ms(f"x-ratelimit-reset-{kind}")
    return ProviderAccount(**values)  # type: ignore[arg-type]


class AdmissionController:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: WorkerSettings,
        api_key: str,
        *,
        endpoint: str = "",
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._api_key = api_key
        self._endpoint = endpoint
        self._clock_ms = clock_ms  # tests drive a fake clock; production uses Redis server time
        self._store = LimitStore(redis)
        self._scopes: dict[str, Scope] = {}

    def scope(self, model: str) -> Scope:
        scope = self._scopes.get(model)
        if scope is None:
            limits = self._settings.limits_for(model)
            name = scope_id(self._api_key, model, self._endpoint)
            scope = Scope(self._keys.rate_limit(name), self._keys.rate_flight(name), limits.rpm, limits.tpm)
            self._scopes[model] = scope
        return scope

    def _params(self, scope: Scope) -> BucketParams:
        return BucketParams(
            now_ms=None if self._clock_ms is None else self._clock_ms(),
            configured_rpm=scope.configured_rpm,
            configured_tpm=scope.configured_tpm,
            headroom=self._settings.limit_headroom,
            window_ms=self._settings.limit_window_s * 1000,
            burst_fraction=BURST_FRACTION,
            recovery_per_ms=RECOVERY_PER_S / 1000,
            slow_start_rpm=SLOW_START_RPM,
            slow_start_ceiling_rpm=SLOW_START_CEILING_RPM,
        )

    async def try_acquire(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        explicit_max: bool = True,
        with_admission: WithAdmission | None = None,
    ) -> tuple[Reservation | None, float]:
        """One attempt: a reservation, or None and the seconds until one could succeed.

        ``output_tokens`` is the request's maximum (``explicit_max``) or the most a call without one may be charged.
        ``with_admission`` adds steps to the admission's round trip, after it, given the reservation key (which
        exists only if the call was admitted).
        """
        scope = self.scope(model)
        reservation_id = secrets.token_hex(12)
        key = self._keys.reservation(reservation_id)
        trip = RoundTrip(self._redis)
        admitted = self._store.queue_admit(
            trip,
            scope.key,
            scope.flight,
            key,
            reservation_id,
            self._params(scope),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            explicit_max=explicit_max,
        )
        if with_admission is not None:
            with_admission(trip, key)
        await trip.run()
        answer = admitted.value
        if answer.admitted:
            reservation = Reservation(scope, key, reservation_id, answer.tokens, input_tokens, answer.now_ms)
            return reservation, 0.0
        return None, answer.wait_ms / 1000

    async def acquire(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        may_defer: bool,
        explicit_max: bool = True,
        deadline_s: float | None = None,
        with_admission: WithAdmission | None = None,
    ) -> Reservation:
        """Wait for admission. Waits longer than ``admission_max_sleep_s`` raise ``AdmissionDeferredError`` when
        ``may_defer`` (the job hands its slot back), else are slept too (up to ``deadline_s``)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            reservation, wait_s = await self.try_acquire(
                model, input_tokens, output_tokens, explicit_max=explicit_max, with_admission=with_admission
            )
            if reservation is not None:
                return dataclasses.replace(reservation, waited_s=loop.time() - started)
            # Jitter spreads the wake-ups of jobs that were told the same wait.
            wait_s += random.uniform(0.0, 0.1 * wait_s + 0.005)  # noqa: S311 - scheduling jitter
            if may_defer and wait_s > self._settings.admission_max_sleep_s:
                raise AdmissionDeferredError(wait_s)
            if deadline_s is not None and loop.time() + wait_s > started + deadline_s:
                raise AdmissionDeferredError(wait_s)
            await asyncio.sleep(wait_s)

    async def settle(
        self,
        reservation: Reservation,
        *,
        outcome: Settle | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        rate_limited: bool = False,
        cooldown_s: float | None = None,
        retry_after_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Reconcile a reservation with what happened, exactly once. Returns False if it was already settled.

        ``outcome`` defaults to ``OK`` with ``input_tokens`` (a reply), ``LIMITED`` with ``rate_limited``, else
        ``FAILED``; a ``LIMITED`` cool-down is ``cooldown_s`` (or ``retry_after_s``), one second when neither.
        """
        return await single(
            self._redis,
            lambda trip: self.queue_settle(
                trip,
                reservation,
                outcome=outcome,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                rate_limited=rate_limited,
                cooldown_s=cooldown_s,
                retry_after_s=retry_after_s,
                headers=headers,
            ),
        )

    def queue_settle(
        self,
        trip: RoundTrip,
        reservation: Reservation,
        *,
        outcome: Settle | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        rate_limited: bool = False,
        cooldown_s: float | None = None,
        retry_after_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Slot[bool]:
        """:meth:`settle` as a step of ``trip`` (the worker sends it with the call's usage, in one round trip)."""
        if outcome is None:
            outcome = Settle.LIMITED if rate_limited else (Settle.OK if input_tokens is not None else Settle.FAILED)
        cooldown = cooldown_s if cooldown_s is not None else retry_after_s
        if outcome is Settle.LIMITED and cooldown is None:
            cooldown = 1.0
        how = SettleArgs(
            outcome=outcome.value,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cooldown_ms=None if cooldown is None else 1000 * cooldown,
            slow_factor=SLOW_FACTOR,
            min_fill=MIN_FILL,
            account=provider_account(headers or {}),
            learning_weight=LEARNING_WEIGHT,
            slow_start_growth_rpm=SLOW_START_GROWTH_RPM,
            avoidance_growth_rpm=AVOIDANCE_GROWTH_RPM,
            backoff_factor=BACKOFF_FACTOR,
            reservation_id=reservation.id,
            output_charge_ceiling=self._settings.default_output_reserve,
        )
        scope = reservation.scope
        return self._store.queue_settle(trip, scope.key, scope.flight, reservation.key, self._params(scope), how)

    async def levels(self, model: str) -> dict[str, float]:
        """The scope's stored state (for tests); not refilled to now."""
        return await self._store.levels(self.scope(model).key)
