"""The one interface both API adapters implement, and the one place SDK errors become ours.

A call that produced no reply raises :class:`ApiCallError`: the *facts* -- the HTTP status (None when no answer came:
a timeout, a dropped connection), the provider's error code, type and message, the response headers -- chained
``from`` the SDK's own exception, as pydantic-ai's ``ModelHTTPError`` does. What they mean (retry or give up, which
error type, what admission should do with the reservation) is decided once, in ``worker.classify``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

import openai
from openai._legacy_response import LegacyAPIResponse

from schemas.jobs import ApiKind
from schemas.results import Usage
from worker.prompt import ModelRequest


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
        """Send one request. Raises ``ApiCallError`` subclasses, never SDK exceptions."""
        ...


ParsedT = TypeVar("ParsedT")


class SdkAdapter(ABC, Generic[ParsedT]):
    """The shared call path on ``openai.AsyncOpenAI``: raw-response interface (for headers), timing, error mapping.

    Subclasses say how to shape the body, which endpoint to send it to and how to read the parsed answer.
    """

    api: ApiKind

    def __init__(self, client: openai.AsyncOpenAI, *, secrets: tuple[str, ...] = ()) -> None:
        self._client = client
        self._secrets = secrets

    @abstractmethod
    def build_body(self, request: ModelRequest) -> dict[str, Any]: ...

    @abstractmethod
    async def _send(self, body: dict[str, Any]) -> LegacyAPIResponse[ParsedT]: ...

    @abstractmethod
    def _reply(self, parsed: ParsedT, *, latency_ms: int, headers: dict[str, str]) -> ModelReply: ...

    async def call(self, request: ModelRequest) -> ModelReply:
        body = self.build_body(request)
        raw, latency_ms = await timed_call(lambda: self._send(body), secrets=self._secrets)
        headers = {name.lower(): value for name, value in raw.headers.items()}
        return self._reply(raw.parse(), latency_ms=latency_ms, headers=headers)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def map_sdk_error(exc: openai.OpenAIError, *, secrets: tuple[str, ...], latency_ms: int) -> ApiCallError:
    """The facts of an ``openai`` exception. The only place that knows SDK exception types."""
    if isinstance(exc, openai.APITimeoutError):
        return ApiCallError("the request timed out", no_answer="timeout", latency_ms=latency_ms)
    if isinstance(exc, openai.APIConnectionError):
        cause = redact(str(exc.__cause__ or exc), secrets)
        return ApiCallError(f"connection error: {cause}", no_answer="connection", latency_ms=latency_ms)
    if isinstance(exc, openai.APIStatusError):
        body = _error_body(exc)
        code, kind = body.get("code"), body.get("type")
        return ApiCallError(
            redact(_error_message(exc), secrets),
            status_code=exc.status_code,
            code=code if isinstance(code, str) else None,
            error_type=kind if isinstance(kind, str) else None,
            latency_ms=latency_ms,
            headers={k.lower(): v for k, v in exc.response.headers.items()},
        )
    return ApiCallError(redact(f"{type(exc).__name__}: {exc}", secrets), latency_ms=latency_ms)


def _error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _error_message(exc: openai.APIStatusError) -> str:
    message = _error_body(exc).get("message")
    return f"HTTP {exc.status_code}: {message}" if isinstance(message, str) else f"HTTP {exc.status_code}"


T = TypeVar("T")


async def timed_call(send: Callable[[], Awaitable[T]], *, secrets: tuple[str, ...]) -> tuple[T, int]:
    """Await ``send`` and return its result with the elapsed milliseconds; SDK errors come out mapped."""
    started = time.perf_counter()
    try:
        result = await send()
    except openai.OpenAIError as exc:
        raise map_sdk_error(exc, secrets=secrets, latency_ms=_ms_since(started)) from exc
    return result, _ms_since(started)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
