"""The Batch API's batches (``/v1/batches``): settings, the batch record and the in-memory book of batches.

What happens to a batch over time is :mod:`simulator.batch_runner`'s; what is in its input file,
:mod:`simulator.batch_input`'s; the routes, :mod:`simulator.batches_api`'s. This module holds the state they share.

**Settings** (:class:`BatchSettings`, ``POST``/``GET /_sim/batches``, ``SimulatorConfig.batch_*``): the time model
(``batch_validating_s``, ``batch_lines_per_s``, ``batch_finalizing_s``, ``batch_cancelling_s``, read live by running
batches), the limits (``creates_per_hour``, ``enqueued_token_limit``, ``max_input_bytes``, ``max_lines``, read when
they apply), ``hold`` (live) and the line faults (``expire_after_lines``, ``server_error_share``,
``invalid_answer_share``, ``drop_lines``, ``no_output_file``), which a batch takes as they are when it is created
(:class:`LineFaults`), so a test changes them for the batches it creates next.

**The Batch object** (:meth:`Batch.object`) has every field of the spec's ``Batch`` schema. The spec types the ids,
timestamps and ``errors`` as non-nullable, so a field that has no value yet is left out rather than sent as null (as
:mod:`simulator.files` does with ``expires_at``); the SDK reads both as None. ``metadata`` (nullable) is always there,
``usage`` (Responses field names whatever the endpoint) and ``request_counts`` too. ``request_counts.failed`` counts
the lines answered with an HTTP error; lines a batch never got to (expired, cancelled) are in neither count.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from simulator.request import Endpoint
from simulator.tokens import Usage

BatchStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
PENDING: tuple[BatchStatus, ...] = ("validating", "in_progress", "finalizing")
"""The statuses whose input tokens count against the enqueued-token limit."""
ENDPOINTS: dict[str, Endpoint] = {"/v1/responses": "responses", "/v1/chat/completions": "chat.completions"}
"""The batch endpoints the simulator serves, and the synchronous endpoint that answers their lines."""
COMPLETION_WINDOW_S = 24 * 3600
MAX_INPUT_BYTES = 200 * 1024 * 1024
"""The Batch API's 200 MB per input file (209,715,200 bytes, as its error message spells it)."""
MAX_LINES = 50_000
LIST_LIMIT_MAX = 100
LIST_LIMIT_DEFAULT = 20
CREATES_WINDOW_S = 3600.0
ORGANIZATION = "org-sim"


class BatchSettings(BaseModel):
    """How simulated batches behave: the body of ``POST /_sim/batches`` (every key optional there).

    Times are in seconds of the event loop's clock; 0 for a limit means unlimited.
    """

    model_config = ConfigDict(extra="forbid")

    batch_validating_s: float = Field(default=0.5, ge=0)
    """How long a batch stays ``validating``."""
    batch_lines_per_s: float = Field(default=2000.0, gt=0)
    """How fast an ``in_progress`` batch answers its lines (in the background, in input order)."""
    batch_finalizing_s: float = Field(default=0.5, ge=0)
    batch_cancelling_s: float = Field(default=0.5, ge=0)
    creates_per_hour: int = Field(default=2000, ge=0)
    """Batch creations per rolling hour; past it ``POST /v1/batches`` answers 429 (0 = unlimited)."""
    enqueued_token_limit: dict[str, int] = Field(default_factory=dict)
    """Model -> the most input tokens its pending batches may hold (absent or 0 = unlimited)."""
    max_input_bytes: int = Field(default=MAX_INPUT_BYTES, ge=1)
    max_lines: int = Field(default=MAX_LINES, ge=1)
    hold: bool = False
    """Batches answer no further line, and stay ``in_progress``, until this is false again."""
    expire_after_lines: int | None = Field(default=None, ge=0)
    """The batch expires once it has answered this many lines (None = never)."""
    server_error_share: float = Field(default=0.0, ge=0, le=1)
    """This share of the lines ends in the error file as an HTTP 500 (unbilled)."""
    invalid_answer_share: float = Field(default=0.0, ge=0, le=1)
    """This share of the answers is JSON that fails the request's schema (billed)."""
    drop_lines: int = Field(default=0, ge=0)
    """This many answered lines are in neither file (billed and counted completed all the same)."""
    no_output_file: bool = False
    """The batch ends with no output file: its answered lines are in neither file (billed)."""
    fail_validation: str | None = None
    """Every batch created while this is set fails its validation with this error code (on line 1)."""
    create_answer_delay_s: float = Field(default=0.0, ge=0)
    """``POST /v1/batches`` makes the batch at once and answers this much later: a client that dies (or gives up)
    meanwhile has created a batch it never heard of."""

    @model_validator(mode="after")
    def _check(self) -> BatchSettings:
        if any(limit < 0 for limit in self.enqueued_token_limit.values()):
            raise ValueError("enqueued_token_limit values must be >= 0 (0 = unlimited)")
        if self.server_error_share + self.invalid_answer_share > 1 + 1e-9:
            raise ValueError("server_error_share and invalid_answer_share must add up to at most 1")
        return self

    def line_faults(self) -> LineFaults:
        return LineFaults(
            expire_after_lines=self.expire_after_lines,
            server_error_share=self.server_error_share,
            invalid_answer_share=self.invalid_answer_share,
            drop_lines=self.drop_lines,
            no_output_file=self.no_output_file,
        )


@dataclass(frozen=True, slots=True)
class LineFaults:
    """The line faults a batch was created under (the settings of that moment)."""

    expire_after_lines: int | None = None
    server_error_share: float = 0.0
    invalid_answer_share: float = 0.0
    drop_lines: int = 0
    no_output_file: bool = False


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(16)


@dataclass(slots=True)
class Batch:
    """One batch: what it was created with, where it is, what it has answered so far."""

    id: str
    endpoint: str
    input_file_id: str
    input_data: bytes
    """The input file's content as it was at creation (deleting the file later changes nothing)."""
    metadata: dict[str, str] | None
    output_expires_after_s: int | None
    faults: LineFaults
    seq: int
    created_at: int
    created_loop_time: float
    status: BatchStatus = "validating"
    times: dict[str, int] = field(default_factory=dict)
    """``in_progress_at``, ``finalizing_at``, ... as they happen (Unix seconds)."""
    model: str | None = None
    errors: list[dict[str, Any]] | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    usage: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    """Input tokens counted against the model's enqueued-token limit (0 unless the model has one)."""
    output_file_id: str | None = None
    error_file_id: str | None = None
    output_lines: list[dict[str, Any]] = field(default_factory=list)
    error_lines: list[dict[str, Any]] = field(default_factory=list)
    cancel_requested: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on cancel and on release of a hold, so a waiting runner looks again."""

    def mark(self, status: BatchStatus, stamp: str | None = None) -> None:
        """Move to ``status``; ``stamp`` names the timestamp field it sets (``completed_at`` ...)."""
        self.status = status
        if stamp is not None:
            self.times[stamp] = int(time.time())

    def bill(self, usage: Usage) -> None:
        self.usage["input_tokens"] += usage.input_tokens
        self.usage["cached_tokens"] += usage.cached_tokens
        self.usage["output_tokens"] += usage.output_tokens
        self.usage["reasoning_tokens"] += usage.reasoning_tokens

    def object(self) -> dict[str, Any]:
        """The spec's ``Batch`` object (fields without a value are left out: see the module docstring)."""
        body: dict[str, Any] = {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "created_at": self.created_at,
            "expires_at": self.created_at + COMPLETION_WINDOW_S,
            **self.times,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "usage": {
                "input_tokens": self.usage["input_tokens"],
                "input_tokens_details": {"cached_tokens": self.usage["cached_tokens"]},
                "output_tokens": self.usage["output_tokens"],
                "output_tokens_details": {"reasoning_tokens": self.usage["reasoning_tokens"]},
                "total_tokens": self.usage["input_tokens"] + self.usage["output_tokens"],
            },
            "metadata": self.metadata,
        }
        optional = {
            "model": self.model,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return body

    def summary(self) -> dict[str, Any]:
        """What ``GET /_sim/batches`` shows of it."""
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "endpoint": self.endpoint,
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "input_tokens": self.input_tokens,
            "cancel_requested": self.cancel_requested,
            "faults": {
                "expire_after_lines": self.faults.expire_after_lines,
                "server_error_share": self.faults.server_error_share,
                "invalid_answer_share": self.faults.invalid_answer_share,
                "drop_lines": self.faults.drop_lines,
                "no_output_file": self.faults.no_output_file,
            },
        }


class BatchBook:
    """Every batch of this simulator, the running tasks that move them along, recent creations, the settings."""

    def __init__(self, settings: BatchSettings) -> None:
        self.settings = settings
        self._batches: dict[str, Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._creates: deque[float] = deque()
        self._seq = itertools.count()

    def new_batch(
        self,
        *,
        endpoint: str,
        input_file_id: str,
        input_data: bytes,
        metadata: dict[str, str] | None,
        output_expires_after_s: int | None,
    ) -> Batch:
        """A new ``validating`` batch, stored, with the line faults of the current settings."""
        batch = Batch(
            id=new_batch_id(),
            endpoint=endpoint,
            input_file_id=input_file_id,
            input_data=input_data,
            metadata=metadata,
            output_expires_after_s=output_expires_after_s,
            faults=self.settings.line_faults(),
            seq=next(self._seq),
            created_at=int(time.time()),
            created_loop_time=asyncio.get_running_loop().time(),
        )
        self._batches[batch.id] = batch
        return batch

    def get(self, batch_id: str) -> Batch | None:
        return self._batches.get(batch_id)

    def start(self, task: asyncio.Task[None]) -> None:
        """Keep a batch's runner task (until it ends) so that reset and shutdown can stop it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- limits -------------------------------------------------------------------------------------------------

    def admit_create(self) -> float:
        """Count a creation and answer 0 if one may be made now; else the seconds until one may (nothing counted)."""
        limit = self.settings.creates_per_hour
        now = asyncio.get_running_loop().time()
        while self._creates and self._creates[0] <= now - CREATES_WINDOW_S:
            self._creates.popleft()
        if limit and len(self._creates) >= limit:
            return self._creates[0] + CREATES_WINDOW_S - now
        self._creates.append(now)
        return 0.0

    def enqueued_tokens(self, model: str) -> int:
        """The input tokens of ``model``'s pending batches (those counted: see :attr:`Batch.input_tokens`)."""
        return sum(b.input_tokens for b in self._batches.values() if b.model == model and b.status in PENDING)

    # -- settings -----------------------------------------------------------------------------------------------

    def configure(self, settings: BatchSettings) -> None:
        """Replace the settings (``POST /_sim/batches``); lifting ``hold`` wakes every waiting batch."""
        self.settings = settings
        if not settings.hold:
            for batch in self._batches.values():
                batch.wake.set()

    # -- reports ------------------------------------------------------------------------------------------------

    def page(self, *, limit: int, after: str | None) -> tuple[list[Batch], bool] | None:
        """Newest first, those after the batch ``after``; (page, has_more), or None if ``after`` names none."""
        batches = sorted(self._batches.values(), key=lambda b: (b.created_at, b.seq), reverse=True)
        if after is not None:
            at = next((i for i, b in enumerate(batches) if b.id == after), None)
            if at is None:
                return None
            batches = batches[at + 1 :]
        return batches[:limit], len(batches) > limit

    def snapshot(self) -> dict[str, Any]:
        """``GET /_sim/batches``: the settings, each batch's summary, enqueued tokens per model, recent creations."""
        models = sorted({b.model for b in self._batches.values() if b.model is not None})
        now = asyncio.get_running_loop().time()
        return {
            "settings": self.settings.model_dump(mode="json"),
            "batches": [batch.summary() for batch in sorted(self._batches.values(), key=lambda b: b.seq)],
            "enqueued_tokens": {model: self.enqueued_tokens(model) for model in models},
            "creates_last_hour": sum(1 for t in self._creates if t > now - CREATES_WINDOW_S),
        }

    # -- ending -------------------------------------------------------------------------------------------------

    def clear(self) -> None:
        """Forget every batch and creation, stopping their runners (the settings stay); ``POST /_sim/reset``."""
        for task in list(self._tasks):
            task.cancel()
        self._batches.clear()
        self._creates.clear()

    async def close(self) -> None:
        """Stop every runner and wait for them to end (application shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
