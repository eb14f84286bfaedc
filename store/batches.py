"""The batch record (``{p}batch:{id}``): created once by ``submit``, counted by every recording, read by all.

Its fields are :class:`store.fields.F` plus the token totals (``store.usage``). Lifecycle:

1. ``create`` writes the spec and the line count before anything is indexed or enqueued (``CREATE``);
2. the line index fills (``store.lines``), then the feed cursor moves as lines enter the queue (``store.feed``);
3. every final result moves the counters (``store.results``); when ``done`` reaches ``lines`` (with every line
   indexed) the batch is complete, its attachment bytes go and every one of its keys gets the retention TTL
   (``COMPLETE_LUA``); a ``retry`` or a ``--replace-changed`` that reopens a line, or an ``--append`` that adds some,
   takes the TTL away again until the batch completes anew (``store.feed``);
4. ``delete`` removes every key of the batch and its waiting jobs at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from schemas.jobs import BatchSpec
from schemas.results import Usage
from store.budget import MICRO, SHADOW_PART_LUA, BudgetSplit, BudgetState, split_from
from store.fields import F
from store.keys import BatchKeys, Keys
from store.queue import REMOVE_WAITING, batch_job_ids, job_key
from store.redis_typing import awaited
from store.scripts import LuaScript
from store.usage import USAGE_FIELDS, usage_from
from store.workers import COUNT_LIVE_LUA, NOW_LUA

# Shared by every script that takes BatchKeys as KEYS[1..$BATCH_KEYS] and can finish or reopen a batch. A complete
# batch's attachment bytes (KEYS[7], ``store.blobs``) go at once: no line needs them until one is fed again, and the
# feeder that feeds it stores them again first.
COMPLETE_LUA = """
local function complete_if_done()
  local c = redis.call('HMGET', KEYS[1], '$DONE', '$LINES', '$TTL_MS', '$COMPLETED_MS', '$INDEXED')
  local lines = tonumber(c[2] or '1')
  if c[4] or tonumber(c[1] or '0') < lines or tonumber(c[5] or '0') < lines then return false end
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], '$COMPLETED_MS', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  redis.call('DEL', KEYS[7])
  local ttl = tonumber(c[3] or '0')
  if ttl > 0 then
    for i = 1, $BATCH_KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
  end
  return true
end
local function reopen_batch()
  if redis.call('HDEL', KEYS[1], '$COMPLETED_MS') == 1 then
    for i = 1, $BATCH_KEYS do redis.call('PERSIST', KEYS[i]) end
  end
end
"""

# KEYS: BatchKeys, then the batches index, then (a shadow batch: ARGV[10] is "1") its main batch's record.
# ARGV: spec JSON, lines, ttl ms, input JSON, created_at, created ms, id, budget micro-dollars and budget tokens
# ("" = none: ``store.budget``), "1" for a shadow batch. A shadow batch is created only while its main batch is there
# and not cancelled (checked in this step, so a ``cancel`` of the main batch either sees the shadow or keeps it from
# being made), and takes its part of the main batch's budget (``store.budget.SHADOW_PART_LUA``).
# Returns 1 when this call created the batch, 0 when it existed (the caller compares the stored spec), -2 when the
# main batch of a new shadow is cancelled, -3 when it is gone.
CREATE = LuaScript(
    "create_batch",
    SHADOW_PART_LUA
    + """
if redis.call('HEXISTS', KEYS[1], '$SPEC') == 1 then return 0 end
if ARGV[10] == '1' then
  local main = redis.call('HMGET', KEYS[$NEXT_KEY + 1], '$SPEC', '$CANCELLED_AT')
  if not main[1] then return -3 end
  if main[2] then return -2 end
end
redis.call('HSET', KEYS[1], '$SPEC', ARGV[1])
redis.call('HSET', KEYS[1], '$LINES', ARGV[2], '$INDEXED', 0, '$FED', 0, '$QUEUED', 0, '$DONE', 0,
  '$SUCCEEDED', 0, '$FAILED', 0, '$CANCELLED', 0, '$RETRIED', 0, '$REPLACED', 0, '$TTL_MS', ARGV[3],
  '$INPUT', ARGV[4], '$CREATED_AT', ARGV[5], '$CREATED_MS', ARGV[6])
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], '$BUDGET_MICRO_USD', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', KEYS[1], '$BUDGET_TOKENS', ARGV[9]) end
if ARGV[10] == '1' then shadow_budget(KEYS[1], KEYS[$NEXT_KEY + 1]) end
redis.call('ZADD', KEYS[$NEXT_KEY], ARGV[6], ARGV[7])
return 1
""",
    F.lua_names(),
)


# KEYS: batch record, feeder heartbeat, the workers registry. Returns {the record's fields (HGETALL), whether a feeder
# is alive (1/0), live workers}. One script, so the three are seen at one instant: a feed that finishes (cursor at the
# end, then its heartbeat released) is never seen half-way as "not fully fed and nobody feeding".
SNAPSHOT = LuaScript(
    "batch_snapshot",
    NOW_LUA
    + COUNT_LIVE_LUA
    + """
return {redis.call('HGETALL', KEYS[1]), redis.call('EXISTS', KEYS[2]), live_workers(KEYS[3])}
""",
)


class BatchNotFoundError(LookupError):
    """No record for this batch id under this prefix (never submitted, deleted, or expired)."""


class MainBatchCancelledError(RuntimeError):
    """A shadow batch is not created: its main batch was cancelled (``CREATE``)."""


def not_found_message(batch_id: str) -> str:
    return (
        f"no batch {batch_id!r} in Redis (check the batch id, REDIS_URL and EXTRACT_KEY_PREFIX; finished "
        "batches expire after EXTRACT_BATCH_TTL_S)"
    )


@dataclass(frozen=True)
class BatchRecord:
    """A batch as its record says, at the moment it was read."""

    batch_id: str
    spec: BatchSpec
    created_at: str
    created_ms: int
    lines: int
    indexed: int
    fed: int
    queued: int
    done: int
    succeeded: int
    failed: int
    cancelled: int
    retried: int
    replaced: int
    usage: Usage
    cost_usd: float | None
    possibly_billed_calls: int
    """Calls sent and never answered (abandoned): maybe billed, in no result line's usage."""
    possibly_billed_input_tokens: int
    ttl_ms: int
    input: dict[str, Any] | None
    cancelled_at: str | None
    cancel_from: int | None
    completed_ms: int | None
    tries_failed: int = 0
    """Tries that ended in an error (not a 429): ``F.TRIES_FAILED``."""
    rate_limited: int = 0
    """Tries that ended in a 429: ``F.RATE_LIMITED``."""
    paused: str | None = None
    """Why the batch is paused (``store.pause``), if it is: its lines wait for ``producer resume``."""
    paused_at: str | None = None
    budget: BudgetState | None = None
    """The budgets in force and what counts against them (``store.budget``); None for a batch without any."""
    budget_split: BudgetSplit | None = None
    """A batch with a shadow: how the two share the budget given to it (``store.budget``)."""
    calibration_raw_input: int = 0
    """The uncalibrated input estimates of its answered calls, summed; with ``calibration_input`` (what the provider
    counted for them) it calibrates ``producer estimate``."""
    calibration_input: int = 0

    @property
    def sealed(self) -> bool:
        """Every input line is in the index: the submit got past writing the batch."""
        return self.indexed >= self.lines

    @property
    def fully_fed(self) -> bool:
        return self.fed >= self.lines or self.cancel_from is not None

    @property
    def submitted(self) -> bool:
        """The submit finished: every line indexed and enqueued (or the batch cancelled)."""
        return self.sealed and self.fully_fed

    @property
    def pending(self) -> int:
        return self.lines - self.done

    @property
    def complete(self) -> bool:
        return self.sealed and self.done >= self.lines

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "api": self.spec.api,
            "model": self.spec.model,
            "schema": self.spec.schema_ref,
            "created_at": self.created_at,
            "total": self.lines,
            "indexed": self.indexed,
            "enqueued": self.fed,
            "queued": self.queued,
            "done": self.done,
            "pending": self.pending,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "retried": self.retried,
            "replaced": self.replaced,
            "complete": self.complete,
            "submitted": self.submitted,
            "cancelled_at": self.cancelled_at,
            "tries_failed": self.tries_failed,
            "rate_limited": self.rate_limited,
            "paused": self.paused,
            "paused_at": self.paused_at,
            "usage": self.usage.model_dump(),
            "cost_usd": self.cost_usd,
            "possibly_billed": {
                "calls": self.possibly_billed_calls,
                "input_tokens": self.possibly_billed_input_tokens,
            },
            "budget": dataclasses.asdict(self.budget) if self.budget is not None else None,
            "budget_split": dataclasses.asdict(self.budget_split) if self.budget_split is not None else None,
        }


def parse_record(batch_id: str, raw: dict[bytes, bytes]) -> BatchRecord:
    fields = {k.decode(): v for k, v in raw.items()}

    def count(name: str) -> int:
        return int(fields.get(name, b"0"))

    def text(name: str) -> str | None:
        value = fields.get(name)
        return value.decode() if value is not None else None

    cost = fields.get(F.COST_USD)
    cancel_from, completed, raw_input = fields.get(F.CANCEL_FROM), fields.get(F.COMPLETED_MS), fields.get(F.INPUT)
    return BatchRecord(
        batch_id=batch_id,
        spec=BatchSpec.model_validate_json(fields[F.SPEC]),
        created_at=text(F.CREATED_AT) or "",
        created_ms=count(F.CREATED_MS),
        lines=count(F.LINES),
        indexed=count(F.INDEXED),
        fed=count(F.FED),
        queued=count(F.QUEUED),
        done=count(F.DONE),
        succeeded=count(F.SUCCEEDED),
        failed=count(F.FAILED),
        cancelled=count(F.CANCELLED),
        retried=count(F.RETRIED),
        replaced=count(F.REPLACED),
        usage=usage_from([fields.get(name) for name in USAGE_FIELDS]),
        cost_usd=round(float(cost), 8) if cost is not None else None,
        possibly_billed_calls=count(F.POSSIBLY_BILLED_CALLS),
        possibly_billed_input_tokens=count(F.POSSIBLY_BILLED_TOKENS),
        ttl_ms=count(F.TTL_MS),
        input=orjson.loads(raw_input) if raw_input else None,
        cancelled_at=text(F.CANCELLED_AT),
        cancel_from=int(cancel_from) if cancel_from is not None else None,
        completed_ms=int(completed) if completed is not None else None,
        tries_failed=count(F.TRIES_FAILED),
        rate_limited=count(F.RATE_LIMITED),
        paused=text(F.PAUSED),
        paused_at=text(F.PAUSED_AT),
        budget=_budget(fields),
        budget_split=split_from(fields),
        calibration_raw_input=count(F.CALIBRATION_RAW_INPUT),
        calibration_input=count(F.CALIBRATION_INPUT),
    )


def _budget(fields: dict[str, bytes]) -> BudgetState | None:
    usd, tokens = fields.get(F.BUDGET_MICRO_USD), fields.get(F.BUDGET_TOKENS)
    if usd is None and tokens is None:
        return None

    def micro(name: str) -> float:
        return int(fields.get(name, b"0")) / MICRO

    return BudgetState(
        budget_usd=int(usd) / MICRO if usd is not None else None,
        spent_usd=micro(F.SPENT_MICRO_USD),
        reserved_usd=micro(F.RESERVED_MICRO_USD),
        budget_tokens=int(tokens) if tokens is not None else None,
        spent_tokens=int(fields.get(F.SPENT_TOKENS, b"0")),
        reserved_tokens=int(fields.get(F.RESERVED_TOKENS, b"0")),
    )


@dataclass(frozen=True)
class BatchSnapshot:
    """A batch's record, whether a submit is feeding it, and the live workers, all read in one step
    (:data:`SNAPSHOT`)."""

    record: BatchRecord
    feeder_alive: bool
    live_workers: int

    @property
    def interrupted(self) -> bool:
        """Not every line is enqueued and no submit is feeding the batch: it completes only if a submit runs again."""
        return not self.record.submitted and not self.feeder_alive


@dataclass(frozen=True)
class Footprint:
    """What a batch holds in Redis, in bytes (``MEMORY USAGE``; large keys are estimated by sampling)."""

    by_key: dict[str, int]
    queued_jobs: int
    """The jobs of its lines in the queue (their text included), estimated from a sample of them."""

    @property
    def total(self) -> int:
        return sum(self.by_key.values()) + self.queued_jobs


class BatchStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._create = CREATE.bind(redis)
        self._remove_waiting = REMOVE_WAITING.bind(redis)
        self._snapshot = SNAPSHOT.bind(redis)

    def keys_of(self, batch_id: str) -> BatchKeys:
        return self._keys.batch(batch_id)

    async def create(
        self, spec: BatchSpec, *, lines: int, ttl_ms: int, input_ref: dict[str, Any] | None, created_ms: int
    ) -> bool:
        """Record a new batch; False (nothing written) when the id already has a record. A shadow batch whose main
        batch is cancelled raises ``MainBatchCancelledError``, one whose main batch is gone ``BatchNotFoundError``."""
        main = spec.shadow_of
        keys = [*self.keys_of(spec.batch_id), self._keys.batches]
        created = await self._create(
            keys if main is None else [*keys, self.keys_of(main).record],
            [
                spec.model_dump_json(),
                lines,
                ttl_ms,
                orjson.dumps(input_ref) if input_ref is not None else b"",
                spec.created_at,
                created_ms,
                spec.batch_id,
                "" if spec.budget_usd is None else round(spec.budget_usd * 1_000_000),
                "" if spec.budget_tokens is None else spec.budget_tokens,
                "0" if main is None else "1",
            ],
        )
        if created == -2:
            raise MainBatchCancelledError(f"batch {main!r} was cancelled: its shadow {spec.batch_id!r} is not made")
        if created == -3:
            raise BatchNotFoundError(f"{not_found_message(str(main))}: its shadow batch {spec.batch_id!r} is not made")
        return bool(created)

    async def set_input(self, batch_id: str, input_ref: dict[str, Any]) -> None:
        """Where ``retry`` finds the text now (a resubmit may read the same lines from another path)."""
        await awaited(self._redis.hset(self.keys_of(batch_id).record, F.INPUT, orjson.dumps(input_ref).decode()))

    async def get(self, batch_id: str) -> BatchRecord:
        raw = await awaited(self._redis.hgetall(self.keys_of(batch_id).record))
        if not raw or F.SPEC.encode() not in raw:
            raise BatchNotFoundError(not_found_message(batch_id))
        return parse_record(batch_id, raw)

    async def snapshot(self, batch_id: str) -> BatchSnapshot:
        """The record, the feeder and the live workers at one instant; raises ``BatchNotFoundError``."""
        batch_keys = self.keys_of(batch_id)
        flat, feeder, workers = await self._snapshot([batch_keys.record, batch_keys.feeder, self._keys.workers], [])
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        if F.SPEC.encode() not in raw:
            raise BatchNotFoundError(not_found_message(batch_id))
        return BatchSnapshot(parse_record(batch_id, raw), bool(feeder), int(workers))

    async def spec(self, batch_id: str) -> BatchSpec | None:
        raw = await awaited(self._redis.hget(self.keys_of(batch_id).record, F.SPEC))
        return BatchSpec.model_validate_json(raw) if raw is not None else None

    async def list(self, *, limit: int = 100) -> list[BatchSnapshot]:
        """The newest batches first, each as one :meth:`snapshot`; ids whose record has expired or been deleted are
        dropped from the index."""
        ids = [member.decode() for member in await self._redis.zrevrange(self._keys.batches, 0, limit - 1)]
        snapshots, gone = [], []
        for batch_id in ids:
            try:
                snapshots.append(await self.snapshot(batch_id))
            except BatchNotFoundError:
                gone.append(batch_id)
        if gone:
            await self._redis.zrem(self._keys.batches, *gone)
        return snapshots

    async def recent_ids(self, limit: int) -> tuple[str, ...]:
        """The ids of the newest ``limit`` batches in the index (read only; some records may have expired)."""
        return tuple(member.decode() for member in await self._redis.zrevrange(self._keys.batches, 0, limit - 1))

    async def prune_index(self, *, scan: int = 200) -> int:
        """Drop index entries of the oldest batches whose records are gone (expired). Returns how many."""
        ids = [member.decode() for member in await self._redis.zrange(self._keys.batches, 0, scan - 1)]
        if not ids:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for batch_id in ids:
            pipe.exists(self.keys_of(batch_id).record)
        gone = [batch_id for batch_id, exists in zip(ids, await pipe.execute(), strict=True) if not exists]
        if gone:
            await self._redis.zrem(self._keys.batches, *gone)
        return len(gone)

    async def footprint(self, batch_id: str, *, sample: int = 20) -> Footprint:
        batch_keys = self.keys_of(batch_id)
        pipe = self._redis.pipeline(transaction=False)
        for key in batch_keys:
            pipe.memory_usage(key)
        sizes = await pipe.execute()
        by_key = {name: int(size or 0) for name, size in zip(BatchKeys._fields, sizes, strict=True)}
        record = await self.get(batch_id)
        sampled: list[int] = []
        async for job_ids in batch_job_ids(self._redis, self._keys, batch_id, count=sample):
            pipe = self._redis.pipeline(transaction=False)
            for job_id in job_ids[: sample - len(sampled)]:
                pipe.memory_usage(job_key(job_id))
            sampled += [int(size) for size in await pipe.execute() if size]
            if len(sampled) >= sample:
                break
        average = sum(sampled) / len(sampled) if sampled else 0
        return Footprint(by_key=by_key, queued_jobs=int(average * record.queued))

    async def delete(self, batch_id: str) -> int:
        """Remove every key of the batch and take its waiting jobs off the queue. Returns the jobs removed.

        Jobs already running finish their call, then find no batch and record nothing (``store.results``).
        """
        removed = 0
        async for job_ids in batch_job_ids(self._redis, self._keys, batch_id):
            removed += int(await self._remove_waiting([self._keys.queue], job_ids))
        number = await awaited(self._redis.hget(self.keys_of(batch_id).record, F.CACHE_NUMBER))
        await self._redis.delete(*self.keys_of(batch_id))
        if number is not None:  # the result cache's pointers to its lines lead nowhere now (``store.cache``)
            await awaited(self._redis.hdel(self._keys.cache_batch_ids, number))
        await self._redis.zrem(self._keys.batches, batch_id)
        return removed
