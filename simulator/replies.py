"""Answers in OpenAI's shape, and the API-key check every ``/v1`` route makes first."""

from __future__ import annotations

import hmac
import secrets

import orjson
from aiohttp import web

from simulator.errors import ApiError, invalid_request

REQUEST_ID_KEY = web.RequestKey("request_id", str)
"""Where the middleware keeps the ``x-request-id`` it will stamp on the response, so routes can log it."""


def new_request_id() -> str:
    """A fresh request id in OpenAI's style (``req_`` and 32 hex digits)."""
    return "req_" + secrets.token_hex(16)


def request_id(request: web.Request) -> str | None:
    """The id the response to ``request`` carries (None outside the middleware, e.g. in a bare handler test)."""
    return request.get(REQUEST_ID_KEY)


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


def list_limit(raw: str | None, *, default: int, maximum: int) -> int:
    """A list endpoint's ``limit`` query parameter, refused as OpenAI refuses it (not an integer, out of range)."""
    if raw is None:
        return default
    try:
        limit = int(raw)
    except ValueError:
        raise invalid_request(
            "Invalid type for 'limit': expected an integer.", param="limit", code="invalid_type"
        ) from None
    if not 1 <= limit <= maximum:
        raise invalid_request(
            f"Invalid 'limit': integer out of range. Expected a value between 1 and {maximum}, but got {limit} "
            "instead.",
            param="limit",
            code="invalid_value",
        )
    return limit


def list_response(objects: list[dict[str, object]], has_more: bool) -> web.Response:
    """A page of a list endpoint: the ``list`` object, its cursors the first and last objects' ids."""
    return json_response(
        {
            "object": "list",
            "data": objects,
            "first_id": objects[0]["id"] if objects else None,
            "last_id": objects[-1]["id"] if objects else None,
            "has_more": has_more,
        }
    )
