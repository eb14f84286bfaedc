"""Fetch an image or file a request names by URL, without turning the simulator into a server-side request forgery.

The simulator runs beside other things (a demo on a shared host, a pod in a cluster), and whoever can send it a
request chooses the URL: ``http://169.254.169.254/latest/meta-data/`` or ``http://10.0.0.5:6379/`` must not make it
fetch from there. So (issue 19, item 10):

* Nothing is fetched unless the simulator was told to (``SimulatorConfig.fetch_urls``, ``--fetch-urls``); the
  caller (:mod:`simulator.documents`) checks that before calling :func:`fetch`.
* Every address a host name resolves to is checked (one refused address refuses the URL), and aiohttp connects to
  exactly the addresses checked: the check is the connector's resolver, so there is one lookup and no window for
  DNS rebinding between checking and connecting. An IP literal, which aiohttp does not resolve, is checked before
  the request, legacy IPv4 spellings (``127.1``, ``2130706433``) as the address they stand for. No proxy is taken
  from the environment.
* :func:`address_refusal` is the rule. Never fetched: link-local (169.254.0.0/16, where cloud instance metadata
  lives, and fe80::/10), unspecified (0.0.0.0 reaches this host on Linux; ::), multicast and reserved addresses.
  Link-local has no allowance at all: nothing a simulator is pointed at legitimately lives there, and it is the
  first thing an attacker asks for. Fetched only with ``fetch_private`` (``--fetch-private``, which tests serving
  files on 127.0.0.1 need): loopback, the private ranges (10/8, 172.16/12, 192.168/16, fc00::/7, ...) and every
  other address that is not global (100.64/10, documentation ranges, ...). An IPv6 address that carries an IPv4 one
  (IPv4-mapped, NAT64 64:ff9b::/96, 6to4) is judged as that IPv4 address.
* Redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each hop http or https only and checked the same
  way. One timeout covers the whole exchange, redirects included, and the body is read up to a cap, no further.

Limit: an address is judged by its number alone; a global address that routes somewhere internal (a NAT rule, a
proxy in front of the network) is not known to be internal here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

__all__ = ["MAX_REDIRECTS", "FetchFailed", "FetchRefused", "FetchTooLarge", "address_refusal", "fetch"]

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
PRIVATE_HINT = "fetched only with --fetch-private"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(Exception):
    """The URL (or a redirect) leads somewhere the policy does not fetch from; the message says where and why."""


class FetchFailed(Exception):
    """Any other failure to get the bytes: DNS, connection, a non-2xx answer, a timeout, too many redirects."""


class FetchTooLarge(Exception):
    """The body grew past the cap; ``size`` is how many bytes had arrived when reading stopped."""

    def __init__(self, size: int) -> None:
        super().__init__(f"over the cap after {size} bytes")
        self.size = size


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, NAT64's well-known prefix, 6to4), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def address_refusal(address: Address, *, allow_private: bool) -> str | None:
    """Why the simulator must not connect to ``address`` (a phrase: "a link-local address (never fetched)"), or None.

    The order matters: IPv6 counts ::1 as reserved too, so loopback is decided before reserved.
    """
    if isinstance(address, ipaddress.IPv6Address) and (carried := _carried_ipv4(address)) is not None:
        address = carried
    for never, name in (
        (address.is_link_local, "link-local"),
        (address.is_unspecified, "unspecified"),
        (address.is_multicast, "multicast"),
    ):
        if never:
            return f"a {name} address (never fetched)"
    if address.is_loopback:
        return None if allow_private else f"a loopback address ({PRIVATE_HINT})"
    if address.is_reserved:
        return "a reserved address (never fetched)"
    if address.is_global or allow_private:
        return None
    return f"a private address ({PRIVATE_HINT})"


class _CheckedResolver(AbstractResolver):
    """aiohttp's threaded resolver, refusing a host if any address it resolves to is refused.

    The connector connects only to the addresses returned here, so what was checked is what is connected to.
    """

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            refusal = address_refusal(ipaddress.ip_address(result["host"]), allow_private=self._allow_private)
            if refusal is not None:
                raise FetchRefused(f"{host} resolves to {result['host']}, {refusal}")
        return results

    async def close(self) -> None:
        await self._inner.close()


def _check_url(url: URL, *, allow_private: bool) -> None:
    """An http(s) URL whose host, if an IP literal, may be connected to (a name is checked when resolved)."""
    if url.scheme not in ("http", "https"):
        raise FetchRefused("only http and https URLs are fetched")
    host = url.host or ""
    address = _ip_literal(host)
    if address is None:
        return
    refusal = address_refusal(address, allow_private=allow_private)
    if refusal is not None:
        raise FetchRefused(f"{host} is {refusal}")


def _ip_literal(host: str) -> Address | None:
    """The address ``host`` spells, legacy IPv4 forms included (``127.1``, ``2130706433``, ``0x7f.1``): the socket
    layer maps those onto addresses, and some aiohttp versions connect to them without resolving."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not host or host.strip("0123456789abcdefxABCDEFX."):
        return None  # a name (has other characters): the resolver checks it
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


async def fetch(url: str, *, allow_private: bool, timeout_s: float, max_bytes: int) -> tuple[bytes, str]:
    """GET ``url`` under the policy above: ``(body, media type)``.

    Raises :class:`FetchRefused`, :class:`FetchTooLarge` (more than ``max_bytes``) or :class:`FetchFailed`.
    """
    connector = aiohttp.TCPConnector(resolver=_CheckedResolver(allow_private=allow_private), use_dns_cache=False)
    try:
        async with asyncio.timeout(timeout_s), aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            return await _follow(session, URL(url), allow_private=allow_private, max_bytes=max_bytes)
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError) as exc:
        raise FetchFailed(str(exc) or type(exc).__name__) from None


async def _follow(
    session: aiohttp.ClientSession, url: URL, *, allow_private: bool, max_bytes: int
) -> tuple[bytes, str]:
    for hop in range(MAX_REDIRECTS + 1):
        try:
            _check_url(url, allow_private=allow_private)
            async with session.get(url, allow_redirects=False) as response:
                location = response.headers.get("Location")
                if response.status in REDIRECT_STATUSES and location:
                    url = response.url.join(URL(location))
                    continue
                if not 200 <= response.status < 300:
                    raise FetchFailed(f"HTTP {response.status}")
                return await _read(response, max_bytes), response.content_type.lower()
        except FetchRefused as exc:
            if hop == 0:
                raise
            raise FetchRefused(f"it redirects to {url}; {exc}") from None
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


async def _read(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    data = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        data += chunk
        if len(data) > max_bytes:
            raise FetchTooLarge(len(data))
    return bytes(data)
