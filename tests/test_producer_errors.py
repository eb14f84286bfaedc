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
    return [f"producer.{m.name}" for m in pkgutil.iter_modules(producer.__path__) if m.name not in {"cli", "__main__"}]


def test_every_error_the_library_defines_is_in_the_tree() -> None:
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
        for path in sorted((REPO / "producer").glob("*.py"))
        if path.name != "cli.py"
        for word in ("sys.exit", "import click")
        if word in path.read_text()
    ]
    assert found == []
