"""Prices per service tier (``schemas.pricing``) and what each model family accepts (``schemas.models``)."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.models import FAMILIES, family_for, request_problems
from schemas.pricing import (
    DEFAULT_PRICES,
    TIER_PRICES,
    ModelPrice,
    PriceOverride,
    cost_usd,
    price_for,
    tier_prices,
)
from schemas.results import Usage


def _price(inp: float, cached: float, out: float) -> ModelPrice:
    return ModelPrice(input=inp, cached_input=cached, output=out)


# --- prices per tier ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "standard", "priority"),
    [
        ("gpt-5", (1.25, 0.125, 10.00), (2.50, 0.25, 20.00)),
        ("gpt-5-mini", (0.25, 0.025, 2.00), (0.45, 0.045, 3.60)),
        ("gpt-5.1", (1.25, 0.125, 10.00), (2.50, 0.25, 20.00)),
        ("gpt-5.2", (1.75, 0.175, 14.00), (3.50, 0.35, 28.00)),
        ("gpt-5.4", (2.50, 0.25, 15.00), (5.00, 0.50, 30.00)),
        ("gpt-5.5", (5.00, 0.50, 30.00), (12.50, 1.25, 75.00)),
        ("gpt-4.1", (2.00, 0.50, 8.00), (3.50, 0.875, 14.00)),
        ("gpt-4.1-mini", (0.40, 0.10, 1.60), (0.70, 0.175, 2.80)),
        ("gpt-4o", (2.50, 1.25, 10.00), (4.25, 2.125, 17.00)),
        ("gpt-4o-mini", (0.15, 0.075, 0.60), (0.25, 0.125, 1.00)),
        ("o3", (2.00, 0.50, 8.00), (3.50, 0.875, 14.00)),
        ("o4-mini", (1.10, 0.275, 4.40), (2.00, 0.50, 8.00)),
    ],
)
def test_standard_and_priority_prices(model: str, standard: tuple[float, ...], priority: tuple[float, ...]) -> None:
    """The published standard and priority (Fast mode) prices, per 1M tokens."""
    assert price_for(model) == _price(*standard)
    assert price_for(model, "priority") == _price(*priority)


@pytest.mark.parametrize(
    ("model", "flex"),
    [
        ("gpt-5", (0.625, 0.0625, 5.00)),
        ("gpt-5-mini", (0.125, 0.0125, 1.00)),
        ("gpt-5-nano", (0.025, 0.0025, 0.20)),
        ("o3", (1.00, 0.25, 4.00)),
        ("o4-mini", (0.55, 0.1375, 2.20)),
        ("gpt-5.4-mini", (0.375, 0.0375, 2.25)),
    ],
)
def test_flex_prices_are_the_batch_prices(model: str, flex: tuple[float, ...]) -> None:
    """Flex costs the Batch API's prices: half of standard, cached input included."""
    got = price_for(model, "flex")
    assert got is not None
    assert (got.input, got.cached_input, got.output) == pytest.approx(flex)


def test_flex_is_half_of_standard_wherever_offered() -> None:
    """One table: every family has a default price, and every flex price is exactly half of it."""
    offered = [name for name, tiers in TIER_PRICES.items() if "flex" in tiers]
    assert {"gpt-5", "gpt-5-mini", "gpt-5-nano", "o3", "o4-mini"} <= set(offered)
    for name in offered:
        flex, standard = TIER_PRICES[name]["flex"], TIER_PRICES[name]["default"]
        assert flex == _price(standard.input / 2, standard.cached_input / 2, standard.output / 2), name
    assert all("default" in tiers for tiers in TIER_PRICES.values())
    assert {name: tiers["default"] for name, tiers in TIER_PRICES.items()} == DEFAULT_PRICES


def test_models_without_flex_or_priority() -> None:
    assert "flex" not in TIER_PRICES["gpt-4o"]
    assert "flex" not in TIER_PRICES["gpt-4.1-nano"]
    assert "priority" not in TIER_PRICES["gpt-5-nano"]
    assert "priority" not in TIER_PRICES["gpt-5.4-nano"]


def test_default_prices_keep_their_standard_values() -> None:
    """DEFAULT_PRICES is still the standard-tier table other modules import."""
    assert DEFAULT_PRICES["gpt-4o-mini"] == _price(0.15, 0.075, 0.60)
    assert DEFAULT_PRICES["gpt-5-nano"] == _price(0.05, 0.005, 0.40)
    assert DEFAULT_PRICES["o3"] == _price(2.00, 0.50, 8.00)


# --- lookup ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-5.2-2025-12-11", "gpt-5.2"),
        ("o3-2025-04-16", "o3"),
        ("GPT-5-Mini", "gpt-5-mini"),
    ],
)
def test_snapshots_price_like_their_family(model: str, family: str) -> None:
    assert price_for(model) == DEFAULT_PRICES[family]
    assert price_for(model, "priority") == TIER_PRICES[family]["priority"]


def test_longest_family_wins_and_dots_are_not_separators() -> None:
    """gpt-5-mini is its own family, never gpt-5's; gpt-5.2 never matches gpt-5; a dated snapshot may differ."""
    assert price_for("gpt-5-mini") != price_for("gpt-5")
    assert price_for("gpt-5.2") == _price(1.75, 0.175, 14.00)
    assert price_for("gpt-5-pro") == _price(15.00, 15.00, 120.00)
    assert price_for("gpt-4o-2024-05-13") == _price(5.00, 5.00, 15.00)
    assert price_for("gpt-5.6-sol") is None  # a promotion of unknown state: no built-in price


def test_tier_none_and_auto_mean_default() -> None:
    assert price_for("gpt-5", None) == price_for("gpt-5", "auto") == price_for("gpt-5") == DEFAULT_PRICES["gpt-5"]
    assert price_for("gpt-5", "fast") == TIER_PRICES["gpt-5"]["priority"]


@pytest.mark.parametrize(("model", "tier"), [("gpt-5", "scale"), ("gpt-4o", "flex"), ("gpt-5-nano", "priority")])
def test_a_tier_without_a_price_falls_back_to_the_default(model: str, tier: str) -> None:
    assert price_for(model, tier) == DEFAULT_PRICES[model]
    assert price_for(model, "no-such-tier") == DEFAULT_PRICES[model]


def test_unknown_model_has_no_price() -> None:
    assert price_for("my-finetune") is None
    assert price_for("my-finetune", "flex") is None
    assert tier_prices("my-finetune") is None


# --- overrides ---------------------------------------------------------------------------------------------------


def test_a_bare_override_replaces_only_the_default_tier() -> None:
    overrides: dict[str, PriceOverride] = {"gpt-5": _price(1.0, 0.1, 8.0)}
    assert price_for("gpt-5", overrides=overrides) == _price(1.0, 0.1, 8.0)
    assert price_for("gpt-5-2025-08-07", overrides=overrides) == _price(1.0, 0.1, 8.0)
    assert price_for("gpt-5", "flex", overrides) == TIER_PRICES["gpt-5"]["flex"]
    assert price_for("gpt-5", "priority", overrides) == TIER_PRICES["gpt-5"]["priority"]
    assert price_for("gpt-5-mini", overrides=overrides) == DEFAULT_PRICES["gpt-5-mini"]  # exact built-in name wins


def test_overrides_per_tier_and_for_new_models() -> None:
    overrides: dict[str, PriceOverride] = {
        "gpt-4o": {"flex": _price(1.0, 0.5, 4.0)},
        "my-ft": _price(3.0, 1.5, 12.0),
        "gpt-5.6-sol": {"default": _price(5.0, 0.5, 30.0), "priority": _price(10.0, 1.0, 60.0)},
    }
    assert price_for("gpt-4o", "flex", overrides) == _price(1.0, 0.5, 4.0)
    assert price_for("gpt-4o", overrides=overrides) == DEFAULT_PRICES["gpt-4o"]
    assert price_for("my-ft", overrides=overrides) == _price(3.0, 1.5, 12.0)
    assert price_for("my-ft-2026-01-01", "flex", overrides) == _price(3.0, 1.5, 12.0)  # no flex: its default
    assert price_for("gpt-5.6-sol", "priority", overrides) == _price(10.0, 1.0, 60.0)
    assert price_for("gpt-5.6-sol", "scale", overrides) == _price(5.0, 0.5, 30.0)
    assert price_for("gpt-5.6-sol", overrides={"GPT-5.6-SOL": _price(4.0, 0.4, 20.0)}) == _price(4.0, 0.4, 20.0)


def test_price_overrides_validate_from_json() -> None:
    """What settings declares (``dict[str, PriceOverride]``) parses both forms and refuses an unknown tier."""
    adapter = TypeAdapter(dict[str, PriceOverride])
    parsed = adapter.validate_json(
        '{"my-ft": {"input": 3, "cached_input": 1.5, "output": 12},'
        ' "gpt-5": {"flex": {"input": 0.5, "cached_input": 0.05, "output": 4}}}'
    )
    assert parsed["my-ft"] == _price(3, 1.5, 12)
    assert parsed["gpt-5"] == {"flex": _price(0.5, 0.05, 4)}
    with pytest.raises(ValidationError):
        adapter.validate_json('{"gpt-5": {"flx": {"input": 0.5, "cached_input": 0.05, "output": 4}}}')


def test_cost_at_the_flex_price() -> None:
    """1M uncached input, 1M cached input and 1M output on gpt-5-mini at flex: 0.125 + 0.0125 + 1.00."""
    usage = Usage(input_tokens=2_000_000, cached_input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost_usd(usage, price_for("gpt-5-mini", "flex")) == pytest.approx(1.1375)
    assert cost_usd(usage, price_for("gpt-5-mini")) == pytest.approx(2.275)
    assert cost_usd(usage, price_for("unknown-model", "flex")) is None


# --- model families ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("gpt-5-chat-latest", "gpt-5-chat-latest"),
        ("gpt-5.6-sol", "gpt-5.6"),
        ("GPT-4O-2024-11-20", "gpt-4o"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("gpt-5.1-codex-mini", "gpt-5.1-codex-mini"),
    ],
)
def test_family_lookup(model: str, family: str) -> None:
    found = family_for(model)
    assert found is not None
    assert found.name == family


def test_unknown_models_have_no_family_and_no_problems() -> None:
    assert family_for("my-finetune") is None
    assert family_for("gpt-5.9") is None  # not gpt-5's: a dot is not a separator
    assert request_problems("my-finetune", temperature=0.2, reasoning_effort="xhigh", service_tier="flex") == []


def test_family_facts() -> None:
    gpt5, gpt51, gpt52, chat = (
        FAMILIES["gpt-5"],
        FAMILIES["gpt-5.1"],
        FAMILIES["gpt-5.2"],
        FAMILIES["gpt-5-chat-latest"],
    )
    assert gpt5.efforts == ("minimal", "low", "medium", "high")
    assert gpt5.default_effort == "medium"
    assert gpt5.temperature == "never"
    assert gpt51.efforts == ("none", "low", "medium", "high")
    assert gpt51.default_effort == "none"
    assert gpt51.temperature == "effort_none"
    assert gpt52.efforts == ("none", "low", "medium", "high", "xhigh")
    assert "max" in FAMILIES["gpt-5.6"].efforts
    assert FAMILIES["o3"].efforts == ("low", "medium", "high")
    assert not chat.reasoning
    assert chat.temperature == "any"
    assert not FAMILIES["gpt-4o"].reasoning
    assert FAMILIES["gpt-5-pro"].efforts == ("high",)
    for family in FAMILIES.values():
        assert {"auto", "default"} <= family.tiers
        assert not family.reasoning or family.efforts or family.name in {"o1-mini", "o1-preview"}
    assert "flex" not in FAMILIES["gpt-4o"].tiers
    assert "priority" not in FAMILIES["gpt-5-nano"].tiers
    assert {"flex", "priority"} <= FAMILIES["gpt-5-mini"].tiers


def test_flex_and_priority_agree_with_the_price_table() -> None:
    """A family asked for flex or priority has that tier priced (where the price table has the model)."""
    for name, family in FAMILIES.items():
        prices = tier_prices(name)
        if prices is None:
            continue
        for tier in ("flex", "priority"):
            if tier in family.tiers and name in TIER_PRICES:
                assert tier in prices, (name, tier)


# --- request problems --------------------------------------------------------------------------------------------


_NO_TEMPERATURE = (
    "does not accept temperature; drop --temperature, or use --reasoning-effort none with gpt-5.1 or later"
)


def test_temperature_on_a_reasoning_model_without_none() -> None:
    assert request_problems("gpt-5-mini", temperature=0.2, reasoning_effort=None, service_tier=None) == [
        f"gpt-5-mini {_NO_TEMPERATURE}"
    ]
    assert request_problems("o3", temperature=1.0, reasoning_effort="high", service_tier=None) == [
        "o3 does not accept temperature; drop --temperature, or use --reasoning-effort none with gpt-5.1 or later"
    ]


def test_temperature_needs_effort_none_from_gpt_5_1_on() -> None:
    assert request_problems("gpt-5.2", temperature=0.2, reasoning_effort="low", service_tier=None) == [
        "gpt-5.2 accepts temperature only with reasoning effort none (not low): "
        "use --reasoning-effort none, or drop --temperature"
    ]
    assert request_problems("gpt-5.1-chat-latest", temperature=0.2, reasoning_effort=None, service_tier=None) == [
        "gpt-5.1-chat-latest does not accept temperature; drop --temperature, "
        "or use --reasoning-effort none with gpt-5.1 or later"
    ]


def test_effort_on_a_non_reasoning_model() -> None:
    assert request_problems("gpt-4o", temperature=None, reasoning_effort="low", service_tier=None) == [
        "gpt-4o is not a reasoning model: drop --reasoning-effort"
    ]
    assert request_problems("gpt-5-chat-latest", temperature=None, reasoning_effort="minimal", service_tier=None) == [
        "gpt-5-chat-latest is not a reasoning model: drop --reasoning-effort"
    ]


def test_effort_the_model_does_not_take() -> None:
    assert request_problems("gpt-5-mini", temperature=None, reasoning_effort="none", service_tier=None) == [
        "gpt-5-mini does not accept --reasoning-effort none (it takes minimal, low, medium, high)"
    ]
    assert request_problems("gpt-5.1", temperature=None, reasoning_effort="minimal", service_tier=None) == [
        "gpt-5.1 does not accept --reasoning-effort minimal (it takes none, low, medium, high)"
    ]
    assert request_problems("gpt-5.1", temperature=None, reasoning_effort="xhigh", service_tier=None) == [
        "gpt-5.1 does not accept --reasoning-effort xhigh (it takes none, low, medium, high)"
    ]
    assert request_problems("o1-mini", temperature=None, reasoning_effort="low", service_tier=None) == [
        "o1-mini does not accept --reasoning-effort (it reasons at a fixed effort): drop --reasoning-effort"
    ]


def test_tier_the_model_is_not_offered_on() -> None:
    assert request_problems("gpt-4o", temperature=None, reasoning_effort=None, service_tier="flex") == [
        "flex processing is not offered for gpt-4o; use --service-tier auto or default, "
        "or a model that offers it (gpt-5, gpt-5-mini, o3, …)"
    ]
    assert request_problems("gpt-5-nano", temperature=None, reasoning_effort=None, service_tier="priority") == [
        "priority processing is not offered for gpt-5-nano; use --service-tier auto or default, "
        "or a model that offers it (gpt-5, gpt-5-mini, o3, …)"
    ]


def test_several_problems_are_all_reported() -> None:
    problems = request_problems("gpt-5-mini", temperature=0.0, reasoning_effort="none", service_tier="flex")
    assert problems == [
        "gpt-5-mini does not accept --reasoning-effort none (it takes minimal, low, medium, high)",
        f"gpt-5-mini {_NO_TEMPERATURE}",
    ]


@pytest.mark.parametrize(
    ("model", "temperature", "effort", "tier"),
    [
        ("gpt-5.1", 0.0, "none", None),
        ("gpt-5.1", 0.7, None, None),  # its default effort is none
        ("gpt-5.2", 0.0, "none", "flex"),
        ("gpt-5.6-terra", 0.3, "none", "priority"),
        ("gpt-4o", 0.3, None, None),
        ("gpt-4o", 0.0, None, "priority"),
        ("gpt-4o-mini-2024-07-18", 1.2, None, "default"),
        ("gpt-5-mini", None, "minimal", "flex"),
        ("gpt-5", None, "high", "priority"),
        ("gpt-5.6-luna", None, "max", "auto"),
        ("gpt-5-chat-latest", 0.5, None, None),
        ("o3", None, "low", "flex"),
        ("o4-mini", None, None, "fast"),
        ("gpt-4.1-nano", 0.0, None, "scale"),  # scale depends on the account: not checked
        ("gpt-5-nano", None, None, None),
    ],
)
def test_valid_combinations_have_no_problems(
    model: str, temperature: float | None, effort: str | None, tier: str | None
) -> None:
    assert request_problems(model, temperature=temperature, reasoning_effort=effort, service_tier=tier) == []
