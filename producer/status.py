"""Read a batch's progress from its record (counters kept by the workers' record-once script)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from schemas.jobs import BatchSpec
from schemas.keys import Keys
from schemas.redis_typing import awaited
from schemas.results import Usage


class BatchNotFoundError(LookupError):
    pass


@dataclass(frozen=True)
class BatchStatus:
    batch_id: str
    api: str
    model: str
    schema: str
    created_at: str
    total: int
    done: int
    succeeded: int
    failed: int
    cancelled: int
    usage: Usage
    cost_usd: float | None

    @property
    def pending(self) -> int:
        return self.total - self.done

    @property
    def complete(self) -> bool:
        return self.done >= self.total

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usage"] = self.usage.model_dump()
        data["pending"] = self.pending
        data["complete"] = self.complete
        return data


async def read_status(redis: Redis, keys: Keys, batch_id: str) -> BatchStatus:
    raw = await awaited(redis.hgetall(keys.batch(batch_id)))
    if not raw or b"spec" not in raw:
        raise BatchNotFoundError(f"no batch {batch_id!r} in Redis (check --batch-id, REDIS_URL and the key prefix)")
    fields = {k.decode(): v for k, v in raw.items()}
    spec = BatchSpec.model_validate_json(fields["spec"])

    def count(name: str) -> int:
        return int(fields.get(name, b"0"))

    usage = Usage(
        input_tokens=count("input_tokens"),
        cached_input_tokens=count("cached_input_tokens"),
        output_tokens=count("output_tokens"),
        reasoning_tokens=count("reasoning_tokens"),
        total_tokens=count("total_tokens"),
    )
    cost = fields.get("cost_usd")
    return BatchStatus(
        batch_id=batch_id,
        api=spec.api,
        model=spec.model,
        schema=spec.schema_ref,
        created_at=spec.created_at,
        total=count("total"),
        done=count("done"),
        succeeded=count("succeeded"),
        failed=count("failed"),
        cancelled=count("cancelled"),
        usage=usage,
        cost_usd=round(float(cost), 8) if cost is not None else None,
    )
