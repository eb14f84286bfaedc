"""The simulator fetches an image or file URL only when told to, and never from the addresses an attacker wants.

Issue 19, item 10: it downloaded any http(s) URL a request named, link-local addresses included, which wherever it
runs (a demo on a shared host, a pod in a cluster) is a server-side request forgery. Every test here points the
simulator at a local HTTP server that counts the requests it gets, so "not fetched" means zero hits, not a guess.
"""

from __future__ import annotations

import io
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from PIL import Image

from simulator import RunningSimulator, SimulatorConfig
from simulator.__main__ import config_from_args, main, parse_args
from simulator.fetch import address_refusal
from tests.conftest import API_KEY
from tests.test_simulator_documents import chat_body, chat_image, input_image, responses_body

AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
FETCHING = SimulatorConfig(require_api_key=API_KEY, fetch_urls=True)
FETCHING_PRIVATE = SimulatorConfig(require_api_key=API_KEY, fetch_urls=True, fetch_private=True)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Origin:
    """A local HTTP server standing for "somewhere the simulator should not reach unasked"; counts every request."""

    url: str
    hits: list[str] = field(default_factory=list)
    redirect_to: dict[str, str] = field(default_factory=dict)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    served = Origin(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        served.hits.append(request.path)
        if request.path in served.redirect_to:
            raise web.HTTPFound(served.redirect_to[request.path])
        return web.Response(body=png(), content_type="image/png")

    app = web.Application()
    app.router.add_get("/{name:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    served.url = f"http://{host}:{port}"
    try:
        yield served
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession, sim: RunningSimulator, endpoint: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    path = "/responses" if endpoint == "responses" else "/chat/completions"
    async with http.post(f"{sim.base_url}{path}", data=orjson.dumps(body), headers=AUTH) as response:
        payload: dict[str, Any] = await response.json()
        return response.status, payload


async def refused(
    http: aiohttp.ClientSession, sim: RunningSimulator, url: str, *, code: str = "invalid_image_url"
) -> str:
    """Post ``url`` as an image (or, for ``invalid_file_url``, a file) and return the 400's message after checks."""
    part = input_image(url) if code == "invalid_image_url" else {"type": "input_file", "file_url": url}
    status, payload = await post(http, sim, "responses", responses_body([part]))
    assert status == 400, payload
    error = payload["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, code)
    message: str = error["message"]
    assert message.startswith(f"Error while downloading {url}. "), message  # the API's wording, then why
    return message


async def test_urls_are_not_fetched_by_default(
    sim: RunningSimulator, http: aiohttp.ClientSession, origin: Origin
) -> None:
    """Without ``fetch_urls`` an image or file URL gets the API's "Error while downloading" 400, and no request."""
    image = f"{origin.url}/scan.png"
    assert "--fetch-urls" in await refused(http, sim, image)
    assert "--fetch-urls" in await refused(http, sim, f"{origin.url}/invoice.pdf", code="invalid_file_url")
    status, payload = await post(http, sim, "chat", chat_body([chat_image(image)]))
    assert (status, payload["error"]["code"]) == (400, "invalid_image_url")
    assert origin.hits == []


@pytest.mark.parametrize("sim_config", [FETCHING], indirect=True)
async def test_private_addresses_are_refused_unless_allowed(
    sim: RunningSimulator, http: aiohttp.ClientSession, origin: Origin
) -> None:
    """With ``fetch_urls`` alone, loopback (a literal or a name resolving to it) and private ranges are refused."""
    message = await refused(http, sim, f"{origin.url}/scan.png")
    assert "127.0.0.1 is a loopback address" in message
    assert "--fetch-private" in message
    port = origin.url.rsplit(":", 1)[1]
    message = await refused(http, sim, f"http://localhost:{port}/by-name.png")
    assert "localhost resolves to" in message
    assert "--fetch-private" in message
    for legacy in ("127.1", "2130706433", "0x7f.1"):  # spellings of 127.0.0.1 the socket layer accepts
        assert "is a loopback address" in await refused(http, sim, f"http://{legacy}:{port}/legacy.png")
    assert "is a private address" in await refused(http, sim, "http://10.0.0.5:6379/")
    assert "is a private address" in await refused(http, sim, "http://[fc00::1]/x.png")
    assert origin.hits == []


@pytest.mark.parametrize("sim_config", [FETCHING_PRIVATE], indirect=True)
async def test_private_addresses_are_fetched_when_allowed(
    sim: RunningSimulator, http: aiohttp.ClientSession, origin: Origin
) -> None:
    """``fetch_private`` lets the simulator fetch from loopback: the image is read and charged."""
    status, payload = await post(http, sim, "responses", responses_body([input_image(f"{origin.url}/scan.png")]))
    assert status == 200, payload
    assert origin.hits == ["/scan.png"]


@pytest.mark.parametrize("sim_config", [FETCHING_PRIVATE], indirect=True)
@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # the cloud instance metadata service
        "http://[fe80::1]/x.png",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",  # the same, as an IPv4-mapped IPv6 address
        "http://0.0.0.0:6379/",  # connects to this host on Linux
        "http://[::]:6379/",
        "http://224.0.0.1/x.png",
        "http://240.0.0.1/x.png",
    ],
)
async def test_link_local_and_other_special_addresses_are_never_fetched(
    sim: RunningSimulator, http: aiohttp.ClientSession, url: str
) -> None:
    """Even with ``fetch_private``: link-local, unspecified, multicast and reserved addresses are refused unsent."""
    message = await refused(http, sim, url)
    assert "never fetched" in message, message


@pytest.mark.parametrize("sim_config", [FETCHING_PRIVATE], indirect=True)
async def test_redirects_are_checked_hop_by_hop(
    sim: RunningSimulator, http: aiohttp.ClientSession, origin: Origin
) -> None:
    """A redirect to a refused address or scheme is not followed; one to an allowed address is."""
    origin.redirect_to = {
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        "/to-file": "file:///etc/passwd",
        "/to-scan": "/scan.png",
    }
    assert "link-local" in await refused(http, sim, f"{origin.url}/to-metadata")
    assert "only http and https" in await refused(http, sim, f"{origin.url}/to-file")
    status, payload = await post(http, sim, "responses", responses_body([input_image(f"{origin.url}/to-scan")]))
    assert status == 200, payload
    assert origin.hits == ["/to-metadata", "/to-file", "/to-scan", "/scan.png"]


@pytest.mark.parametrize(
    ("address", "private_allowed", "verdict"),
    [
        ("93.184.215.14", False, None),
        ("2606:4700::1111", False, None),
        ("127.0.0.1", False, "loopback"),
        ("127.0.0.1", True, None),
        ("::1", True, None),
        ("192.168.1.1", False, "private"),
        ("100.64.0.1", False, "private"),  # carrier-grade NAT: not global
        ("100.64.0.1", True, None),
        ("169.254.169.254", True, "link-local"),
        ("fe80::1", True, "link-local"),
        ("::ffff:127.0.0.1", False, "loopback"),
        ("::ffff:169.254.169.254", True, "link-local"),
        ("64:ff9b::a9fe:a9fe", True, "link-local"),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", True, "link-local"),  # 6to4 of 169.254.169.254
        ("0.0.0.0", True, "unspecified"),  # noqa: S104 - an address judged, not one bound to
        ("255.255.255.255", True, "reserved"),
        ("ff02::1", True, "multicast"),
    ],
)
def test_address_policy(address: str, private_allowed: bool, verdict: str | None) -> None:
    """One pure rule says which resolved address may be connected to."""
    refusal = address_refusal(ipaddress.ip_address(address), allow_private=private_allowed)
    if verdict is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert verdict in refusal


def test_cli_flags_are_off_by_default_and_map_to_the_config() -> None:
    """``--fetch-urls`` and ``--fetch-private`` turn the two fields on; neither is on by default."""
    default = config_from_args(parse_args([]))
    assert (default.fetch_urls, default.fetch_private) == (False, False)
    both = config_from_args(parse_args(["--fetch-urls", "--fetch-private"]))
    assert (both.fetch_urls, both.fetch_private) == (True, True)


def test_fetch_private_without_fetch_urls_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Allowing private addresses while fetching nothing is a contradiction, said in one line, not ignored."""
    with pytest.raises(SystemExit) as exited:
        main(["--fetch-private"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--fetch-private" in err
    assert "--fetch-urls" in err
