"""MkDocs hook: the list of every setting, generated from ``schemas/settings.py`` at build time.

A page holding the marker ``<!-- settings:generated -->`` gets, in its place, one table row per field of
``WorkerSettings`` and ``ProducerSettings``: its environment variable(s), which process reads it, its type, its
default and the field's docstring. Nothing is written twice: a new setting appears here when the model has it.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import re
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from schemas import settings as settings_module
from schemas.settings import CommonSettings, ProducerSettings, WorkerSettings

MARKER = "<!-- settings:generated -->"


def _attribute_docstrings() -> dict[str, str]:
    """Field name → the string literal right under its assignment in ``schemas/settings.py`` (first one wins)."""
    tree = ast.parse(inspect.getsource(settings_module))
    docs: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for current, following in itertools.pairwise(body):
            if (
                isinstance(current, ast.AnnAssign)
                and isinstance(current.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs.setdefault(current.target.id, " ".join(following.value.value.split()))
    return docs


def env_names(field: str, info: FieldInfo) -> list[str]:
    """The environment variables that set ``field``: its upper-case aliases, else ``EXTRACT_<FIELD>``."""
    alias: Any = info.validation_alias
    choices = getattr(alias, "choices", None)
    if choices is not None:
        names = [choice for choice in choices if isinstance(choice, str) and choice.isupper()]
        if names:
            return names
    return [f"EXTRACT_{field.upper()}"]


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        return "`{}`" if "dict" in repr(info.annotation) else "empty"
    if info.default is PydanticUndefined or info.default is None:
        return "none"
    return f"`{info.default}`"


def _type(annotation: Any) -> str:
    """A short type: no module paths, no constraint metadata (``dict[str, int]``, ``Literal['inline', 'upload']``)."""
    text = inspect.formatannotation(annotation)
    text = re.sub(r"Annotated\[(\w+), FieldInfo\(.*?\)\]\]", r"\1]", text)
    text = re.sub(r"Optional\[(.*)\]$", r"\1 | None", text)
    return re.sub(r"\b(?:typing|pydantic\.types|schemas\.\w+)\.", "", text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_rows() -> list[tuple[str, str, str, str, str]]:
    """(variables, read by, type, default, description) for every setting, common ones first."""
    docs = _attribute_docstrings()
    rows = []
    seen: set[str] = set()
    for cls, reader in ((CommonSettings, "both"), (WorkerSettings, "worker"), (ProducerSettings, "producer")):
        for field, info in cls.model_fields.items():
            if field in seen:
                continue
            seen.add(field)
            names = " / ".join(f"`{name}`" for name in env_names(field, info))
            rows.append(
                (names, reader, f"`{_cell(_type(info.annotation))}`", _default(info), _cell(docs.get(field, "")))
            )
    return rows


def settings_table() -> str:
    lines = ["| variable | read by | type | default | from the field's docstring |", "| --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(row) + " |" for row in settings_rows()]
    return "\n".join(lines) + "\n"


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the marker with the generated table (other pages pass through unchanged)."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, settings_table())
