"""The Responses API (``POST /v1/responses``) with structured outputs in ``text.format``."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.jobs import ApiKind
from schemas.results import Usage
from worker.adapters.base import ModelReply, as_dict, as_int
from worker.adapters.errors import ApiCallError
from worker.adapters.http import HttpAdapter, HttpSender
from worker.prompt import Message, ModelRequest, Part


class ResponsesAdapter(HttpAdapter):
    api: ApiKind = "responses"
    path = "/responses"

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            # "type" is optional in OpenAI's own parser, but the spec names it and strict servers (llama.cpp's
            # llama-server) refuse an item without it.
            "input": [
                {"type": "message", "role": m.role, "content": _content(m, request.image_detail)}
                for m in request.messages
            ],
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
        if request.reasoning_effort is not None:
            body["reasoning"] = {"effort": request.reasoning_effort}
        if request.service_tier is not None:
            body["service_tier"] = request.service_tier
        return body

    def read_reply(self, data: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
        return parse_response(data, latency_ms=latency_ms, headers=headers)


COUNTED_FIELDS = ("model", "input", "text", "reasoning", "instructions")
"""What the input-token counter (``TokenCountsBody``) takes of a request's body."""


async def count_input_tokens(sender: HttpSender, request: ModelRequest) -> int:
    """The provider's count of the request's input tokens (``POST /v1/responses/input_tokens``), with the body the
    Responses API would get (for a Chat Completions batch too: the same messages, schema and parts)."""
    body = ResponsesAdapter(sender).build_body(request)
    counted = {name: body[name] for name in COUNTED_FIELDS if name in body}
    data, _headers, _latency = await sender.post("/responses/input_tokens", orjson.dumps(counted))
    tokens = data.get("input_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise ApiCallError(f"the input-token counter answered without a count ({str(data)[:200]})")
    return tokens


def _content(message: Message, detail: str) -> str | list[dict[str, Any]]:
    """A message's content: its text, or (with attachments) an ``input_text`` part followed by the document's parts."""
    if not message.parts:
        return message.text
    items: list[dict[str, Any]] = [{"type": "input_text", "text": message.text}] if message.text else []
    return items + [_part(part, detail) for part in message.parts]


def _part(part: Part, detail: str) -> dict[str, Any]:
    """``input_image`` (by ``data:`` URL, URL or ``file_id``, with ``detail``) or ``input_file`` (``file_data`` with
    its ``filename``, ``file_id`` or ``file_url``)."""
    a = part.attachment
    if a.kind == "image":
        if a.source == "file_id":
            return {"type": "input_image", "file_id": a.ref, "detail": detail}
        url = part.data_url() if a.source == "blob" else a.ref
        return {"type": "input_image", "image_url": url, "detail": detail}
    if a.source == "file_id":
        return {"type": "input_file", "file_id": a.ref}
    if a.source == "url":
        return {"type": "input_file", "file_url": a.ref}
    return {"type": "input_file", "filename": a.filename, "file_data": part.data_url()}


def parse_response(response: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
    """Read a ``Response`` object's JSON: the answer text or refusal, why it stopped, the usage, the id."""
    text_parts: list[str] = []
    refusal: str | None = None
    for item in response.get("output") or ():
        if not isinstance(item, dict) or item.get("type") != "message":
            continue  # reasoning items and the like carry no answer
        for content in item.get("content") or ():
            kind = content.get("type") if isinstance(content, dict) else None
            if kind == "output_text":
                text_parts.append(str(content.get("text", "")))
            elif kind == "refusal":
                refusal = str(content.get("refusal", ""))
    status = response.get("status")
    reason = as_dict(response.get("incomplete_details")).get("reason")
    if status == "incomplete" and reason == "content_filter" and refusal is None:
        refusal = "the response was stopped by the content filter"
    u = as_dict(response.get("usage"))
    usage = Usage(
        input_tokens=as_int(u.get("input_tokens")),
        cached_input_tokens=as_int(as_dict(u.get("input_tokens_details")).get("cached_tokens")),
        output_tokens=as_int(u.get("output_tokens")),
        reasoning_tokens=as_int(as_dict(u.get("output_tokens_details")).get("reasoning_tokens")),
        total_tokens=as_int(u.get("total_tokens")),
    )
    response_id = response.get("id")
    served = response.get("service_tier")
    return ModelReply(
        text="".join(text_parts) if text_parts else None,
        refusal=refusal,
        truncated=status == "incomplete" and reason == "max_output_tokens",
        usage=usage,
        response_id=response_id if isinstance(response_id, str) else None,
        latency_ms=latency_ms,
        headers=headers,
        service_tier=served if isinstance(served, str) else None,
        reasoning_only=not text_parts and refusal is None and usage.reasoning_tokens > 0,
    )
