"""A bounded log of recent API requests, for tests that assert on what the service sent.

Secrets never enter it: headers that carry credentials (``Authorization``,
anything key/token/secret/cookie-like) are dropped before an entry is stored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

_SECRET_HINTS = ("authorization", "key", "token", "secret", "cookie", "password", "session")


def public_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers that are safe to keep, names lower-cased."""
    kept = {}
    for name, value in headers.items():
        lowered = name.lower()
        if not any(hint in lowered for hint in _SECRET_HINTS):
            kept[lowered] = value
    return kept


class RequestLog:
    """The last ``size`` requests as ``{"endpoint", "status", "body", "headers"}`` entries, oldest first.

    ``status`` is the HTTP status sent, or ``"dropped"`` for a connection closed without a response.
    """

    def __init__(self, size: int = 1000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def clear(self) -> None:
        self._entries.clear()

    def append(self, endpoint: str, status: int | str, body: object, headers: Mapping[str, str]) -> None:
        self._entries.append({"endpoint": endpoint, "status": status, "body": body, "headers": public_headers(headers)})

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self._entries)
