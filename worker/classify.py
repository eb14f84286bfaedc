"""What a failed call means: the one step from the facts of an ``ApiCallError`` to every decision taken on them.

- no answer (a timeout, a dropped connection, a reply that is not a JSON object): an ending for the policy
  (transient); possibly billed; the reservation's charge stands;
- 429 ``insufficient_quota``: fails at once as ``budget_exceeded`` (a billing stop, not a rate limit); the
  reservation comes back;
- 429 "Request too large" (one request above the per-minute limit): fails at once as ``input_too_large``; the
  reservation comes back;
- 429 ``resource_unavailable`` (flex out of capacity, unbilled): an ending (rate limited); the reservation comes
  back, with no cool-down and no slow-down: it is not our limit;
- any other 429 (``rate_limit_exceeded``): an ending (rate limited: no error counted); the reservation comes back and
  the scope cools down for ``retry-after`` (else the wait the message names, "try again in 634ms", else 1 s) and
  slows;
- 408, 409, 5xx: an ending (transient), ``retry-after`` if sent; the charge stands;
- 400 / 422, 401, 403, 404: fail at once (``invalid_request``, ``authentication``, ``permission``, ``not_found``),
  and so does any other 4xx (as ``invalid_request``); the charge stands;
- neither a status nor ``no_answer`` (an answer that lacks what it should hold, as
  ``worker.adapters.responses.count_input_tokens`` raises): an ending (internal).

Some of those final failures are *batch-wide*: every line of the batch would meet them, so the batch pauses after a
few (``store.pause``) instead of paying a call per line: 401, 403, 404 (the model or the endpoint), a 429
``insufficient_quota``, and any other failure at once whose code names the key or the request's shape rather than
the document (``BATCH_WIDE_CODES``: an invalid API key, an invalid schema, an unsupported parameter or value, an
unknown model).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from schemas.results import ErrorType
from worker.adapters.errors import ApiCallError
from worker.extraction import Rejected
from worker.policy import Ending, TryEnded
from worker.retry import is_retryable_status, parse_duration_s, parse_retry_after

DEFAULT_COOLDOWN_S = 1.0

_FAILS_AT_ONCE = {
    400: ErrorType.INVALID_REQUEST,
    401: ErrorType.AUTHENTICATION,
    403: ErrorType.PERMISSION,
    404: ErrorType.NOT_FOUND,
    422: ErrorType.INVALID_REQUEST,
}
BATCH_WIDE_STATUSES = frozenset({401, 403, 404})
BATCH_WIDE_CODES = frozenset(
    {"invalid_api_key", "invalid_json_schema", "unsupported_parameter", "unsupported_value", "model_not_found"}
)
_TRY_AGAIN = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)", re.IGNORECASE)


class Settle(StrEnum):
    """What admission does with a call's reservation."""

    OK = "ok"
    """A reply: the charge is reconciled with the usage and the provider's account."""
    LIMITED = "limited"
    """A 429 for our rate limit: the provider did not count it; the scope cools down and slows."""
    UNAVAILABLE = "unavailable"
    """Refused, unbilled, and not for our limit (capacity, quota, size): returned, nothing else."""
    FAILED = "failed"
    """Anything else: the provider may have counted it, so the charge stands."""


@dataclass(frozen=True)
class CallVerdict:
    settle: Settle
    cooldown_s: float | None = None
    final: Rejected | None = None
    """The line fails now, whatever the retry policy would say."""
    ended: TryEnded | None = None
    """Otherwise how the try ended, for the retry policy."""
    possibly_billed: bool = False
    """No answer came, but the provider may have done (and billed) the work."""


def classify_call_error(error: ApiCallError) -> CallVerdict:
    status = error.status_code
    if status is None:
        if error.no_answer is not None:
            return CallVerdict(Settle.FAILED, ended=TryEnded(Ending.TRANSIENT, error.message), possibly_billed=True)
        return CallVerdict(Settle.FAILED, ended=TryEnded(Ending.INTERNAL, error.message))
    retry_after = parse_retry_after(dict(error.headers))
    if status == 429:
        return _too_many_requests(error, retry_after)
    if is_retryable_status(status):
        return CallVerdict(
            Settle.FAILED,
            ended=TryEnded(Ending.TRANSIENT, error.message, retry_after_s=retry_after, status_code=status),
        )
    error_type = _FAILS_AT_ONCE.get(status, ErrorType.INVALID_REQUEST)
    batch_wide = status in BATCH_WIDE_STATUSES or error.code in BATCH_WIDE_CODES
    return CallVerdict(Settle.FAILED, final=Rejected(error_type, error.message, status, batch_wide=batch_wide))


def _too_many_requests(error: ApiCallError, retry_after: float | None) -> CallVerdict:
    if error.code == "insufficient_quota":  # out of credit: a billing stop, not a rate limit
        return CallVerdict(
            Settle.UNAVAILABLE, final=Rejected(ErrorType.BUDGET_EXCEEDED, error.message, 429, batch_wide=True)
        )
    if "request too large" in error.message.lower():  # above the per-minute limit: waiting cannot help
        return CallVerdict(Settle.UNAVAILABLE, final=Rejected(ErrorType.INPUT_TOO_LARGE, error.message, 429))
    wait = retry_after if retry_after is not None else wait_in_message(error.message)
    capacity = error.code == "resource_unavailable"
    ended = TryEnded(Ending.RATE_LIMITED, error.message, retry_after_s=wait, status_code=429, capacity=capacity)
    if capacity:  # the tier is out of capacity, for everyone: no reason to slow us
        return CallVerdict(Settle.UNAVAILABLE, ended=ended)
    return CallVerdict(Settle.LIMITED, cooldown_s=wait if wait is not None else DEFAULT_COOLDOWN_S, ended=ended)


def wait_in_message(message: str) -> float | None:
    """The wait a 429's message names ("... Please try again in 634ms."), for providers that send no retry-after."""
    match = _TRY_AGAIN.search(message)
    return parse_duration_s(match.group(1)) if match else None
