"""The one HTTP path to the provider: the SDK client's address, headers and timeouts, aiohttp's transport.

Why not ``client.responses.create(**body)``: the SDK transforms every request body recursively against its
TypedDicts (the same large strict schema, line after line) and builds full pydantic models of every reply, where we
read five fields. Profiled on one worker that was half of its CPU per line. Our bodies are already plain JSON in
the API's own shape (``worker.adapters.responses``/``chat``; tests check them against the OpenAPI spec and against
what the SDK's transform makes of them), so they are encoded once with ``orjson`` and posted as they are, and the
reply is read as JSON.

What the SDK client still owns: ``base_url``, the auth and default headers (``User-Agent``, ``X-Stainless-*``,
organization/project), and the timeouts it was built with -- so a user who configures ``OPENAI_BASE_URL``,
``OPENAI_ORG_ID`` or a proxy-less endpoint gets the same request on the wire as the SDK would send.

A call that produced no reply raises ``ApiCallError`` with the facts (status, the provider's error code and message,
headers, or ``no_answer`` for a timeout, a dropped connection or a reply that is not a JSON object);
``worker.classify`` decides what they mean.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import aiohttp
import openai
import orjson

from schemas.jobs import ApiKind
from worker.adapters.base import ModelReply
from worker.adapters.errors import ApiCallError, redact
from worker.prompt import ModelRequest

MIN_CONNECTIONS = 100


class HttpSender:
    """POSTs JSON bodies to the provider over one aiohttp session per process (created on first use, in the loop)."""

    def __init__(self, client: openai.AsyncOpenAI, *, connections: int, secrets: tuple[str, ...] = ()) -> None:
        self._base_url = str(client.base_url).rstrip("/")
        # Unset optional headers (organization, project) are the SDK's ``Omit`` markers, not strings.
        headers = {**client.default_headers, **client.auth_headers}
        self._headers = {name: value for name, value in headers.items() if isinstance(value, str)}
        self._timeout = _timeout_of(client)
        self._connections = max(connections, MIN_CONNECTIONS)
        self._secrets = secrets
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return self._base_url

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._connections, limit_per_host=self._connections),
                raise_for_status=False,
            )
        return self._session

    async def post(
        self, path: str, body: bytes, *, timeout_s: float | None = None
    ) -> tuple[dict[str, Any], dict[str, str], int]:
        """(the reply's JSON object, its headers in lower case, latency in ms). Raises ``ApiCallError``.
        ``timeout_s`` replaces the client's read timeout for this call (a flex call is allowed longer)."""
        session = self._ensure_session()
        started = time.perf_counter()
        # Only when given: aiohttp reads timeout=None as "no timeout at all", not as the session's.
        options: dict[str, Any] = {}
        if timeout_s:
            options["timeout"] = aiohttp.ClientTimeout(total=timeout_s, sock_connect=self._timeout.sock_connect)
        try:
            async with session.post(self._base_url + path, data=body, **options) as response:
                raw = await response.read()
                status = response.status
                headers = {name.lower(): value for name, value in response.headers.items()}
        except TimeoutError:  # aiohttp's own timeouts (connect, read) are TimeoutErrors too
            raise ApiCallError("the request timed out", no_answer="timeout", latency_ms=_ms_since(started)) from None
        except aiohttp.ClientError as exc:
            message = redact(f"connection error: {type(exc).__name__}: {exc}", self._secrets)
            raise ApiCallError(message, no_answer="connection", latency_ms=_ms_since(started)) from exc
        latency_ms = _ms_since(started)
        if status >= 400:
            raise error_from_reply(status, raw, headers, latency_ms=latency_ms, secrets=self._secrets)
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            # Answered, perhaps billed, but unreadable: like a dropped connection, a later try may succeed.
            raise ApiCallError(
                f"HTTP {status}: the reply is not a JSON object ({len(raw)} bytes)",
                no_answer="connection",
                latency_ms=latency_ms,
                headers=headers,
            )
        return data, headers, latency_ms

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def error_from_reply(
    status: int, raw: bytes, headers: Mapping[str, str], *, latency_ms: int, secrets: tuple[str, ...]
) -> ApiCallError:
    """The facts of an HTTP error reply: status, and the provider's ``error.{message,code}`` when it sent them."""
    error: dict[str, Any] = {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            error = inner
    message, code = error.get("message"), error.get("code")
    text = f"HTTP {status}: {message}" if isinstance(message, str) else f"HTTP {status}"
    return ApiCallError(
        redact(text, secrets),
        status_code=status,
        code=code if isinstance(code, str) else None,
        latency_ms=latency_ms,
        headers=dict(headers),
    )


def _timeout_of(client: openai.AsyncOpenAI) -> aiohttp.ClientTimeout:
    timeout = client.timeout
    if isinstance(timeout, int | float):
        return aiohttp.ClientTimeout(total=float(timeout))
    read = getattr(timeout, "read", None)
    connect = getattr(timeout, "connect", None)
    return aiohttp.ClientTimeout(total=read, sock_connect=connect)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


class HttpAdapter(ABC):
    """The shared call path: build the body, encode it once, POST it (:class:`HttpSender`), read the reply.

    Subclasses say how to shape the body, which endpoint it goes to and how to read the reply's JSON.
    """

    api: ApiKind
    path: str

    def __init__(self, sender: HttpSender, *, flex_timeout_s: float | None = None) -> None:
        self._sender = sender
        self._flex_timeout_s = flex_timeout_s

    @abstractmethod
    def build_body(self, request: ModelRequest) -> dict[str, Any]: ...

    @abstractmethod
    def read_reply(self, data: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> ModelReply: ...

    async def call(self, request: ModelRequest) -> ModelReply:
        timeout_s = self._flex_timeout_s if request.service_tier == "flex" else None  # flex is slower by design
        data, headers, latency_ms = await self._sender.post(
            self.path, orjson.dumps(self.build_body(request)), timeout_s=timeout_s
        )
        return self.read_reply(data, latency_ms=latency_ms, headers=headers)
