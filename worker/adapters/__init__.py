"""API adapters: one per OpenAI API, behind ``ApiAdapter``."""

from __future__ import annotations

from schemas.jobs import ApiKind
from worker.adapters.base import ApiAdapter, ModelReply
from worker.adapters.chat import ChatAdapter
from worker.adapters.errors import ApiCallError
from worker.adapters.http import HttpSender
from worker.adapters.responses import ResponsesAdapter

__all__ = [
    "ApiAdapter",
    "ApiCallError",
    "ChatAdapter",
    "HttpSender",
    "ModelReply",
    "ResponsesAdapter",
    "adapter_for",
]


def adapter_for(api: ApiKind, sender: HttpSender, *, flex_timeout_s: float | None = None) -> ApiAdapter:
    if api == "responses":
        return ResponsesAdapter(sender, flex_timeout_s=flex_timeout_s)
    return ChatAdapter(sender, flex_timeout_s=flex_timeout_s)
