"""One try at a line: call, validate, repair with the validation error, classify the ending.

No Redis here. ``CallHooks`` surround every API call (``worker.calls.JobCalls``): ``before_call`` waits for admission
and reserves the call's worst case against the batch's budget, ``after_call`` records the call in the line's usage
account the moment it returns (so usage is never lost when a later call in the same try fails) and settles both
reservations.

**A cut-off answer** (``finish_reason: length``, ``status: incomplete`` for ``max_output_tokens``) is one of two
things, and :func:`well_below_cap` tells them apart from the reply's own usage:

- it *reached the cap in force*: the answer does not fit, and another try writes the same amount again. The line
  fails at once as ``truncated`` (a :class:`Rejected`), saying which cap and what to change;
- it *stopped well below it* (under :data:`CUT_OFF_SHARE` of the cap): something cut the generation short -- a
  provider-side stop, a dropped stream behind a proxy -- and another try may well finish. The try ends with
  :class:`CutOffError`, an ending for the one retry policy (``worker.policy``: ``TRUNCATED``, a small budget of its
  own, then ``truncated``).

The cap in force (:func:`cap_in_force`) is the smallest one known: the ``max_output_tokens`` we sent, the model's
own output limit (``schemas.models.max_output_tokens``) and the room the input left in the context window (a model
with 128,000 tokens of context and 120,000 of input writes at most 8,000, whatever its own limit). With none known
(no ``--max-output-tokens``, and a model whose output limit and context window are both unknown), a cut-off cannot
be told from a cap hit and is not retried.

Why 0.8: a cap hit reports the cap exactly (OpenAI counts the output up to it; so does the simulator), so anything
below would do in theory; the margin absorbs providers that count a little differently and caps that are a little
off in ``schemas.models`` (a newer snapshot), and an answer that needed 80 % of the cap is unlikely to fit on a
retry anyway, while each retry is billed.

Reasoning tokens are output tokens: OpenAI bills them as output, counts them in ``output_tokens`` /
``completion_tokens`` and against the cap, so a reasoning model whose thinking used the budget up reports the cap
and fails at once (``reasoning used the whole ...``). A server that reports reasoning apart from the output (fewer
output than reasoning tokens) gets the two added. A reply without usage (0 output tokens) cannot be placed and is
not retried.

A repair call that is cut off ends the try the same way: its usage is already in the account, and the retry starts
over from the first call. A cut-off answer is never sent back as a repair: its JSON is incomplete, not wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from schemas.models import max_output_tokens
from schemas.registry import OutputValidationError, OutputValidator
from schemas.results import ErrorType, Usage
from worker.adapters.base import ApiAdapter, ModelReply
from worker.adapters.errors import ApiCallError
from worker.prompt import ModelRequest, repair_request


class CallHooks(Protocol):
    async def before_call(self, request: ModelRequest, *, first: bool) -> None:
        """Wait until the call may go out. ``first``: the try's first call, which may hand the slot back instead."""

    async def after_call(self, reply: ModelReply | None, error: ApiCallError | None, *, repair: bool) -> None:
        """Account for a call that returned ``reply`` or failed with ``error``."""


@dataclass(frozen=True)
class Extracted:
    output: Any
    """The validated answer in the user's shape (any JSON value when the schema's root is not an object)."""
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


CUT_OFF_SHARE = 0.8
"""An answer cut off at less than this share of the cap in force was cut short, not stopped by the cap."""

CapSource = Literal["sent", "model", "context"]


@dataclass(frozen=True)
class OutputCap:
    """The most a call could write, and which limit that was."""

    tokens: int
    source: CapSource
    """``sent``: our ``max_output_tokens``; ``model``: the model's own limit; ``context``: the context window's room."""


class CutOffError(Exception):
    """The answer was cut off well below the cap in force: another try may finish it (``worker.policy``). ``reason``
    names what was written and the cap; the reply's usage and response id are in the line's account already."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def cap_in_force(model: str, sent: int | None, *, input_tokens: int, context_window: int | None) -> OutputCap | None:
    """The smallest known limit on a call's output: the ``max_output_tokens`` we ``sent``, ``model``'s own, and what
    ``input_tokens`` left of its ``context_window`` (None or 0: unknown); None when no limit is known."""
    caps: list[OutputCap] = []
    if sent is not None:
        caps.append(OutputCap(sent, "sent"))
    own = max_output_tokens(model)
    if own is not None:
        caps.append(OutputCap(own, "model"))
    if context_window and input_tokens > 0:
        caps.append(OutputCap(max(context_window - input_tokens, 0), "context"))
    return min(caps, key=lambda cap: cap.tokens) if caps else None


def output_written(usage: Usage) -> int:
    """The output tokens a call wrote, reasoning included (added when the server reports it apart from the output)."""
    if usage.reasoning_tokens > usage.output_tokens:
        return usage.output_tokens + usage.reasoning_tokens
    return usage.output_tokens


def well_below_cap(usage: Usage, cap: OutputCap | None) -> bool:
    """Whether a cut-off answer stopped well below the cap in force (retry it) rather than at it (fail at once)."""
    written = output_written(usage)
    return cap is not None and 0 < written < CUT_OFF_SHARE * cap.tokens


async def extract_once(
    adapter: ApiAdapter,
    request: ModelRequest,
    validator: OutputValidator,
    *,
    max_repairs: int,
    hooks: CallHooks,
    context_window: int | None = None,
) -> Extracted | Rejected:
    """Run one try. A failed call (``ApiCallError``, whatever its status: the caller classifies it), what
    ``hooks.before_call`` raises (an admission deferral, the batch's budget reached or held) and an answer cut off well
    below the cap (:class:`CutOffError`) propagate to the caller. ``context_window``: the model's, if known."""
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
            cap = cap_in_force(
                request.model,
                request.max_output_tokens,
                input_tokens=reply.usage.input_tokens,
                context_window=context_window,
            )
            if well_below_cap(reply.usage, cap):
                assert cap is not None
                written = output_written(reply.usage)
                reason = f"the output was cut off at {written} of {_cap_words(request, cap)}, well below it"
                raise CutOffError(reason)
            return Rejected(ErrorType.TRUNCATED, _truncated(request, reply, cap), response_id=reply.response_id)
        output, errors = _validation_errors(reply.text, validator)
        if not errors:
            return Extracted(output, reply, tuple(dict.fromkeys(invalid)))
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


def _cap_words(request: ModelRequest, cap: OutputCap) -> str:
    """``"16384 output tokens (gpt-4o-mini's own limit; none was sent)"`` and the like."""
    if cap.source == "sent":
        return f"{cap.tokens} output tokens (the max output tokens sent)"
    if cap.source == "model":
        return f"{cap.tokens} output tokens ({request.model}'s own limit; none was sent)"
    return f"{cap.tokens} output tokens (the room the input left in {request.model}'s context window)"


def _truncated(request: ModelRequest, reply: ModelReply, cap: OutputCap | None) -> str:
    """Why the output stopped, and what to change: the cap, or the reasoning that used it up; or why a cut-off that
    cannot be placed against a cap is not retried."""
    written = output_written(reply.usage)
    if cap is None:
        return (
            f"the output was cut off after {written} output tokens before the JSON was complete; no max output "
            f"tokens was sent and {request.model}'s own limit is unknown, so it is not retried: set "
            "--max-output-tokens (a cut-off well below it is retried)"
        )
    if written == 0:
        return (
            f"the output was cut off before the JSON was complete and the reply reported no output tokens, so it "
            f"cannot be told from reaching the limit ({_cap_words(request, cap)}); it is not retried"
        )
    fix = {
        "sent": "raise --max-output-tokens",
        "model": "the answer is longer than the model writes: split the document or use a model that writes more",
        "context": "the input leaves too little of the context window: shorten the document",
    }[cap.source]
    if reply.reasoning_only:
        effort = (
            "raise --max-output-tokens or lower --reasoning-effort"
            if cap.source == "sent"
            else f"{fix}, or lower --reasoning-effort"
        )
        return (
            f"reasoning used the whole max output tokens limit ({cap.tokens}) ({reply.usage.reasoning_tokens} "
            f"reasoning tokens) before any answer; {effort}"
        )
    if cap.source == "sent":
        return (
            f"the output hit the max output tokens limit ({cap.tokens}) after {written} output tokens, before the "
            f"JSON was complete; {fix}"
        )
    return f"the output stopped at {written} of {_cap_words(request, cap)}, before the JSON was complete; {fix}"


def _validation_errors(text: str | None, validator: OutputValidator) -> tuple[Any, list[str]]:
    """``(output, [])``: the answer decoded into the user's shape and valid under the user's schema; or
    ``(None, problems)``, the list of problems to send back to the model."""
    if not text:
        return None, ["the answer was empty; a JSON object was required"]
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        return None, [f"the answer is not valid JSON: {exc}"]
    try:
        return validator.validate(data), []
    except OutputValidationError as exc:
        return None, list(exc.errors) or ["the answer does not match the schema"]
