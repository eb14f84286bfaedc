"""How the store's Lua scripts are written and called.

Every script lives next to the data it changes (``store.batches``, ``store.lines``, ``store.feed``, ...) and is a
:class:`LuaScript`: its text, with ``$NAME`` placeholders filled from the store's own field-name constants (so a
hash field is spelled once, in Python, even inside Lua), and a documented KEYS/ARGV layout that only a typed method
next to it builds. Scripts run by ``EVALSHA`` (redis-py loads them on first use and after a Redis restart).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from string import Template
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

Arg = str | int | float | bytes


@dataclass(frozen=True)
class LuaScript:
    """A Lua script with ``$NAME`` placeholders, substituted once when it is defined."""

    name: str
    source: str
    names: Mapping[str, str | int] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return Template(self.source).substitute(self.names)

    def bind(self, redis: Redis) -> BoundScript:
        return BoundScript(self, redis.register_script(self.text))


@dataclass(frozen=True)
class BoundScript:
    script: LuaScript
    _registered: AsyncScript

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg], *, pipe: Pipeline | None = None) -> Any:
        """Run the script, or queue it on ``pipe`` (its result then comes from ``pipe.execute()``)."""
        return await self._registered(keys=list(keys), args=list(args), client=pipe)
