"""The live `wait` line was cut below ~240 columns: at 160 the batch id, the bar, done/total and the ETA were gone."""

from __future__ import annotations

import pytest
from rich.console import Console

from producer.batch.progress import LiveProgress

SUMMARY = (
    "1,200 ok / 30 failed / 4 cancelled, tokens 1,234,567 in / 98,765 out, $1.2345 (projected $10.0001), "
    "last minute: 3 retries, 0 429s, workers 4"
)


@pytest.mark.parametrize("width", [60, 80, 120, 160, 240])
def test_every_part_of_the_live_line_shows_at_any_common_width(width: int) -> None:
    console = Console(width=width, force_terminal=True, record=True, color_system=None)
    progress = LiveProgress(console)
    progress.add_task("invoices-2026-12-02", total=10_000, completed=1_234, rate="41.2", summary=SUMMARY)
    console.print(progress.get_renderable())
    shown = console.export_text()
    assert all(len(line) <= width for line in shown.splitlines())
    for part in ("invoices-2026-12-02", "1234/10000", "41.2 lines/s", "ETA", "━"):
        assert part in shown, (part, shown)
    assert "workers 4" in " ".join(shown.split())  # the summary is folded, never cut
