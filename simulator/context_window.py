"""Context windows of the simulated models: a request whose input does not fit is refused, as the real API does.

The real API answers such a request with a 400 whose code is ``context_length_exceeded`` and bills nothing. The
message depends on the endpoint, and the simulator copies both as they are reported (read through the search tool's
stored GitHub issues, not from OpenAI's docs, which do not quote them):

* Chat Completions: ``"This model's maximum context length is 4097 tokens. However, your messages resulted in 4294
  tokens. Please reduce the length of the messages."``, ``param: "messages"`` (chathub-dev/chathub#126 and many
  like it);
* Responses: ``"Your input exceeds the context window of this model. Please adjust your input and try again."``,
  ``param: "input"`` (dyad-sh/dyad#1672, the-open-agent/openagent#2344).

The input is counted as the simulator counts it everywhere (``simulator.tokens``: schema plus messages, 4 bytes a
token), and compared with the window alone: the max output tokens are not added, as the Responses message speaks of
the input only. The windows are the simulator's own copy of the figures OpenAI's model pages give (per family;
``SimulatorConfig.context_windows`` or ``--context-window MODEL=TOKENS`` override them, 0 = unlimited); a model in no
family has no window, like any model the simulator does not know.
"""

from __future__ import annotations

from collections.abc import Mapping

from simulator.completion import prompt_tokens
from simulator.errors import ApiError, invalid_request
from simulator.request import ExtractionRequest

CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4-turbo": 128_000,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "gpt-4.1": 1_047_576,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o1-preview": 128_000,
    "o3": 200_000,
    "o3-mini": 200_000,
    "o4-mini": 200_000,
    "gpt-5": 400_000,
    "gpt-5-chat-latest": 128_000,
    "gpt-5.1-chat-latest": 128_000,
    "gpt-5.4": 1_050_000,
    "gpt-5.4-mini": 400_000,
    "gpt-5.4-nano": 400_000,
}
"""Input context windows in tokens per model family; a name also matches its snapshots and point releases."""


def context_window_for(model: str, overrides: Mapping[str, int]) -> int | None:
    """The window of ``model`` (exact name, else the longest family followed by ``-`` or ``.``); None = unlimited."""
    table = {**CONTEXT_WINDOWS, **overrides}
    if model in table:
        return table[model] or None
    matches = [name for name in table if model.startswith((name + "-", name + "."))]
    return (table[max(matches, key=len)] or None) if matches else None


def check_context_window(request: ExtractionRequest, overrides: Mapping[str, int]) -> None:
    """Raise the API's 400 ``context_length_exceeded`` if the request's input is larger than its model's window."""
    window = context_window_for(request.model, overrides)
    if window is None:
        return
    tokens = prompt_tokens(request)
    if tokens > window:
        raise context_length_exceeded(request, window, tokens)


def context_length_exceeded(request: ExtractionRequest, window: int, tokens: int) -> ApiError:
    if request.endpoint == "chat.completions":
        return invalid_request(
            f"This model's maximum context length is {window} tokens. However, your messages resulted in {tokens} "
            "tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        )
    return invalid_request(
        "Your input exceeds the context window of this model. Please adjust your input and try again.",
        param="input",
        code="context_length_exceeded",
    )
