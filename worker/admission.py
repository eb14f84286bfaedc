"""Shared admission control: two token buckets per limit scope, held in Redis, shared by every worker.

Algorithm
---------
A *scope* is one provider limit: a hash of the endpoint and the API key, plus the model (OpenAI limits are per
organisation and model, and every process using the key shares them). Its Redis hash ``{p}rl:{scope}`` holds two
token buckets:

- requests: refills at ``rpm/60`` per second, capacity ``rpm/60 * limit_window_s * BURST_FRACTION``;
- tokens: refills at ``tpm/60`` per second, capacity ``tpm/60 * limit_window_s * BURST_FRACTION``.

Capacity is seconds of the limit, not a minute: providers enforce limits over sub-minute slices, so a full minute's
burst would be rejected. Both rates are scaled by ``limit_headroom`` (0.98 by default). Time is Redis server time
(``TIME`` inside the script), so worker clocks never matter.

A call first *reserves* one request and its token estimate (input estimate + max output tokens, which is what
OpenAI's limiter charges) from both buckets or from neither, atomically (``_ADMIT``). Denied, it learns how long
until both buckets hold enough. After the reply it *settles* the reservation exactly once (``_SETTLE``, guarded by
deleting the reservation key ``{p}rl:resv:{id}``):

- a reply with usage: the input estimate is replaced by the real input tokens (refund or charge the difference;
  a refund can never exceed what was reserved); output tokens stay charged as the provider charges them
  (``reconcile_output_tokens`` switches that for providers that count real output);
- a 429: the provider did not count the call, so the whole reservation is returned; a shared cool-down starts
  (``retry-after`` wins; one second if absent) that blocks every worker of the scope, and the fill rate drops
  to ``SLOW_FACTOR`` of itself, recovering linearly at ``RECOVERY_PER_S`` back to full;
- other failures: the charge stands (the provider may have counted the call);
- ``x-ratelimit-remaining-requests|tokens`` on any reply can only lower the buckets, never raise them.

A bucket whose limit is 0 is not enforced; the cool-down applies regardless, so even a scope without configured
limits backs off together after a 429.

The two scripts and the bucket hash live in ``store.limits``; this module decides what to ask them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import random
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.asyncio import Redis

from schemas.settings import Settings
from store.keys import Keys
from store.limits import BucketParams, LimitStore
from worker.policy import WaitingError

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
DEFAULT_COOLDOWN_S = 1.0


@dataclass(frozen=True)
class Scope:
    key: str
    request_rate_per_ms: float
    request_capacity: float
    token_rate_per_ms: float
    token_capacity: float


@dataclass(frozen=True)
class Reservation:
    scope: Scope
    key: str
    tokens: int
    input_tokens: int
    """The part of ``tokens`` that estimated the input; settled against the real input tokens."""
    admitted_at_ms: int
    """Redis server time of admission."""
    waited_s: float = 0.0


class AdmissionDeferredError(WaitingError):
    """Admission is further away than the job should sleep: hand the worker slot back and come back later."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(wait_s, f"the shared rate limit admits the call in {wait_s:.2f}s")


def scope_id(api_key: str, model: str, endpoint: str = "") -> str:
    """Names a provider limit (endpoint, key, model) without revealing the key."""
    return hashlib.sha256(f"{endpoint}\n{api_key}".encode()).hexdigest()[:16] + ":" + model


class AdmissionController:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        settings: Settings,
        api_key: str,
        *,
        endpoint: str = "",
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
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
            headroom, window_s = self._settings.limit_headroom, self._settings.limit_window_s
            r_rate = limits.rpm * headroom / 60_000
            t_rate = limits.tpm * headroom / 60_000
            scope = Scope(
                key=self._keys.rate_limit(scope_id(self._api_key, model, self._endpoint)),
                request_rate_per_ms=r_rate,
                request_capacity=max(r_rate * window_s * 1000 * BURST_FRACTION, 1.0) if r_rate else 0.0,
                token_rate_per_ms=t_rate,
                token_capacity=t_rate * window_s * 1000 * BURST_FRACTION,
            )
            self._scopes[model] = scope
        return scope

    def _params(self, scope: Scope) -> BucketParams:
        return BucketParams(
            now_ms=None if self._clock_ms is None else self._clock_ms(),
            request_rate_per_ms=scope.request_rate_per_ms,
            request_capacity=scope.request_capacity,
            token_rate_per_ms=scope.token_rate_per_ms,
            token_capacity=scope.token_capacity,
            recovery_per_ms=RECOVERY_PER_S / 1000,
        )

    async def try_acquire(self, model: str, input_tokens: int, output_tokens: int) -> tuple[Reservation | None, float]:
        """One attempt: a reservation, or None and the seconds until one could succeed."""
        scope = self.scope(model)
        key = self._keys.reservation(secrets.token_hex(12))
        tokens = input_tokens + output_tokens
        admitted, wait_ms, now_ms = await self._store.admit(scope.key, key, self._params(scope), tokens)
        if admitted:
            return Reservation(scope, key, tokens, input_tokens, now_ms), 0.0
        return None, wait_ms / 1000

    async def acquire(
        self, model: str, input_tokens: int, output_tokens: int, *, may_defer: bool, deadline_s: float | None = None
    ) -> Reservation:
        """Wait for admission. Waits longer than ``admission_max_sleep_s`` raise ``AdmissionDeferredError`` when
        ``may_defer`` (the job hands its slot back), else are slept too (up to ``deadline_s``)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            reservation, wait_s = await self.try_acquire(model, input_tokens, output_tokens)
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
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        rate_limited: bool = False,
        retry_after_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Reconcile a reservation with what happened, exactly once. Returns False if it was already settled."""
        output_reserved = reservation.tokens - reservation.input_tokens
        charge: int | None = None
        if rate_limited:
            charge = 0
        elif input_tokens is not None:
            output = output_tokens if self._settings.reconcile_output_tokens and output_tokens is not None else None
            charge = input_tokens + (output if output is not None else output_reserved)
        cooldown_ms = None
        if rate_limited:
            cooldown_ms = 1000 * (retry_after_s if retry_after_s is not None else DEFAULT_COOLDOWN_S)
        return await self._store.settle(
            reservation.scope.key,
            reservation.key,
            self._params(reservation.scope),
            charge=charge,
            return_request=rate_limited,
            remaining=_remaining(headers or {}),
            cooldown_ms=cooldown_ms,
            slow_factor=SLOW_FACTOR,
            min_fill=MIN_FILL,
        )

    async def levels(self, model: str) -> dict[str, float]:
        """The scope's stored state (for tests, status and metrics); not refilled to now."""
        return await self._store.levels(self.scope(model).key)


def _remaining(headers: Mapping[str, str]) -> tuple[int | None, int | None]:
    def number(name: str) -> int | None:
        value = headers.get(name)
        if value is None:
            return None
        try:
            return max(math.floor(float(value)), 0)
        except ValueError:
            return None

    return number("x-ratelimit-remaining-requests"), number("x-ratelimit-remaining-tokens")
