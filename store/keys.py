"""Every Redis key the service writes, and the ids they are built from, in one place.

All keys share a configurable prefix (``Settings.key_prefix``, default ``extract:``); arq's own keys keep arq's
fixed ``arq:`` prefix but are named after job ids that carry ours, so two prefixes on one Redis never meet.

| key | type | what |
| --- | --- | --- |
| ``{p}queue`` | zset | arq's queue (score = due time in ms); holds at most a window of each batch's lines |
| ``{p}batches`` | zset | batch ids by creation time (``producer list``); expired ones are pruned on read |
| ``{p}batch:{id}`` | hash | the batch record: spec, line counts, feed cursor, counters, tokens (``store.batches``) |
| ``{p}batch:{id}:lines`` | list | the line index in input order: fingerprint + custom_id per line (``store.lines``) |
| ``{p}batch:{id}:slots`` | string | a fixed-width slot per line: status, results entry, generation (``store.lines``) |
| ``{p}batch:{id}:results`` | stream | the recorded result lines, compressed (``store.results``, ``store.codec``) |
| ``{p}batch:{id}:accounts`` | hash | ordinal → calls and usage of a running line's tries (``store.accounts``) |
| ``{p}batch:{id}:feeder`` | string | heartbeat of the process feeding the batch into the queue (``store.feed``) |
| ``{p}batch:{id}:blobs`` | hash | ``sha256:`` → bytes of an attachment, while the batch runs (``store.blobs``) |
| ``{p}batch:{id}:uploads`` | hash | ``sha256:`` → ``file_id`` of an upload, or its intent (``store.uploads``) |
| ``{p}batch:{id}:venue`` | hash | Batch API lines: states, staged bodies, answers, parts (``store.provider_batches``) |
| ``{p}batch:{id}:staging`` | zset | ordinals staged for the next provider batch, by when they were staged |
| ``{p}batch:{id}:sink`` | hash | the results sink: parts written, last entry written, stale rows (``store.sink``) |
| ``{p}sink:due`` | zset | batches with a results sink, by when a writer looks at them next (``store.sink.state``) |
| ``{p}venue:staging`` | zset | batches with staged lines, by when to look at them next (``store.provider_batches``) |
| ``{p}venue:parts`` | zset | ``{id}:{n}``: provider batches in flight, by when to advance or poll them next |
| ``{p}venue:queue:{scope}`` | hash | enqueued tokens reserved by provider batches in flight, and the learned limit |
| ``{p}venue:creates:{scope}`` | zset | provider batches created in the last hour (the provider's cap per hour) |
| ``{p}uploads`` | zset | ``{id}:{created ms}`` of each batch with files at the provider, by when to check it next |
| ``{p}uploads:{id}:{created ms}`` | set | every file id (and upload intent) of that batch: outlives the batch's keys |
| ``{p}cache:{provider}:gens`` | hash | result cache: its live generations, each → when it expires (``store.cache``) |
| ``{p}cache:{provider}:{ttl}:{g}`` | hash | one generation of the cache: its bucket level, split pointer, entries |
| ``{p}cache:{provider}:{ttl}:{g}:{n}`` | hash | a bucket: fingerprint digest (12 bytes) → (batch number, ordinal) |
| ``{p}cache:batch-seq`` | string | the last batch number given to a batch whose answers the cache points at |
| ``{p}cache:batch-ids`` | hash | batch number → batch id (an entry goes with its batch) |
| ``{p}inflight:{provider}:{fp}`` | string | coalescing lease: the job calling the API for this fingerprint |
| ``{p}health:{worker}`` | string | per-worker arq health line |
| ``{p}workers`` | zset | live workers: lease owner → when its registration lapses (``store.workers``) |
| ``{p}rl:{scope}`` | hash | admission buckets of one limit scope (``store.limits``) |
| ``{p}rl:{scope}:flight`` | zset | the scope's reservations not settled yet, by when they lapse |
| ``{p}rl:resv:{id}`` | string | one admission reservation, deleted when settled |
| ``arq:job:{job id}`` (+ arq's ``in-progress``/``retry``) | string | a queued line's job: the only copy of its text |

Ids are what keeps keys apart: a prefix is one segment ending in ``:`` (``extract:``, ``team-a:``), a batch id
matches :data:`BATCH_ID_PATTERN` (no ``:``, no glob characters), and arq job ids are ``{p}{batch}:{ordinal}`` --
the line's position in the input, never its custom_id, which may hold any character. Different (prefix, batch,
line) triples therefore always name different keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

PREFIX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}:")
"""One segment and a colon: nested prefixes (``a:`` and ``a:b:``) could otherwise name each other's keys."""
BATCH_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
"""Letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most 128 characters."""
BATCH_ID_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


class InvalidIdError(ValueError):
    """A key prefix or batch id outside its alphabet: it could collide with another's keys."""


def check_prefix(prefix: str) -> str:
    if not PREFIX_PATTERN.fullmatch(prefix) or prefix == "arq:":
        raise InvalidIdError(
            f"invalid key prefix {prefix!r}: one segment of letters, digits, '.', '_' or '-' ending in ':' "
            "(e.g. 'extract:'), and not arq's own 'arq:'"
        )
    return prefix


def check_batch_id(batch_id: str) -> str:
    if not BATCH_ID_PATTERN.fullmatch(batch_id):
        raise InvalidIdError(f"invalid batch id {batch_id!r}: {BATCH_ID_RULE}")
    return batch_id


class BatchKeys(NamedTuple):
    """Every key of one batch, in the order the batch scripts take them as KEYS (a script's next key, such as the
    queue, is ``KEYS[$NEXT_KEY]``: :data:`KEY_NAMES`)."""

    record: str
    lines: str
    slots: str
    results: str
    accounts: str
    feeder: str
    blobs: str
    """Attachment bytes, one field per distinct content (``store.blobs``); removed when the batch completes."""
    uploads: str
    """Content hash → the provider's ``file_id`` of attachments uploaded for the batch (``--attach upload``), or the
    intent of an upload under way (``store.uploads``)."""
    venue: str
    """The batch's lines on the Batch API venue: each line's state, staged request bodies, answers waiting to be
    recorded, and the provider batches (parts) it made (``store.provider_batches``)."""
    staging: str
    """The lines staged for the next provider batch, by when they were staged (``store.provider_batches``)."""
    sink: str
    """The results sink's record: the parts written, the last results entry they hold, superseded rows
    (``store.sink.state``)."""

    @property
    def prefix(self) -> str:
        """The key prefix these keys were built under (``{p}batch:{id}``; an id holds no ``:``)."""
        return self.record.rsplit("batch:", 1)[0]

    @property
    def batch_id(self) -> str:
        return self.record.rsplit(":", 1)[1]


KEY_NAMES: dict[str, str | int] = {
    "BATCH_KEYS": len(BatchKeys._fields),
    "NEXT_KEY": len(BatchKeys._fields) + 1,
    "SINK_KEY": BatchKeys._fields.index("sink") + 1,
}
"""For Lua: ``$BATCH_KEYS`` keys of a batch come first, then ``KEYS[$NEXT_KEY]`` (the queue, the batches index);
``KEYS[$SINK_KEY]`` is the batch's sink record."""


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix. Cheap to build; pure string formatting."""

    prefix: str = "extract:"

    def __post_init__(self) -> None:
        check_prefix(self.prefix)

    @property
    def queue(self) -> str:
        return f"{self.prefix}queue"

    @property
    def batches(self) -> str:
        return f"{self.prefix}batches"

    def batch(self, batch_id: str) -> BatchKeys:
        base = f"{self.prefix}batch:{check_batch_id(batch_id)}"
        return BatchKeys(
            base,
            f"{base}:lines",
            f"{base}:slots",
            f"{base}:results",
            f"{base}:accounts",
            f"{base}:feeder",
            f"{base}:blobs",
            f"{base}:uploads",
            f"{base}:venue",
            f"{base}:staging",
            f"{base}:sink",
        )

    @property
    def uploads_index(self) -> str:
        """Batches with files at the provider, by when the uploads sweep checks them next (``store.uploads``)."""
        return f"{self.prefix}uploads"

    def batch_files(self, batch_id: str, created_ms: int) -> str:
        """Every file (and upload intent) of one batch -- one generation of its id -- until the files are deleted at
        the provider: it outlives the batch's own keys on purpose (``store.uploads``)."""
        return f"{self.prefix}uploads:{check_batch_id(batch_id)}:{created_ms}"

    @property
    def venue_staging(self) -> str:
        """Batches with lines staged for a provider batch, by when to look at them next (``store.provider_batches``)."""
        return f"{self.prefix}venue:staging"

    @property
    def venue_parts(self) -> str:
        """Provider batches in flight (``{id}:{n}``), by when to advance or poll them next."""
        return f"{self.prefix}venue:parts"

    def venue_queue(self, scope: str) -> str:
        """The enqueued tokens reserved against one model's and key's Batch API queue limit, and the limit learned."""
        return f"{self.prefix}venue:queue:{scope}"

    def venue_creates(self, scope: str) -> str:
        """Provider batches created in the last hour under one key (the provider's cap per hour)."""
        return f"{self.prefix}venue:creates:{scope}"

    @property
    def sink_due(self) -> str:
        """Batches with a results sink, by when a writer looks at them next (``store.sink.state``)."""
        return f"{self.prefix}sink:due"

    def cache_prefix(self, provider: str) -> str:
        """What every result-cache key of ``provider`` (a hash of the endpoint: two providers never share answers)
        starts with; a generation is ``{ttl_s}:{number}`` after it, its buckets ``:{n}`` after that
        (``store.cache``)."""
        return f"{self.prefix}cache:{provider}:"

    def cache_generations(self, provider: str) -> str:
        """The result cache's live generations of ``provider``: generation → when it expires (ms)."""
        return f"{self.cache_prefix(provider)}gens"

    def cache_generation(self, provider: str, generation: str) -> str:
        """One generation of the result cache (``{ttl_s}:{number}``): its level, split pointer and entry count."""
        return f"{self.cache_prefix(provider)}{generation}"

    @property
    def cache_batch_seq(self) -> str:
        """The last number given to a batch in the result cache's pointers (``store.cache``)."""
        return f"{self.prefix}cache:batch-seq"

    @property
    def cache_batch_ids(self) -> str:
        """Batch number → batch id, for the result cache's pointers (``store.cache``)."""
        return f"{self.prefix}cache:batch-ids"

    def inflight(self, provider: str, fingerprint: str) -> str:
        return f"{self.prefix}inflight:{provider}:{fingerprint}"

    def health(self, worker_name: str) -> str:
        return f"{self.prefix}health:{worker_name}"

    @property
    def workers(self) -> str:
        """The registry of live workers and their leases (``store.workers``)."""
        return f"{self.prefix}workers"

    def rate_limit(self, scope: str) -> str:
        return f"{self.prefix}rl:{scope}"

    def rate_flight(self, scope: str) -> str:
        """The scope's reservations not settled yet (``store.limits``)."""
        return f"{self.prefix}rl:{scope}:flight"

    def reservation(self, reservation_id: str) -> str:
        return f"{self.prefix}rl:resv:{reservation_id}"

    # --- arq job ids ----------------------------------------------------------------------------------------
    def job_base(self, batch_id: str) -> str:
        """What every job id of the batch starts with (the Lua scripts append ordinal and generation)."""
        return f"{self.prefix}{check_batch_id(batch_id)}:"

    def job_id(self, batch_id: str, ordinal: int, generation: int = 0) -> str:
        """The arq job id of one line: its batch, its position and its generation (``store.lines``): a line enqueued
        again gets a fresh arq id, so nothing arq still holds under the earlier one can touch the new job."""
        base = f"{self.job_base(batch_id)}{ordinal}"
        return base if generation == 0 else f"{base}.{generation}"

    def job_pattern(self, batch_id: str) -> str:
        """A ``MATCH`` pattern for the batch's job ids (the alphabets above hold no glob characters)."""
        return f"{self.prefix}{check_batch_id(batch_id)}:*"

    @staticmethod
    def job_ordinal(job_id: str) -> int:
        """The line ordinal a job id names."""
        return int(job_id.rsplit(":", 1)[1].split(".", 1)[0])

    def parse_job_id(self, job_id: str) -> tuple[str, int] | None:
        """(batch id, ordinal) of one of our job ids; None for anything else in the queue."""
        if not job_id.startswith(self.prefix):
            return None
        batch_id, _, line = job_id.removeprefix(self.prefix).rpartition(":")
        ordinal, _, generation = line.partition(".")
        if not BATCH_ID_PATTERN.fullmatch(batch_id) or not ordinal.isdigit():
            return None
        if generation and not generation.isdigit():
            return None
        return batch_id, int(ordinal)


# The same job ids, built inside scripts from ``Keys.job_base``: keep in step with ``Keys.job_id``.
JOB_ID_LUA = """
local function job_id(base, ord, gen)
  if gen == 0 then return base .. ord end
  return base .. ord .. '.' .. gen
end
"""
