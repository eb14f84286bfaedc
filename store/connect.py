"""Opening a Redis client, and the one description of why Redis could not be reached.

Every command and the worker meet the same failures -- Redis down, a wrong or missing password, ``rediss://``
against a plain server, a URL with another scheme, a host that does not resolve -- and redis-py reports each as an
exception whose useful part sits two levels down its ``__context__`` chain. :func:`describe_redis_error` turns any
of them into a :class:`RedisUnavailableError`: one line that names the cause and never the password, and a
``fatal`` flag telling a configuration error (no retry fixes it) from an outage (retrying may).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import redis.exceptions
from redis.asyncio import Redis

SCHEMES = ("redis", "rediss", "unix")
"""What redis-py (and arq's ``RedisSettings.from_dsn``) accept."""

# TLS alerts a TLS client gets from a server that does not speak TLS (it answers in the clear, or hangs up).
_NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST", "PACKET_LENGTH")
# A TLS connection that ended (a Redis restart, a dropped link) is an outage, not a configuration error.
_TLS_ENDED = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)


class RedisUnavailableError(Exception):
    """Redis could not be reached or would not let us in; ``str()`` is one line naming the cause.

    ``fatal`` is true for configuration errors (credentials, URL, TLS, database number): retrying cannot help, so a
    worker exits instead of waiting for ever. Refusals, unknown hosts (a headless Service resolves only once its pod
    is ready) and timeouts are outages: a worker keeps retrying.
    """

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(" ".join(message.split()))
        self.fatal = fatal

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (str(self), self.fatal)


def _rebuild(message: str, fatal: bool) -> RedisUnavailableError:
    return RedisUnavailableError(message, fatal=fatal)


REDIS_ERRORS: tuple[type[Exception], ...] = (
    RedisUnavailableError,
    redis.exceptions.ConnectionError,  # AuthenticationError is one
    redis.exceptions.TimeoutError,
)
"""What a command catches to report Redis trouble in one line (via :func:`describe_redis_error`)."""


def redis_client(url: str, **kwargs: Any) -> Redis:
    """``Redis.from_url``; a URL it cannot use raises :class:`RedisUnavailableError` (fatal) instead of ValueError."""
    check_redis_url(url)
    try:
        client: Redis = Redis.from_url(url, **kwargs)
    except ValueError as exc:  # a port that is not a number, a bad query parameter ...
        raise RedisUnavailableError(f"REDIS_URL is not a usable Redis URL: {exc}", fatal=True) from exc
    return client


async def open_redis(url: str, **kwargs: Any) -> Redis:
    """A client that has answered one PING: a Redis that cannot be used fails here, described, before any work."""
    client = redis_client(url, **kwargs)
    try:
        await client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        await client.aclose()
        problem = describe_redis_error(exc, url)
        if isinstance(exc, redis.exceptions.TimeoutError) and await _plain_redis_behind(url):
            where = _where(url)[0]
            problem = RedisUnavailableError(
                f"Redis at {where} speaks plain Redis, not TLS: REDIS_URL is rediss://; use redis:// for it",
                fatal=True,
            )
        raise problem from exc
    return client


async def _plain_redis_behind(url: str, timeout_s: float = 2.0) -> bool:
    """Whether a ``rediss://`` URL that timed out points at a server answering plain RESP (a PING in the clear).

    A plain Redis sent a TLS ClientHello waits for the rest of a command that never comes, so the TLS client only
    sees a timeout; asking in the clear tells that configuration error from a network that does not answer.
    """
    parts = urlsplit(url)
    if parts.scheme != "rediss" or not parts.hostname:
        return False
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port or 6379)
            try:
                writer.write(b"PING\r\n")
                await writer.drain()
                answer = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
    except (OSError, TimeoutError, ValueError):
        return False
    return answer.startswith((b"+PONG", b"-NOAUTH", b"-ERR", b"-WRONGPASS"))


def check_redis_url(url: str) -> None:
    """Raise a fatal :class:`RedisUnavailableError` unless ``url`` has a scheme Redis clients accept."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else repr(_redact(url))
        raise RedisUnavailableError(
            f"REDIS_URL must start with redis://, rediss:// (TLS) or unix://, not {shown}", fatal=True
        )


def describe_redis_error(exc: BaseException, url: str) -> RedisUnavailableError:
    """The one-line account of ``exc``, an error met while talking to the Redis at ``url``."""
    if isinstance(exc, RedisUnavailableError):
        return exc
    where, host, tls = _where(url)
    chain = list(_chain(exc))
    for link in chain:
        if isinstance(link, redis.exceptions.AuthenticationError) or (
            isinstance(link, redis.exceptions.ResponseError) and str(link).startswith(("NOAUTH", "WRONGPASS"))
        ):
            return RedisUnavailableError(
                f"Redis at {where} did not accept the credentials in REDIS_URL: {link}", fatal=True
            )
    for link in chain:
        if isinstance(link, ssl.SSLError):
            return _tls_error(link, where, tls)
    for link in chain:
        if isinstance(link, socket.gaierror):
            reason = link.strerror or str(link)
            return RedisUnavailableError(f"Redis host {host!r} not found ({reason}): check REDIS_URL")
        if isinstance(link, ConnectionRefusedError):
            return RedisUnavailableError(
                f"Redis at {where} refused the connection (is it running? is REDIS_URL right?)"
            )
    if isinstance(exc, redis.exceptions.TimeoutError | TimeoutError):
        if tls and "connecting" in str(exc):
            return RedisUnavailableError(
                f"Redis at {where} did not complete a TLS handshake in time: REDIS_URL is rediss:// (TLS); "
                "if that server is plain Redis, use redis://"
            )
        return RedisUnavailableError(f"Redis at {where} timed out ({exc or 'no answer'})")
    if isinstance(exc, redis.exceptions.ResponseError):
        if "DB index is out of range" in str(exc):
            return RedisUnavailableError(
                f"REDIS_URL names a database that Redis at {where} does not have ({exc})", fatal=True
            )
        # LOADING (a restart reading its data), MASTERDOWN / READONLY (a failover) and the like pass: an outage.
        return RedisUnavailableError(f"Redis at {where} is not serving yet: {exc}")
    return RedisUnavailableError(f"Redis at {where}: {exc or type(exc).__name__}")


def _tls_error(error: ssl.SSLError, where: str, tls: bool) -> RedisUnavailableError:
    reason = error.reason or str(error)
    if isinstance(error, _TLS_ENDED):
        return RedisUnavailableError(f"the TLS connection to Redis at {where} ended ({reason})")
    message = f"TLS with Redis at {where} failed: {reason}"
    if tls and any(marker in str(reason).upper() for marker in _NOT_TLS_REASONS):
        message += "; REDIS_URL is rediss:// (TLS) and the server does not speak TLS: for a plain Redis use redis://"
    return RedisUnavailableError(message, fatal=True)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it (redis-py raises its own errors while handling the socket's)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _where(url: str) -> tuple[str, str, bool]:
    """(``host:port`` or the socket path, the host, whether it is TLS) of ``url``; never its credentials."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path or "?", parts.path or "?", False
        host = parts.hostname or "localhost"
        return f"{host}:{parts.port or 6379}", host, parts.scheme == "rediss"
    except ValueError:
        return "?", "?", url.startswith("rediss:")


def _redact(url: str) -> str:
    """``url`` with any password replaced, for messages."""
    scheme, sep, rest = url.partition("://") if "://" in url else ("", "", url)
    userinfo, at, _host = rest.partition("/")[0].rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{rest[len(userinfo) + 1 :]}"
