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
    """The last ``size`` requests as ``{"endpoint", "status", "body", "headers", ...}`` entries, oldest first.

    ``status`` is the HTTP status sent, or ``"dropped"`` for a connection closed without a response. API calls
    that got as far as being charged also carry what they were charged for input (``input_tokens``, the
    ``usage`` input of a 200), the part of it due to images and files (``attachment_tokens``) and one record per
    image or file (``attachments``: kind, param, source, tokens, detail and sizing, bytes, sha256, pixel size or
    PDF pages); these are ``None``/``None``/``[]`` for entries that never got that far.

    Every entry has the ``request_id`` its response carried (``x-request-id``; None for a connection dropped
    without a response), ``service_tier``, the tier that served a 200 (``default``/``flex``/``priority``; None
    for anything else, a flex ``resource_unavailable`` 429 included), and ``reasoning_effort``, the effort a
    parsed generation request was given (asked for, else the model's default; None for a non-reasoning model).
    """

    def __init__(self, size: int = 1000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=size)

    def clear(self) -> None:
        self._entries.clear()

    def append(
        self,
        endpoint: str,
        status: int | str,
        body: object,
        headers: Mapping[str, str],
        charge: Mapping[str, Any] | None = None,
        *,
        request_id: str | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "endpoint": endpoint,
            "status": status,
            "request_id": request_id,
            "body": body,
            "headers": public_headers(headers),
            "input_tokens": None,
            "attachment_tokens": None,
            "attachments": [],
            "service_tier": None,
            "reasoning_effort": None,
        }
        if charge is not None:
            entry.update(charge)
        self._entries.append(entry)

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self._entries)
