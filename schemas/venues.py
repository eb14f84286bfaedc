"""Where a line is answered (its venue), chosen by one pure policy from the batch's venue setting and deadline.

Venues:

- ``sync``: a synchronous call per line under admission, at the tier the batch asks (``--service-tier``);
- ``batch-api``: the line goes into a provider batch (``/v1/batches``): half the price, the provider's separate
  enqueued-token limit, finished within its 24 h completion window;
- ``flex``: a synchronous call on the flex tier (half the price where the model offers it, slower, may be refused
  for capacity): ``auto``'s second choice.

``choose_venue`` is the one decision, made when a line starts and again each time a provider batch ends without
its answer (expired, cancelled by the provider, failed, or the line in neither file):

- ``sync`` always answers synchronously;
- ``batch-api`` sends the line into a provider batch while the deadline (if any) leaves the completion window plus
  :data:`RECORD_MARGIN_S` for polling and recording; after that it goes synchronously, so a deadline is met;
- ``auto`` takes the Batch API when the deadline (or none) leaves room for it, otherwise flex where the model offers
  it, otherwise the default tier.

A line that has been through :data:`MAX_PROVIDER_ROUNDS` provider batches without an answer goes synchronously
whatever the setting: a provider that keeps failing a line must not hold it forever.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from schemas.models import family_for

VenueSetting = Literal["sync", "batch-api", "auto"]
VENUE_SETTINGS: tuple[VenueSetting, ...] = ("sync", "batch-api", "auto")
Venue = Literal["sync", "flex", "batch-api"]
"""Where one line goes now."""

COMPLETION_WINDOW_S = 24 * 3600
"""The provider's only completion window (``24h``)."""
RECORD_MARGIN_S = 3600
"""Time kept for what follows a provider batch: its last poll, reading its files, repairs, recording."""
MAX_PROVIDER_ROUNDS = 3
"""Provider batches a line may go through without an answer before it goes synchronously."""

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_deadline(text: str, *, now: float) -> float:
    """A deadline as a UNIX time: a duration from ``now`` (``36h``, ``2d``, ``90m``, ``1d12h``, ``45s``) or an
    ISO-8601 time (``2026-12-05T18:00:00Z``; without a zone, UTC). Raises ``ValueError`` saying what is accepted."""
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if value and match is not None and any(match.groups()):
        days, hours, minutes, seconds = (float(part) if part else 0.0 for part in match.groups())
        return now + days * 86400 + hours * 3600 + minutes * 60 + seconds
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--deadline {text!r}: give a duration (36h, 2d, 90m, 1d12h) or an ISO time (2026-12-05T18:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def batch_api_fits(deadline_at: float | None, now: float) -> bool:
    """Whether a provider batch started now would end (window and margin) before the deadline."""
    return deadline_at is None or deadline_at - now >= COMPLETION_WINDOW_S + RECORD_MARGIN_S


def offers_flex(model: str) -> bool:
    family = family_for(model)
    return family is not None and "flex" in family.tiers


def choose_venue(
    setting: VenueSetting, *, model: str, deadline_at: float | None, now: float, provider_rounds: int = 0
) -> Venue:
    """Where a line goes now (see the module note). ``provider_rounds``: provider batches it went through already
    without an answer."""
    if setting == "sync":
        return "sync"
    batch_ok = provider_rounds < MAX_PROVIDER_ROUNDS and batch_api_fits(deadline_at, now)
    if setting == "batch-api":
        return "batch-api" if batch_ok else "sync"
    if batch_ok:
        return "batch-api"
    return "flex" if offers_flex(model) else "sync"
