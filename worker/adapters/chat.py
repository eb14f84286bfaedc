"""The Chat Completions API (``POST /v1/chat/completions``) with ``response_format: json_schema``."""

from __future__ import annotations

from typing import Any

from schemas.jobs import ApiKind
from schemas.results import Usage
from worker.adapters.base import ModelReply, as_dict, as_int
from worker.adapters.http import HttpAdapter
from worker.prompt import Message, ModelRequest, Part


class ChatAdapter(HttpAdapter):
    api: ApiKind = "chat"
    path = "/chat/completions"

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": _content(m, request.image_detail)} for m in request.messages],
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
        if request.reasoning_effort is not None:
            body["reasoning_effort"] = request.reasoning_effort
        if request.service_tier is not None:
            body["service_tier"] = request.service_tier
        return body

    def read_reply(self, data: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
        return parse_completion(data, latency_ms=latency_ms, headers=headers)


def _content(message: Message, detail: str) -> str | list[dict[str, Any]]:
    """A message's content: its text, or (with attachments) a ``text`` part followed by the document's parts."""
    if not message.parts:
        return message.text
    items: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
    return items + [_part(part, detail) for part in message.parts]


def _part(part: Part, detail: str) -> dict[str, Any]:
    """``image_url`` (a ``data:`` URL or URL, with ``detail``) or ``file`` (a PDF's ``file_data`` with its
    ``filename``, or its ``file_id``). Chat Completions has no image by file id and no PDF by URL: submit refuses
    those lines (``producer.input.documents``), so meeting one here is a bug."""
    a = part.attachment
    if a.kind == "image":
        if a.source == "file_id":
            raise ValueError(f"Chat Completions takes no image by file id ({a.ref})")
        url = part.data_url() if a.source == "blob" else a.ref
        return {"type": "image_url", "image_url": {"url": url, "detail": detail}}
    if a.source == "file_id":
        return {"type": "file", "file": {"file_id": a.ref}}
    if a.source == "url":
        raise ValueError(f"Chat Completions takes no PDF by URL ({a.ref})")
    return {"type": "file", "file": {"filename": a.filename, "file_data": part.data_url()}}


def parse_completion(completion: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
    """Read a ``ChatCompletion`` object's JSON: the first choice's content or refusal, why it stopped, the usage."""
    choices = completion.get("choices") or ()
    choice = as_dict(choices[0]) if choices else None
    message = as_dict(choice.get("message")) if choice is not None else {}
    text, refusal = message.get("content"), message.get("refusal")
    finish_reason = choice.get("finish_reason") if choice is not None else None
    if finish_reason == "content_filter" and refusal is None:
        refusal = "the response was stopped by the content filter"
    u = as_dict(completion.get("usage"))
    usage = Usage(
        input_tokens=as_int(u.get("prompt_tokens")),
        cached_input_tokens=as_int(as_dict(u.get("prompt_tokens_details")).get("cached_tokens")),
        output_tokens=as_int(u.get("completion_tokens")),
        reasoning_tokens=as_int(as_dict(u.get("completion_tokens_details")).get("reasoning_tokens")),
        total_tokens=as_int(u.get("total_tokens")),
    )
    response_id = completion.get("id")
    served = completion.get("service_tier")
    return ModelReply(
        text=text if isinstance(text, str) else None,
        refusal=refusal if isinstance(refusal, str) else None,
        truncated=finish_reason == "length",
        usage=usage,
        response_id=response_id if isinstance(response_id, str) else None,
        latency_ms=latency_ms,
        headers=headers,
        service_tier=served if isinstance(served, str) else None,
        reasoning_only=not text and usage.reasoning_tokens > 0,
    )
