"""The README is a way in and the manual sits beside it: checks the docs build (`make docs`) does not make."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from producer.cli import main as producer_main
from worker.cli import main as worker_main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_LIMIT = 12_000


def _nav_pages(entries: Any) -> set[str]:
    """Every page file named anywhere in mkdocs.yml's nested nav."""
    if isinstance(entries, str):
        return {entries}
    if isinstance(entries, list):
        return set().union(*(_nav_pages(entry) for entry in entries))
    if isinstance(entries, dict):
        return set().union(*(_nav_pages(value) for value in entries.values()))
    return set()


def _mkdocs_config() -> dict[str, Any]:
    class _Loader(yaml.SafeLoader):
        """Safe loading that leaves mkdocs' ``!!python/name:`` tags as plain strings."""

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)
    loaded = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - SafeLoader
    assert isinstance(loaded, dict)
    return loaded


def test_readme_is_short_and_starts_with_the_two_commands() -> None:
    """The README stays a way in (at most 12,000 bytes: the commands, the tables that matter, links); its first lines
    are `make demo` and `make test`."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= README_LIMIT
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].startswith("# ")
    assert lines[1] == "```bash"
    assert lines[2].startswith("make demo")
    assert lines[3].startswith("make test")
    assert "each creates `.venv/`" in text


def test_readme_links_to_every_docs_page() -> None:
    """Every page of the manual is reachable from the README by a relative link that works on GitHub."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[\w./-]+\.md)\)", text))
    assert linked == {f"docs/{page.name}" for page in DOCS.glob("*.md")}


def test_every_docs_page_is_in_the_nav() -> None:
    """A page missing from mkdocs.yml's nav (or a nav entry without its page) fails here too, not only in --strict."""
    nav = _nav_pages(_mkdocs_config()["nav"])
    pages = {str(page.relative_to(DOCS)) for page in DOCS.rglob("*.md")}
    assert pages == nav


def _commands(group: click.Group, prog: str) -> list[str]:
    return [f"{prog} {name}" for name in group.list_commands(click.Context(group))]


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is in the dev extra")
def test_cli_reference_renders_every_command(tmp_path: Path) -> None:
    """The generated CLI page holds a section for every `producer` and `worker` command (none written by hand)."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    assert isinstance(producer_main, click.Group)
    assert isinstance(worker_main, click.Group)
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(tmp_path / "site"))
    build(config)
    page = (tmp_path / "site" / "cli" / "index.html").read_text(encoding="utf-8")
    commands = _commands(producer_main, "producer") + _commands(worker_main, "worker")
    assert len(commands) >= 15
    for command in commands:
        anchor = command.replace(" ", "-")
        assert f'id="{anchor}"' in page, command


def test_generated_settings_table_covers_the_hand_written_one() -> None:
    """Every variable of the settings models is in the generated table, and the hand-written one names no other."""
    spec = importlib.util.spec_from_file_location("settings_table", DOCS / "_hooks" / "settings_table.py")
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    generated = {name for row in hook.settings_rows() for name in re.findall(r"`([A-Z_]+)`", row[0])}
    written = (DOCS / "settings.md").read_text(encoding="utf-8").split("## Every setting, from the code")[0]
    named = set(re.findall(r"`((?:EXTRACT|OPENAI|REDIS)_[A-Z_]+)`", written))
    assert named - generated <= {"EXTRACT_SECRETS_DIR", "OPENAI_LOG"}


def test_the_library_pages_example_names_only_what_exists() -> None:
    """The library page's example compiles, and every name it imports is there (it would run against workers)."""
    page = (DOCS / "library.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.S)
    assert blocks
    for block in blocks:
        tree = compile(block, "library.md", "exec", flags=0x400)  # ast.PyCF_ONLY_AST
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                assert all(hasattr(module, alias.name) for alias in node.names), node.module
