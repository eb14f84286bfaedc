"""API adapters: one per OpenAI API, behind ``ApiAdapter``."""

from __future__ import annotations

import openai

from schemas.jobs import ApiKind
from worker.adapters.base import ApiAdapter, ApiCallError, ModelReply
from worker.adapters.chat import ChatAdapter
from worker.adapters.responses import ResponsesAdapter

__all__ = [
    "ApiAdapter",
    "ApiCallError",
    "ChatAdapter",
    "ModelReply",
    "ResponsesAdapter",
    "adapter_for",
]


def adapter_for(api: ApiKind, client: openai.AsyncOpenAI, *, secrets: tuple[str, ...] = ()) -> ApiAdapter:
    if api == "responses":
        return ResponsesAdapter(client, secrets=secrets)
    return ChatAdapter(client, secrets=secrets)
