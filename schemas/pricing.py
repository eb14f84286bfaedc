"""Cost of a line from its usage and a per-model price table (USD per million tokens)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from schemas.results import Usage


class ModelPrice(BaseModel):
    """Prices in USD per million tokens. Reasoning tokens are billed as output tokens."""

    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)


# Public list prices (standard tier, USD per 1M tokens). Override or extend with EXTRACT_PRICES, a JSON object
# merged over this table, e.g. EXTRACT_PRICES='{"my-finetune": {"input": 3, "cached_input": 1.5, "output": 12}}'.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input=0.15, cached_input=0.075, output=0.60),
    "gpt-4o": ModelPrice(input=2.50, cached_input=1.25, output=10.00),
    "gpt-4.1": ModelPrice(input=2.00, cached_input=0.50, output=8.00),
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4.1-nano": ModelPrice(input=0.10, cached_input=0.025, output=0.40),
    "gpt-5": ModelPrice(input=1.25, cached_input=0.125, output=10.00),
    "gpt-5-mini": ModelPrice(input=0.25, cached_input=0.025, output=2.00),
    "gpt-5-nano": ModelPrice(input=0.05, cached_input=0.005, output=0.40),
    "o4-mini": ModelPrice(input=1.10, cached_input=0.275, output=4.40),
    "o3": ModelPrice(input=2.00, cached_input=0.50, output=8.00),
}


def cost_usd(usage: Usage, price: ModelPrice | None) -> float | None:
    """Cached input is billed at the cached rate, the rest of the input at the full rate; reasoning is output."""
    if price is None:
        return None
    uncached = max(usage.input_tokens - usage.cached_input_tokens, 0)
    total = (
        uncached * price.input + usage.cached_input_tokens * price.cached_input + usage.output_tokens * price.output
    ) / 1_000_000
    return round(total, 8)
