"""Answers in OpenAI's shape, and the API-key check every ``/v1`` route makes first."""

from __future__ import annotations

import hmac

import orjson
from aiohttp import web

from simulator.errors import ApiError


def json_response(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, headers=headers, content_type="application/json")


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.headers)


def authorize(request: web.Request, api_key: str | None) -> None:
    """401 unless ``Authorization: Bearer <api_key>`` (when a key is required). Never echoes the key."""
    if api_key is None:
        return
    header = request.headers.get("Authorization", "")
    if not header:
        raise ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise ApiError(
            401,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
