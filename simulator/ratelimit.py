"""The ``x-ratelimit-*`` headers every OpenAI response carries.

Clients (the SDK, our adaptive concurrency) read them, so they must be present
and well-formed. For now the limits are static and generous; a token-bucket
implementation can replace :class:`StaticRateLimits` behind the same
:class:`RateLimits` protocol (and start answering 429s from the route).
"""

from __future__ import annotations

from typing import Protocol


class RateLimits(Protocol):
    def headers(self) -> dict[str, str]:
        """The ``x-ratelimit-*`` headers for the response being sent now."""
        ...


class StaticRateLimits:
    """Fixed limits, always one request and one token short of full."""

    def __init__(self, request_limit: int = 10_000, token_limit: int = 30_000_000) -> None:
        self._headers = {
            "x-ratelimit-limit-requests": str(request_limit),
            "x-ratelimit-remaining-requests": str(request_limit - 1),
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-limit-tokens": str(token_limit),
            "x-ratelimit-remaining-tokens": str(token_limit - 1),
            "x-ratelimit-reset-tokens": "6ms",
        }

    def headers(self) -> dict[str, str]:
        return dict(self._headers)
