"""schemas.vision_tokens: the worked examples of OpenAI's images-vision guide, measured usage, and our assumptions."""

from __future__ import annotations

import pytest

from schemas.vision_tokens import (
    DEFAULT_SCHEME,
    PDF_PIXELS_PER_POINT,
    SCHEMES,
    UNKNOWN_IMAGE_SIZE,
    PatchScheme,
    TileScheme,
    image_tokens,
    pdf_page_tokens,
    pdf_tokens,
    scheme_for,
)

LETTER = (612.0, 792.0)
A4 = (595.276, 841.89)


# ---- Patch-based models: the guide's examples.


def test_gpt_5_4_high_worked_examples():
    # "A 1024 x 1024 image needs 32 x 32 = 1024 patches ... ceil(1024 x 1.2) = 1229 tokens."
    assert image_tokens("gpt-5.4", 1024, 1024, "high") == 1229
    # "A 2048 x 2048 image ... The patch budget reduces it to 1600 x 1600 pixels, or 50 x 50 = 2500 patches ...
    # ceil(2500 x 1.2) = 3000 tokens."
    assert image_tokens("gpt-5.4", 2048, 2048, "high") == 3000


def test_gpt_5_4_auto_is_high_and_low_can_cost_more():
    assert image_tokens("gpt-5.4", 2048, 2048) == 3000
    # low: 2048 px and a 6,144-patch budget, so the whole 64 x 64 patches: ceil(4096 x 1.2).
    assert image_tokens("gpt-5.4", 2048, 2048, "low") == 4916
    assert image_tokens("gpt-5.4-mini", 2048, 2048, "low") == 4916


def test_gpt_5_4_original_allows_10000_patches_and_6000_px():
    assert image_tokens("gpt-5.4", 2048, 2048, "original") == 4916  # 4,096 patches, under the budget
    # 6000 x 6000 is 188 x 188 = 35,344 patches: shrunk to 3200 x 3200 = 100 x 100 patches.
    assert image_tokens("gpt-5.4", 6000, 6000, "original") == 12000
    # 12000 x 1000 is first fitted to 6000 x 500 (188 x 16 = 3,008 patches).
    assert image_tokens("gpt-5.4", 12000, 1000, "original") == 3610


def test_the_1536_budget_example_shrinks_1800_by_2400_to_1452_patches():
    # The earlier copy's example: 57 x 75 = 4,275 patches, shrunk to 1056 x 1408 = 33 x 44 = 1,452 patches.
    assert image_tokens("o4-mini", 1800, 2400) == 2498  # ceil(1452 x 1.72)
    assert image_tokens("gpt-4.1-nano", 1800, 2400) == 3572  # ceil(1452 x 2.46)
    assert image_tokens("gpt-5-mini", 1800, 2400) == 1743  # ceil(1452 x 1.2)
    assert image_tokens("gpt-5-nano", 1800, 2400) == 2178  # ceil(1452 x 1.5)
    # Under the budget nothing shrinks: 1024 patches.
    assert image_tokens("o4-mini", 1024, 1024) == 1762


@pytest.mark.parametrize(
    ("width", "height", "billed"),
    [(256, 256, 77), (512, 512, 308), (768, 1024, 922), (1280, 720, 1104), (1024, 1024, 1229), (2048, 768, 1844)],
)
def test_gpt_5_mini_matches_measured_usage(width, height, billed):
    # Image input tokens measured off the API (community.openai.com, 2026): ceil(patches x 1.2).
    assert image_tokens("gpt-5-mini", width, height) == billed


def test_a_patch_model_over_its_budget_shrinks_with_the_binding_side_whole():
    # gpt-5.6 high: 4000 x 3000 fits to 2048 x 1536 (3,072 patches), over 2,500: the width binds, 57 patches
    # across (1824 px), the height 1368 px (43 patches): 2,451 patches.
    assert image_tokens("gpt-5.6", 4000, 3000, "high") == 2942
    # gpt-5.5 auto = original: 4000 x 3000 is 125 x 94 = 11,750 patches, over 10,000: 3669 x 2752 px,
    # 115 x 86 = 9,890 patches.
    assert image_tokens("gpt-5.5", 4000, 3000) == 11868


def test_gpt_5_6_original_and_auto_have_no_budget():
    assert image_tokens("gpt-5.6-sol", 4000, 3000) == 14100  # 125 x 94 patches, ceil(11750 x 1.2)
    assert image_tokens("gpt-5.6-luna", 4000, 3000, "original") == 14100
    # low fits within 512 x 512: 16 x 16 patches.
    assert image_tokens("gpt-5.6-terra", 1024, 1024, "low") == 308
    assert image_tokens("gpt-5.5", 4000, 3000, "low") == 231  # 512 x 384: 16 x 12 patches, ceil(230.4)


def test_gpt_4_1_mini_and_gpt_5_2_size_every_detail_to_2048_px_and_6144_patches():
    assert image_tokens("gpt-4.1-mini", 2048, 2048) == 6636  # 4,096 patches x 1.62
    assert image_tokens("gpt-4.1-mini-2025-04-14", 4096, 4096, "low") == 6636
    assert image_tokens("gpt-5.2", 4096, 4096, "original") == 4916  # original unsupported: sized as high
    assert image_tokens("gpt-5.2", 100, 50) == 10  # 4 x 2 patches, ceil(9.6)


def test_multipliers_are_exact_fractions():
    # Computed as fractions, not floats: ceil(2500 x 6/5) is 3000 whatever the float rounding of 1.2.
    assert image_tokens("gpt-5.4", 1600, 1600) == 3000
    assert image_tokens("gpt-5-nano", 32, 32) == 2  # ceil(1.5)
    assert image_tokens("gpt-4.1-mini", 320, 320) == 162  # 100 x 1.62 exactly


# ---- Tile-based models.


def test_gpt_4o_worked_examples():
    # 1024 x 1024 high: short side scaled to 768, 2 x 2 tiles: 85 + 4 x 170.
    assert image_tokens("gpt-4o", 1024, 1024, "high") == 765
    # 2048 x 4096 high: fitted to 1024 x 2048, then 768 x 1536, 2 x 3 tiles: 85 + 6 x 170.
    assert image_tokens("gpt-4o", 2048, 4096, "high") == 1105


@pytest.mark.parametrize(("model", "base"), [("gpt-4o", 85), ("gpt-4.1", 85), ("gpt-5", 70), ("o3", 75)])
def test_low_on_a_tile_model_is_the_base_only(model, base):
    assert image_tokens(model, 4000, 3000, "low") == base
    assert image_tokens(model, 10, 10, "low") == base


def test_tile_models_never_upscale():
    assert image_tokens("gpt-4o", 100, 100, "high") == 255  # one tile, not 768 x 768 (765)
    assert image_tokens("gpt-4o", 768, 2048, "high") == 1445  # short side 768 stays: 2 x 4 tiles
    assert image_tokens("gpt-4o", 512, 512, "high") == 255


def test_tile_auto_and_original_are_high():
    assert image_tokens("gpt-4o", 1024, 1024) == 765
    assert image_tokens("gpt-4o", 1024, 1024, "original") == 765
    # GPT-5.1 bills every image over 768 px square as 4 tiles: 70 + 4 x 140.
    assert image_tokens("gpt-5.1", 1024, 1024) == 630
    assert image_tokens("gpt-5.1", 2048, 2048) == 630


def test_gpt_4o_mini_counts_are_inflated():
    assert image_tokens("gpt-4o-mini", 1024, 1024, "high") == 2833 + 4 * 5667
    assert image_tokens("gpt-4o-mini-2024-07-18", 1024, 1024, "low") == 2833


# ---- Which scheme a model gets.


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-5.4-mini", "gpt-5.4-mini"),
        ("gpt-5.4-mini-2026-03-17", "gpt-5.4-mini"),
        ("gpt-5.4-2026-03-05", "gpt-5.4"),
        ("gpt-5.6-sol", "gpt-5.6"),
        ("gpt-5.2-codex", "gpt-5.2"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("gpt-5-chat-latest", "gpt-5"),
        ("gpt-5.1-codex-mini", "gpt-5.1-codex-mini"),
        ("o3-pro", "o3"),
        ("GPT-4O", "gpt-4o"),
        (" gpt-4.1 ", "gpt-4.1"),
        ("ft:gpt-4o-mini-2024-07-18:acme:invoices:abc123", "gpt-4o-mini"),
    ],
)
def test_scheme_by_exact_name_then_longest_family(model, family):
    assert scheme_for(model).family == family


@pytest.mark.parametrize("model", ["gpt-5.7", "gpt-6", "my-azure-deployment", "", "gpt-5.3"])
def test_unknown_models_get_the_conservative_default(model):
    assert scheme_for(model) is DEFAULT_SCHEME
    # Not onto gpt-5's tile scheme by a "." prefix: a future 5.x is patch-based.
    assert image_tokens(model, 1024, 1024) == 1659  # ceil(1024 x 1.62)
    assert image_tokens(model, 4000, 3000) == 19035  # no budget for auto: ceil(11750 x 1.62)
    assert image_tokens(model, 4000, 3000, "high") == 4977  # 2048 x 1536: 64 x 48 patches, under 6,144


def test_default_is_not_below_any_current_patch_family():
    deprecated = {"gpt-5-mini", "gpt-5-nano", "gpt-4.1-nano", "o4-mini", "gpt-5-codex-mini", "gpt-5.1-codex-mini"}
    sizes = [(1024, 1024), (2048, 2048), (4000, 3000), (1000, 3000), (8000, 600), (300, 200)]
    for family, scheme in SCHEMES.items():
        if isinstance(scheme, PatchScheme) and family not in deprecated:
            for detail in ("auto", "low", "high", "original"):
                for width, height in sizes:
                    assert image_tokens("unknown", width, height, detail) >= image_tokens(
                        family, width, height, detail
                    ), (family, detail, width, height)


def test_schemes_table_shape():
    assert isinstance(scheme_for("gpt-4o"), TileScheme)
    gpt_5_4 = scheme_for("gpt-5.4")
    assert isinstance(gpt_5_4, PatchScheme)
    assert (gpt_5_4.multiplier, gpt_5_4.auto, gpt_5_4.pdf_auto) == (1.2, "high", "low")
    assert (gpt_5_4.high.max_dimension, gpt_5_4.high.patch_budget) == (2048, 2500)
    assert (gpt_5_4.low.max_dimension, gpt_5_4.low.patch_budget) == (2048, 6144)
    assert (gpt_5_4.original.max_dimension, gpt_5_4.original.patch_budget) == (6000, 10_000)
    gpt_5_6 = scheme_for("gpt-5.6")
    assert isinstance(gpt_5_6, PatchScheme)
    assert (gpt_5_6.auto, gpt_5_6.pdf_auto, gpt_5_6.original.patch_budget) == ("original", "high", None)


# ---- Sizes we cannot measure, PDFs, bad input.


def test_unknown_image_size():
    assert UNKNOWN_IMAGE_SIZE == (2048, 2048)
    # It reaches (or, square, comes within 15 patches of) the budget of every budgeted high.
    assert image_tokens("gpt-5.4", *UNKNOWN_IMAGE_SIZE, "high") == 3000
    assert image_tokens("gpt-5-mini", *UNKNOWN_IMAGE_SIZE, "high") == 1826  # 39 x 39 = 1,521 patches
    assert image_tokens("gpt-4.1-mini", *UNKNOWN_IMAGE_SIZE) == 6636
    assert image_tokens("gpt-4o", *UNKNOWN_IMAGE_SIZE) == 765


def test_pdf_page_is_imaged_at_one_pixel_per_point_at_the_pdf_auto_detail():
    assert PDF_PIXELS_PER_POINT == 1.0
    # Before GPT-5.6 the PDF auto is low: a tile model bills its base tokens per page.
    assert pdf_page_tokens("gpt-4o", *LETTER) == 85
    assert pdf_page_tokens("gpt-4o-mini", *LETTER) == 2833
    # gpt-5.4 low is 2048 px / 6,144 patches: Letter is 612 x 792 px, 20 x 25 patches.
    assert pdf_page_tokens("gpt-5.4", *LETTER) == 600
    # From GPT-5.6 on, high: A4 is 596 x 842 px (a part pixel counts), 19 x 27 patches.
    assert pdf_page_tokens("gpt-5.6-sol", *A4) == 616
    assert pdf_page_tokens("gpt-4.1-mini", *A4) == 832  # ceil(513 x 1.62)
    # A 2000 x 3000 pt poster on gpt-5.6 high: fitted to 1365 x 2048, shrunk to 1280 x 1920 (40 x 60 patches).
    assert pdf_page_tokens("gpt-5.6", 2000, 3000) == 2880
    assert pdf_page_tokens("gpt-5.6", 0.4, 0.4) == 2  # at least one pixel: one patch, ceil(1.2)


def test_pdf_tokens_is_text_plus_every_page():
    assert pdf_tokens("gpt-4o", [LETTER, LETTER], 300) == 300 + 2 * 85
    assert pdf_tokens("gpt-5.6", [A4, LETTER, (2000, 3000)], 1234) == 1234 + 616 + 600 + 2880
    assert pdf_tokens("gpt-5.4", [], 42) == 42


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 5)])
def test_image_size_must_be_positive(width, height):
    with pytest.raises(ValueError, match="image size must be positive"):
        image_tokens("gpt-4o", width, height)


def test_bad_detail_and_bad_pdf_numbers_are_refused():
    with pytest.raises(ValueError, match="detail must be one of auto, low, high, original"):
        image_tokens("gpt-4o", 10, 10, "medium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="page size must be positive"):
        pdf_page_tokens("gpt-4o", 0, 792)
    with pytest.raises(ValueError, match="page size must be positive"):
        pdf_page_tokens("gpt-4o", float("nan"), 792)
    with pytest.raises(ValueError, match="text_tokens must not be negative"):
        pdf_tokens("gpt-4o", [LETTER], -1)
