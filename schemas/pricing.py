"""Cost of a line from its usage and a per-model price table (USD per million tokens)."""

from __future__ import annotations

from schemas.results import Usage
from schemas.settings import ModelPrice


def cost_usd(usage: Usage, price: ModelPrice | None) -> float | None:
    """Cached input is billed at the cached rate, the rest of the input at the full rate; reasoning is output."""
    if price is None:
        return None
    uncached = max(usage.input_tokens - usage.cached_input_tokens, 0)
    total = (
        uncached * price.input + usage.cached_input_tokens * price.cached_input + usage.output_tokens * price.output
    ) / 1_000_000
    return round(total, 8)
