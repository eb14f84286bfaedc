"""The producer's errors are one tree (``producer.errors``), each with its exit code; only the CLI exits or imports
click."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import producer
from producer.errors import EXIT_INCOMPLETE, EXIT_INVALID_INPUT, EXIT_PAUSED, ProducerError

REPO = Path(__file__).resolve().parents[1]


def _library_modules() -> list[str]:
    """Every module of the library's wings, however deep (not the CLI, which turns the errors into exits)."""
    found = [m.name for m in pkgutil.walk_packages(producer.__path__, prefix="producer.")]
    return [name for name in found if name.split(".")[1] not in {"cli", "__main__"}]


def test_every_error_the_library_defines_is_in_the_tree() -> None:
    assert {"producer.submit.plan", "producer.batch.retry", "producer.input.documents"} <= set(_library_modules())
    outside = [
        f"{module}.{name}"
        for module in _library_modules()
        for name, value in vars(importlib.import_module(module)).items()
        if inspect.isclass(value)
        and issubclass(value, Exception)
        and value.__module__ == module
        and not issubclass(value, ProducerError)
    ]
    assert outside == []


def test_each_error_carries_the_exit_code_of_its_kind() -> None:
    from producer.batch.collect import OutputPathError
    from producer.batch.progress import WaitTimeoutError
    from producer.batch.status import BatchPausedError, IncompleteSubmitError
    from producer.input.documents import GlobError
    from producer.submit.indexer import BatchExistsError

    assert GlobError.exit_code == OutputPathError.exit_code == EXIT_INVALID_INPUT
    assert BatchExistsError.exit_code == 1
    assert IncompleteSubmitError.exit_code == WaitTimeoutError.exit_code == EXIT_INCOMPLETE
    assert BatchPausedError.exit_code == EXIT_PAUSED


def test_only_the_cli_exits_or_imports_click() -> None:
    found = [
        f"{path.relative_to(REPO)}: {word}"
        for path in sorted((REPO / "producer").rglob("*.py"))
        if path.parent.name != "cli"
        for word in ("sys.exit", "import click", "from click")
        if word in path.read_text()
    ]
    assert found == []


def test_no_file_of_the_cli_is_over_300_lines() -> None:
    long = [
        f"{path.relative_to(REPO)}: {lines} lines"
        for path in sorted((REPO / "producer" / "cli").glob("*.py"))
        if (lines := len(path.read_text().splitlines())) > 300
    ]
    assert long == []
