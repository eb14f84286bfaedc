"""OpenAI-shaped errors.

Clients (the ``openai`` SDK, our workers' retry logic) branch on the HTTP status
and on ``error.type`` / ``error.code``, so every failure the simulator produces,
real or injected, goes through :class:`ApiError` and leaves in the exact shape
``{"error": {"message", "type", "param", "code"}}`` the real API uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    """An error response: HTTP status, OpenAI error object and any extra headers (``retry-after``...)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The JSON body, exactly as OpenAI shapes it (``param``/``code`` present even when null)."""
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 ``invalid_request_error``, the answer to every malformed request body."""
    return ApiError(400, message, param=param, code=code)


def missing_parameter(param: str) -> ApiError:
    """The 400 the real API gives when a required parameter is absent."""
    return invalid_request(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
