"""Parse request bodies of both APIs into one endpoint-neutral :class:`ExtractionRequest`.

Everything downstream (faults, generation, token counting, the ledger) works
on the normalised form, so the two APIs cannot drift apart in behaviour. Only
what a structured-output extraction needs is accepted; anything malformed is
rejected with the 400 the real API would give, naming the offending ``param``.

Images and files in a message are parsed here into :class:`~simulator.content.PartSource` (where the bytes are);
:func:`simulator.documents.resolve_attachments` then reads and charges them into
:class:`~simulator.content.Attachment`. Until then a message's attachments are empty and count for nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from simulator.content import Attachment, PartSource, parse_content
from simulator.errors import invalid_request, missing_parameter
from simulator.model_families import Effort, RequestParameters, ServedTier, request_parameters
from simulator.schema_checks import check_schema

Endpoint = Literal["responses", "chat.completions"]

_RESPONSES_ROLES = frozenset({"user", "system", "developer", "assistant"})
_CHAT_ROLES = frozenset({"user", "system", "developer", "assistant", "tool"})
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Message:
    """One prompt message: its role, its text parts (joined), and the images and files it carries.

    ``text`` is what is charged as message text; ``sources`` are the attachments as named in the body,
    ``attachments`` the same once read and charged (empty until then). A PDF's or text file's text is part of
    :attr:`content` (what the model reads) but charged inside its attachment's tokens, never as ``text``.
    """

    role: str
    text: str
    sources: tuple[PartSource, ...] = ()
    attachments: tuple[Attachment, ...] = ()

    @property
    def content(self) -> str:
        """The text the model reads: the text parts, then the text of the documents attached."""
        documents = [attachment.text for attachment in self.attachments if attachment.text]
        return "\n".join([self.text, *documents]) if documents else self.text

    def attachment_tokens(self) -> int:
        return sum(attachment.tokens for attachment in self.attachments)

    def attachment_key(self) -> str:
        """The attachments' identity (kind, content hash, sizing): what makes two messages with equal text differ."""
        return "\x00".join(f"{a.kind}:{a.sha256}:{a.sizing}" for a in self.attachments)


@dataclass(frozen=True, slots=True)
class ExtractionRequest:
    """A structured-output request, whichever API it came through."""

    endpoint: Endpoint
    model: str
    instructions: str | None
    messages: tuple[Message, ...]
    schema_name: str
    schema: dict[str, Any]
    schema_description: str | None
    strict: bool
    max_output_tokens: int | None
    prompt_cache_key: str | None
    body: Mapping[str, Any]
    requested_service_tier: str = "auto"
    """The ``service_tier`` the body asked for (``auto`` when absent)."""
    service_tier: ServedTier = "default"
    """The tier that serves the request, reports it and bills it (:mod:`simulator.model_families`)."""
    reasoning_effort: Effort | None = None
    """The effort the model reasons at (asked for, else its family's default); None: not a reasoning model."""

    def prompt_messages(self) -> tuple[Message, ...]:
        """Everything the model reads, in order: ``instructions`` count as a leading developer message."""
        head = (Message("developer", self.instructions),) if self.instructions is not None else ()
        return head + self.messages

    def input_text(self) -> str:
        """All message contents joined (PDF text included): what fault rules match and what seeds the output."""
        return "\n".join(f"{message.role}: {message.content}" for message in self.prompt_messages())

    def document_text(self) -> str:
        """The user's content (the document being extracted from); all text if there is no user message."""
        user = [message.content for message in self.messages if message.role == "user"]
        return "\n".join(user) if user else self.input_text()

    def attachments(self) -> tuple[Attachment, ...]:
        """Every image and file of the request, in order (empty until resolved)."""
        return tuple(attachment for message in self.messages for attachment in message.attachments)

    def attachment_tokens(self) -> int:
        return sum(message.attachment_tokens() for message in self.messages)

    def attachment_key(self) -> str:
        """Identity of all attachments ("" without any): part of the output seed, input key and fingerprint."""
        return "\x01".join(message.attachment_key() for message in self.messages if message.attachments)

    def schema_tokens_text(self) -> str:
        """The schema text that is charged: its canonical JSON, or nothing for a body without a format."""
        return self.schema_json() if self.schema_name else ""

    def input_key(self) -> str:
        """The document identity, for per-input fault caps and ``ok_per_input``: sha256 of model + document.

        The document is the *first* user message: a repair call re-sends the
        conversation with the model's answer and a new user turn (the
        validation feedback) appended, so the first user message is what stays
        the same across a document's calls. Without any user message, all
        input text counts. Its images and files count too (content hash and
        sizing), so two PDFs sent with the same instruction are two inputs.
        """
        first = next((message for message in self.messages if message.role == "user"), None)
        document = self.input_text() if first is None else first.content
        material = f"{self.model}\x00{document}"
        if first is not None and first.attachments:
            material += f"\x00{first.attachment_key()}"
        elif first is None and self.attachments():
            material += f"\x00{self.attachment_key()}"
        return hashlib.sha256(material.encode()).hexdigest()

    def schema_json(self) -> str:
        """The schema in canonical JSON (sorted keys), for hashing and token counting."""
        return orjson.dumps(self.schema, option=orjson.OPT_SORT_KEYS).decode()

    def fingerprint(self) -> str:
        """sha256 of the canonical request (endpoint, model, messages, schema): equal for paid duplicates."""
        canonical: dict[str, Any] = {
            "endpoint": self.endpoint,
            "model": self.model,
            "messages": [[message.role, message.text] for message in self.prompt_messages()],
            "schema": self.schema,
        }
        if self.attachments():
            canonical["attachments"] = self.attachment_key()
        return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


_COUNTING_ONLY = RequestParameters("auto", "default", None)
"""What a body only counted (``POST /v1/responses/input_tokens``) is taken to ask for: nothing is generated."""


def parse_request(endpoint: Endpoint, body: object, *, require_format: bool = True) -> ExtractionRequest:
    """Validate and normalise a request body; raises a 400 :class:`~simulator.errors.ApiError`.

    A generation body's ``service_tier``, effort, ``temperature``/``top_p`` and (Chat) ``max_tokens`` are
    checked against its model's family (:func:`simulator.model_families.request_parameters`).
    ``require_format=False`` (``POST /v1/responses/input_tokens``) also takes a Responses body without a
    json_schema ``text.format``: it is counted as having no schema (``schema_name`` empty), and its model
    parameters are not checked (nothing is generated).
    """
    if not isinstance(body, dict):
        raise invalid_request(
            "We could not parse the JSON body of your request. The body must be a JSON object.", code="invalid_json"
        )
    if body.get("stream") is True:
        raise invalid_request(
            "The simulator does not support streaming; send 'stream': false.", param="stream", code="unsupported_value"
        )
    if endpoint == "responses":
        return _parse_responses(body, require_format=require_format)
    return _parse_chat(body)


def _parse_responses(body: dict[str, Any], *, require_format: bool = True) -> ExtractionRequest:
    model = _model(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_request("Invalid type for 'instructions': expected a string.", param="instructions")
    messages = _responses_input(body.get("input"))
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    schema: dict[str, Any]
    if not require_format and not (isinstance(fmt, dict) and fmt.get("type") == "json_schema"):
        name, schema, description, strict = "", {}, None, False
    else:
        name, schema, description, strict = _json_schema_format(fmt, "text.format")
    parameters = request_parameters(False, model, body) if require_format else _COUNTING_ONLY
    return ExtractionRequest(
        endpoint="responses",
        model=model,
        instructions=instructions,
        messages=messages,
        schema_name=name,
        schema=schema,
        schema_description=description,
        strict=strict,
        max_output_tokens=_max_tokens(body, "max_output_tokens"),
        prompt_cache_key=_optional_str(body, "prompt_cache_key"),
        body=body,
        requested_service_tier=parameters.requested_tier,
        service_tier=parameters.service_tier,
        reasoning_effort=parameters.reasoning_effort,
    )


def _parse_chat(body: dict[str, Any]) -> ExtractionRequest:
    model = _model(body)
    messages = _chat_messages(body.get("messages"))
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        raise _needs_json_schema("response_format")
    name, schema, description, strict = _json_schema_format(
        {"type": "json_schema", **_dict_or_empty(response_format.get("json_schema"))}, "response_format.json_schema"
    )
    parameters = request_parameters(True, model, body)
    max_tokens = _max_tokens(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _max_tokens(body, "max_tokens")
    return ExtractionRequest(
        endpoint="chat.completions",
        model=model,
        instructions=None,
        messages=messages,
        schema_name=name,
        schema=schema,
        schema_description=description,
        strict=strict,
        max_output_tokens=max_tokens,
        prompt_cache_key=_optional_str(body, "prompt_cache_key"),
        body=body,
        requested_service_tier=parameters.requested_tier,
        service_tier=parameters.service_tier,
        reasoning_effort=parameters.reasoning_effort,
    )


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise missing_parameter("model")
    if not isinstance(model, str) or not model:
        raise invalid_request("Invalid value for 'model': expected a non-empty string.", param="model")
    return model


def _optional_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise invalid_request(f"Invalid type for '{key}': expected a string.", param=key, code="invalid_type")
    return value


def _max_tokens(body: Mapping[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_request(f"Invalid type for '{key}': expected an integer.", param=key, code="invalid_type")
    if value < 1:
        raise invalid_request(
            f"Invalid '{key}': integer below minimum value. Expected a value >= 1, but got {value} instead.",
            param=key,
            code="integer_below_min_value",
        )
    return value


def _dict_or_empty(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _needs_json_schema(param: str) -> Exception:
    return invalid_request(
        f"This simulator only serves Structured Outputs: '{param}' must be a json_schema format.",
        param=param,
        code="unsupported_value",
    )


def _json_schema_format(fmt: object, param: str) -> tuple[str, dict[str, Any], str | None, bool]:
    """``(name, schema, description, strict)`` from a json_schema format object (Responses shape)."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise _needs_json_schema(param)
    name = fmt.get("name")
    if name is None:
        raise missing_parameter(f"{param}.name")
    if not isinstance(name, str) or not _NAME_PATTERN.match(name):
        raise invalid_request(
            f"Invalid '{param}.name': string does not match pattern. Expected a string that matches the pattern "
            "'^[a-zA-Z0-9_-]+$' and is at most 64 characters long.",
            param=f"{param}.name",
            code="invalid_value",
        )
    schema = fmt.get("schema")
    if schema is None:
        raise missing_parameter(f"{param}.schema")
    if not isinstance(schema, dict):
        raise invalid_request(
            f"Invalid type for '{param}.schema': expected an object.", param=f"{param}.schema", code="invalid_type"
        )
    strict = fmt.get("strict") is True
    check_schema(schema, name, strict=strict, param=f"{param}.schema")
    description = fmt.get("description")
    return name, schema, description if isinstance(description, str) else None, strict


def _message(item: object, roles: frozenset[str], param: str, *, chat: bool) -> Message:
    if not isinstance(item, dict):
        raise invalid_request(f"Invalid type for '{param}': expected an object.", param=param)
    role = item.get("role")
    if role not in roles:
        raise invalid_request(
            f"Invalid value for '{param}.role': expected one of {', '.join(sorted(roles))}.",
            param=f"{param}.role",
            code="invalid_value",
        )
    assert isinstance(role, str)
    # "system" and "developer" mean the same to the model (instructions are a developer message too):
    # normalising makes the same prompt give the same answer through either API.
    text, sources = parse_content(item.get("content"), f"{param}.content", chat=chat)
    return Message("developer" if role == "system" else role, text, sources)


def _responses_input(value: object) -> tuple[Message, ...]:
    if value is None:
        raise missing_parameter("input")
    if isinstance(value, str):
        return (Message("user", value),)
    if not isinstance(value, list) or not value:
        raise invalid_request("Invalid 'input': expected a string or a non-empty array of messages.", param="input")
    messages = []
    for index, item in enumerate(value):
        if isinstance(item, dict) and "type" not in item:
            # OpenAI infers a message here; servers that follow the spec strictly (llama.cpp's llama-server) do
            # not, and neither does the simulator: every item names its type.
            raise invalid_request(
                f"Invalid 'input[{index}]': missing 'type'. Cannot determine type of 'item' (expected 'message').",
                param=f"input[{index}].type",
                code="missing_required_parameter",
            )
        if isinstance(item, dict) and item["type"] != "message":
            raise invalid_request(
                f"Unsupported input item type {item.get('type')!r}: the simulator only accepts messages.",
                param=f"input[{index}]",
                code="unsupported_value",
            )
        messages.append(_message(item, _RESPONSES_ROLES, f"input[{index}]", chat=False))
    return tuple(messages)


def _chat_messages(value: object) -> tuple[Message, ...]:
    if value is None:
        raise missing_parameter("messages")
    if not isinstance(value, list) or not value:
        raise invalid_request(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            param="messages",
            code="empty_array",
        )
    return tuple(_message(item, _CHAT_ROLES, f"messages[{index}]", chat=True) for index, item in enumerate(value))
