"""One try at a line: call, validate, repair with the validation error, classify the ending.

No Redis here. ``CallHooks`` surround every API call: ``before_call`` waits for admission, ``after_call`` records
the call in the job's usage account the moment it returns (so usage is never lost when a later call in the same
try fails) and settles the admission reservation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from schemas.registry import OutputValidationError, OutputValidator
from schemas.results import ErrorType
from worker.adapters.base import ApiAdapter, ApiCallError, ModelReply
from worker.prompt import ModelRequest, repair_request


class CallHooks(Protocol):
    async def before_call(self, request: ModelRequest, *, first: bool) -> None:
        """Wait until the call may go out. ``first``: the try's first call, which may hand the slot back instead."""

    async def after_call(self, reply: ModelReply | None, error: ApiCallError | None, *, repair: bool) -> None:
        """Account for a call that returned ``reply`` or failed with ``error``."""


@dataclass(frozen=True)
class Extracted:
    output: dict[str, Any]
    reply: ModelReply
    invalid_fields: tuple[str, ...] = ()
    """Fields that failed validation on an earlier call of this try (repaired since)."""


@dataclass(frozen=True)
class Rejected:
    """A final, typed failure that another try would not fix."""

    error_type: ErrorType
    message: str
    status_code: int | None = None
    response_id: str | None = None
    batch_wide: bool = False
    """Every line of the batch would fail the same way (a bad key, an unknown model ...): ``worker.classify``."""
    invalid_fields: tuple[str, ...] = ()
    """Fields that failed validation on the calls of this try."""


async def extract_once(
    adapter: ApiAdapter,
    request: ModelRequest,
    validator: OutputValidator,
    *,
    max_repairs: int,
    hooks: CallHooks,
) -> Extracted | Rejected:
    """Run one try. Transient API errors (``TransientApiError``) and admission deferrals propagate to the caller."""
    repairs = 0
    invalid: list[str] = []
    while True:
        await hooks.before_call(request, first=repairs == 0)
        try:
            reply = await adapter.call(request)
        except ApiCallError as exc:
            await hooks.after_call(None, exc, repair=repairs > 0)
            raise
        await hooks.after_call(reply, None, repair=repairs > 0)

        if reply.refusal is not None:
            return Rejected(ErrorType.REFUSAL, f"the model refused: {reply.refusal}", response_id=reply.response_id)
        if reply.truncated:
            return Rejected(ErrorType.TRUNCATED, _truncated(request, reply), response_id=reply.response_id)
        errors = _validation_errors(reply.text, validator)
        if isinstance(errors, dict):
            return Extracted(errors, reply, tuple(dict.fromkeys(invalid)))
        invalid += [field_path(error) for error in errors]
        if repairs >= max_repairs:
            return Rejected(
                ErrorType.SCHEMA_VALIDATION,
                f"output failed validation after {repairs} repair(s): " + "; ".join(errors[:10]),
                response_id=reply.response_id,
                invalid_fields=tuple(dict.fromkeys(invalid)),
            )
        repairs += 1
        request = repair_request(request, reply.text or "", errors)


def field_path(error: str) -> str:
    """The field a validation message is about (``"line_items[0].quantity: ..."`` -> ``line_items[0].quantity``);
    ``(output)`` for a message about the whole answer (not JSON, empty)."""
    path, sep, _ = error.partition(": ")
    return path if sep and path and " " not in path else "(output)"


def _truncated(request: ModelRequest, reply: ModelReply) -> str:
    """Why the output stopped, and what to change: the cap, or the reasoning that used it up."""
    limit = request.max_output_tokens
    hint = f" ({limit})" if limit is not None else ""
    if reply.reasoning_only:
        return (
            f"reasoning used the whole max output tokens limit{hint} ({reply.usage.reasoning_tokens} reasoning "
            "tokens) before any answer; raise --max-output-tokens or lower --reasoning-effort"
        )
    return f"the output hit the max output tokens limit{hint} before the JSON was complete; raise --max-output-tokens"


def _validation_errors(text: str | None, validator: OutputValidator) -> dict[str, Any] | list[str]:
    """The validated output, or the list of problems to send back to the model."""
    if not text:
        return ["the answer was empty; a JSON object was required"]
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return [f"the answer is not valid JSON: {exc}"]
    try:
        return validator.validate(data)
    except OutputValidationError as exc:
        return list(exc.errors) or ["the answer does not match the schema"]
