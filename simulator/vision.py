"""What images and PDF pages cost in input tokens, by OpenAI's published formulas (implemented here, independently).

Source: the images-and-vision guide, "Calculating costs" and "Model sizing behavior"
(https://developers.openai.com/api/docs/guides/images-vision), current copy as stored by the search tool (it names
the gpt-5.6 models and gives 1.2 as the gpt-5.x multiplier); older copies of the same page for what the current one
no longer says (the 1,536-patch budget). Two schemes, chosen by model:

**Patch-based** (gpt-5.2 and later gpt-5.x, gpt-5-mini, gpt-5-nano, gpt-4.1-mini, gpt-4.1-nano, o4-mini):

1. fit the image inside the pixel limit of the chosen ``detail`` (aspect ratio kept, rounded to whole pixels,
   never upscaled);
2. ``patches = ceil(w/32) * ceil(h/32)``;
3. if the detail level has a patch budget and the image exceeds it, shrink it:
   ``s = sqrt(32² * budget / (w * h))``, then
   ``s' = s * min(floor(w*s/32) / (w*s/32), floor(h*s/32) / (h*s/32))``, floor the resized sides and count the
   patches again (within the budget by construction);
4. more than 30,000 patches after that is refused ("the image is not resized to fit the patch limit");
5. ``tokens = ceil(patches * multiplier)``.

The ``floor(w*s/32)`` terms are computed exactly as ``isqrt(budget * w // h)`` (``w*s/32 = sqrt(budget * w / h)``),
so no float rounding can move a patch. Worked examples the tests pin: gpt-5.4 ``high`` 1024² → 1,024 patches →
1,229 tokens; 2048² → 1600² → 2,500 patches → 3,000; a 1,536-budget model 1800x2400 → 1056x1408 → 1,452 patches.

**Tile-based** (gpt-4o, gpt-4o-mini, gpt-4.1, gpt-5, gpt-5.1, o1, o3): ``low`` costs the base tokens only;
otherwise fit in 2048x2048, then bring the short side down to 768 if it is longer (never up), count 512-px tiles:
``base + tiles * per_tile``. gpt-4o 1024² ``high``: 768² → 4 tiles → 85 + 4·170 = 765.

Detail per family (what the sizing table says; where a detail level is not listed for a family, as ``original``
on the tile models and on gpt-5.2 / gpt-4.1-mini, the request is still accepted and sized like ``auto``, as
GPT-5.1 was observed to accept and ignore it; ``auto`` is ``high`` wherever the guide does not say otherwise):

=====================  ============================  ===================  ======================  ========
family                 ``low``                       ``high``             ``original``            ``auto``
=====================  ============================  ===================  ======================  ========
gpt-6-astra            fit 512x512                   65,535 px, 2,500 p   65,535 px, no budget    original
gpt-5.6-*              fit 512x512                   2,048 px, 2,500 p    65,535 px, no budget    original
gpt-5.5                fit 512x512                   2,048 px, 2,500 p    6,000 px, 10,000 p      original
gpt-5.4(-mini/-nano)   2,048 px, 6,144 p             2,048 px, 2,500 p    6,000 px, 10,000 p      high
gpt-5.2, gpt-4.1-mini  2,048 px, 6,144 p (every level)                                            high
gpt-5-mini/-nano,      2,048 px, 1,536 p (every level: older copies of the guide, before these     high
gpt-4.1-nano, o4-mini  models left the sizing table)
=====================  ============================  ===================  ======================  ========

PDF pages (file-inputs guide: "the API extracts both text and page images"): each page is charged as an image of
the page at ``dpi`` pixels per inch of its media box (72 = one pixel per PDF point: **our assumption**, OpenAI
publishes no resolution) at the file's ``detail``, whose ``auto`` is ``high`` for gpt-5.6 and later and ``low``
before. The page's text is counted by the caller, like any other text.

Model names: exact family name, else the longest family name followed by ``-`` (dated snapshots such as
``gpt-4o-2024-08-06``, variants such as ``gpt-5.6-sol``); any other model is charged as gpt-4o.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Detail = Literal["low", "high", "original", "auto"]
Sizing = Literal["low", "high", "original"]

PATCH_PX = 32
TILE_PX = 512
TILE_FIT_PX = 2048
TILE_SHORT_SIDE_PX = 768
MAX_PATCHES_PER_IMAGE = 30_000
"""After sizing, an image needing more patches than this is refused, not resized (images-vision guide)."""
PDF_POINTS_PER_INCH = 72
DEFAULT_MODEL_FAMILY = "gpt-4o"


class ImageTooLarge(ValueError):
    """The image needs more than :data:`MAX_PATCHES_PER_IMAGE` patches after the model's sizing."""

    def __init__(self, patches: int, sizing: Sizing) -> None:
        super().__init__(f"{patches} patches at {sizing} sizing")
        self.patches = patches
        self.sizing = sizing


@dataclass(frozen=True, slots=True)
class PatchLimits:
    """One detail level of a patch-based model: the longest side allowed (px) and the patch budget (None: none)."""

    max_side: int | None
    budget: int | None


@dataclass(frozen=True, slots=True)
class PatchFamily:
    multiplier: Fraction
    low: PatchLimits
    high: PatchLimits
    original: PatchLimits
    auto: Sizing
    pdf_auto: Literal["low", "high"] = "low"

    def limits(self, sizing: Sizing) -> PatchLimits:
        return {"low": self.low, "high": self.high, "original": self.original}[sizing]


@dataclass(frozen=True, slots=True)
class TileFamily:
    base: int
    per_tile: int
    pdf_auto: Literal["low", "high"] = "low"


Family = PatchFamily | TileFamily


def _same(limits: PatchLimits, multiplier: str) -> PatchFamily:
    """A patch model whose detail levels all size alike."""
    return PatchFamily(Fraction(multiplier), limits, limits, limits, auto="high")


_FIT_512 = PatchLimits(512, None)
_HIGH_2500 = PatchLimits(2048, 2500)
_ORIGINAL_10000 = PatchLimits(6000, 10_000)
_UNCAPPED = PatchLimits(65_535, None)
_BUDGET_6144 = PatchLimits(2048, 6144)
_BUDGET_1536 = PatchLimits(2048, 1536)
_GPT_54 = PatchFamily(Fraction("1.2"), _BUDGET_6144, _HIGH_2500, _ORIGINAL_10000, auto="high")

FAMILIES: dict[str, Family] = {
    "gpt-6-astra": PatchFamily(
        Fraction("1.2"), _FIT_512, PatchLimits(65_535, 2500), _UNCAPPED, auto="original", pdf_auto="high"
    ),
    "gpt-5.6": PatchFamily(Fraction("1.2"), _FIT_512, _HIGH_2500, _UNCAPPED, auto="original", pdf_auto="high"),
    "gpt-5.5": PatchFamily(Fraction("1.2"), _FIT_512, _HIGH_2500, _ORIGINAL_10000, auto="original"),
    "gpt-5.4": _GPT_54,
    "gpt-5.4-mini": _GPT_54,
    "gpt-5.4-nano": _GPT_54,
    "gpt-5.2": _same(_BUDGET_6144, "1.2"),
    "gpt-4.1-mini": _same(_BUDGET_6144, "1.62"),
    "gpt-5-mini": _same(_BUDGET_1536, "1.2"),
    "gpt-5-nano": _same(_BUDGET_1536, "1.5"),
    "gpt-4.1-nano": _same(_BUDGET_1536, "2.46"),
    "o4-mini": _same(_BUDGET_1536, "1.72"),
    "gpt-5.1": TileFamily(70, 140),
    "gpt-5": TileFamily(70, 140),
    "gpt-4o": TileFamily(85, 170),
    "gpt-4.1": TileFamily(85, 170),
    "gpt-4o-mini": TileFamily(2833, 5667),
    "o1": TileFamily(75, 150),
    "o3": TileFamily(75, 150),
}
"""Vision token rules per model family (see the module docstring for the sources)."""


def family_name(model: str) -> str:
    """The family whose rules ``model`` is charged by: exact name, longest ``<family>-`` prefix, else gpt-4o."""
    if model in FAMILIES:
        return model
    matches = [name for name in FAMILIES if model.startswith(name + "-")]
    return max(matches, key=len) if matches else DEFAULT_MODEL_FAMILY


def family_for(model: str) -> Family:
    return FAMILIES[family_name(model)]


def image_sizing(model: str, detail: Detail) -> Sizing:
    """The sizing an image of ``detail`` gets on ``model``: ``auto`` resolved, unlisted levels sized as ``auto``."""
    family = family_for(model)
    if isinstance(family, TileFamily):
        return "low" if detail == "low" else "high"
    return family.auto if detail == "auto" else detail


def pdf_detail(model: str, detail: Literal["low", "high", "auto"]) -> Literal["low", "high"]:
    """A PDF's page-image detail: ``auto`` is ``high`` from gpt-5.6 on, ``low`` before (file-inputs guide)."""
    return family_for(model).pdf_auto if detail == "auto" else detail


def image_tokens(model: str, width: int, height: int, detail: Detail) -> int:
    """Input tokens of a ``width`` x ``height`` image at ``detail`` on ``model``; :class:`ImageTooLarge` if refused."""
    if width < 1 or height < 1:
        raise ValueError("image sides must be >= 1 px")
    family = family_for(model)
    sizing = image_sizing(model, detail)
    if isinstance(family, TileFamily):
        return family.base if sizing == "low" else family.base + family.per_tile * tile_count(width, height)
    patches = patch_count(width, height, family.limits(sizing))
    if patches > MAX_PATCHES_PER_IMAGE:
        raise ImageTooLarge(patches, sizing)
    return math.ceil(patches * family.multiplier)


def tile_count(width: int, height: int) -> int:
    """512-px tiles of an image after fitting it in 2048² and bringing a short side over 768 down to 768."""
    w, h = Fraction(width), Fraction(height)
    longest = max(w, h)
    if longest > TILE_FIT_PX:
        w, h = (w * TILE_FIT_PX / longest), (h * TILE_FIT_PX / longest)
        w, h = Fraction(math.floor(w)), Fraction(math.floor(h))
    shortest = min(w, h)
    if shortest > TILE_SHORT_SIDE_PX:
        w, h = (
            Fraction(math.floor(w * TILE_SHORT_SIDE_PX / shortest)),
            Fraction(math.floor(h * TILE_SHORT_SIDE_PX / shortest)),
        )
    return math.ceil(w / TILE_PX) * math.ceil(h / TILE_PX)


def fit_within(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Scale down (never up) so the longest side is at most ``max_side``, rounding to whole pixels (half up)."""
    longest = max(width, height)
    if max_side is None or longest <= max_side:
        return width, height
    scale = Fraction(max_side, longest)
    return max(1, math.floor(width * scale + Fraction(1, 2))), max(1, math.floor(height * scale + Fraction(1, 2)))


def patch_count(width: int, height: int, limits: PatchLimits) -> int:
    """32-px patches of an image under one detail level's pixel limit and patch budget (steps 1-3 above)."""
    w, h = fit_within(width, height, limits.max_side)
    patches = _patches(w, h)
    budget = limits.budget
    if budget is None or patches <= budget:
        return patches
    # floor(w*s/32) = floor(sqrt(budget*w/h)) = isqrt(floor(budget*w/h)): exact, no float in the way.
    whole_w, whole_h = math.isqrt(budget * w // h), math.isqrt(budget * h // w)
    ratios = [Fraction(PATCH_PX * whole, side) for whole, side in ((whole_w, w), (whole_h, h)) if whole > 0]
    scale = min(ratios)
    resized = _patches(max(1, math.floor(w * scale)), max(1, math.floor(h * scale)))
    return min(resized, budget)


def _patches(width: int, height: int) -> int:
    return -(-width // PATCH_PX) * -(-height // PATCH_PX)


def page_pixels(width_pt: float, height_pt: float, dpi: float = PDF_POINTS_PER_INCH) -> tuple[int, int]:
    """The pixel size of a PDF page rendered at ``dpi`` (72 = one pixel per point), at least 1 x 1."""
    scale = dpi / PDF_POINTS_PER_INCH
    return max(1, round(width_pt * scale)), max(1, round(height_pt * scale))


def pdf_page_image_tokens(
    model: str, width_pt: float, height_pt: float, detail: Literal["low", "high"], dpi: float = PDF_POINTS_PER_INCH
) -> int:
    """Tokens of one PDF page's image: the page at ``dpi`` charged as an image of that ``detail``."""
    width, height = page_pixels(width_pt, height_pt, dpi)
    return image_tokens(model, width, height, detail)
