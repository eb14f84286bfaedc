"""redis-py 5 types every async command as ``Awaitable[T] | T`` (one class serves sync and async clients).

``awaited`` narrows that to ``T`` for mypy without casts scattered through the code.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def awaited(value: Awaitable[T] | T) -> T:
    if inspect.isawaitable(value):
        return await value
    return value
