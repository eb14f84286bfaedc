"""The one interface both API adapters implement and the reply they return; it imports nothing else of the
adapters (the errors of a call are ``worker.adapters.errors``, the HTTP path and its base class
``worker.adapters.http``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    service_tier: str | None = None
    """The tier that served the call, as the reply says (priced at it)."""
    reasoning_only: bool = False
    """The output was all reasoning: a truncated reply whose cap went to reasoning before any answer."""

    @property
    def request_id(self) -> str | None:
        """The provider's ``x-request-id``: what its support asks for."""
        return self.headers.get("x-request-id")


class ApiAdapter(Protocol):
    """What the job needs from an API: the request body it sends (pure, so tests can check it), and a call that
    returns a reply."""

    api: ApiKind

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body sent to the API (pure; tests validate it against the OpenAPI spec)."""
        ...

    async def call(self, request: ModelRequest) -> ModelReply:
        """Send one request. Raises ``ApiCallError``, never a transport's own exceptions."""
        ...

    def read_reply(self, data: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
        """A reply from its JSON body (a synchronous answer's, or a provider batch's output line's)."""
        ...


def as_dict(value: object) -> dict[str, Any]:
    """A reply's nested object, or empty when the provider left it out or sent ``null``."""
    return value if isinstance(value, dict) else {}


def as_int(value: object) -> int:
    """A token count; absent, ``null`` or not a number counts as 0 (some compatible servers omit details)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
