"""How the store's Lua scripts are written and called.

Every script lives next to the data it changes (``store.batches``, ``store.lines``, ``store.feed``, ...) and is a
:class:`LuaScript`: its text, with ``$NAME`` placeholders filled from the store's own field-name constants (so a
hash field is spelled once, in Python, even inside Lua), and a documented KEYS/ARGV layout that only a typed method
next to it builds. Scripts run by ``EVALSHA`` (redis-py loads them on first use and after a Redis restart).

A :class:`RoundTrip` sends several commands and scripts as one non-transactional pipeline: one network round trip
where there were several, which is most of what a line costs the worker's CPU beyond arq's own (about 0.1 ms of
client CPU per trip). Each store module offers ``queue_*`` variants that add their step to a trip and return a
:class:`Slot` for its parsed result, so the worker can put, say, the line's state, its cache lookup and its account
into one trip without ever spelling a key. redis-py's own pipelines check every script with ``SCRIPT EXISTS`` (an
extra round trip) on each ``execute``; a trip sends bare ``EVALSHA`` and, on ``NOSCRIPT`` (a restarted or flushed
Redis), loads the scripts and re-sends the steps that failed, in their order. The steps of one trip are therefore
independent of each other's *success*: plain commands in a trip never rely on a script before them having run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from string import Template
from typing import Any, Generic, TypeVar

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from store.keys import KEY_NAMES

Arg = str | int | float | bytes
T = TypeVar("T")


@dataclass(frozen=True)
class LuaScript:
    """A Lua script with ``$NAME`` placeholders, substituted once when it is defined (every script may use
    ``store.keys.KEY_NAMES``: ``$BATCH_KEYS``, ``$NEXT_KEY``)."""

    name: str
    source: str
    names: Mapping[str, str | int] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return Template(self.source).substitute({**KEY_NAMES, **self.names})

    def bind(self, redis: Redis) -> BoundScript:
        return BoundScript(self, redis.register_script(self.text))


@dataclass(frozen=True)
class BoundScript:
    script: LuaScript
    _registered: AsyncScript

    async def __call__(self, keys: Sequence[str], args: Sequence[Arg], *, pipe: Pipeline | None = None) -> Any:
        """Run the script, or queue it on ``pipe`` (its result then comes from ``pipe.execute()``)."""
        return await self._registered(keys=list(keys), args=list(args), client=pipe)

    @property
    def sha(self) -> str:
        return str(self._registered.sha)

    @property
    def text(self) -> str:
        return str(self._registered.script)


class Slot(Generic[T]):
    """The parsed result of one step of a :class:`RoundTrip`, once the trip has run."""

    def __init__(self, parse: Callable[[Any], T]) -> None:
        self._parse = parse
        self._value: T | None = None
        self._done = False

    def fill(self, raw: Any) -> None:
        self._value, self._done = self._parse(raw), True

    @property
    def value(self) -> T:
        if not self._done:
            raise RuntimeError("the round trip holding this step has not run")
        return self._value  # type: ignore[return-value]


class Joined(Slot[T]):
    """A result made of several steps' results (say, two reads that together tell a line's state)."""

    def __init__(self, parts: Sequence[Slot[Any]], combine: Callable[..., T]) -> None:
        super().__init__(_same)
        self._parts = parts
        self._combine = combine

    @property
    def value(self) -> T:
        return self._combine(*(part.value for part in self._parts))


def _same(raw: Any) -> Any:
    return raw


@dataclass
class _Step:
    args: tuple[Arg, ...]
    slot: Slot[Any]
    script: BoundScript | None = None


class RoundTrip:
    """Commands and scripts sent together in one pipeline (not a transaction); see the module note."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._steps: list[_Step] = []

    def __len__(self) -> int:
        return len(self._steps)

    def command(self, *args: Arg, parse: Callable[[Any], T] = _same) -> Slot[T]:
        slot: Slot[T] = Slot(parse)
        self._steps.append(_Step(args, slot))
        return slot

    def script(
        self, script: BoundScript, keys: Sequence[str], args: Sequence[Arg], parse: Callable[[Any], T] = _same
    ) -> Slot[T]:
        slot: Slot[T] = Slot(parse)
        self._steps.append(_Step(("EVALSHA", script.sha, len(keys), *keys, *args), slot, script))
        return slot

    async def run(self) -> None:
        """Send every step in one round trip and fill their slots. Raises the first error a step answered with."""
        steps, self._steps = self._steps, []
        if not steps:
            return
        replies = await self._send(steps)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis lost its scripts (a restart, SCRIPT FLUSH): load them, re-send what failed, in order
            scripts = [script for i in missing if (script := steps[i].script) is not None]
            for text in dict.fromkeys(script.text for script in scripts):
                await self._redis.script_load(text)
            for i, reply in zip(missing, await self._send([steps[i] for i in missing]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        for step, reply in zip(steps, replies, strict=True):
            step.slot.fill(reply)

    async def _send(self, steps: list[_Step]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for step in steps:
            pipe.execute_command(*step.args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        return [_as_noscript(reply) for reply in replies]


async def single(redis: Redis, step: Callable[[RoundTrip], Slot[T]]) -> T:
    """Run one ``queue_*`` step in a round trip of its own and return its result."""
    trip = RoundTrip(redis)
    slot = step(trip)
    await trip.run()
    return slot.value


def _as_noscript(reply: Any) -> Any:
    if isinstance(reply, ResponseError) and not isinstance(reply, NoScriptError) and str(reply).startswith("NOSCRIPT"):
        return NoScriptError(str(reply))
    return reply
