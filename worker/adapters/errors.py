"""The facts of a call that produced no reply, and keeping secrets out of messages: what every part of the worker
that meets a failed call imports, with nothing of the adapters behind it.

A call that produced no reply raises :class:`ApiCallError`: the *facts* -- the HTTP status (None when no answer came:
a timeout, a dropped connection), the provider's error code, type and message, the response headers -- as
pydantic-ai's ``ModelHTTPError`` carries them; ``worker.adapters.http`` raises it. What they mean (retry or give
up, which error type, what admission should do with the reservation) is decided once, in ``worker.classify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal


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


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
