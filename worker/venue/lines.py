"""A line as the provider's Batch API sees it, and its answer as our extraction sees it. Pure but for the replay.

**Out**: a line's request line is ``{"custom_id": "l{ordinal}", "method": "POST", "url": <endpoint>, "body": ...}``
with exactly the body the synchronous adapter builds for it, less ``service_tier`` (flex and priority are not part
of the Batch API). The provider's ``custom_id`` is the line's ordinal, never the user's id, which may hold anything
and need not be unique across a resubmit.

**Back**: an output or error line is one of (``../shared/OPENAI-FACTS.md`` §4, §9):

- an answer (``response.status_code`` 200): kept as :class:`Answer` JSON for the line's job;
- an HTTP error for the line (``response.status_code`` 4xx/5xx, ``response.body.error``): kept the same way: the job
  turns it into the ``ApiCallError`` a synchronous call would have raised, and the one classifier decides;
- a batch-level ending without a response (``response: null``, ``error.code`` ``batch_expired``,
  ``batch_cancelled``, ``request_timeout`` ...): the line was not answered and goes on (``resend``).

**Replay**: :class:`ReplayAdapter` answers the try's first call with the provider batch's answer (its tier
``batch``: priced at the batch price from the line's own usage) and sends any later call (a repair) to the
synchronous adapter; :class:`ReplayHooks` lets that first call through without admission (the provider answered it
already) and accounts for every call as ``worker.calls.JobCalls`` does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.jobs import ApiKind
from schemas.pricing import BATCH_TIER
from worker.adapters.base import ApiAdapter, ModelReply
from worker.adapters.errors import ApiCallError
from worker.extraction import CallHooks
from worker.prompt import ModelRequest

ENDPOINTS: dict[ApiKind, str] = {"responses": "/v1/responses", "chat": "/v1/chat/completions"}


def custom_id_of(ordinal: int) -> str:
    return f"l{ordinal}"


def ordinal_of(custom_id: object) -> int | None:
    if isinstance(custom_id, str) and custom_id.startswith("l") and custom_id[1:].isdigit():
        return int(custom_id[1:])
    return None


def request_line(adapter: ApiAdapter, request: ModelRequest, ordinal: int) -> bytes:
    """The line's request line for a provider batch's input file (see the module note)."""
    body = adapter.build_body(request)
    body.pop("service_tier", None)
    line = {"custom_id": custom_id_of(ordinal), "method": "POST", "url": ENDPOINTS[adapter.api], "body": body}
    return orjson.dumps(line)


@dataclass(frozen=True)
class Answer:
    """What a provider batch said for one line: its HTTP status and body, and which provider batch said it."""

    provider_batch_id: str
    status_code: int
    body: dict[str, Any]
    request_id: str | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Answer:
        body = data.get("body")
        return cls(
            provider_batch_id=str(data.get("provider_batch_id") or ""),
            status_code=int(data.get("status_code") or 0),
            body=body if isinstance(body, dict) else {},
            request_id=data.get("request_id") if isinstance(data.get("request_id"), str) else None,
        )


@dataclass(frozen=True)
class Unanswered:
    """A line a provider batch ended without answering (``why``: its error code)."""

    why: str


def read_result_line(raw: bytes, provider_batch_id: str) -> tuple[int, Answer | Unanswered] | None:
    """One line of an output or error file: the line's ordinal and what became of it; None for a line that is not
    ours or not readable (counted by the caller; the line then shows up as in neither file and goes on)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    ordinal = ordinal_of(data.get("custom_id"))
    if ordinal is None:
        return None
    response = data.get("response")
    if isinstance(response, dict) and isinstance(response.get("status_code"), int):
        body = response.get("body")
        request_id = response.get("request_id")
        return ordinal, Answer(
            provider_batch_id=provider_batch_id,
            status_code=response["status_code"],
            body=body if isinstance(body, dict) else {},
            request_id=request_id if isinstance(request_id, str) else None,
        )
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return ordinal, Unanswered(code if isinstance(code, str) and code else "no_response")


class ReplayAdapter:
    """The try's first call answered by the provider batch; every later call (a repair) by ``real``."""

    def __init__(
        self,
        real: ApiAdapter,
        answer: Answer,
        *,
        counted: bool = False,
        on_counted: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.api: ApiKind = real.api
        self._real = real
        self._answer: Answer | None = answer
        self.counted = counted
        """The replayed answer's usage is in the line's account already: it is not added again."""
        self.on_counted = on_counted
        self.calls = 0
        """Calls made so far (1: only the replayed one)."""

    @property
    def pending(self) -> bool:
        """The provider batch's answer has not been handed out yet (the next call is the replayed one)."""
        return self._answer is not None

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        return self._real.build_body(request)

    def read_reply(self, data: dict[str, Any], *, latency_ms: int, headers: dict[str, str]) -> ModelReply:
        return self._real.read_reply(data, latency_ms=latency_ms, headers=headers)

    async def call(self, request: ModelRequest) -> ModelReply:
        self.calls += 1
        answer, self._answer = self._answer, None
        if answer is None:
            return await self._real.call(request)
        headers = {"x-request-id": answer.request_id} if answer.request_id else {}
        if answer.status_code != 200:
            raise error_of(answer, headers)
        reply = self._real.read_reply(answer.body, latency_ms=0, headers=headers)
        return dataclasses.replace(reply, service_tier=BATCH_TIER)


def error_of(answer: Answer, headers: dict[str, str]) -> ApiCallError:
    """The ``ApiCallError`` a synchronous call would have raised for the HTTP error a provider batch gave."""
    inner = answer.body.get("error", answer.body)
    error = inner if isinstance(inner, dict) else {}
    message, code = error.get("message"), error.get("code")
    text = f"HTTP {answer.status_code}: {message}" if isinstance(message, str) else f"HTTP {answer.status_code}"
    return ApiCallError(
        f"{text} (in provider batch {answer.provider_batch_id})",
        status_code=answer.status_code,
        code=code if isinstance(code, str) else None,
        headers=headers,
    )


class ReplayHooks:
    """``CallHooks`` around ``calls``: the replayed first call needs no admission, and its usage goes into the line's
    account once (a try that replays it again, after one that ended before recording, adds nothing); every other call
    is accounted for as usual."""

    def __init__(self, calls: CallHooks, adapter: ReplayAdapter) -> None:
        self._calls = calls
        self._adapter = adapter

    async def before_call(self, request: ModelRequest, *, first: bool) -> None:
        if self._adapter.pending:
            return  # the provider batch answered this call already
        await self._calls.before_call(request, first=False)

    async def after_call(self, reply: ModelReply | None, error: ApiCallError | None, *, repair: bool) -> None:
        replayed = self._adapter.calls == 1
        if replayed and self._adapter.counted:
            return
        await self._calls.after_call(reply, error, repair=repair)
        if replayed and self._adapter.on_counted is not None:
            await self._adapter.on_counted()
            self._adapter.counted = True
