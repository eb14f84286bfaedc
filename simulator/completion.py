"""The simulated model: from a parsed request (and maybe an output fault) to output text and usage.

Endpoint-neutral on purpose: both APIs get the same answer for the same
request, and :mod:`simulator.render` only changes the envelope.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from simulator.corrupt import violate
from simulator.faults import FaultKind
from simulator.generate import document_words, generate_instance
from simulator.model_families import reasoning_tokens
from simulator.perturb import perturb
from simulator.prompt_cache import PromptCache
from simulator.ratelimit import ChargeOutput
from simulator.request import ExtractionRequest, Message
from simulator.tokens import Usage, count_tokens, cut_mid_json, cut_to_tokens, message_tokens

REFUSAL_TEXT = "I'm sorry, I can't help with that."


@dataclass(frozen=True, slots=True)
class Completion:
    """What the model produced: JSON text (maybe cut short) or a refusal, and the usage to bill.

    ``reasoning``: a reasoning model answered; ``reasoning_only``: its reasoning used up the whole output budget,
    so there is no visible output at all (empty text, no refusal), as the real API answers then.
    """

    text: str | None
    refusal: str | None
    truncated: bool
    reasoning: bool
    usage: Usage
    reasoning_only: bool = False


def output_seed(request: ExtractionRequest, seed: int) -> int:
    """The generation seed: sha256 of (simulator seed, model, schema, full input text, attachments if any)."""
    material = "\x00".join((str(seed), request.model, request.schema_json(), request.input_text()))
    if attachments := request.attachment_key():
        material += f"\x00{attachments}"
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:8], "big")


def complete(
    request: ExtractionRequest,
    *,
    seed: int,
    cache: PromptCache,
    fault: FaultKind | None,
    perturbed: tuple[str, ...] = (),
) -> Completion:
    """Answer ``request``; ``fault`` may be an output fault (refusal, truncation, invalid output).

    A reasoning model spends :func:`simulator.model_families.reasoning_tokens` at the request's effort, inside
    the output tokens. Over the max output tokens, reasoning is spent first and the visible answer is cut where
    the budget ends; if reasoning alone reaches it, nothing visible is left.
    """
    input_tokens, cached_tokens = input_usage(request, cache)
    reasoning_model = request.reasoning_effort is not None
    text: str | None = None
    refusal: str | None = None
    truncated = fault is FaultKind.TRUNCATION
    if fault is FaultKind.REFUSAL:
        refusal = REFUSAL_TEXT
    else:
        instance = generate_instance(
            request.schema, output_seed(request, seed), document_words(request.document_text())
        )
        if perturbed:  # fields this endpoint answers differently (simulator.perturb)
            instance = perturb(instance, request.schema, perturbed)
        if fault is FaultKind.INVALID_OUTPUT:
            instance = violate(request.schema, instance)
        text = orjson.dumps(instance).decode()
        if truncated:
            text = cut_mid_json(text)
    visible = count_tokens(text if text is not None else refusal or "")
    reasoning = reasoning_tokens(request.reasoning_effort, visible)
    output_tokens = visible + reasoning
    limit = request.max_output_tokens
    reasoning_only = False
    if limit is not None and output_tokens > limit:
        # Out of budget: reasoning is spent first, the visible answer is cut where the budget ends.
        reasoning = min(reasoning, limit)
        if reasoning >= limit:  # nothing visible was produced: no text, no refusal
            text, refusal, reasoning_only = "", None, True
        elif text is not None:
            text = cut_to_tokens(text, limit - reasoning)
        else:
            refusal = cut_to_tokens(refusal or "", limit - reasoning)
        truncated = True
        output_tokens = limit
    usage = Usage(input_tokens, cached_tokens, output_tokens, reasoning)
    return Completion(
        text=text,
        refusal=refusal,
        truncated=truncated,
        reasoning=reasoning_model,
        usage=usage,
        reasoning_only=reasoning_only,
    )


def prompt_tokens(request: ExtractionRequest) -> int:
    """Input tokens of a request (schema + messages with overhead + attachments), not touching the prompt cache.

    Attachments count once resolved (:func:`simulator.documents.resolve_attachments`): images and PDF page
    images by :mod:`simulator.vision`, PDF and file text like any text.
    """
    return count_tokens(request.schema_tokens_text()) + sum(_message_input_tokens(m) for m in request.prompt_messages())


def _message_input_tokens(message: Message) -> int:
    return message_tokens(message.text) + message.attachment_tokens()


def rate_limit_charge(
    request: ExtractionRequest, default_max_output_tokens: int, charge_output: ChargeOutput = "max"
) -> int:
    """What a request costs against the tokens-per-minute limit on admission, as OpenAI counts it up front.

    Its input tokens plus the most it may generate: ``max_output_tokens`` /
    ``max_completion_tokens`` / ``max_tokens`` when given, else ``default_max_output_tokens``
    (``charge_output="max"``) or nothing (``"actual"``: the output is charged once produced,
    see :func:`charges_output_later`).
    """
    limit = request.max_output_tokens
    if limit is not None:
        return prompt_tokens(request) + limit
    return prompt_tokens(request) + (default_max_output_tokens if charge_output == "max" else 0)


def charges_output_later(request: ExtractionRequest, charge_output: ChargeOutput) -> bool:
    """Whether a billed answer to ``request`` is charged its actual output tokens after the fact."""
    return charge_output == "actual" and request.max_output_tokens is None


def input_usage(request: ExtractionRequest, cache: PromptCache) -> tuple[int, int]:
    """``(input_tokens, cached_tokens)``: schema + messages with overhead; the cache sees the shared prefix.

    The cacheable prefix is the schema followed by every message but the last,
    hashed cumulatively so the longest previously seen prefix can be found; a
    message's images and files are part of it ("images … must be identical").
    """
    schema_json = request.schema_json()
    messages = request.prompt_messages()
    per_message = [_message_input_tokens(message) for message in messages]
    schema_tokens = count_tokens(request.schema_tokens_text())
    prompt_tokens = schema_tokens + sum(per_message)

    running = hashlib.sha256(f"{request.model}\x00{schema_json}".encode())
    cumulative = schema_tokens
    prefixes = [(running.hexdigest(), cumulative)]
    for message, tokens in zip(messages[:-1], per_message[:-1], strict=True):
        running.update(f"\x00{message.role}\x00{message.text}".encode())
        if message.attachments:
            running.update(f"\x00{message.attachment_key()}".encode())
        cumulative += tokens
        prefixes.append((running.hexdigest(), cumulative))

    head = messages[0].text if messages else ""
    routing = request.prompt_cache_key or hashlib.sha256(f"{head}\x00{schema_json}".encode()).hexdigest()
    cached = cache.lookup_and_store(f"{request.model}\x00{routing}", prefixes, prompt_tokens)
    return prompt_tokens, cached
