"""Cost of a line from its usage and a per-model, per-service-tier price table (USD per million tokens).

A response says which tier served it (``service_tier``: ``default``, ``flex``, ``priority``, ``scale`` on both APIs,
``ultrafast`` too on Responses; a request for ``fast`` is served and shown as ``priority``), and that tier is what is
billed, so a line is priced with :func:`price_for` at the tier its response reports.

**Lookup** (:func:`price_for`). ``EXTRACT_PRICES`` overrides and the built-in :data:`TIER_PRICES` are one name
space: a model name matches a name exactly (case-insensitively), else the longest name followed by ``-``
(``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``; ``gpt-5-mini`` never takes ``gpt-5``'s prices, it has its own;
``gpt-5.2`` never matches ``gpt-5``, only ``-`` separates a snapshot). At the name found, an override wins over the
built-in prices tier by tier: a bare price replaces the ``default`` tier only (the built-in flex and priority prices
stay), prices per tier replace the tiers they name. ``tier`` None or ``auto`` means ``default``.

**A tier we have no price for falls back to the default-tier price.** The tier served is the tier billed, so the
right price would be that tier's; but ``scale`` is billed against Scale Tier units bought in advance, which we
cannot see, and a flex or priority answer for a model missing here means OpenAI offers the tier for a model we
have no price for. Pricing such a line at the default tier keeps its cost (and the batch's ``--budget-usd``
accounting) close instead of dropping it; a precise price goes into ``EXTRACT_PRICES`` per tier. An unknown model
has no price at all (None: its cost is not reported).

**Design notes: where the prices come from** (all read on 2026-12-01 through the search tool's stored copies, not
the live pages; prices are for the short-context rate: gpt-5.4, 5.5 and 5.6 charge more above 272K input tokens,
which a flat price cannot say).

* Priority (renamed "Fast mode" on 2026-07-30), **primary**: https://openai.com/api-fast-mode/ and its earlier
  address https://openai.com/api-priority-processing/ (OpenAI's page). Input / cached input / output: gpt-5.5
  $12.50 / $1.25 / $75.00; gpt-5.4 $5.00 / $0.50 / $30.00; gpt-5.4-mini $1.50 / $0.15 / $9.00; gpt-5.2 $3.50 /
  $0.35 / $28.00; gpt-5.1 and gpt-5 $2.50 / $0.25 / $20.00; gpt-5-mini $0.45 / $0.045 / $3.60; gpt-4.1 $3.50 /
  $0.875 / $14.00; gpt-4.1-mini $0.70 / $0.175 / $2.80; gpt-4.1-nano $0.20 / $0.05 / $0.80; gpt-4o (2024-11-20,
  2024-08-06) $4.25 / $2.125 / $17.00; gpt-4o-2024-05-13 $8.75 / — / $26.25; gpt-4o-mini $0.25 / $0.125 / $1.00;
  o3 $3.50 / $0.875 / $14.00; o4-mini $2.00 / $0.50 / $8.00; gpt-5.6 Terra $4.00 / $0.40 / $24.00, Luna $0.40 /
  $0.04 / $2.40. Not listed there, so no priority price here: gpt-5-nano, gpt-5.4-nano (a community thread,
  https://community.openai.com/t/priority-tier-gpt-4-1-gpt-4-1-mini-does-it-exist/1377672, secondary, agrees),
  o1, o3-mini. Secondaries that give gpt-5-nano a priority price (LiteLLM $2.50 input, a blog $0.10) contradict the
  primary page and are not used; LiteLLM's gpt-5.5 priority ($10 / $60) is twice standard where the primary page
  says $12.50 / $75: the primary wins.
* Standard, **primary** where OpenAI's model pages were found
  (https://developers.openai.com/api/docs/models/gpt-5-nano.md: $0.05 / $0.005 / $0.40;
  https://developers.openai.com/ko-KR/api/docs/models/gpt-5-mini: $0.25 / $0.025 / $2.00;
  https://developers.openai.com/api/docs/models/gpt-5-codex: $1.25 / $0.125 / $10.00, as gpt-5); otherwise
  **secondary**: LiteLLM's price map (https://github.com/BerriAI/litellm, ``model_prices_and_context_window.json``,
  the index's copy, commit 00035b69): gpt-4o $2.50 / $1.25 / $10 (gpt-4o-2024-05-13 $5 / $15), gpt-4o-mini $0.15 /
  $0.075 / $0.60, gpt-4.1 $2 / $0.50 / $8, -mini $0.40 / $0.10 / $1.60, -nano $0.10 / $0.025 / $0.40, gpt-5 $1.25 /
  $0.125 / $10, gpt-5.1 the same, gpt-5.2 $1.75 / $0.175 / $14, gpt-5.4 $2.50 / $0.25 / $15, gpt-5.4-mini $0.75 /
  $0.075 / $4.50, gpt-5.4-nano $0.20 / $0.02 / $1.25, gpt-5.5 $5 / $0.50 / $30, gpt-5-pro $15 / $120, gpt-5.2-pro
  $21 / $168, gpt-5.4-pro and gpt-5.5-pro $30 / $3 / $180, o1 $15 / $7.50 / $60, o1-mini and o3-mini $1.10 / $0.55 /
  $4.40, o1-pro $150 / $600, o3 $2 / $0.50 / $8, o3-pro $20 / $80, o4-mini $1.10 / $0.275 / $4.40, o3-deep-research
  $10 / $2.50 / $40, o4-mini-deep-research $2 / $0.50 / $8, gpt-5.1-codex-mini $0.25 / $0.025 / $2 (priority $0.45 /
  $0.045 / $3.60), gpt-5.3-codex and gpt-5.3-chat-latest $1.75 / $0.175 / $14 (the codex's priority $3.50 / $0.35 /
  $28). Cross-checked against pydantic/genai-prices (``prices/providers/openai.yml``, commit 47df840a, secondary)
  where it has the model: they agree, and agree with the standard prices the primary priority page implies
  (priority is 1.7-2.5 x standard). A secondary summary giving gpt-4.1 $1 / $4 quotes its Batch prices; not used.
  Other variants price as their base through the ``-`` rule (gpt-5-chat-latest as gpt-5, gpt-5.1-codex as gpt-5.1,
  gpt-5.2-codex as gpt-5.2, all as LiteLLM has them); the entries above exist where that rule would misprice.
  gpt-5.6 Terra $2.00 / $0.20 / $12.00 and Luna $0.20 / $0.02 / $1.20: offpeak-ai/offpeak release v0.2.1
  (https://github.com/offpeak-ai/offpeak/releases/tag/v0.2.1, secondary, "per developers.openai.com/api/docs/pricing,
  short context"), exactly half the primary Fast-mode prices; LiteLLM still has their launch prices ($2.50 / $15,
  $1 / $6), superseded by the cuts of August 2026.
* Flex, **primary** rule: "Tokens are priced at Batch API rates"
  (https://developers.openai.com/api/docs/guides/flex-processing.md), and Batch is half of standard; the models
  offered are only "listed on the pricing page", which the index does not hold. So flex here is exactly half of
  standard, cached input included, for: o3, o4-mini (flex's launch models; 2025 press copies, secondary),
  gpt-5, gpt-5-mini, gpt-5-nano, gpt-5.4, gpt-5.4-mini, gpt-5.4-nano, gpt-5.5, gpt-5.4-pro, gpt-5.5-pro (LiteLLM's
  ``*_flex`` prices, secondary, each exactly half; its gpt-5.4 cached flex $0.13 is the page's rounding of
  $0.125), gpt-5.6 Terra and Luna (https://dev.classmethod.jp/articles/openai-flex-processing/, secondary: "all of
  the GPT-5.6 series", at half). gpt-5.1 and gpt-5.2: no source in the index lists them for flex, none excludes
  them; they are given flex at half (our choice: a price is only used when a response says flex served it).
  No flex for gpt-4o, gpt-4o-mini, the gpt-4.1 family, o1, o3-mini, gpt-5-pro, gpt-5.2-pro.
* No cached-input price is published for gpt-4o-2024-05-13, gpt-5-pro, gpt-5.2-pro, o1-pro, o3-pro: their cached
  input is priced as input. gpt-5.6 Sol (and the ``gpt-5.6`` alias) has no built-in price: its standard rate was a
  promotion ($4 / $20) guaranteed only "through 2026-11-21", $5 / $30 after (gramext/dist and TheKrush/PromptFuel
  release notes, secondary), and which one applies on 2026-12-01 is not known; set it with ``EXTRACT_PRICES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

from pydantic import BaseModel, Field

from schemas.results import Usage

__all__ = [
    "DEFAULT_PRICES",
    "SERVED_TIERS",
    "TIER_PRICES",
    "ModelPrice",
    "PriceOverride",
    "ServedTier",
    "TierPrices",
    "cost_usd",
    "price_for",
    "tier_prices",
]


class ModelPrice(BaseModel):
    """Prices in USD per million tokens. Reasoning tokens are billed as output tokens."""

    input: float = Field(ge=0)
    cached_input: float = Field(ge=0)
    output: float = Field(ge=0)


ServedTier = Literal["default", "flex", "priority", "scale", "ultrafast", "batch"]
"""What a response's ``service_tier`` says served it (the spec's ``ServiceTierResponses`` less the request-only
``auto`` and ``fast``; ``ultrafast`` is access-controlled, gpt-5.6-sol only, and has no built-in price), and
``batch``: a line answered through the Batch API (:data:`BATCH_TIER`)."""
SERVED_TIERS: tuple[ServedTier, ...] = ("default", "flex", "priority", "scale", "ultrafast", "batch")
TierPrices: TypeAlias = dict[str, ModelPrice]
"""An override's prices per tier: tier name -> price."""
PriceOverride: TypeAlias = ModelPrice | dict[ServedTier, ModelPrice]
"""What ``EXTRACT_PRICES`` holds per model: a bare price (the default tier) or prices per tier, e.g.
``{"my-ft": {"input": 3, "cached_input": 1.5, "output": 12}}`` or ``{"gpt-5": {"flex": {...}, "priority": {...}}}``."""

_Rates = tuple[float, float, float]


def _tiers(standard: _Rates, *, flex: bool = False, priority: _Rates | None = None) -> dict[ServedTier, ModelPrice]:
    """A model's prices: standard, flex at exactly half of it (Batch rates) when offered, priority as published."""
    inp, cached, out = standard
    prices: dict[ServedTier, ModelPrice] = {"default": ModelPrice(input=inp, cached_input=cached, output=out)}
    if flex:
        prices["flex"] = ModelPrice(input=inp / 2, cached_input=cached / 2, output=out / 2)
    if priority is not None:
        prices["priority"] = ModelPrice(input=priority[0], cached_input=priority[1], output=priority[2])
    return prices


# (input, cached input, output) in USD per 1M tokens; the module docstring says where each figure comes from.
TIER_PRICES: dict[str, dict[ServedTier, ModelPrice]] = {
    "gpt-4o-mini": _tiers((0.15, 0.075, 0.60), priority=(0.25, 0.125, 1.00)),
    "gpt-4o": _tiers((2.50, 1.25, 10.00), priority=(4.25, 2.125, 17.00)),
    "gpt-4o-2024-05-13": _tiers((5.00, 5.00, 15.00), priority=(8.75, 8.75, 26.25)),
    "gpt-4.1": _tiers((2.00, 0.50, 8.00), priority=(3.50, 0.875, 14.00)),
    "gpt-4.1-mini": _tiers((0.40, 0.10, 1.60), priority=(0.70, 0.175, 2.80)),
    "gpt-4.1-nano": _tiers((0.10, 0.025, 0.40), priority=(0.20, 0.05, 0.80)),
    "gpt-5": _tiers((1.25, 0.125, 10.00), flex=True, priority=(2.50, 0.25, 20.00)),
    "gpt-5-mini": _tiers((0.25, 0.025, 2.00), flex=True, priority=(0.45, 0.045, 3.60)),
    "gpt-5-nano": _tiers((0.05, 0.005, 0.40), flex=True),
    "gpt-5-pro": _tiers((15.00, 15.00, 120.00)),
    "gpt-5.1": _tiers((1.25, 0.125, 10.00), flex=True, priority=(2.50, 0.25, 20.00)),
    "gpt-5.1-codex-mini": _tiers((0.25, 0.025, 2.00), priority=(0.45, 0.045, 3.60)),
    "gpt-5.2": _tiers((1.75, 0.175, 14.00), flex=True, priority=(3.50, 0.35, 28.00)),
    "gpt-5.2-pro": _tiers((21.00, 21.00, 168.00)),
    "gpt-5.3-chat-latest": _tiers((1.75, 0.175, 14.00)),
    "gpt-5.3-codex": _tiers((1.75, 0.175, 14.00), priority=(3.50, 0.35, 28.00)),
    "gpt-5.4": _tiers((2.50, 0.25, 15.00), flex=True, priority=(5.00, 0.50, 30.00)),
    "gpt-5.4-mini": _tiers((0.75, 0.075, 4.50), flex=True, priority=(1.50, 0.15, 9.00)),
    "gpt-5.4-nano": _tiers((0.20, 0.02, 1.25), flex=True),
    "gpt-5.4-pro": _tiers((30.00, 3.00, 180.00), flex=True),
    "gpt-5.5": _tiers((5.00, 0.50, 30.00), flex=True, priority=(12.50, 1.25, 75.00)),
    "gpt-5.5-pro": _tiers((30.00, 3.00, 180.00), flex=True),
    "gpt-5.6-terra": _tiers((2.00, 0.20, 12.00), flex=True, priority=(4.00, 0.40, 24.00)),
    "gpt-5.6-luna": _tiers((0.20, 0.02, 1.20), flex=True, priority=(0.40, 0.04, 2.40)),
    "o1": _tiers((15.00, 7.50, 60.00)),
    "o1-mini": _tiers((1.10, 0.55, 4.40)),
    "o1-pro": _tiers((150.00, 150.00, 600.00)),
    "o3": _tiers((2.00, 0.50, 8.00), flex=True, priority=(3.50, 0.875, 14.00)),
    "o3-mini": _tiers((1.10, 0.55, 4.40)),
    "o3-pro": _tiers((20.00, 20.00, 80.00)),
    "o3-deep-research": _tiers((10.00, 2.50, 40.00)),
    "o4-mini": _tiers((1.10, 0.275, 4.40), flex=True, priority=(2.00, 0.50, 8.00)),
    "o4-mini-deep-research": _tiers((2.00, 0.50, 8.00)),
}
"""Model family -> served tier -> price. Every family has ``default``; ``flex`` and ``priority`` where offered."""

# Public list prices (standard tier, USD per 1M tokens): the default tier of TIER_PRICES. Override or extend with
# EXTRACT_PRICES, a JSON object merged over the table, e.g.
# EXTRACT_PRICES='{"my-finetune": {"input": 3, "cached_input": 1.5, "output": 12}}'.
DEFAULT_PRICES: dict[str, ModelPrice] = {name: tiers["default"] for name, tiers in TIER_PRICES.items()}


def _family(model: str, names: set[str]) -> str | None:
    """The name ``model`` matches (lower-cased): itself, else the longest ``name-`` prefix; None if none."""
    if model in names:
        return model
    matches = [name for name in names if model.startswith(name + "-")]
    return max(matches, key=len) if matches else None


def tier_prices(
    model: str, overrides: Mapping[str, PriceOverride] | None = None
) -> dict[ServedTier, ModelPrice] | None:
    """All the prices ``model`` has, per served tier, overrides over the built-in table; None if it has none."""
    wanted: dict[str, PriceOverride] = {name.lower(): value for name, value in (overrides or {}).items()}
    name = _family(model.lower(), set(TIER_PRICES) | set(wanted))
    if name is None:
        return None
    prices = dict(TIER_PRICES.get(name, {}))
    override = wanted.get(name)
    if isinstance(override, ModelPrice):
        prices["default"] = override
    elif override is not None:
        prices.update(override)
    return prices or None


def price_for(
    model: str, tier: str | None = "default", overrides: Mapping[str, PriceOverride] | None = None
) -> ModelPrice | None:
    """The price of ``model`` served at ``tier`` (a response's ``service_tier``), overrides first.

    ``tier`` None or ``auto`` is the default tier (``fast`` is priority's request-side name). A tier without a price
    for the model falls back to its default-tier price (see the module docstring); None: the model has no price.
    """
    prices = tier_prices(model, overrides)
    if prices is None:
        return None
    served = "default" if tier in (None, "auto") else "priority" if tier == "fast" else tier
    by_tier: dict[str, ModelPrice] = {str(name): price for name, price in prices.items()}
    if served == BATCH_TIER and BATCH_TIER not in by_tier:
        return batch_price(prices["default"]) if "default" in prices else None
    return by_tier.get(served) or prices.get("default")


BATCH_TIER = "batch"
"""The pseudo-tier of a line answered through the Batch API (``/v1/batches``): not a ``service_tier`` the provider
reports, but how we price it. Half the default tier's price for every model, cached input included (OpenAI's
pricing page; ``../shared/OPENAI-FACTS.md`` §9), unless ``EXTRACT_PRICES`` names a ``batch`` price for the model."""


def batch_price(default: ModelPrice) -> ModelPrice:
    """The Batch API's price of a model: half its default-tier price, every rate."""
    return ModelPrice(input=default.input / 2, cached_input=default.cached_input / 2, output=default.output / 2)


def cost_usd(usage: Usage, price: ModelPrice | None) -> float | None:
    """Cached input is billed at the cached rate, the rest of the input at the full rate; reasoning is output."""
    if price is None:
        return None
    uncached = max(usage.input_tokens - usage.cached_input_tokens, 0)
    total = (
        uncached * price.input + usage.cached_input_tokens * price.cached_input + usage.output_tokens * price.output
    ) / 1_000_000
    return round(total, 8)
