"""``producer.analysis.report``: the batch's HTML page (charts, header counts, escaping, size), and a headless
browser render."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from plotly.offline import get_plotlyjs

from producer.analysis.report import CHART_IDS, batch_report_html, normalise_field

BASE = datetime(2026, 12, 1, 15, 4, 0, tzinfo=UTC)
EVIL_ID = '<script>alert("id")</script>'
EVIL_MESSAGE = "<script>alert(1)</script> & \"quoted\" 'too'"
EVIL_FIELD = "<b>notes</b>[3].text"
PRICE = {"input": 0.15, "cached_input": 0.075, "output": 0.6}
ERROR_TYPES = ("schema_validation", "retries_exhausted", "refusal", "invalid_request")
EXPECTED_IDS = ("chart-throughput", "chart-latency", "chart-tokens", "chart-errors", "chart-fields")


def _finished_at(i: int, n: int, span_s: float = 60.0) -> str:
    moment = BASE + timedelta(seconds=span_s * i / n, microseconds=(i * 7919) % 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _line(i: int, n: int) -> dict[str, Any]:
    """A deterministic synthetic result line; ``i`` decides its status, error, repairs, 429s, fields and tier."""
    failed, cancelled = i % 10 == 0, i % 25 == 1
    status = "failed" if failed else "cancelled" if cancelled else "succeeded"
    cache_hit = status == "succeeded" and i % 7 == 0
    attempts = 0 if cache_hit or cancelled else 1 + (i % 11 == 0) + (i % 17 == 0)
    line: dict[str, Any] = {
        "custom_id": f"inv-{i:06d}",
        "batch_id": "invoices-20261201-150400",
        "status": status,
        "output": {"vendor": "ACME", "total": 12.5} if status == "succeeded" else None,
        "error": None,
        "api": "responses",
        "model": "gpt-4o-mini",
        "schema": "invoice",
        "fingerprint": f"sha256:{i:064x}",
        "usage": {
            "input_tokens": 800 * attempts,
            "cached_input_tokens": 512 * attempts if i % 2 else 0,
            "output_tokens": 90 * attempts,
            "reasoning_tokens": 30 * attempts if i % 3 == 0 else 0,
            "total_tokens": 890 * attempts,
        },
        "cost_usd": 0.0002 * attempts,
        "cache_hit": cache_hit,
        "attempts": attempts,
        "repairs": int(i % 11 == 0),
        "latency_ms": 200 + (i * 37) % 4000 if attempts else None,
        "finished_at": _finished_at(i, n),
        "service_tier": None if cache_hit else ("flex" if i % 5 == 0 else "default"),
        "retries": int(i % 17 == 0),
        "rate_limited": 2 if i % 13 == 0 else 0,
        "invalid_fields": [],
    }
    if i % 9 == 0:
        # Two items of the same field in one line count once; other fields appear too.
        line["invalid_fields"] = ["line_items[0].quantity", "line_items[2].quantity", "total"]
    elif i % 31 == 0:
        line["invalid_fields"] = ["line_items[1].unit_price"]
    if failed:
        kind = ERROR_TYPES[(i // 10) % len(ERROR_TYPES)]
        line["error"] = {"type": kind, "message": f"{kind} on try {attempts}", "status_code": 400 if i % 20 else None}
    if cancelled:
        line["error"] = None
    return line


def make_lines(n: int) -> list[dict[str, Any]]:
    lines = [_line(i, n) for i in range(n)]
    if n > 100:
        # Old lines without the new fields, and user text that must be escaped.
        for old in lines[3:6]:
            for name in ("retries", "rate_limited", "invalid_fields"):
                old.pop(name)
        lines[40]["custom_id"] = EVIL_ID
        lines[40]["error"] = {"type": "refusal", "message": EVIL_MESSAGE, "status_code": None}
        lines[41]["invalid_fields"] = [EVIL_FIELD]
    return lines


def make_batch(lines: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = Counter(line["status"] for line in lines)
    return {
        "batch_id": "invoices-20261201-150400",
        "api": "responses",
        "model": "gpt-4o-mini",
        "schema": "invoice",
        "created_at": "2026-12-01T15:03:59.000000Z",
        "total": len(lines) + 5,
        "done": len(lines),
        "succeeded": statuses["succeeded"],
        "failed": statuses["failed"],
        "cancelled": statuses["cancelled"],
        "tries_failed": 17,
        "rate_limited": 42,
        "paused": None,
        "usage": {
            "input_tokens": 123_456,
            "cached_input_tokens": 65_536,
            "output_tokens": 7_890,
            "reasoning_tokens": 1_234,
            "total_tokens": 131_346,
        },
        "cost_usd": 0.0421,
        "possibly_billed": {"calls": 0, "input_tokens": 0},
        "budget": {
            "budget_usd": 5.0,
            "spent_usd": 0.0421,
            "reserved_usd": 0.0,
            "budget_tokens": None,
            "spent_tokens": 131_346,
            "reserved_tokens": 0,
        },
    }


def _stat(page: str, name: str) -> int:
    match = re.search(rf'id="stat-{name}">([\d,]+)<', page)
    assert match, f"no stat-{name} in the header"
    return int(match.group(1).replace(",", ""))


def _figure(page: str, div_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The data and layout plotly.newPlot is called with for ``div_id``."""
    match = re.search(rf'Plotly\.newPlot\(\s*"{re.escape(div_id)}",\s*', page)
    assert match, f"no Plotly.newPlot for {div_id}"
    decoder = json.JSONDecoder()
    data, end = decoder.raw_decode(page, match.end())
    rest = re.match(r"\s*,\s*", page[end:])
    assert rest
    layout, _ = decoder.raw_decode(page, end + rest.end())
    return data, layout


@pytest.fixture(scope="module")
def lines() -> list[dict[str, Any]]:
    return make_lines(400)


@pytest.fixture(scope="module")
def page(lines: list[dict[str, Any]]) -> str:
    return batch_report_html(make_batch(lines), iter(lines), price=PRICE)


def test_every_chart_div_is_there(page: str) -> None:
    assert tuple(CHART_IDS) == EXPECTED_IDS
    for div_id in EXPECTED_IDS:
        assert page.count(f'<div id="{div_id}"') == 1, div_id
        _figure(page, div_id)


def test_plotly_js_is_inlined_once(page: str) -> None:
    marker = get_plotlyjs()[:40]
    assert "plotly.js v" in marker
    assert page.count(marker) == 1
    assert page.count("* plotly.js v") == 1
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert '<script src="http' not in page
    # Nothing outside plotly.js itself points at the network (plotly.js names its CDN for optional topojson).
    assert "http" not in page.replace(get_plotlyjs(), "")


def test_header_counts_match(page: str, lines: list[dict[str, Any]]) -> None:
    statuses = Counter(line["status"] for line in lines)
    assert _stat(page, "total") == len(lines) + 5
    assert _stat(page, "results") == len(lines)
    assert _stat(page, "succeeded") == statuses["succeeded"]
    assert _stat(page, "failed") == statuses["failed"]
    assert _stat(page, "cancelled") == statuses["cancelled"]
    assert _stat(page, "cache-hits") == sum(line["cache_hit"] for line in lines)
    assert _stat(page, "repaired") == sum(line["repairs"] > 0 for line in lines)
    assert _stat(page, "invalid") == sum(bool(line.get("invalid_fields")) for line in lines)
    assert _stat(page, "tries-failed") == 17
    assert _stat(page, "rate-limited") == 42
    assert statuses["failed"] == 40
    assert statuses["cancelled"] == 16
    for row_id, value in (("api", "responses"), ("model", "gpt-4o-mini"), ("schema", "invoice")):
        assert f'id="param-{row_id}">{value}<' in page
    assert 'id="param-created">2026-12-01T15:03:59.000000Z<' in page
    assert "$0.042100" in page


def test_user_text_is_escaped(page: str) -> None:
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot; &#x27;too&#x27;" in page
    assert "&lt;script&gt;alert(&quot;id&quot;)&lt;/script&gt;" in page
    # In the figures' JSON a field name is HTML-escaped for plotly.js (shown literally, never applied) and its
    # "<" / ">" are JSON escapes, so it cannot close the script either.
    assert "<b>notes" not in page
    fields, _ = _figure(page, "chart-fields")
    assert "&lt;b&gt;notes&lt;/b&gt;[].text" in fields[0]["y"]


def test_fields_chart_counts_each_field_once_per_line(page: str, lines: list[dict[str, Any]]) -> None:
    assert normalise_field("line_items[12].quantity") == "line_items[].quantity"
    assert normalise_field("a[1].b[22].c") == "a[].b[].c"
    data, layout = _figure(page, "chart-fields")
    counts = dict(zip(data[0]["y"], data[0]["x"], strict=True))
    expected = sum(1 for line in lines if "line_items[0].quantity" in line.get("invalid_fields", []))
    assert expected == len(range(0, 400, 9))
    assert counts["line_items[].quantity"] == expected
    assert counts["total"] == expected
    assert counts["line_items[].unit_price"] == sum(
        1 for line in lines if "line_items[1].unit_price" in line.get("invalid_fields", [])
    )
    assert "line_items[0].quantity" not in counts
    assert "line(s)" in layout["title"]["text"]


def test_errors_chart_counts_types(page: str, lines: list[dict[str, Any]]) -> None:
    data, _ = _figure(page, "chart-errors")
    counts = dict(zip(data[0]["x"], data[0]["y"], strict=True))
    assert counts == dict(Counter(line["error"]["type"] for line in lines if line["error"]))
    assert 'id="table-errors"' in page
    assert 'id="table-failed"' in page


def test_throughput_is_binned_with_429s_and_retries(page: str, lines: list[dict[str, Any]]) -> None:
    data, layout = _figure(page, "chart-throughput")
    finished, limited, retried = data
    assert "1 s" in layout["title"]["text"]  # a minute of lines: one-second bins
    assert 55 <= len(finished["x"]) <= 61
    assert sum(finished["customdata"]) == len(lines)
    assert sum(finished["y"]) == pytest.approx(len(lines))  # lines/s x 1 s
    assert sum(limited["y"]) == sum(line.get("rate_limited", 0) for line in lines)
    assert sum(retried["y"]) == sum(line.get("retries", 0) for line in lines)
    assert "429" in limited["name"]
    assert "retries" in retried["name"]


def test_latency_histogram_and_percentiles(page: str, lines: list[dict[str, Any]]) -> None:
    data, layout = _figure(page, "chart-latency")
    called = sorted(line["latency_ms"] for line in lines if line["attempts"] > 0)
    assert sum(data[0]["y"]) == len(called)
    assert len(data[0]["y"]) <= 60
    p50 = called[(len(called) + 1) // 2 - 1]
    assert f"p50 {p50:,} ms" in layout["title"]["text"]
    assert all(name in layout["title"]["text"] for name in ("p95", "p99"))
    assert len(layout["shapes"]) == 3


def test_tokens_and_cost_by_kind(page: str, lines: list[dict[str, Any]]) -> None:
    data, _ = _figure(page, "chart-tokens")
    tokens, cost = data
    usage = Counter[str]()
    for line in lines:
        usage.update(line["usage"])
    expected = [
        usage["input_tokens"] - usage["cached_input_tokens"],
        usage["cached_input_tokens"],
        usage["output_tokens"] - usage["reasoning_tokens"],
        usage["reasoning_tokens"],
    ]
    assert tokens["y"] == expected
    rates = [PRICE["input"], PRICE["cached_input"], PRICE["output"], PRICE["output"]]
    assert cost["y"] == pytest.approx([n * r / 1e6 for n, r in zip(expected, rates, strict=True)])


def test_without_price_shows_the_batch_total_only(lines: list[dict[str, Any]]) -> None:
    page = batch_report_html(make_batch(lines), lines, title="My <report>")
    data, layout = _figure(page, "chart-tokens")
    assert len(data) == 1
    assert "$0.042100" in layout["title"]["text"]
    assert "<title>My &lt;report&gt;</title>" in page


def test_tables(page: str) -> None:
    for table_id in ("table-attempts", "table-cache", "table-tiers"):
        assert f'id="{table_id}"' in page
    tiers = page[page.index('id="table-tiers"') :]
    assert "flex" in tiers
    assert "default" in tiers


def test_empty_and_sparse_inputs_render() -> None:
    page = batch_report_html({}, [])
    for div_id in EXPECTED_IDS:
        assert f'<div id="{div_id}"' in page
    assert _stat(page, "results") == 0
    odd: list[dict[str, Any]] = [
        {"status": "succeeded", "finished_at": "not a time", "usage": None, "latency_ms": "x"},
        {"status": "failed", "error": {"type": None}, "finished_at": "2026-12-01T15:04:05"},
    ]
    page = batch_report_html({"batch_id": "b", "succeeded": "?"}, odd)
    assert _stat(page, "succeeded") == 1
    assert _stat(page, "failed") == 1


def test_size_stays_small_for_100k_lines() -> None:
    n = 100_000
    lines = make_lines(n)
    page = batch_report_html(make_batch(lines), lines, price=PRICE)
    small = batch_report_html(make_batch(lines[:300]), lines[:300], price=PRICE)
    script = len(get_plotlyjs())
    assert _stat(page, "results") == n
    assert len(page) - script < 120_000, len(page) - script
    assert len(page) - len(small) < 40_000
    data, _ = _figure(page, "chart-throughput")
    assert len(data[0]["x"]) <= 100
    assert sum(data[0]["customdata"]) == n


def _chromium() -> str | None:
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def test_renders_in_a_headless_browser(tmp_path: Path, page: str) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed: apt-get install chromium (.ci/run does)")
    report = tmp_path / "report.html"
    report.write_text(page, encoding="utf-8")
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    dom = done.stdout
    assert done.returncode == 0, done.stderr[-2000:]
    starts = [dom.find(f'id="{div_id}"') for div_id in EXPECTED_IDS]
    assert all(start >= 0 for start in starts), starts
    assert starts == sorted(starts)
    for div_id, start, end in zip(EXPECTED_IDS, starts, [*starts[1:], len(dom)], strict=True):
        chart = dom[start:end]
        assert 'class="plot-container plotly"' in chart, div_id
        assert 'class="main-svg"' in chart, div_id
    # Rendered labels show the user's text as text: no element was made of it.
    assert "<b>notes" not in dom
    assert "<script>alert" not in dom
    assert "line_items[].quantity" in dom
