"""Response bodies in the exact shapes of the Responses and Chat Completions APIs.

Field sets follow the official OpenAPI spec (``Response`` and
``CreateChatCompletionResponse``; the tests validate against it), so the
``openai`` SDK and any strict client parse them as they would the real thing.

Both report the tier that served the request in ``service_tier`` (``default``, ``flex`` or ``priority``). A
reasoning model's Responses output starts with a ``reasoning`` item (``ReasoningItem``: id and an empty
``summary``), except at effort ``none`` (ours: no reasoning, no item); when reasoning used up the whole
``max_output_tokens``, that item is all the output there is (``status: incomplete``, no message), and Chat
Completions answers ``finish_reason: length`` with empty ``content``. ``reasoning.effort`` echoes the effort
the model reasoned at (the family's default when none was asked), null for a non-reasoning model.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from simulator.completion import Completion
from simulator.request import ExtractionRequest
from simulator.tokens import Usage

SYSTEM_FINGERPRINT = "fp_simulator"


def new_id(prefix: str, nbytes: int = 24) -> str:
    """A random object id in OpenAI's style (``resp_…``, ``msg_…``, ``chatcmpl-…``)."""
    return prefix + secrets.token_hex(nbytes)


def render_response(request: ExtractionRequest, completion: Completion) -> dict[str, Any]:
    """A Responses API ``response`` object."""
    now = int(time.time())
    status = "incomplete" if completion.truncated else "completed"
    content: list[dict[str, Any]]
    if completion.refusal is not None:
        content = [{"type": "refusal", "refusal": completion.refusal}]
    else:
        content = [{"type": "output_text", "text": completion.text or "", "annotations": [], "logprobs": []}]
    output: list[dict[str, Any]] = []
    if completion.reasoning and request.reasoning_effort != "none":
        output.append({"type": "reasoning", "id": new_id("rs_"), "summary": []})
    if not completion.reasoning_only:
        output.append(
            {"type": "message", "id": new_id("msg_"), "status": status, "role": "assistant", "content": content}
        )
    body = request.body
    text_format: dict[str, Any] = {
        "type": "json_schema",
        "name": request.schema_name,
        "schema": request.schema,
        "strict": request.strict,
    }
    if request.schema_description is not None:
        text_format["description"] = request.schema_description
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": now,
        "status": status,
        "background": False,
        "completed_at": None if completion.truncated else now,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if completion.truncated else None,
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "max_tool_calls": None,
        "model": request.model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": request.prompt_cache_key,
        "reasoning": {"effort": request.reasoning_effort, "summary": None},
        "safety_identifier": None,
        "service_tier": request.service_tier,
        "store": body.get("store") is not False,
        "temperature": _number(body.get("temperature"), 1.0),
        "text": {"format": text_format, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": _number(body.get("top_p"), 1.0),
        "truncation": "disabled",
        "usage": _responses_usage(completion.usage),
        "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
    }


def render_chat_completion(request: ExtractionRequest, completion: Completion) -> dict[str, Any]:
    """A Chat Completions ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text if completion.refusal is None else None,
        "refusal": completion.refusal,
        "annotations": [],
    }
    return {
        "id": new_id("chatcmpl-", 15),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "length" if completion.truncated else "stop",
            }
        ],
        "usage": _chat_usage(completion.usage),
        "service_tier": request.service_tier,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def _number(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _responses_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


def _chat_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": usage.reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
