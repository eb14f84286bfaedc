"""The facts of a call that produced no reply, and keeping secrets out of messages: what every part of the worker
that meets a failed call imports, with nothing of the adapters behind it.

A call that produced no reply raises :class:`ApiCallError`: the *facts* -- the HTTP status (None when no answer came:
a timeout, a dropped connection), the provider's error code and message, the response headers, the call's latency --
as pydantic-ai's ``ModelHTTPError`` carries them; ``worker.adapters.http`` raises it (and
``worker.adapters.responses.count_input_tokens`` for a count that did not come). What they mean (retry or give up,
which error type, what admission should do with the reservation) is decided once, in ``worker.classify``.
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
        self.no_answer = no_answer
        self.latency_ms = latency_ms
        self.headers: Mapping[str, str] = headers or {}
        """Response headers in lower case (rate-limit state); empty when there was no response."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions with keyword-only __init__ need this to survive copying/pickling by frameworks.
        facts = (self.status_code, self.code, self.no_answer, self.latency_ms, dict(self.headers))
        return (_rebuild, (self.message, *facts))


def _rebuild(
    message: str,
    status_code: int | None,
    code: str | None,
    no_answer: NoAnswer | None,
    latency_ms: int,
    headers: dict[str, str],
) -> ApiCallError:
    return ApiCallError(
        message, status_code=status_code, code=code, no_answer=no_answer, latency_ms=latency_ms, headers=headers
    )


NoAnswer = Literal["timeout", "connection"]


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every one of ``secrets`` replaced by ``[redacted]``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return text
