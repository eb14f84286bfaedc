"""A real S3-compatible server for the tests: moto's standalone server over HTTP, behind a proxy that injects faults.

``S3Server`` starts ``moto_server`` on a free port (a process of its own, in memory: nothing outlives it) and a small
aiohttp proxy in front of it, in a thread of the test process; clients talk to the proxy. The proxy forwards every
request unchanged (moto does not check signatures) unless a fault is armed:

- ``fail``: the next ``count`` matching requests get a 500 ``InternalError`` (the SDK retries 3 times: arm 4+ to make
  a call fail);
- ``slow``: the next ``count`` matching requests are held ``delay_s`` before they are forwarded;
- ``drop``: the next ``count`` matching requests read part of their body and then lose the connection.

A fault matches by HTTP method and, optionally, a substring of the path (``"part-"``). ``env`` gives the AWS variables
a client needs to reach the proxy (dummy keys; the endpoint).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.processes import free_port


@dataclass
class Fault:
    kind: str
    method: str
    path_contains: str
    count: int
    delay_s: float = 0.0


@dataclass
class _Faults:
    armed: list[Fault] = field(default_factory=list)
    seen: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, method: str, path: str) -> Fault | None:
        with self.lock:
            self.seen.append((method, path))
            for fault in self.armed:
                if fault.count > 0 and fault.method == method and fault.path_contains in path:
                    fault.count -= 1
                    return fault
        return None


class S3Server:
    def __init__(self) -> None:
        self.moto_port = free_port()
        self.port = free_port()
        self.faults = _Faults()
        self._moto: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def start(self) -> S3Server:
        server = Path(sys.executable).parent / "moto_server"
        self._moto = subprocess.Popen(
            [str(server), "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"},
        )
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.moto_port), timeout=1):
                    return self
            except OSError:  # not listening yet
                time.sleep(0.1)  # noqa: TID251 - the test thread, no event loop here
        self.stop()
        raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        if self._moto is not None:
            self._moto.terminate()
            try:
                self._moto.wait(2)
            except subprocess.TimeoutExpired:  # its development server does not always stop on SIGTERM
                self._moto.kill()
                self._moto.wait(5)

    def client(self) -> Any:
        """A boto3 S3 client against the proxy (for setting up and inspecting buckets)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def arm(self, kind: str, method: str, count: int = 1, *, path_contains: str = "", delay_s: float = 0.0) -> None:
        with self.faults.lock:
            self.faults.armed.append(Fault(kind, method, path_contains, count, delay_s))

    def disarm(self) -> None:
        with self.faults.lock:
            self.faults.armed.clear()

    # --- the proxy, in its own thread and event loop ---

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        loop.run_until_complete(self._runner.setup())
        loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        fault = self.faults.take(request.method, request.path)
        if fault is not None and fault.kind == "fail":
            await request.read()
            body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            return web.Response(status=500, body=body, content_type="application/xml")
        if fault is not None and fault.kind == "drop":
            await request.content.read(1024)
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never reaches the client: the connection is gone
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.delay_s)
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("transfer-encoding",)}
        url = f"http://127.0.0.1:{self.moto_port}{request.path_qs}"
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(request.method, url, data=body, headers=headers, allow_redirects=False) as upstream,
        ):
            payload = await upstream.read()
            out_headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("transfer-encoding", "content-length", "connection")
            }
            if request.method == "HEAD":
                # A HEAD answer has no body but the object's length: keep the server's Content-Length.
                return web.Response(status=upstream.status, headers=dict(upstream.headers))
            return web.Response(status=upstream.status, body=payload, headers=out_headers)
