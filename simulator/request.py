"""Parse request bodies of both APIs into one endpoint-neutral :class:`ExtractionRequest`.

Everything downstream (faults, generation, token counting, the ledger) works
on the normalised form, so the two APIs cannot drift apart in behaviour. Only
what a structured-output extraction needs is accepted; anything malformed is
rejected with the 400 the real API would give, naming the offending ``param``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from simulator.errors import invalid_request, missing_parameter
from simulator.schema_checks import check_schema

Endpoint = Literal["responses", "chat.completions"]

_RESPONSES_ROLES = frozenset({"user", "system", "developer", "assistant"})
_CHAT_ROLES = frozenset({"user", "system", "developer", "assistant", "tool"})
_TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text"})
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Message:
    """One prompt message reduced to its role and text (non-text parts are ignored)."""

    role: str
    text: str


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

    def prompt_messages(self) -> tuple[Message, ...]:
        """Everything the model reads, in order: ``instructions`` count as a leading developer message."""
        head = (Message("developer", self.instructions),) if self.instructions is not None else ()
        return head + self.messages

    def input_text(self) -> str:
        """All message texts joined: what fault rules match against and what seeds the output."""
        return "\n".join(f"{message.role}: {message.text}" for message in self.prompt_messages())

    def document_text(self) -> str:
        """The user's text (the document being extracted from); all text if there is no user message."""
        user = [message.text for message in self.messages if message.role == "user"]
        return "\n".join(user) if user else self.input_text()

    def input_key(self) -> str:
        """The document identity, for per-input fault caps and ``ok_per_input``: sha256 of model + document.

        The document is the *first* user message: a repair call re-sends the
        conversation with the model's answer and a new user turn (the
        validation feedback) appended, so the first user message is what stays
        the same across a document's calls. Without any user message, all
        input text counts.
        """
        document = next((message.text for message in self.messages if message.role == "user"), None)
        material = f"{self.model}\x00{self.input_text() if document is None else document}"
        return hashlib.sha256(material.encode()).hexdigest()

    def schema_json(self) -> str:
        """The schema in canonical JSON (sorted keys), for hashing and token counting."""
        return orjson.dumps(self.schema, option=orjson.OPT_SORT_KEYS).decode()

    def fingerprint(self) -> str:
        """sha256 of the canonical request (endpoint, model, messages, schema): equal for paid duplicates."""
        canonical = {
            "endpoint": self.endpoint,
            "model": self.model,
            "messages": [[message.role, message.text] for message in self.prompt_messages()],
            "schema": self.schema,
        }
        return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


def parse_request(endpoint: Endpoint, body: object) -> ExtractionRequest:
    """Validate and normalise a request body; raises a 400 :class:`~simulator.errors.ApiError`."""
    if not isinstance(body, dict):
        raise invalid_request(
            "We could not parse the JSON body of your request. The body must be a JSON object.", code="invalid_json"
        )
    if body.get("stream") is True:
        raise invalid_request(
            "The simulator does not support streaming; send 'stream': false.", param="stream", code="unsupported_value"
        )
    if endpoint == "responses":
        return _parse_responses(body)
    return _parse_chat(body)


def _parse_responses(body: dict[str, Any]) -> ExtractionRequest:
    model = _model(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise invalid_request("Invalid type for 'instructions': expected a string.", param="instructions")
    messages = _responses_input(body.get("input"))
    text = body.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    name, schema, description, strict = _json_schema_format(fmt, "text.format")
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


def _content_text(content: object, param: str) -> str:
    """Text of a message's content: a string, null, or a list of parts (text parts kept, others ignored)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid_request(f"Invalid type for '{param}': expected a string or an array.", param=param)
    texts: list[str] = []
    for index, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise invalid_request(f"Invalid '{param}[{index}]': expected a content part object.", param=param)
        if part["type"] in _TEXT_PART_TYPES:
            text = part.get("text")
            if not isinstance(text, str):
                raise missing_parameter(f"{param}[{index}].text")
            texts.append(text)
    return "\n".join(texts)


def _message(item: object, roles: frozenset[str], param: str) -> Message:
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
    return Message("developer" if role == "system" else role, _content_text(item.get("content"), f"{param}.content"))


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
        messages.append(_message(item, _RESPONSES_ROLES, f"input[{index}]"))
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
    return tuple(_message(item, _CHAT_ROLES, f"messages[{index}]") for index, item in enumerate(value))
