"""What each OpenAI model family accepts: reasoning efforts, ``temperature``, service tiers.

:func:`request_problems` checks a batch's ``--temperature``, ``--reasoning-effort`` and ``--service-tier`` against
the model's family before anything is sent, so a combination the API refuses is reported once, at submit, with the
fix, instead of as one 400 per line. A model in no family (a fine-tune, a model newer than this table) is not
checked: nothing is refused for it, the API decides.

A model name matches a family exactly (case-insensitively), else the longest family name followed by ``-``
(``gpt-5-mini-2025-08-07`` → ``gpt-5-mini``, ``gpt-5.6-sol`` → ``gpt-5.6``; ``gpt-5-mini`` is its own family, never
``gpt-5``'s, and ``gpt-5.2`` never matches ``gpt-5``). Variants whose rules differ from their base model's (pro,
codex, chat-latest, search) are families of their own so that the prefix rule cannot give them the base's.

**Design notes** (read on 2026-12-01 through the search tool's stored copies, not the live pages; *primary* = an
OpenAI page or the API's own answer, *secondary* = anyone else). Where sources disagree or say nothing, the choice
is ours and says so; it leans towards letting a request through, since a wrong refusal blocks a valid batch
while a wrong pass costs one 400.

* Effort values (the spec's ``ReasoningEffort`` enum, ``/work/shared/openai-openapi/openapi.json``, *primary*:
  ``none, minimal, low, medium, high, xhigh, max``, "Not all reasoning models support every value"). Its earlier
  text, as copied in Microsoft's SDK docs
  (https://learn.microsoft.com/en-us/javascript/api/@azure/ai-projects/reasoningeffort, *secondary copy of primary
  text*): "gpt-5.1 defaults to none … The supported reasoning values for gpt-5.1 are none, low, medium, and high";
  "All models before gpt-5.1 default to medium reasoning effort, and do not support none"; "The gpt-5-pro model
  defaults to (and only supports) high"; "xhigh is supported for all models after gpt-5.1-codex-max". The API's
  own 400 for gpt-5.1, quoted in https://github.com/openai/openai-agents-python/issues/2089 (*primary text, in a
  secondary place*): "'minimal' is not supported with the 'gpt-5.1' model. Supported values are: 'none', 'low',
  'medium', and 'high'". Per model, a matrix "verified against the OpenAI API" in
  https://community.openai.com/t/request-for-compatibility-matrix-reasoning-effort-sampling-parameters-across-gpt-5-series/1371738
  (*secondary*): gpt-5, gpt-5-mini, gpt-5-nano ``minimal, low, medium, high``; gpt-5-codex, gpt-5.1-codex(-mini)
  ``low, medium, high``; gpt-5.1-codex-max and gpt-5.2-codex add ``xhigh``; gpt-5.2 ``none, low, medium, high,
  xhigh``; gpt-5.2-pro ``medium, high, xhigh``; the ``-chat-latest`` of 5.1 and 5.2 ``medium`` only; gpt-5-chat-latest
  none at all; o1, o1-pro, o3, o3-mini, o3-pro, o4-mini ``low, medium, high``. ``minimal`` ends with gpt-5: "the
  OpenAI API for GPT-5.2 … only accepts values like 'none', 'low', 'medium', 'high', and 'xhigh'"
  (https://rudythurston.com/blog/fix-gpt-5-2-api, *secondary*); LiteLLM's ``supports_minimal_reasoning_effort: true``
  on gpt-5.1/5.2/5.4 (https://github.com/BerriAI/litellm ``model_prices_and_context_window.json``, *secondary*)
  contradicts the API's message and is not followed. gpt-5.4, 5.4-mini, 5.4-nano, 5.5: ``none`` … ``xhigh``
  (LiteLLM's none/xhigh flags; RayBytes/ChatMock#101 for 5.4; Venice's model page for 5.4-mini; all *secondary*).
  gpt-5.6 (Sol, Terra, Luna) adds ``max``: the API reference's ``reasoning_options`` for gpt-5.6-terra as quoted in
  https://github.com/anomalyco/opencode/issues/36141 and
  https://docs.oxen.ai/inference-api/reference/models/gpt-5-6-terra (*secondary*). gpt-5.3-codex: ``low`` …
  ``xhigh`` (ChatMock#101: "the gpt-5.2 and gpt-5.3 families (including codex)"). Pro models after 5.2 (5.4-pro,
  5.5-pro): ``medium, high, xhigh`` like 5.2-pro (LiteLLM says no ``none``, no ``low`` for 5.5-pro; nothing found
  for 5.4-pro: our choice). o1-mini and o1-preview take no effort
  parameter (https://community.openai.com/t/developer-role-not-accepted-for-o1-o1-mini-o3-mini/1110750/7,
  *secondary*, probed against the API).
* Default effort: ``medium`` before 5.1, ``high`` for gpt-5-pro, ``none`` for 5.1 (spec text above). ``none`` for
  5.2 (docs.rs openai-tools "GPT-5.1/5.2 default", *secondary*), 5.6 ("none (default)",
  https://replicate.com/openai/gpt-5.6-terra, *secondary*) and, by the same rule, 5.4, 5.4-mini, 5.4-nano and 5.5
  (not found stated: our inference; https://git.mai1015.com/github/zeroclaw docs/openai-temperature-compatibility.md,
  *secondary*, shows gpt-5.4 taking temperature 0.7 with no effort sent, which fits). Codex and pro models after
  5.1 are left None (not documented): nothing is inferred from their default.
* Temperature: not accepted by the o-series and gpt-5/mini/nano ("Unsupported value: 'temperature' does not support
  0.9 with this model. Only the default (1) value is supported.", the (Azure) API's answer for gpt-5-mini quoted at
  https://zenn.dev/headwaters/articles/a5468c45ec2e52, *secondary*; the same family list probed in zeroclaw's table);
  ``gpt-5-chat-latest`` takes it (BerriAI/litellm#13781 and zeroclaw, *secondary*), the later ``-chat-latest`` do
  not (zeroclaw: 1.0 only). From gpt-5.1 on, ``temperature`` (with ``top_p``, ``logprobs``) only with effort
  ``none`` (OpenAI's docs as quoted in https://github.com/vercel/ai/issues/10932, *secondary copy of primary*;
  /work/shared/OPENAI-FACTS.md §8); the request's effort, else the family's default, is what counts. The community
  matrix's author inferred from the docs that 5.1 takes none of them; the quoted docs and the vercel thread say 5.1
  with ``none`` does: followed. One report says gpt-5.6 "require[s] temperature to be set to 1"
  (https://github.com/itzcrazykns/vane/issues/1173, *secondary*, effort not stated); 5.6 keeps the 5.1-and-later rule.
  Any temperature on a model that takes none is reported, 1 included (sending it is pointless, and the project's
  simulator refuses it too). The search models take none (zeroclaw). Pro and codex models: reasoning-only, none.
* Tiers (``auto``/``default`` always). Priority ("Fast mode"), *primary*: https://openai.com/api-fast-mode/ (formerly
  https://openai.com/api-priority-processing/) lists gpt-5.6 Sol/Terra/Luna, gpt-5.5, gpt-5.4, gpt-5.4-mini, gpt-5.2,
  gpt-5.1, gpt-5, gpt-5-mini, gpt-5.1-codex, gpt-5-codex, gpt-4.1, gpt-4.1-mini, gpt-4.1-nano, gpt-4o, gpt-4o-mini,
  o3, o4-mini: those, plus gpt-5.1-codex-mini, gpt-5.2-codex and gpt-5.3-codex (LiteLLM priority prices,
  *secondary*). Not gpt-5-nano, gpt-5.4-nano (also the community thread
  https://community.openai.com/t/priority-tier-gpt-4-1-gpt-4-1-mini-does-it-exist/1377672), o1, o3-mini, the pro,
  chat-latest and search models (LiteLLM's priority prices for the 5.x chat-latest models are not on the primary
  page: not followed). Flex, *primary* only in part: "Flex processing is in beta with limited model availability.
  Supported models are listed on the pricing page"
  (https://developers.openai.com/api/docs/guides/flex-processing.md), which the index does not hold. Flex here: o3,
  o4-mini (its launch models, April 2025 press copies, *secondary*), gpt-5, gpt-5-mini, gpt-5-nano, gpt-5.4,
  gpt-5.4-mini, gpt-5.4-nano, gpt-5.5, gpt-5.4-pro, gpt-5.5-pro (LiteLLM flex prices, *secondary*), gpt-5.6
  ("all of the GPT-5.6 series", https://dev.classmethod.jp/articles/openai-flex-processing/, *secondary*), and
  gpt-5.1, gpt-5.2 (no source lists or excludes them: our choice, as the project's simulator does). Not gpt-4o,
  gpt-4o-mini, the gpt-4.1 family, o1, o3-mini, gpt-5-pro, gpt-5.2-pro, codex, chat-latest or search models. On
  Azure an unsupported model answers flex with a 400 and no fallback
  (https://learn.microsoft.com/en-ca/Azure/foundry/openai/how-to/flex-processing, *primary* for Azure).
* The request tiers are ``auto, default, flex, priority`` (the spec's ``ServiceTier`` also has ``scale``, for Scale
  Tier contracts, ``fast``, priority's other name, and on Responses ``ultrafast``, access-controlled): ``fast`` is
  checked as ``priority``, ``scale`` and ``ultrafast`` are not checked (they depend on the account).
* ``max`` is in :data:`Effort` because the spec's enum has it and gpt-5.6 takes it.
* Output caps (:data:`MAX_OUTPUT_TOKENS`, :func:`max_output_tokens`): the most a model writes in one answer when the
  request sets no ``max_output_tokens`` / ``max_completion_tokens``, reasoning tokens included ("Reasoning tokens
  count against the cap", /work/shared/OPENAI-FACTS.md §8). The worker uses it to tell an answer that reached the cap
  from one cut off well below it (``worker.extraction``). OpenAI's own Codex client
  (https://github.com/openai/codex ``codex-rs/core/src/openai_model_info.rs``, citing the model pages, *primary
  figures in a secondary place*): gpt-4o 16,384 (its 2024-05-13 snapshot 4,096), gpt-4.1 32,768, o3 and o4-mini
  100,000, every gpt-5* 128,000. The model pages themselves (stored copies, *primary*): gpt-5-codex 128,000
  (https://developers.openai.com/api/docs/models/gpt-5-codex); gpt-5-pro 272,000 (as quoted by
  https://api.koog.ai, *secondary copy*). *Secondary*: gpt-4o-mini and both search previews 16,384 (LiteLLM's
  ``model_prices_and_context_window.json``); gpt-4.1-mini and -nano 32,768 (contextwindows.dev); the 5.x
  ``-chat-latest`` models 16,384 (docs.oxen.ai for 5.2; FastGPT's table, labring/fastgpt-plugin#297, says 16,000
  for 5-chat and 5.1; model.box says 32,768 for 5-chat: the lowest stated figure above 16,000 kept, see below);
  gpt-5.2 and 5.2-pro 128,000 (withceleste/celeste-python#67); gpt-5.4 128,000 (modelcostwatch.com), 5.4-mini and
  -nano 128,000 (docs.anyfast.ai, airouter.megatech.cc), 5.4-pro, 5.5, 5.5-pro 128,000 (Vercel AI Gateway,
  docs.oxen.ai), gpt-5.6 128,000 (runware.ai for Sol); o1 100,000 (models.wingman.actor), o1-mini 65,536 and
  o1-preview 32,768 (openai-hk docs, Replicate's ``max_completion_tokens`` maximum), o3-mini 100,000
  (modelpedia.dev). Ours, by family: the codex models after 5-codex 128,000, o1-pro and o3-pro 100,000. Not found:
  gpt-5-search-api (no cap: the worker then cannot call a cut-off "well below" it). Where figures disagree the lower
  one is kept: a cap set too low only makes a cut-off near it count as reaching it (it fails at once, as before);
  one set too high would make a real cap hit look like a transient cut-off and pay for retries that cannot succeed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "EFFORTS",
    "FAMILIES",
    "MAX_OUTPUT_TOKENS",
    "REQUEST_TIERS",
    "Effort",
    "ModelFamily",
    "RequestTier",
    "family_for",
    "max_output_tokens",
    "request_problems",
]

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
EFFORTS: tuple[Effort, ...] = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
"""Every reasoning effort the API knows (the spec's ``ReasoningEffort``), lowest first."""
RequestTier = Literal["auto", "default", "flex", "priority"]
REQUEST_TIERS: tuple[RequestTier, ...] = ("auto", "default", "flex", "priority")
"""The service tiers a batch may ask for (``--service-tier``)."""


@dataclass(frozen=True)
class ModelFamily:
    """What one family of models accepts."""

    name: str
    reasoning: bool
    efforts: tuple[Effort, ...]
    """The reasoning efforts it accepts (empty for non-reasoning models and for those taking no effort parameter)."""
    default_effort: Effort | None
    """What the API uses when none is sent; None for non-reasoning models, or where it is not documented."""
    temperature: Literal["any", "never", "effort_none"]
    """``effort_none``: only with reasoning effort ``none`` (gpt-5.1 and later)."""
    tiers: frozenset[RequestTier]
    """The service tiers it can be asked for (``auto`` and ``default`` always)."""


_O_SERIES: tuple[Effort, ...] = ("low", "medium", "high")
_GPT_5: tuple[Effort, ...] = ("minimal", "low", "medium", "high")
_GPT_5_1: tuple[Effort, ...] = ("none", "low", "medium", "high")
_GPT_5_2: tuple[Effort, ...] = ("none", "low", "medium", "high", "xhigh")
_GPT_5_6: tuple[Effort, ...] = (*_GPT_5_2, "max")
_CODEX: tuple[Effort, ...] = ("low", "medium", "high")
_CODEX_XHIGH: tuple[Effort, ...] = (*_CODEX, "xhigh")
_PRO: tuple[Effort, ...] = ("medium", "high", "xhigh")

_BASE: frozenset[RequestTier] = frozenset({"auto", "default"})
_FLEX: frozenset[RequestTier] = frozenset({"auto", "default", "flex"})
_PRIORITY: frozenset[RequestTier] = frozenset({"auto", "default", "priority"})
_BOTH: frozenset[RequestTier] = frozenset({"auto", "default", "flex", "priority"})


def _plain(name: str, tiers: frozenset[RequestTier] = _BASE, *, temperature: bool = True) -> ModelFamily:
    """A non-reasoning family."""
    return ModelFamily(name, False, (), None, "any" if temperature else "never", tiers)


def _reasoner(
    name: str, efforts: tuple[Effort, ...], default: Effort | None, tiers: frozenset[RequestTier] = _BASE
) -> ModelFamily:
    """A reasoning family: temperature only at effort ``none`` where it takes ``none`` (gpt-5.1 on), else never."""
    return ModelFamily(name, True, efforts, default, "effort_none" if "none" in efforts else "never", tiers)


FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        _plain("gpt-4o", _PRIORITY),
        _plain("gpt-4o-mini", _PRIORITY),
        _plain("gpt-4o-search-preview", temperature=False),
        _plain("gpt-4o-mini-search-preview", temperature=False),
        _plain("gpt-4.1", _PRIORITY),
        _plain("gpt-4.1-mini", _PRIORITY),
        _plain("gpt-4.1-nano", _PRIORITY),
        _reasoner("gpt-5", _GPT_5, "medium", _BOTH),
        _reasoner("gpt-5-mini", _GPT_5, "medium", _BOTH),
        _reasoner("gpt-5-nano", _GPT_5, "medium", _FLEX),
        _plain("gpt-5-chat-latest"),
        _plain("gpt-5-search-api", temperature=False),
        _reasoner("gpt-5-pro", ("high",), "high"),
        _reasoner("gpt-5-codex", _CODEX, "medium", _PRIORITY),
        _reasoner("gpt-5.1", _GPT_5_1, "none", _BOTH),
        _reasoner("gpt-5.1-chat-latest", ("medium",), "medium"),
        _reasoner("gpt-5.1-codex", _CODEX, None, _PRIORITY),
        _reasoner("gpt-5.1-codex-mini", _CODEX, None, _PRIORITY),
        _reasoner("gpt-5.1-codex-max", _CODEX_XHIGH, None),
        _reasoner("gpt-5.2", _GPT_5_2, "none", _BOTH),
        _reasoner("gpt-5.2-chat-latest", ("medium",), "medium"),
        _reasoner("gpt-5.2-codex", _CODEX_XHIGH, None, _PRIORITY),
        _reasoner("gpt-5.2-pro", _PRO, None),
        _reasoner("gpt-5.3-chat-latest", ("medium",), "medium"),
        _reasoner("gpt-5.3-codex", _CODEX_XHIGH, None, _PRIORITY),
        _reasoner("gpt-5.4", _GPT_5_2, "none", _BOTH),
        _reasoner("gpt-5.4-mini", _GPT_5_2, "none", _BOTH),
        _reasoner("gpt-5.4-nano", _GPT_5_2, "none", _FLEX),
        _reasoner("gpt-5.4-pro", _PRO, None, _FLEX),
        _reasoner("gpt-5.5", _GPT_5_2, "none", _BOTH),
        _reasoner("gpt-5.5-pro", _PRO, None, _FLEX),
        _reasoner("gpt-5.6", _GPT_5_6, "none", _BOTH),
        _reasoner("o1", _O_SERIES, "medium"),
        _reasoner("o1-mini", (), "medium"),
        _reasoner("o1-preview", (), "medium"),
        _reasoner("o1-pro", _O_SERIES, "medium"),
        _reasoner("o3", _O_SERIES, "medium", _BOTH),
        _reasoner("o3-mini", _O_SERIES, "medium"),
        _reasoner("o3-pro", _O_SERIES, "medium"),
        _reasoner("o4-mini", _O_SERIES, "medium", _BOTH),
    )
}
"""Family name -> what it accepts (the module docstring says where each line comes from)."""

MAX_OUTPUT_TOKENS: dict[str, int] = {
    "gpt-4o": 16_384,
    "gpt-4o-2024-05-13": 4_096,
    "gpt-4o-mini": 16_384,
    "gpt-4o-search-preview": 16_384,
    "gpt-4o-mini-search-preview": 16_384,
    "gpt-4.1": 32_768,
    "gpt-4.1-mini": 32_768,
    "gpt-4.1-nano": 32_768,
    "gpt-5": 128_000,
    "gpt-5-mini": 128_000,
    "gpt-5-nano": 128_000,
    "gpt-5-chat-latest": 16_384,
    "gpt-5-pro": 272_000,
    "gpt-5-codex": 128_000,
    "gpt-5.1": 128_000,
    "gpt-5.1-chat-latest": 16_384,
    "gpt-5.1-codex": 128_000,
    "gpt-5.1-codex-mini": 128_000,
    "gpt-5.1-codex-max": 128_000,
    "gpt-5.2": 128_000,
    "gpt-5.2-chat-latest": 16_384,
    "gpt-5.2-codex": 128_000,
    "gpt-5.2-pro": 128_000,
    "gpt-5.3-chat-latest": 16_384,
    "gpt-5.3-codex": 128_000,
    "gpt-5.4": 128_000,
    "gpt-5.4-mini": 128_000,
    "gpt-5.4-nano": 128_000,
    "gpt-5.4-pro": 128_000,
    "gpt-5.5": 128_000,
    "gpt-5.5-pro": 128_000,
    "gpt-5.6": 128_000,
    "o1": 100_000,
    "o1-mini": 65_536,
    "o1-preview": 32_768,
    "o1-pro": 100_000,
    "o3": 100_000,
    "o3-mini": 100_000,
    "o3-pro": 100_000,
    "o4-mini": 100_000,
}
"""A model's own output cap in tokens, reasoning included, by family name or exact snapshot (the module docstring
says where each figure comes from)."""


def max_output_tokens(model: str) -> int | None:
    """The most ``model`` writes in one answer when the request sets no cap: its exact name (a snapshot whose cap
    differs from its family's), else its family's figure (:func:`family_for`); None when unknown."""
    name = model.lower()
    if name in MAX_OUTPUT_TOKENS:
        return MAX_OUTPUT_TOKENS[name]
    family = family_for(name)
    return MAX_OUTPUT_TOKENS.get(family.name) if family is not None else None


_TIER_EXAMPLES = ("gpt-5", "gpt-5-mini", "o3", "gpt-4.1", "o4-mini")
"""Families named, in this order, as ones that offer a tier the requested model lacks."""


def family_for(model: str) -> ModelFamily | None:
    """The family of ``model``: exact name, else the longest ``name-`` prefix (case-insensitive); None if unknown."""
    name = model.lower()
    family = FAMILIES.get(name)
    if family is not None:
        return family
    matches = [known for known in FAMILIES if name.startswith(known + "-")]
    return FAMILIES[max(matches, key=len)] if matches else None


def request_problems(
    model: str, *, temperature: float | None, reasoning_effort: str | None, service_tier: str | None
) -> list[str]:
    """One user-facing sentence per thing ``model`` would refuse in this request, each naming the fix.

    Args:
        model: The model as the user named it (``--model``).
        temperature: ``--temperature``; None when not given.
        reasoning_effort: ``--reasoning-effort``; None when not given (the model's default applies).
        service_tier: ``--service-tier``; None when not given (``auto``).

    Returns:
        The problems, empty when the combination is fine or the model is unknown (nothing can be said about it).
    """
    family = family_for(model)
    if family is None:
        return []
    found = [
        _effort_problem(model, family, reasoning_effort),
        _temperature_problem(model, family, temperature, reasoning_effort),
        _tier_problem(model, family, service_tier),
    ]
    return [problem for problem in found if problem is not None]


def _effort_problem(model: str, family: ModelFamily, effort: str | None) -> str | None:
    if effort is None:
        return None
    if not family.reasoning:
        return f"{model} is not a reasoning model: drop --reasoning-effort"
    if not family.efforts:
        return f"{model} does not accept --reasoning-effort (it reasons at a fixed effort): drop --reasoning-effort"
    if effort not in family.efforts:
        return f"{model} does not accept --reasoning-effort {effort} (it takes {', '.join(family.efforts)})"
    return None


def _temperature_problem(model: str, family: ModelFamily, temperature: float | None, effort: str | None) -> str | None:
    if temperature is None or family.temperature == "any":
        return None
    if family.temperature == "never":
        if not family.reasoning:
            return f"{model} does not accept temperature; drop --temperature"
        return (
            f"{model} does not accept temperature; drop --temperature, "
            "or use --reasoning-effort none with gpt-5.1 or later"
        )
    used = effort if effort is not None else family.default_effort
    if used is None or used == "none":
        return None
    if effort is None:
        return (
            f"{model} accepts temperature only with reasoning effort none (its default is {used}): "
            "add --reasoning-effort none, or drop --temperature"
        )
    return (
        f"{model} accepts temperature only with reasoning effort none (not {effort}): "
        "use --reasoning-effort none, or drop --temperature"
    )


def _tier_problem(model: str, family: ModelFamily, tier: str | None) -> str | None:
    wanted = "priority" if tier == "fast" else tier
    if wanted not in ("flex", "priority") or wanted in family.tiers:
        return None  # auto/default always; scale and ultrafast depend on the account, not on the model
    offering = [name for name in _TIER_EXAMPLES if wanted in FAMILIES[name].tiers][:3]
    return (
        f"{wanted} processing is not offered for {model}; use --service-tier auto or default, "
        f"or a model that offers it ({', '.join(offering)}, …)"
    )
