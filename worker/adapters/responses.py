"""The Responses API (``POST /v1/responses``) with structured outputs in ``text.format``."""

from __future__ import annotations

from typing import Any

from openai._legacy_response import LegacyAPIResponse
from openai.types.responses import Response

from schemas.jobs import ApiKind
from schemas.results import Usage
from worker.adapters.base import ModelReply, SdkAdapter
from worker.prompt import ModelRequest


class ResponsesAdapter(SdkAdapter[Response]):
    api: ApiKind = "responses"

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            # "type" is optional in OpenAI's own parser, but the spec names it and strict servers (llama.cpp's
            # llama-server) refuse an item without it.
            "input": [{"type": "message", "role": m.role, "content": m.text} for m in request.messages],
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": request.schema_name,
                    "schema": request.json_schema,
                    "strict": True,
                }
            },
            "store": request.store,
            "prompt_cache_key": request.prompt_cache_key,
        }
        if request.max_output_tokens is not None:
            body["max_output_tokens"] = request.max_output_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def _send(self, body: dict[str, Any]) -> LegacyAPIResponse[Response]:
        # ``**body`` hides which overload applies (streaming or not); without ``stream`` it is never a stream.
        raw: LegacyAPIResponse[Response] = await self._client.responses.with_raw_response.create(**body)
        return raw

    def _reply(self, parsed: Response, *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
        return parse_response(parsed, latency_ms=latency_ms, headers=headers)


def parse_response(response: Response, *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
    text_parts: list[str] = []
    refusal: str | None = None
    for item in response.output:
        if item.type != "message":
            continue  # reasoning items and the like carry no answer
        for content in item.content:
            if content.type == "output_text":
                text_parts.append(content.text)
            elif content.type == "refusal":
                refusal = content.refusal
    reason = response.incomplete_details.reason if response.incomplete_details else None
    if response.status == "incomplete" and reason == "content_filter" and refusal is None:
        refusal = "the response was stopped by the content filter"
    usage = Usage()
    if response.usage is not None:
        u = response.usage
        usage = Usage(
            input_tokens=u.input_tokens,
            cached_input_tokens=u.input_tokens_details.cached_tokens if u.input_tokens_details else 0,
            output_tokens=u.output_tokens,
            reasoning_tokens=u.output_tokens_details.reasoning_tokens if u.output_tokens_details else 0,
            total_tokens=u.total_tokens,
        )
    return ModelReply(
        text="".join(text_parts) if text_parts else None,
        refusal=refusal,
        truncated=response.status == "incomplete" and reason == "max_output_tokens",
        usage=usage,
        response_id=response.id,
        latency_ms=latency_ms,
        headers=headers,
    )
