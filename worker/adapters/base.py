"""The one interface both API adapters implement, and the one place SDK errors become ours.

Error tree (what the job does with each):

    ApiCallError
    ├── TransientApiError   429 (rate limit), 408, 409, 5xx, timeouts, dropped connections → retry with backoff
    └── PermanentApiError   400, 401, 403, 404, 422, insufficient_quota → a typed failure, no retry
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import openai
from openai._legacy_response import LegacyAPIResponse

from schemas.jobs import ApiKind
from schemas.results import ErrorType, Usage
from worker.prompt import ModelRequest
from worker.retry import is_retryable_status, parse_retry_after


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
    """A call that did not produce a reply. ``message`` never contains the API key (see ``redact``)."""

    def __init__(
        self,
        message: str,
        *,
        error_type: ErrorType,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        latency_ms: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.latency_ms = latency_ms
        self.headers: Mapping[str, str] = headers or {}
        """Response headers in lower case (rate-limit state); empty when there was no response."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions with keyword-only __init__ need this to survive copying/pickling by frameworks.
        return (_rebuild, (type(self), self.message, self.error_type, self.status_code, self.retry_after_s))


def _rebuild(
    cls: type[ApiCallError], message: str, error_type: ErrorType, status_code: int | None, retry_after_s: float | None
) -> ApiCallError:
    return cls(message, error_type=error_type, status_code=status_code, retry_after_s=retry_after_s)


class TransientApiError(ApiCallError):
    """Worth another try later."""

    @property
    def rate_limited(self) -> bool:
        """A 429 for the rate limit (not quota): the provider did not count the call."""
        return self.status_code == 429


class PermanentApiError(ApiCallError):
    """Retrying cannot help; the line fails with ``error_type``."""

    @property
    def rate_limited(self) -> bool:
        return False


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


_PERMANENT_TYPES = {
    400: ErrorType.INVALID_REQUEST,
    401: ErrorType.AUTHENTICATION,
    403: ErrorType.PERMISSION,
    404: ErrorType.NOT_FOUND,
    422: ErrorType.INVALID_REQUEST,
}


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def map_sdk_error(exc: openai.OpenAIError, *, secrets: tuple[str, ...], latency_ms: int) -> ApiCallError:
    """Translate an ``openai`` exception into our tree. The only place that knows SDK exception types."""
    if isinstance(exc, openai.APITimeoutError):
        return TransientApiError("request timed out", error_type=ErrorType.TIMEOUT, latency_ms=latency_ms)
    if isinstance(exc, openai.APIConnectionError):
        return TransientApiError(
            f"connection error: {redact(str(exc.__cause__ or exc), secrets)}",
            error_type=ErrorType.RETRIES_EXHAUSTED,
            latency_ms=latency_ms,
        )
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        headers = {k.lower(): v for k, v in exc.response.headers.items()}

        def error(cls: type[ApiCallError], error_type: ErrorType, retry_after_s: float | None = None) -> ApiCallError:
            message = redact(_error_message(exc), secrets)
            return cls(
                message,
                error_type=error_type,
                status_code=status,
                retry_after_s=retry_after_s,
                latency_ms=latency_ms,
                headers=headers,
            )

        if status == 429 and _error_code(exc) == "insufficient_quota":
            # Out of credit: a billing stop, not a rate limit. Retrying only burns time.
            return error(PermanentApiError, ErrorType.BUDGET_EXCEEDED)
        if is_retryable_status(status):
            return error(TransientApiError, ErrorType.RETRIES_EXHAUSTED, parse_retry_after(headers))
        return error(PermanentApiError, _PERMANENT_TYPES.get(status, ErrorType.INVALID_REQUEST))
    return PermanentApiError(
        redact(f"{type(exc).__name__}: {exc}", secrets), error_type=ErrorType.INVALID_REQUEST, latency_ms=latency_ms
    )


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


def _error_code(exc: openai.APIStatusError) -> str | None:
    code = _error_body(exc).get("code")
    return code if isinstance(code, str) else None


T = TypeVar("T")


async def timed_call(send: Callable[[], Awaitable[T]], *, secrets: tuple[str, ...]) -> tuple[T, int]:
    """Await ``send`` and return its result with the elapsed milliseconds; SDK errors come out mapped."""
    started = time.perf_counter()
    try:
        result = await send()
    except openai.OpenAIError as exc:
        raise map_sdk_error(exc, secrets=secrets, latency_ms=_ms_since(started)) from None
    return result, _ms_since(started)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
