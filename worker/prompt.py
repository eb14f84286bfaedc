"""Build the conversation for one line, shaped for the provider's prompt cache. Pure functions.

OpenAI caches the longest previously seen prompt prefix (from 1,024 tokens, in 128-token steps). So the part
shared by every line of a batch comes first — instructions, and the schema, which the API renders ahead of the
messages — and the document comes last. ``prompt_cache_key`` routes requests with the same prefix to the same
cache; it is a hash of the stable part and the model, so every line of a batch (and every batch with the same
model, schema and instructions) shares it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Literal

import orjson

from schemas.attachments import Attachment, ImageDetail
from schemas.jobs import BatchSpec

Role = Literal["developer", "user", "assistant"]


@dataclass(frozen=True)
class Part:
    """One image or PDF of the document, ready to send: its description and, for a stored blob, its bytes."""

    attachment: Attachment
    data: bytes | None = None
    """The bytes of a ``blob`` attachment (sent as a ``data:`` URL); None for a file id or URL."""

    def data_url(self) -> str:
        assert self.data is not None, "a blob attachment is sent with its bytes"
        return f"data:{self.attachment.media_type};base64,{base64.b64encode(self.data).decode()}"


@dataclass(frozen=True)
class Message:
    role: Role
    text: str
    parts: tuple[Part, ...] = ()
    """The document's images and PDFs, after its text (the document's message only)."""


@dataclass(frozen=True)
class ModelRequest:
    """One API call, independent of which API carries it."""

    model: str
    schema_name: str
    json_schema: dict[str, object]
    messages: tuple[Message, ...]
    max_output_tokens: int | None
    temperature: float | None
    prompt_cache_key: str
    store: bool
    image_detail: ImageDetail = "auto"
    reasoning_effort: str | None = None
    service_tier: str | None = None
    """None: not sent (the API's default). A flex line past its fallback wait is sent with ``auto``."""

    @property
    def attachments(self) -> tuple[Attachment, ...]:
        return tuple(part.attachment for m in self.messages for part in m.parts)


def prompt_cache_key(spec: BatchSpec) -> str:
    stable = orjson.dumps(
        {"model": spec.model, "instructions": spec.instructions, "schema": spec.json_schema},
        option=orjson.OPT_SORT_KEYS,
    )
    return "extract-" + hashlib.sha256(stable).hexdigest()[:32]


def first_request(
    spec: BatchSpec,
    text: str,
    *,
    store: bool,
    cache_key: str | None = None,
    parts: tuple[Part, ...] = (),
    service_tier: str | None = None,
) -> ModelRequest:
    """The first call for a line. ``cache_key`` is the batch's ``prompt_cache_key``, computed once per batch by the
    caller that holds it (hashing the schema per line would be work repeated for nothing). ``parts`` (the document's
    images and PDFs) follow its text in the last message, so the shared prefix stays the same for every line.
    ``service_tier`` overrides the batch's (a flex line falling back to ``auto``)."""
    return ModelRequest(
        model=spec.model,
        schema_name=spec.schema_name,
        json_schema=spec.json_schema,
        messages=(Message("developer", spec.instructions), Message("user", text, parts)),
        max_output_tokens=spec.params.max_output_tokens,
        temperature=spec.params.temperature,
        prompt_cache_key=cache_key if cache_key is not None else prompt_cache_key(spec),
        store=store,
        image_detail=spec.image_detail,
        reasoning_effort=spec.params.reasoning_effort,
        service_tier=service_tier if service_tier is not None else spec.service_tier,
    )


def repair_request(previous: ModelRequest, bad_output: str, errors: list[str]) -> ModelRequest:
    """Re-ask with the model's own answer and what was wrong with it.

    The earlier turns stay as they were, so the repair call still hits the prompt cache for the shared prefix.
    """
    listed = "\n".join(f"- {error}" for error in errors[:20])
    feedback = (
        "Your previous answer did not validate against the required JSON schema:\n"
        f"{listed}\n"
        "Answer again with a corrected JSON object only."
    )
    return ModelRequest(
        model=previous.model,
        schema_name=previous.schema_name,
        json_schema=previous.json_schema,
        messages=(*previous.messages, Message("assistant", bad_output), Message("user", feedback)),
        max_output_tokens=previous.max_output_tokens,
        temperature=previous.temperature,
        prompt_cache_key=previous.prompt_cache_key,
        store=previous.store,
        image_detail=previous.image_detail,
        reasoning_effort=previous.reasoning_effort,
        service_tier=previous.service_tier,
    )
