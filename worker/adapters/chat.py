"""The Chat Completions API (``POST /v1/chat/completions``) with ``response_format: json_schema``."""

from __future__ import annotations

from typing import Any

from openai._legacy_response import LegacyAPIResponse
from openai.types.chat import ChatCompletion

from schemas.jobs import ApiKind
from schemas.results import Usage
from worker.adapters.base import ModelReply, SdkAdapter
from worker.prompt import ModelRequest


class ChatAdapter(SdkAdapter[ChatCompletion]):
    api: ApiKind = "chat"

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.text} for m in request.messages],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": request.schema_name, "schema": request.json_schema, "strict": True},
            },
            "prompt_cache_key": request.prompt_cache_key,
        }
        if request.max_output_tokens is not None:
            body["max_completion_tokens"] = request.max_output_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def _send(self, body: dict[str, Any]) -> LegacyAPIResponse[ChatCompletion]:
        # ``**body`` hides which overload applies (streaming or not); without ``stream`` it is never a stream.
        raw: LegacyAPIResponse[ChatCompletion] = await self._client.chat.completions.with_raw_response.create(**body)
        return raw

    def _reply(self, parsed: ChatCompletion, *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
        return parse_completion(parsed, latency_ms=latency_ms, headers=headers)


def parse_completion(completion: ChatCompletion, *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
    choice = completion.choices[0] if completion.choices else None
    text = choice.message.content if choice else None
    refusal = choice.message.refusal if choice else None
    if choice is not None and choice.finish_reason == "content_filter" and refusal is None:
        refusal = "the response was stopped by the content filter"
    usage = Usage()
    if completion.usage is not None:
        u = completion.usage
        usage = Usage(
            input_tokens=u.prompt_tokens,
            cached_input_tokens=(u.prompt_tokens_details.cached_tokens or 0) if u.prompt_tokens_details else 0,
            output_tokens=u.completion_tokens,
            reasoning_tokens=(u.completion_tokens_details.reasoning_tokens or 0) if u.completion_tokens_details else 0,
            total_tokens=u.total_tokens,
        )
    return ModelReply(
        text=text,
        refusal=refusal,
        truncated=choice is not None and choice.finish_reason == "length",
        usage=usage,
        response_id=completion.id,
        latency_ms=latency_ms,
        headers=headers,
    )
