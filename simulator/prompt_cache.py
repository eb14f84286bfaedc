"""A model of OpenAI's automatic prompt caching.

Like the real service: only prompts of at least 1024 tokens are cacheable, hits
are reported in 128-token increments from 1024 up, and requests are routed by
``(model, prompt_cache_key)``, falling back to a hash of the prompt's head when
no key is given. What can be shared is the *prefix*: the response schema and
every message before the last one (the last is normally the per-document part).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

MIN_CACHEABLE_TOKENS = 1024
CACHE_INCREMENT_TOKENS = 128


class PromptCache:
    """Remembers prefixes seen per routing key (bounded, least recently used first out)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], None] = OrderedDict()

    def clear(self) -> None:
        self._entries.clear()

    def lookup_and_store(self, routing_key: str, prefixes: Sequence[tuple[str, int]], prompt_tokens: int) -> int:
        """Cached tokens for a prompt, then remember its prefixes.

        ``prefixes`` are cumulative ``(hash, tokens)`` pairs, shortest first: the
        hash of the first *i* prefix segments and how many tokens they make up.
        The longest one seen before under ``routing_key`` is the cache hit.
        """
        shared = 0
        for digest, tokens in prefixes:
            entry = (routing_key, digest)
            if entry in self._entries:
                self._entries.move_to_end(entry)
                shared = max(shared, tokens)
            else:
                self._entries[entry] = None
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        if prompt_tokens < MIN_CACHEABLE_TOKENS or shared < MIN_CACHEABLE_TOKENS:
            return 0
        return shared // CACHE_INCREMENT_TOKENS * CACHE_INCREMENT_TOKENS
