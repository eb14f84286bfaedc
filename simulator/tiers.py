"""Flex capacity: the share of flex requests answered ``429 Resource Unavailable`` instead of being served.

OpenAI's flex guide: "Flex processing may sometimes lack sufficient resources to handle your requests,
resulting in a ``429 Resource Unavailable`` error code. **You will not be charged when this occurs.**", and it
advises retrying with exponential backoff or with ``service_tier="auto"`` (the guide as copied in the code
index; the same words in news reports of the launch). Clients tell it apart by ``error.code ==
"resource_unavailable"`` (third-party clients in the code index test exactly that). The message, the
``type`` (``"resource_unavailable"``, as the API does for ``insufficient_quota``, whose type is its code) and
the ``retry-after`` values are ours: no verbatim body of this error was found.

With ``SimulatorConfig.flex_unavailable_rate`` (``--flex-unavailable-rate``) at ``p``, the *n*-th flex request for
an input (the document, :meth:`simulator.request.ExtractionRequest.input_key`) is refused when
``fault_uniform(fault seed, input key, n, "flex") < p``: reproducible whatever order concurrent requests arrive
in, and a retry of the same document draws afresh. Such a 429 comes before rate-limit admission (it takes
nothing from the buckets), is not billed and not in the ledger's usage; the ledger counts it apart
(``resource_unavailable_429``). Unlike the fault rates it is not capped per input: a rate of 1 is a storm that
lasts until the client falls back to another tier.
"""

from __future__ import annotations

from collections import Counter

from simulator.errors import ApiError
from simulator.faults import fault_uniform

FLEX_RETRY_AFTER_MS = 1000
"""What a flex 429 asks the client to wait (``retry-after-ms``; ``retry-after`` is the same in whole seconds)."""
RESOURCE_UNAVAILABLE_MESSAGE = (
    "Resource unavailable: there is not enough Flex processing capacity to serve this request right now. "
    "Please try again later, or retry with service_tier 'auto' to use standard processing. You have not been "
    "charged for this request."
)


class FlexCapacity:
    """Decides, reproducibly, which flex requests find no capacity; counts the draws per input."""

    def __init__(self, unavailable_rate: float = 0.0) -> None:
        self.unavailable_rate = check_rate(unavailable_rate)
        self._draws: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget the per-input draw counts (``POST /_sim/reset``); the rate stays."""
        self._draws.clear()

    def unavailable(self, seed: int, input_key: str) -> bool:
        """Whether this flex request (the next one for ``input_key``) is refused for want of capacity."""
        if self.unavailable_rate <= 0:
            return False
        attempt = self._draws[input_key]
        self._draws[input_key] += 1
        return fault_uniform(seed, input_key, attempt, "flex") < self.unavailable_rate


def check_rate(rate: float) -> float:
    """``rate`` as a float if it is a probability in [0, 1] (NaN rejected), else ValueError."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
        raise ValueError(f"flex_unavailable_rate must be in [0, 1], got {rate!r}")
    return float(rate)


def resource_unavailable() -> ApiError:
    """The unbilled flex 429: ``code`` and ``type`` ``resource_unavailable``, with ``retry-after(-ms)``."""
    return ApiError(
        429,
        RESOURCE_UNAVAILABLE_MESSAGE,
        error_type="resource_unavailable",
        code="resource_unavailable",
        headers={
            "retry-after-ms": str(FLEX_RETRY_AFTER_MS),
            "retry-after": str(max(1, -(-FLEX_RETRY_AFTER_MS // 1000))),
        },
    )
