"""The job's side of the venue: where this try of a line goes (``schemas.venues.choose_venue`` decides).

For a batch whose venue is not ``sync``, :func:`route_line` looks at the line's state (``store.provider_batches``):

- **answered**: the provider batch's answer is replayed into the ordinary extraction (:class:`Replay`). An HTTP error
  in the error file that a synchronous call would retry (a 5xx, a 429) is not replayed: the line goes on, by the
  policy, as a line its provider batch did not answer;
- **staged** or **sent**: the line waits in its provider batch; the job parks (``arq.Retry``, :data:`PARK_S`) and is
  woken when the part ends (the wait is a backstop for a wake that came while it was parking);
- **resend** (its part ended without it), or new: the policy chooses again. ``batch-api``: the line's request line
  (the body the synchronous adapter builds) is staged and the job parks; ``sync``/``flex``: the line is marked as
  gone on synchronously and the try calls the API itself (:class:`Direct`).

Identical lines (one fingerprint) are not coalesced while they wait in provider batches: each is sent (the cache
answers identical lines that come after an answer is recorded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import arq

from schemas.venues import MAX_PROVIDER_ROUNDS, Venue, choose_venue
from store.accounts import NO_CHARGE, BudgetCharge
from store.provider_batches import LineVenue, ProviderBatchStore
from worker.adapters.base import ApiAdapter
from worker.batches import LoadedBatch
from worker.calls import BudgetHeldError, BudgetReachedError
from worker.classify import classify_call_error
from worker.prompt import ModelRequest
from worker.venue.lines import Answer, error_of, request_line

PARK_S = 900.0
"""A parked line's job looks again after this even if nobody woke it."""


@dataclass(frozen=True)
class Replay:
    """Record the line with the answer its provider batch gave."""

    answer: Answer
    counted: bool = False
    """Its usage is in the line's account already (an earlier try replayed it, then ended before recording)."""


@dataclass(frozen=True)
class Direct:
    """Call the API for the line now, on ``venue`` (``sync``: the batch's tier; ``flex``: the flex tier)."""

    venue: Venue
    why: str | None = None
    """Why it left the Batch API, if it was there (``batch_expired``, ``missing`` ...)."""


async def route_line(
    store: ProviderBatchStore,
    batch: LoadedBatch,
    ordinal: int,
    job_id: str,
    *,
    adapter: ApiAdapter,
    request: ModelRequest,
    tokens: int,
    worst: BudgetCharge = NO_CHARGE,
    known: LineVenue | None = None,
    now: float | None = None,
) -> Replay | Direct:
    """Where this try goes; parks the job (raises ``arq.Retry``) when the line waits in a provider batch. ``worst``:
    the line's worst case at the batch price, reserved against the batch's budget as it is staged; raises
    ``BudgetReachedError`` (the batch paused) or ``BudgetHeldError`` (wait for what is in flight) as a call would.
    ``known``: the line's state as this try read it already."""
    spec, keys = batch.spec, batch.keys
    line = known if known is not None else await store.line(keys, ordinal)
    if line.state == "answered" and line.answer is not None:
        answer = Answer.from_dict(line.answer)
        if answer.status_code == 200 or classify_call_error(error_of(answer, {})).final is not None:
            return Replay(answer, line.counted)
        line = await store.answer_failed(keys, ordinal, why=f"HTTP {answer.status_code}")
    if line.state in ("staged", "sent"):
        raise arq.Retry(defer=PARK_S)
    if line.state == "sync":
        return Direct(
            choose_venue(
                spec.venue,
                model=spec.model,
                deadline_at=spec.deadline_at,
                now=_now(now),
                provider_rounds=MAX_PROVIDER_ROUNDS,
            ),
            line.why,
        )
    venue = choose_venue(
        spec.venue, model=spec.model, deadline_at=spec.deadline_at, now=_now(now), provider_rounds=line.rounds
    )
    if venue != "batch-api":
        await store.move_to_sync(keys, ordinal, rounds=line.rounds, why=line.why)
        return Direct(venue, line.why)
    body = request_line(adapter, request, ordinal)
    staged = await store.stage(keys, ordinal, body, tokens=tokens, job_id=job_id, worst=worst)
    if staged == "budget_paused":
        raise BudgetReachedError("the batch reached its budget")
    if staged == "budget_wait":
        raise BudgetHeldError("the batch's budget is held by its lines in flight; waiting for them to settle")
    if staged in ("staged", "sent"):
        raise arq.Retry(defer=PARK_S)
    if staged == "answered":  # answered between our look and the stage: take it on the next run, at once
        raise arq.Retry(defer=0)
    return Direct("sync", line.why)  # 'gone': the batch was deleted; recording finds it gone and writes nothing


def _now(now: float | None) -> float:
    return time.time() if now is None else now
