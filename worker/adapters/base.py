"""The one interface both API adapters implement, and the facts of a call that produced no reply.

A call that produced no reply raises :class:`ApiCallError`: the *facts* -- the HTTP status (None when no answer came:
a timeout, a dropped connection), the provider's error code, type and message, the response headers -- as
pydantic-ai's ``ModelHTTPError`` carries them; ``worker.adapters.http`` raises it. What they mean (retry or give
up, which error type, what admission should do with the reservation) is decided once, in ``worker.classify``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import orjson

from schemas.jobs import ApiKind
from schemas.results import Usage
from worker.prompt import ModelRequest

if TYPE_CHECKING:
    from worker.adapters.http import HttpSender


@dataclass(frozen=True)
class ModelReply:
    """What came back from one billed call, normalized across APIs."""

    text: str | None
    """The output text (JSON, unless truncated); None on a refusal."""
    refusal: str | None
    truncated: bool
    usage: Usage
    response_id: str | None
    latency_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)
    service_tier: str | None = None
    """The tier that served the call, as the reply says (priced at it)."""
    reasoning_only: bool = False
    """The output was all reasoning: a truncated reply whose cap went to reasoning before any answer."""

    @property
    def request_id(self) -> str | None:
        """The provider's ``x-request-id``: what its support asks for."""
        return self.headers.get("x-request-id")


class ApiCallError(Exception):
    """A call that did not produce a reply, as facts. ``message`` never contains the API key (see ``redact``)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        error_type: str | None = None,
        no_answer: NoAnswer | None = None,
        latency_ms: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        """None when no HTTP answer came (see ``no_answer``)."""
        self.code = code
        """The provider's ``error.code``: ``rate_limit_exceeded``, ``insufficient_quota``, ``resource_unavailable``."""
        self.error_type = error_type
        """The provider's ``error.type`` (``requests``, ``tokens``, ``invalid_request_error`` ...)."""
        self.no_answer = no_answer
        self.latency_ms = latency_ms
        self.headers: Mapping[str, str] = headers or {}
        """Response headers in lower case (rate-limit state); empty when there was no response."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions with keyword-only __init__ need this to survive copying/pickling by frameworks.
        return (_rebuild, (self.message, self.status_code, self.code, self.error_type, self.no_answer))


def _rebuild(
    message: str, status_code: int | None, code: str | None, error_type: str | None, no_answer: NoAnswer | None
) -> ApiCallError:
    return ApiCallError(message, status_code=status_code, code=code, error_type=error_type, no_answer=no_answer)


NoAnswer = Literal["timeout", "connection"]


class ApiAdapter(Protocol):
    """What the job needs from an API: a request body for the record, and a call that returns a reply."""

    api: ApiKind

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body sent to the API (pure; tests validate it against the OpenAPI spec)."""
        ...

    async def call(self, request: ModelRequest) -> ModelReply:
        """Send one request. Raises ``ApiCallError``, never a transport's own exceptions."""
        ...


class HttpAdapter(ABC):
    """The shared call path: build the body, encode it once, POST it (``worker.adapters.http``), read the reply.

    Subclasses say how to shape the body, which endpoint it goes to and how to read the reply's JSON.
    """

    api: ApiKind
    path: str

    def __init__(self, sender: HttpSender, *, flex_timeout_s: float | None = None) -> None:
        self._sender = sender
        self._flex_timeout_s = flex_timeout_s

    @abstractmethod
    def build_body(self, request: ModelRequest) -> dict[str, Any]: ...

    @abstractmethod
    def read_reply(self, data: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> ModelReply: ...

    async def call(self, request: ModelRequest) -> ModelReply:
        timeout_s = self._flex_timeout_s if request.service_tier == "flex" else None  # flex is slower by design
        data, headers, latency_ms = await self._sender.post(
            self.path, orjson.dumps(self.build_body(request)), timeout_s=timeout_s
        )
        return self.read_reply(data, latency_ms=latency_ms, headers=headers)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def as_dict(value: object) -> dict[str, Any]:
    """A reply's nested object, or empty when the provider left it out or sent ``null``."""
    return value if isinstance(value, dict) else {}


def as_int(value: object) -> int:
    """A token count; absent, ``null`` or not a number counts as 0 (some compatible servers omit details)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
