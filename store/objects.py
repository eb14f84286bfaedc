"""Object storage by URL: a local folder or an S3-compatible bucket, for the results sink and for table inputs.

A *location* is a URL: a local path (``results/``, ``/data/out``, ``file:///data/out``) or ``s3://bucket/prefix/``.
S3 is configured the way every AWS tool is, from the environment: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``), and for an S3-compatible server (MinIO, Ceph,
R2, a test server) ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; with no keys set, the SDK's own chain (profile
files, instance or pod role) applies. Credentials are never part of a URL we show or of an error we raise.

One filesystem API serves both kinds (``pyarrow.fs``), so a Parquet or CSV input streams from S3 exactly as from a
disk. :class:`ObjectStore` adds what the sink needs on top, each call blocking I/O run in a thread with a timeout:

- ``put`` is atomic: an object is visible whole or not at all. On S3 a single PUT is; on a disk the bytes go to a
  hidden temporary name in the same folder, are flushed to the device (``fsync``) and renamed over the name, and the
  folder is flushed too, so a crash leaves the old object or the new one, never a torn one. Writing the same name
  again replaces it: a writer that died after a put and runs again rewrites it idempotently.
- ``get``/``list``/``delete`` of names relative to the location (``part-000001-….parquet``); ``delete`` of a name
  that is gone is not an error.

Every failure is an :class:`ObjectStoreError` that says which location, which operation and why (the SDK's message,
which carries no secret), so the caller can retry or report it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

DEFAULT_TIMEOUT_S = 120.0
"""The longest one object operation may take before it counts as failed (a part is a few MB)."""


class ObjectStoreError(Exception):
    """An object operation that failed: ``location`` (a URL without secrets), ``op`` and the reason."""

    def __init__(self, location: str, op: str, reason: str) -> None:
        super().__init__(f"{op} {location}: {reason}")
        self.location = location
        self.op = op
        self.reason = reason


class LocationError(ValueError):
    """A location URL we cannot use (unknown scheme, no bucket)."""


@dataclass(frozen=True)
class Location:
    """Where objects live: a filesystem and the root path inside it (no trailing slash)."""

    fs: pafs.FileSystem
    root: str
    url: str
    """As the user wrote it, normalized (``s3://bucket/prefix``, or an absolute local path)."""
    is_local: bool

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if name else self.root

    def child(self, name: str) -> Location:
        """A location under this one (a batch's folder under the sink's root)."""
        return Location(self.fs, self.path(name), f"{self.url}/{name}", self.is_local)


def is_remote(url: str) -> bool:
    return url.startswith("s3://")


def s3_filesystem(env: Mapping[str, str] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> pafs.S3FileSystem:
    """An S3 client configured from the AWS variables in ``env`` (the process's environment by default)."""
    env = os.environ if env is None else env
    options: dict[str, Any] = {
        "request_timeout": timeout_s,
        "connect_timeout": min(timeout_s, 10.0),
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        options["region"] = region
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LocationError(f"AWS_ENDPOINT_URL must be http(s)://host[:port], not {endpoint!r}")
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options["access_key"] = env["AWS_ACCESS_KEY_ID"]
        options["secret_key"] = env["AWS_SECRET_ACCESS_KEY"]
        if env.get("AWS_SESSION_TOKEN"):
            options["session_token"] = env["AWS_SESSION_TOKEN"]
    return pafs.S3FileSystem(**options)


def open_location(url: str, env: Mapping[str, str] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Location:
    """The location a URL names. Raises :class:`LocationError` for a URL we cannot use."""
    if is_remote(url):
        parts = urlsplit(url)
        if not parts.netloc:
            raise LocationError(f"{url!r}: an S3 URL names a bucket: s3://bucket/prefix/")
        if parts.query or parts.fragment or "@" in parts.netloc:
            raise LocationError(f"{url!r}: an S3 URL is s3://bucket/prefix/ (credentials come from AWS_* variables)")
        prefix = unquote(parts.path).strip("/")
        root = f"{parts.netloc}/{prefix}" if prefix else parts.netloc
        return Location(s3_filesystem(env, timeout_s=timeout_s), root, f"s3://{root}", is_local=False)
    if "://" in url and not url.startswith("file://"):
        raise LocationError(f"{url!r}: a location is a local path or s3://bucket/prefix/")
    path = Path(unquote(urlsplit(url).path) if url.startswith("file://") else url).expanduser().absolute()
    return Location(pafs.LocalFileSystem(), str(path).rstrip("/") or "/", str(path), is_local=True)


class ObjectStore:
    """Named objects under one location; every operation in a thread, bounded by ``timeout_s``."""

    def __init__(self, location: Location, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.location = location
        self._timeout_s = timeout_s

    async def _run(self, op: str, name: str, fn: Any, *args: Any) -> Any:
        where = f"{self.location.url}/{name}" if name else self.location.url
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), self._timeout_s)
        except TimeoutError:
            raise ObjectStoreError(where, op, f"no answer in {self._timeout_s:g} s") from None
        except (OSError, ValueError) as exc:
            raise ObjectStoreError(where, op, str(exc) or type(exc).__name__) from None

    async def put(self, name: str, data: bytes) -> None:
        await self._run("put", name, self._put, name, data)

    async def get(self, name: str) -> bytes:
        data: bytes = await self._run("get", name, self._get, name)
        return data

    async def list(self) -> dict[str, int]:
        """Every object directly under the location: name → size in bytes (empty if the location does not exist)."""
        found: dict[str, int] = await self._run("list", "", self._list)
        return found

    async def delete(self, name: str) -> None:
        await self._run("delete", name, self._delete, name)

    def _put(self, name: str, data: bytes) -> None:
        if self.location.is_local:
            _put_local(Path(self.location.path(name)), data)
            return
        # compression=None: the bytes as given (pyarrow would otherwise gzip a name ending in .gz once more)
        with self.location.fs.open_output_stream(self.location.path(name), compression=None) as out:
            out.write(data)

    def _get(self, name: str) -> bytes:
        with self.location.fs.open_input_stream(self.location.path(name), compression=None) as src:
            data: bytes = src.read()
            return data

    def _list(self) -> dict[str, int]:
        selector = pafs.FileSelector(self.location.root, allow_not_found=True, recursive=False)
        return {
            info.base_name: int(info.size or 0)
            for info in self.location.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and not info.base_name.startswith(".")
        }

    def _delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.location.fs.delete_file(self.location.path(name))


def _put_local(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
