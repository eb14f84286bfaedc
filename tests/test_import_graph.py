"""The packages' import graphs have no cycle: every module of ``producer/``, ``worker/`` and ``store/`` can be read
from its imports down, and a new import that closes a circle fails here, not in a reviewer's head. Imports under
``if TYPE_CHECKING:`` count too: a circle that only the type checker sees is still a circle in the design.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("producer", "worker", "store", "schemas")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a.b import c`` names ``a.b.c`` when that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules}


def _graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    modules = set(paths)
    return {name: _imports(path, modules) - {name} for name, path in paths.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", ["producer", "worker", "store", "schemas"])
def test_no_import_cycle(package: str) -> None:
    graph = _graph()
    inside = {name: {d for d in deps if d.split(".")[0] == package} for name, deps in graph.items()}
    inside = {name: deps for name, deps in inside.items() if name.split(".")[0] == package}
    assert _cycles(inside) == []


def test_the_layers_point_one_way() -> None:
    """``producer`` and ``worker`` never import each other; ``store`` imports neither; ``schemas`` imports only
    itself (DESIGN.md's dependency direction)."""
    allowed = {
        "producer": {"producer", "store", "schemas"},
        "worker": {"worker", "store", "schemas"},
        "store": {"store", "schemas"},
        "schemas": {"schemas"},
    }
    wrong = [
        f"{name} imports {dep}"
        for name, deps in _graph().items()
        for dep in sorted(deps)
        if dep.split(".")[0] not in allowed[name.split(".")[0]]
    ]
    assert wrong == []


REDIS_COMMANDS = re.compile(
    r"(?:\bredis|_redis|\bpool|\bclient)\.(?:get|set|delete|exists|expire|pexpire|h\w+|z\w+|x\w+|l\w+|"
    r"s(?:add|rem|members|can\w*)|incr\w*|eval\w*|pipeline|keys|mset|mget)\("
)


def test_the_producer_and_the_worker_send_no_raw_redis_command() -> None:
    """Every Redis read and write goes through a method of the store, which owns the keys and the scripts."""
    raw = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for package in ("producer", "worker")
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if REDIS_COMMANDS.search(line)
    ]
    assert raw == []


WING_RULE = {
    "cli": {"cli", "batch", "submit", "analysis", "input", "errors"},
    "batch": {"batch", "submit", "input", "errors"},
    "submit": {"submit", "input", "errors"},
    "analysis": {"analysis", "errors"},
    "input": {"input", "errors"},
    "errors": {"errors"},
}
"""``producer/__init__.py``'s rule: which wings each wing may import."""


def _wing(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "producer" or len(parts) < 2:
        return None
    return "cli" if parts[1] == "__main__" else parts[1]


def test_the_producers_wings_import_as_the_rule_says() -> None:
    wrong = [
        f"{name} imports {dep}"
        for name, deps in _graph().items()
        if (wing := _wing(name)) is not None
        for dep in sorted(deps)
        if (other := _wing(dep)) is not None and other not in WING_RULE[wing]
    ]
    assert wrong == []
    assert {_wing(name) for name in _graph() if _wing(name)} <= set(WING_RULE)
