"""What each model family accepts and does: reasoning, effort levels, sampling parameters, service tiers.

One table (:data:`MODEL_FAMILIES`) says, per family, whether the model reasons, which ``reasoning.effort`` /
``reasoning_effort`` values it takes and which it uses when none is sent, whether ``temperature``/``top_p`` are
accepted at effort ``none``, and whether it is offered on the ``flex`` and ``priority`` tiers.
:func:`request_parameters` checks a generation request's body against it (400s like the real API's) and says
which tier serves the request and at which effort the model reasons; :func:`reasoning_tokens` is how many
reasoning tokens that costs.

What the table rests on (read through the search tool on 2026-12-01; where nothing was found the choice is ours):

* Reasoning models and efforts: the spec's ``ReasoningEffort`` enum (``none`` … ``xhigh``, ``max``) and its
  older description as quoted by the Azure SDK docs: "gpt-5.1 defaults to none … The supported reasoning values
  for gpt-5.1 are none, low, medium, and high"; "All models before gpt-5.1 default to medium reasoning effort,
  and do not support none"; "The gpt-5-pro model defaults to (and only supports) high"; "xhigh is supported for
  all models after gpt-5.1-codex-max". Per-model matrices probed against the live API in public issues:
  o1/o3/o3-mini/o4-mini ``low, medium, high`` (enricoros/big-AGI#1159, anomalyco/models.dev#2473); gpt-5,
  gpt-5-mini, gpt-5-nano ``minimal, low, medium, high``; gpt-5.2 … 5.5 ``none, low, medium, high, xhigh``
  (anomalyco/models.dev#2472, #2351); gpt-5.6 adds ``max`` (anomalyco/opencode#36135, big-AGI#1159).
  ``o1-mini`` takes no effort at all (dzhng/deep-research#89); the codex models ``low, medium, high``
  (models.dev#2472), at a default of ``medium`` (ours). The default of 5.2 and later is taken to be
  ``none`` like 5.1's (langchain-ai/langchain#35424 says so for 5.2; one bot summary claims ``medium`` for 5.5,
  unverified). ``gpt-5-chat-latest`` is not a reasoning model (litellm#13781); the later ``-chat-latest``
  models take only ``medium`` (models.dev#2351).
* Sampling: "Unsupported parameter: 'temperature' is not supported with this model." (``param: temperature``,
  ``code: unsupported_parameter``) for o1, o3-mini, gpt-5, gpt-5-nano and gpt-5.2 (soberlemur/autopo#57,
  appatalks/eva-agent#83, modxcms/modAI#84, OpenHands/software-agent-sdk#1837). gpt-5.1 and later accept
  ``temperature``/``top_p`` when the effort is ``none`` (vercel/ai#10932 quoting OpenAI's docs, "GPT-5.4
  parameter compatibility" in tmc/langchaingo#1497), and the default ``none`` counts (langchain#35424). Some
  reports show ``"Unsupported value: 'temperature' does not support 0.9 with this model. Only the default (1)
  value is supported."`` instead; the simulator always gives the ``unsupported_parameter`` answer, for any value,
  1 included. The ``top_p`` message is ours, by analogy.
* ``max_tokens`` on Chat Completions with a reasoning model: "Unsupported parameter: 'max_tokens' is not
  supported with this model. Use 'max_completion_tokens' instead." (``param: max_tokens``,
  ``code: unsupported_parameter``; griptape-ai/ComfyUI-Griptape#312, microsoft/vscode-copilot-release#8065).
* Effort on a non-reasoning model: "Unsupported parameter: 'reasoning.effort' is not supported with this model."
  (``param: reasoning.effort``, ``code: unsupported_parameter``; RageAgainstThePixel/OpenAI-DotNet#500,
  BoundaryML/baml#2708); the Chat twist (``'reasoning_effort'``) is ours by analogy. An effort the model does not
  take: "Unsupported value: 'minimal' is not supported with the 'gpt-5.1' model. Supported values are: 'none',
  'low', 'medium', and 'high'." (``code: unsupported_value``; anomalyco/opencode#4451). A value outside the enum
  gets the API's generic "Invalid value: … Supported values are: …" (``code: invalid_value``), as elsewhere.
* Tiers: the spec's ``ServiceTier`` (Chat: ``auto, default, flex, scale, priority, fast``) and
  ``ServiceTierResponses`` (adds ``ultrafast``, access-controlled, ``gpt-5.6-sol`` only). ``auto`` and
  ``default`` are served as ``default``; ``fast`` is served and shown as ``priority`` ("The response will show
  service_tier=priority regardless of if you specify service_tier=fast or priority"); ``scale`` (needs purchased
  Scale Tier units) and ``ultrafast`` are ours: served as ``default`` and refused, respectively. Flex was first
  "only available for o3 and o4-mini" (the flex guide as copied in 2025), then the gpt-5 family (the guide's
  examples use gpt-5.4, 5.5, 5.6; openai/codex#37813 shows flex working on gpt-5.6-sol); we give it to every
  gpt-5.x family but gpt-5-pro and the chat models. Priority follows openai.com/api-priority-processing: gpt-5.5,
  5.4, 5.4-mini, 5.2, 5.1, 5, 5-mini, the codex models, gpt-4.1 (mini, nano), gpt-4o, gpt-4o-mini, o3, o4-mini;
  gpt-5.6 per the spec's "Fast mode" text. A tier the model lacks is a 400: Azure documents "an unsupported model
  returns HTTP 400 invalid_request_error" for flex; the message "Unsupported service_tier: flex" is what
  OpenAI's Codex backend answers (openai/codex#15099); ``param``/``code`` are ours.

Model names resolve like the other per-family tables: the exact name, else the longest ``<family>-`` prefix
(snapshots such as ``gpt-5-mini-2025-08-07``); a ``gpt-5.N`` not listed takes the rules of the closest listed
``gpt-5.M`` below it ("later 5.x"), an ``o<digit>`` model the o-series rules; any other model is a
non-reasoning model without flex or priority.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from simulator.errors import ApiError, invalid_request

Effort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]
ServedTier = Literal["default", "flex", "priority"]
EFFORTS: tuple[Effort, ...] = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
"""The spec's ``ReasoningEffort`` enum, in increasing order."""
CHAT_SERVICE_TIERS = ("auto", "default", "flex", "scale", "priority", "fast")
"""The spec's ``ServiceTier`` enum (Chat Completions)."""
RESPONSES_SERVICE_TIERS = (*CHAT_SERVICE_TIERS, "ultrafast")
"""The spec's ``ServiceTierResponses`` enum (Responses)."""

REASONING_BASE_TOKENS = 32
REASONING_MULTIPLIER: dict[Effort, int] = {
    "none": 0,
    "minimal": 0,
    "low": 1,
    "medium": 2,
    "high": 4,
    "xhigh": 8,
    "max": 16,
}
"""Reasoning tokens per effort, in units of ``REASONING_BASE_TOKENS + visible output tokens`` (ours)."""

_O_SERIES: tuple[Effort, ...] = ("low", "medium", "high")
_GPT_5: tuple[Effort, ...] = ("minimal", "low", "medium", "high")
_GPT_5_1: tuple[Effort, ...] = ("none", "low", "medium", "high")
_GPT_5_2: tuple[Effort, ...] = ("none", "low", "medium", "high", "xhigh")
_GPT_5_6: tuple[Effort, ...] = (*_GPT_5_2, "max")


@dataclass(frozen=True, slots=True)
class ModelFamily:
    """How one family of models behaves; a non-reasoning family has no efforts and no default effort."""

    name: str
    reasoning: bool = False
    efforts: tuple[Effort, ...] = ()
    """The effort values the model takes (empty: it takes no effort parameter at all)."""
    default_effort: Effort | None = None
    """The effort it reasons at when the request names none (None for non-reasoning models)."""
    sampling_at_none: bool = False
    """Whether ``temperature``/``top_p`` are accepted when the (requested or default) effort is ``none``."""
    flex: bool = False
    priority: bool = False


def _reasoner(name: str, efforts: tuple[Effort, ...], default: Effort, **tiers: bool) -> ModelFamily:
    return ModelFamily(name, True, efforts, default, sampling_at_none="none" in efforts, **tiers)


MODEL_FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (
        ModelFamily("gpt-4o", priority=True),
        ModelFamily("gpt-4o-mini", priority=True),
        ModelFamily("gpt-4.1", priority=True),
        ModelFamily("gpt-4.1-mini", priority=True),
        ModelFamily("gpt-4.1-nano", priority=True),
        ModelFamily("gpt-5-chat-latest"),
        ModelFamily("o1", True, _O_SERIES, "medium"),
        ModelFamily("o1-mini", True, (), "medium"),
        ModelFamily("o1-pro", True, _O_SERIES, "medium"),
        ModelFamily("o3", True, _O_SERIES, "medium", flex=True, priority=True),
        ModelFamily("o3-mini", True, _O_SERIES, "medium"),
        ModelFamily("o3-pro", True, _O_SERIES, "medium"),
        ModelFamily("o4-mini", True, _O_SERIES, "medium", flex=True, priority=True),
        _reasoner("gpt-5", _GPT_5, "medium", flex=True, priority=True),
        _reasoner("gpt-5-mini", _GPT_5, "medium", flex=True, priority=True),
        _reasoner("gpt-5-nano", _GPT_5, "medium", flex=True),
        _reasoner("gpt-5-pro", ("high",), "high"),
        _reasoner("gpt-5-codex", ("low", "medium", "high"), "medium", priority=True),
        _reasoner("gpt-5.1", _GPT_5_1, "none", flex=True, priority=True),
        _reasoner("gpt-5.1-codex", ("low", "medium", "high"), "medium", priority=True),
        _reasoner("gpt-5.1-chat-latest", ("medium",), "medium"),
        _reasoner("gpt-5.2", _GPT_5_2, "none", flex=True, priority=True),
        _reasoner("gpt-5.2-chat-latest", ("medium",), "medium"),
        _reasoner("gpt-5.4", _GPT_5_2, "none", flex=True, priority=True),
        _reasoner("gpt-5.4-mini", _GPT_5_2, "none", flex=True, priority=True),
        _reasoner("gpt-5.4-nano", _GPT_5_2, "none", flex=True),
        _reasoner("gpt-5.5", _GPT_5_2, "none", flex=True, priority=True),
        _reasoner("gpt-5.6", _GPT_5_6, "none", flex=True, priority=True),
    )
}
"""The families the simulator knows (see the module docstring for where each line comes from)."""

O_SERIES = ModelFamily("o-series", True, _O_SERIES, "medium")
"""The rules of an ``o<digit>…`` model in no listed family."""
NON_REASONING = ModelFamily("other")
"""The rules of a model in no family: no reasoning, no flex, no priority."""
_GPT_5_MINOR = re.compile(r"^gpt-5\.(\d+)")
_O_MODEL = re.compile(r"^o\d")
_GPT_5_POINT_RELEASES = sorted(
    (
        (int(name.removeprefix("gpt-5.")), family)
        for name, family in MODEL_FAMILIES.items()
        if re.fullmatch(r"gpt-5\.\d+", name)
    ),
    key=lambda entry: entry[0],
)
"""``(minor version, family)`` of the listed gpt-5.x base families, oldest first."""


def model_family(model: str) -> ModelFamily:
    """The rules ``model`` follows: its family, the closest earlier gpt-5.x, the o-series, or no reasoning."""
    family = MODEL_FAMILIES.get(model)
    if family is not None:
        return family
    matches = [name for name in MODEL_FAMILIES if model.startswith(name + "-")]
    if matches:
        return MODEL_FAMILIES[max(matches, key=len)]
    minor = _GPT_5_MINOR.match(model)
    if minor is not None:
        earlier = [family for version, family in _GPT_5_POINT_RELEASES if version <= int(minor.group(1))]
        if earlier:
            return earlier[-1]
    if _O_MODEL.match(model):
        return O_SERIES
    return NON_REASONING


def reasoning_tokens(effort: Effort | None, visible_tokens: int) -> int:
    """Reasoning tokens spent at ``effort`` on an answer of ``visible_tokens``: 0 without reasoning.

    ``REASONING_MULTIPLIER[effort] * (REASONING_BASE_TOKENS + visible_tokens)``: none and minimal 0, low 1x,
    medium 2x (``64 + 2 * visible``), high 4x, xhigh 8x, max 16x. Deterministic, and it grows with the answer
    the way thinking about a bigger extraction would. The multipliers are ours; OpenAI publishes none.
    """
    return 0 if effort is None else REASONING_MULTIPLIER[effort] * (REASONING_BASE_TOKENS + visible_tokens)


@dataclass(frozen=True, slots=True)
class RequestParameters:
    """What a generation request's model parameters come to: the tier that serves it and the effort it gets."""

    requested_tier: str
    """The ``service_tier`` the body asked for (``auto`` when absent or null)."""
    service_tier: ServedTier
    """The tier that serves it and that the response reports (and that it is billed at)."""
    reasoning_effort: Effort | None
    """The effort the model reasons at (the requested one, else the family's default); None: no reasoning."""


def request_parameters(chat: bool, model: str, body: Mapping[str, Any]) -> RequestParameters:
    """Check ``service_tier``, ``max_tokens``, the effort and ``temperature``/``top_p`` against the model's rules.

    Raises the real API's 400s (see the module docstring). ``chat`` picks the Chat Completions names
    (``reasoning_effort``, the ``ServiceTier`` enum); otherwise the Responses ones (``reasoning.effort``).
    """
    family = model_family(model)
    requested = _requested_tier(chat, body)
    if chat and family.reasoning and body.get("max_tokens") is not None:
        raise invalid_request(
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    effort = _effort(chat, model, family, body)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None and family.reasoning and not (family.sampling_at_none and effort == "none"):
            raise invalid_request(
                f"Unsupported parameter: '{name}' is not supported with this model.",
                param=name,
                code="unsupported_parameter",
            )
    return RequestParameters(requested, _served_tier(requested, family), effort)


def _requested_tier(chat: bool, body: Mapping[str, Any]) -> str:
    value = body.get("service_tier")
    if value is None:
        return "auto"
    allowed = CHAT_SERVICE_TIERS if chat else RESPONSES_SERVICE_TIERS
    if not isinstance(value, str) or value not in allowed:
        raise invalid_request(
            f"Invalid value: {value!r}. Supported values are: {_listed(allowed)}.",
            param="service_tier",
            code="invalid_value",
        )
    return value


def _served_tier(requested: str, family: ModelFamily) -> ServedTier:
    if requested in ("auto", "default", "scale"):
        return "default"
    if requested == "flex" and family.flex:
        return "flex"
    if requested in ("priority", "fast") and family.priority:
        return "priority"
    raise unsupported_tier(requested)


def _effort(chat: bool, model: str, family: ModelFamily, body: Mapping[str, Any]) -> Effort | None:
    """The effort asked for (checked), else the family's default; None for a non-reasoning model."""
    param = "reasoning_effort" if chat else "reasoning.effort"
    if chat:
        value = body.get("reasoning_effort")
    else:
        reasoning = body.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, dict):
            raise invalid_request(
                "Invalid type for 'reasoning': expected an object.", param="reasoning", code="invalid_type"
            )
        value = reasoning.get("effort") if isinstance(reasoning, dict) else None
    if value is None:
        return family.default_effort
    if not isinstance(value, str) or value not in EFFORTS:
        raise invalid_request(
            f"Invalid value: {value!r}. Supported values are: {_listed(EFFORTS)}.", param=param, code="invalid_value"
        )
    if not family.efforts:
        raise invalid_request(
            f"Unsupported parameter: '{param}' is not supported with this model.",
            param=param,
            code="unsupported_parameter",
        )
    if value not in family.efforts:
        raise invalid_request(
            f"Unsupported value: '{value}' is not supported with the '{model}' model. "
            f"Supported values are: {_listed(family.efforts)}.",
            param=param,
            code="unsupported_value",
        )
    return value


def _listed(values: tuple[str, ...]) -> str:
    """``'a', 'b', and 'c'`` (the API's way of listing allowed values); ``'a' and 'b'``; ``'a'``."""
    quoted = [f"'{value}'" for value in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def unsupported_tier(tier: str) -> ApiError:
    """The 400 for a tier the model does not offer (no fallback to another tier, as Azure documents for flex)."""
    return invalid_request(f"Unsupported service_tier: {tier}", param="service_tier", code="unsupported_value")
