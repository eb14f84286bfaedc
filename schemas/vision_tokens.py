"""Input tokens OpenAI bills for an image or a PDF, by the published formulas. Pure: no I/O, no settings.

The worker uses these numbers to reserve tokens-per-minute before a call ("Image tokens also count toward your
tokens per minute (TPM) limits") as they are: its usage calibration scales only the text count and takes these
out of what the API reports before it does (``worker.tokens``). So an estimate that errs should err high: an
over-estimate costs a little throughput, an under-estimate costs a 429.

Design note
-----------

**Source.** OpenAI's images-vision guide, sections "Model sizing behavior" and "Calculating costs",
https://developers.openai.com/api/docs/guides/images-vision, read on 2026-12-01 through the search tool's stored
copies of the page (the current copy, whose tables :data:`SCHEMES` follows, and an earlier copy for the deprecated
models the current one no longer sizes). Cross-checked against community measurements of billed usage
(community.openai.com, "GPT-5-mini image input token calculation discrepancy", 2026: 256², 512², 768x1024,
1280x720, 1024² and 2048x768 on gpt-5-mini bill exactly ``ceil(patches x 1.2)``), which the tests repeat.

**Two schemes, chosen by model** (:func:`scheme_for`; the numbers are all in :data:`SCHEMES`, nowhere else):

* *Patch-based* (:class:`PatchScheme`). For the chosen detail level: fit the image within ``max_dimension`` x
  ``max_dimension`` px, keeping the aspect ratio, never enlarging; count ``ceil(w/32) x ceil(h/32)`` patches; if a
  patch budget applies and is exceeded, shrink by ``s = sqrt(32² x budget / (w x h))`` adjusted by
  ``min(floor(w·s/32) / (w·s/32), floor(h·s/32) / (h·s/32))`` (so the width or the height, whichever binds, is a
  whole number of patches), floor the pixels and count again; tokens = ``ceil(patches x multiplier)``.
* *Tile-based* (:class:`TileScheme`). ``low``: the base tokens only. Otherwise fit within 2048 x 2048 (never
  enlarging), scale down so the short side is 768 px if it is longer (rounding the other side down; a short side of
  768 px or less is left alone, never scaled up), then ``base + tile_tokens x ceil(w/512) x ceil(h/512)``.

**What the detail levels mean** (``auto`` resolves as the guide says per family; where it says nothing we use
``high``):

=======================================  ==========  ==================  =================  ====================
family                                   multiplier  low                 high               original / auto
=======================================  ==========  ==================  =================  ====================
gpt-5.6 (sol, terra, luna)               1.2         512 px              2048 px, 2,500     65,535 px, no budget;
                                                                                            auto = original
gpt-5.5                                  1.2         512 px              2048 px, 2,500     6000 px, 10,000;
                                                                                            auto = original
gpt-5.4, -mini, -nano                    1.2         2048 px, 6,144 (!)  2048 px, 2,500     6000 px, 10,000;
                                                                                            auto = high
gpt-5.2, gpt-4.1-mini                    1.2 / 1.62  2048 px, 6,144      2048 px, 6,144     no original (= high);
                                                                                            auto = high
gpt-5-mini, gpt-5-nano, gpt-4.1-nano,    1.2 / 1.5 / 2048 px, 1,536 (a)  2048 px, 1,536     no original (= high);
o4-mini (deprecated)                     2.46 / 1.72                                        auto = high
=======================================  ==========  ==================  =================  ====================

``(!)`` the guide: gpt-5.4's ``low`` "can use more tokens than ``high``". Tile models (base / per tile):
gpt-5 and gpt-5.1 70 / 140; gpt-4o, gpt-4.1 (and gpt-4.5, earlier copy) 85 / 170; gpt-4o-mini 2833 / 5667;
o1, o1-pro, o3 75 / 150; computer-use-preview 65 / 129 (earlier copy); ``auto`` and ``original`` = ``high``.

**Rules we had to assume** (the guide leaves them open):

* (a) The deprecated patch models are no longer in the sizing table; the earlier copy gives "``high`` allows up to
  1,536 patches or a 2048-pixel maximum dimension" for them and nothing for ``low``. We size ``low`` like ``high``
  (an over-estimate if ``low`` really is 512 px; measurements report ``low`` has no effect on these models).
* ``original`` on a family that does not support it is sized like ``high`` (the API may refuse or ignore it).
* The codex variants the earlier copy listed with 1,536 patches: ``gpt-5.3-codex`` is sized like gpt-5.2 (the
  current copy moved gpt-5.2 from 1,536 to 6,144 patches; this is the larger), ``gpt-5-codex-mini`` and
  ``gpt-5.1-codex-mini`` like gpt-5-mini (1,536, 1.2: no copy gives their multiplier); ``gpt-5.2-codex`` and
  ``gpt-5.2-chat-latest`` follow gpt-5.2 by prefix. ``chatgpt-4o-latest`` is gpt-4o's tile scheme.
* Fitting within a pixel limit rounds the short side to the nearest pixel ("rounding to integer pixels", direction
  not stated); the patch budget step floors, as the guide says. Multipliers are applied exactly (as fractions), so
  ``ceil(2500 x 1.2)`` is 3000, not 3001; the guide warns billing itself can differ by one token.
* **Unknown models** get :data:`DEFAULT_SCHEME`: for each detail level the largest sizing of any current
  (non-deprecated) patch family (``low`` and ``high`` 2048 px with 6,144 patches, ``original`` and ``auto`` 65,535
  px with no budget, as gpt-5.6) and the largest current multiplier (gpt-4.1-mini's 1.62). An unknown name is most
  likely a newer model or a deployment alias of a current one; this is never below a current patch model for the
  same image and detail. It can be below the tile-based gpt-4o-mini, whose inflated counts are priced down to cost
  what gpt-4o's do, and below a tile model on an image smaller than one 512 px tile; a deployment alias of those
  should be configured by its real name.
* Names match exactly, else by the longest family name followed by ``-`` (``gpt-4o-mini-2024-07-18`` →
  gpt-4o-mini, ``gpt-5.6-sol`` → gpt-5.6), case-insensitively; a fine-tune (``ft:gpt-4o-mini-2024-07-18:org::id``)
  is its base model. Unlike :mod:`schemas.input_limits`, ``.`` is not a family separator here: ``gpt-5.3-codex``
  or a future ``gpt-5.7`` must not fall onto gpt-5's tile scheme, since every 5.x from 5.2 on is patch-based.

**Images we cannot measure** (an https URL, a ``file_id``) are priced at :data:`UNKNOWN_IMAGE_SIZE`, 2048 x 2048:
the largest image every 2048 px limit lets through, so for every budgeted ``high`` (and gpt-5.4's ``low``) it
reaches about the most patches the model can bill: the 2,500 budget, 1,521 of a 1,536 budget (39 x 39), and the
4,096 patches a 2048 px square has under a 6,144 budget. It is not an upper bound for a tile model on a tall
image (2048 x 2048 is 4 tiles; an image over 2:1, a long receipt, is up to 8) nor for the unbudgeted
``original``/``auto`` of gpt-5.6 and the default (a 12 MP phone photo, 4032 x 3024, is 11,970 patches);
calibration corrects those.

**PDFs.** The file-inputs guide: on vision models "the API extracts both text and page images and sends both to the
model". The resolution of the page images is not published. We assume each page is imaged at its media box size,
:data:`PDF_PIXELS_PER_POINT` = 1 px per point (72 dpi: US Letter is 612 x 792 px), at the PDF ``detail`` default
``auto``, which the guide and the API reference give as ``high`` for GPT-5.6 and later and ``low`` before
(:attr:`PatchScheme.pdf_auto`; the default scheme assumes ``high``). Both are assumptions the worker's usage
calibration corrects; the page text is counted by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

__all__ = [
    "DEFAULT_SCHEME",
    "PDF_PIXELS_PER_POINT",
    "SCHEMES",
    "UNKNOWN_IMAGE_SIZE",
    "Detail",
    "Limits",
    "PatchScheme",
    "Scheme",
    "TileScheme",
    "image_tokens",
    "pdf_page_tokens",
    "pdf_tokens",
    "scheme_for",
]

Detail = Literal["auto", "low", "high", "original"]
"""The ``detail`` of an image input (``auto`` when omitted, on both APIs)."""
SizedDetail = Literal["low", "high", "original"]
"""A detail level with sizing of its own: what ``auto`` resolves to."""

PDF_PIXELS_PER_POINT: float = 1.0
"""Assumed: a PDF page is imaged at its media box size, 1 px per PDF point (72 dpi). Not published by OpenAI."""
UNKNOWN_IMAGE_SIZE: tuple[int, int] = (2048, 2048)
"""Assumed size of an image whose pixels we do not know (an https URL, a ``file_id``); see the module docstring."""

PATCH_PX = 32
TILE_PX = 512
TILE_FIT_PX = 2048
TILE_SHORT_SIDE_PX = 768
_EPSILON = 1e-9
"""Absorbs float error before a floor: 49.99999999 patches across is 50."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How a patch model sizes an image at one detail level."""

    max_dimension: int | None
    """The image is first fitted within this many pixels on each side (None: no limit)."""
    patch_budget: int | None
    """Then shrunk to at most this many 32 px patches (None: no budget)."""


@dataclass(frozen=True, slots=True)
class PatchScheme:
    """A model billed by 32 px patches (see the module docstring for the steps)."""

    family: str
    multiplier: float
    """Billed tokens per patch (``ceil(patches x multiplier)``)."""
    low: Limits
    high: Limits
    original: Limits
    auto: SizedDetail
    """What ``detail: auto`` (or no detail) resolves to."""
    pdf_auto: Literal["low", "high"]
    """What a PDF's ``detail: auto`` (its default) resolves to: ``high`` from GPT-5.6 on, ``low`` before."""

    def limits(self, detail: Detail) -> Limits:
        level = self.auto if detail == "auto" else detail
        return {"low": self.low, "high": self.high, "original": self.original}[level]


@dataclass(frozen=True, slots=True)
class TileScheme:
    """A model billed as base tokens plus tokens per 512 px tile."""

    family: str
    base_tokens: int
    tile_tokens: int
    pdf_auto: Literal["low", "high"] = "low"


Scheme = PatchScheme | TileScheme


def _patch(
    family: str,
    multiplier: float,
    *,
    low: Limits,
    high: Limits,
    original: Limits | None = None,
    auto: SizedDetail = "high",
    pdf_auto: Literal["low", "high"] = "low",
) -> PatchScheme:
    """A patch scheme; ``original`` defaults to ``high`` for a family that does not support it."""
    return PatchScheme(family, multiplier, low, high, original or high, auto, pdf_auto)


def _tile(family: str, base_tokens: int, tile_tokens: int) -> TileScheme:
    return TileScheme(family, base_tokens, tile_tokens)


# ---- The one table: every family, multiplier, budget and pixel limit (sources and assumptions: module docstring).
_PX512 = Limits(512, None)
_HIGH_2500 = Limits(2048, 2_500)
_SIZE_6144 = Limits(2048, 6_144)
_SIZE_1536 = Limits(2048, 1_536)
_ORIGINAL_10K = Limits(6000, 10_000)
_UNBUDGETED = Limits(65_535, None)

SCHEMES: Mapping[str, Scheme] = {
    # Patch-based, in the current sizing table.
    "gpt-5.6": _patch(
        "gpt-5.6", 1.2, low=_PX512, high=_HIGH_2500, original=_UNBUDGETED, auto="original", pdf_auto="high"
    ),
    "gpt-5.5": _patch("gpt-5.5", 1.2, low=_PX512, high=_HIGH_2500, original=_ORIGINAL_10K, auto="original"),
    "gpt-5.4": _patch("gpt-5.4", 1.2, low=_SIZE_6144, high=_HIGH_2500, original=_ORIGINAL_10K),
    "gpt-5.4-mini": _patch("gpt-5.4-mini", 1.2, low=_SIZE_6144, high=_HIGH_2500, original=_ORIGINAL_10K),
    "gpt-5.4-nano": _patch("gpt-5.4-nano", 1.2, low=_SIZE_6144, high=_HIGH_2500, original=_ORIGINAL_10K),
    "gpt-5.2": _patch("gpt-5.2", 1.2, low=_SIZE_6144, high=_SIZE_6144),
    "gpt-4.1-mini": _patch("gpt-4.1-mini", 1.62, low=_SIZE_6144, high=_SIZE_6144),
    "gpt-5.3-codex": _patch("gpt-5.3-codex", 1.2, low=_SIZE_6144, high=_SIZE_6144),  # assumed: as gpt-5.2
    # Patch-based, deprecated: multipliers from the current copy, the 1,536 budget from the earlier one.
    "gpt-5-mini": _patch("gpt-5-mini", 1.2, low=_SIZE_1536, high=_SIZE_1536),
    "gpt-5-nano": _patch("gpt-5-nano", 1.5, low=_SIZE_1536, high=_SIZE_1536),
    "gpt-4.1-nano": _patch("gpt-4.1-nano", 2.46, low=_SIZE_1536, high=_SIZE_1536),
    "o4-mini": _patch("o4-mini", 1.72, low=_SIZE_1536, high=_SIZE_1536),
    "gpt-5-codex-mini": _patch("gpt-5-codex-mini", 1.2, low=_SIZE_1536, high=_SIZE_1536),  # assumed multiplier
    "gpt-5.1-codex-mini": _patch("gpt-5.1-codex-mini", 1.2, low=_SIZE_1536, high=_SIZE_1536),  # assumed multiplier
    # Tile-based: base tokens, tokens per 512 px tile.
    "gpt-5.1": _tile("gpt-5.1", 70, 140),
    "gpt-5": _tile("gpt-5", 70, 140),
    "gpt-4o": _tile("gpt-4o", 85, 170),
    "chatgpt-4o-latest": _tile("chatgpt-4o-latest", 85, 170),  # assumed: as gpt-4o
    "gpt-4.1": _tile("gpt-4.1", 85, 170),
    "gpt-4.5": _tile("gpt-4.5", 85, 170),  # earlier copy
    "gpt-4o-mini": _tile("gpt-4o-mini", 2833, 5667),
    "o1": _tile("o1", 75, 150),
    "o1-pro": _tile("o1-pro", 75, 150),
    "o3": _tile("o3", 75, 150),
    "computer-use-preview": _tile("computer-use-preview", 65, 129),  # earlier copy
}
"""Vision token schemes by model family (see the module docstring for sources and assumptions)."""

DEFAULT_SCHEME: PatchScheme = _patch(
    "default", 1.62, low=_SIZE_6144, high=_SIZE_6144, original=_UNBUDGETED, auto="original", pdf_auto="high"
)
"""For a model :data:`SCHEMES` does not know: the largest current sizing and multiplier (module docstring)."""


def scheme_for(model: str) -> Scheme:
    """The scheme of ``model``: its exact name, else the longest family name followed by ``-``, else the default.

    Case-insensitive; ``ft:<base>:<org>:<suffix>:<id>`` is looked up as ``<base>``.
    """
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name[3:].split(":", 1)[0]
    if name in SCHEMES:
        return SCHEMES[name]
    families = [family for family in SCHEMES if name.startswith(family + "-")]
    return SCHEMES[max(families, key=len)] if families else DEFAULT_SCHEME


def image_tokens(model: str, width: int, height: int, detail: Detail = "auto") -> int:
    """Input tokens of one ``width`` x ``height`` px image at ``detail`` on ``model``."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if detail not in _DETAILS:
        raise ValueError(f"detail must be one of {', '.join(_DETAILS)}, got {detail!r}")
    scheme = scheme_for(model)
    if isinstance(scheme, TileScheme):
        return _tile_tokens(scheme, width, height, detail)
    return _patch_tokens(scheme, width, height, detail)


def pdf_page_tokens(model: str, width_pt: float, height_pt: float) -> int:
    """Tokens of the image the API makes of one PDF page (at the PDF `detail` default, which is `auto`).

    The page is assumed imaged at :data:`PDF_PIXELS_PER_POINT` (a part pixel counts as one).
    """
    if not (math.isfinite(width_pt) and math.isfinite(height_pt) and width_pt > 0 and height_pt > 0):
        raise ValueError(f"page size must be positive, got {width_pt}x{height_pt} pt")
    width = max(1, math.ceil(width_pt * PDF_PIXELS_PER_POINT - _EPSILON))
    height = max(1, math.ceil(height_pt * PDF_PIXELS_PER_POINT - _EPSILON))
    return image_tokens(model, width, height, scheme_for(model).pdf_auto)


def pdf_tokens(model: str, page_sizes: Sequence[tuple[float, float]], text_tokens: int) -> int:
    """text_tokens (the page text, counted by the caller) + pdf_page_tokens of every page."""
    if text_tokens < 0:
        raise ValueError(f"text_tokens must not be negative, got {text_tokens}")
    return text_tokens + sum(pdf_page_tokens(model, width, height) for width, height in page_sizes)


_DETAILS: tuple[str, ...] = get_args(Detail)


def _patch_tokens(scheme: PatchScheme, width: int, height: int, detail: Detail) -> int:
    limits = scheme.limits(detail)
    width, height = _fit_within(width, height, limits.max_dimension)
    patches = _patches(width, height)
    if limits.patch_budget is not None and patches > limits.patch_budget:
        width, height = _shrink_to_budget(width, height, limits.patch_budget)
        # The guide: "When a patch budget applies, this count stays within that budget."
        patches = min(_patches(width, height), limits.patch_budget)
    return math.ceil(patches * Fraction(str(scheme.multiplier)))


def _tile_tokens(scheme: TileScheme, width: int, height: int, detail: Detail) -> int:
    if detail == "low":
        return scheme.base_tokens
    width, height = _fit_within(width, height, TILE_FIT_PX)
    short = min(width, height)
    if short > TILE_SHORT_SIDE_PX:  # only ever scaled down, the other side rounded down
        width, height = (width * TILE_SHORT_SIDE_PX // short, height * TILE_SHORT_SIDE_PX // short)
    tiles = _ceil_div(width, TILE_PX) * _ceil_div(height, TILE_PX)
    return scheme.base_tokens + tiles * scheme.tile_tokens


def _fit_within(width: int, height: int, max_dimension: int | None) -> tuple[int, int]:
    """Scale down (never up) so neither side exceeds ``max_dimension``; the short side rounded to the nearest px."""
    long = max(width, height)
    if max_dimension is None or long <= max_dimension:
        return width, height

    def scaled(side: int) -> int:
        return max(1, (2 * side * max_dimension + long) // (2 * long))

    return scaled(width), scaled(height)


def _shrink_to_budget(width: int, height: int, budget: int) -> tuple[int, int]:
    """The guide's step B and C: shrink to the budget, whichever side binds made a whole number of patches."""
    shrink = math.sqrt(PATCH_PX * PATCH_PX * budget / (width * height))

    def whole(patches_across: float) -> float:
        # A side under one patch wide stays as it is (its 1 patch cannot shrink); the guide divides by zero there.
        floored = math.floor(patches_across + _EPSILON)
        return floored / patches_across if floored >= 1 else 1.0

    adjusted = shrink * min(whole(width * shrink / PATCH_PX), whole(height * shrink / PATCH_PX))
    return max(1, math.floor(width * adjusted + _EPSILON)), max(1, math.floor(height * adjusted + _EPSILON))


def _patches(width: int, height: int) -> int:
    return _ceil_div(width, PATCH_PX) * _ceil_div(height, PATCH_PX)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
