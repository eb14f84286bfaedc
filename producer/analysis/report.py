"""One self-contained HTML page about a batch: its parameters, outcome and charts, viewable offline.

A pure module: callers pass the batch's status (the ``producer status --json`` object) and its result lines (dicts of
the native result line); nothing here reads Redis or files. The results are read once and folded, chunk by chunk,
into a :class:`ReportSummary` (:meth:`ReportSummary.add_lines`, or :func:`summarise_chunks` over an async stream such
as ``producer.batch.collect.final_result_chunks``), so a million lines cost a few counters and the page holds bins and
counts, never one point per line. Every part of the summary is bounded whatever the batch's size:

- throughput: lines per time tick; the tick starts at 100 ms and, past :data:`MAX_TIME_TICKS` distinct ticks,
  coarsens to the next of 1 s, 5 s, 15 s, 1 min, 5 min, 15 min, 1 h, 1 d (each divides every chart bin width above
  it, so the chart's bins are unchanged);
- latency: a histogram keyed by the latency rounded to 1 ms below 10 s and to 4 significant digits above (at most
  about 10,000 + 9,000 keys per decade; percentiles are exact below 10 s, within 0.05 % above);
- error types, their status codes, fields that failed validation, service tiers: counted per name up to a cap
  (:data:`MAX_NAMES`); names first seen after the cap are counted together under :data:`OTHER`;
- failed lines: the first 20 kept as examples; everything else is a counter.

plotly.js is inlined once, in the page's head; every chart is a plotly figure in a ``<div>`` with a stable id
(:data:`CHART_IDS`).

Everything that comes from users (custom_ids, error messages, field paths, tiers, the title) is escaped: as HTML in
the page's tables, and as HTML entities in the figures' labels (plotly.js reads labels as its pseudo-HTML and shows
entities as the characters they stand for, so a ``<b>`` in a field name is shown, never applied). Result lines hold
no document text, and nothing here adds any.
"""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

__all__ = [
    "CHART_IDS",
    "MAX_NAMES",
    "MAX_TIME_TICKS",
    "OTHER",
    "ReportSummary",
    "batch_report_html",
    "normalise_field",
    "summarise_chunks",
    "summary_report_html",
]

CHART_THROUGHPUT = "chart-throughput"
CHART_LATENCY = "chart-latency"
CHART_TOKENS = "chart-tokens"
CHART_ERRORS = "chart-errors"
CHART_FIELDS = "chart-fields"
CHART_IDS = (CHART_THROUGHPUT, CHART_LATENCY, CHART_TOKENS, CHART_ERRORS, CHART_FIELDS)
"""The ``id`` of each chart's ``<div>``, in page order."""

_TIME_RESOLUTION_S = 0.1
"""``finished_at`` is counted per 100 ms (coarser past :data:`MAX_TIME_TICKS`), then re-binned to the chart's width."""
_TIME_RESOLUTIONS_S = (0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)
"""Each is a whole multiple of the one before (so ticks re-bin exactly) and divides every chart width at or above it."""
MAX_TIME_TICKS = 5000
"""Distinct throughput ticks held before the tick coarsens to the next resolution."""
MAX_NAMES = 200
"""Distinct error types, status codes per type, field paths and service tiers counted apart."""
OTHER = "(other)"
"""The name under which what comes after :data:`MAX_NAMES` distinct names is counted."""
_EXACT_LATENCY_MS = 10_000
"""Latencies below it are counted per ms; above, rounded to 4 significant digits."""
_MAX_TIME_BINS = 100
_TIME_WIDTHS_S = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
_MAX_LATENCY_BINS = 60
_MAX_FIELDS = 40
"""Fields shown in the per-field chart (the most frequent); the rest are summed in its title."""
_MAX_HIST_VALUE = 10
"""Attempts/repairs/retries/429s tables: values from here up share one row (``10+``)."""
_MAX_FAILED_SAMPLES = 20
_MAX_MESSAGE_CHARS = 300
_CHART_HEIGHT_PX = 380
_INDEX = re.compile(r"\[\d+\]")
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
_TOKEN_KINDS = ("input (uncached)", "cached input", "output (excl. reasoning)", "reasoning")


def normalise_field(path: str) -> str:
    """``line_items[3].quantity`` -> ``line_items[].quantity``: one entry per schema field, whatever the index."""
    return _INDEX.sub("[]", path)


# --------------------------------------------------------------------------------------------------- reading values
def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return 0


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any, default: str = "") -> str:
    return default if value is None else str(value)


def _epoch(value: Any) -> float | None:
    """ISO-8601 (``2026-12-01T15:04:05.123456Z``) to seconds since the epoch; naive times are UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _bounded_key(counter: Mapping[str, Any], key: str) -> str:
    """``key`` if it is counted already or there is room for it, else :data:`OTHER`."""
    return key if key in counter or len(counter) < MAX_NAMES else OTHER


def _latency_key(latency: float) -> int:
    """1 ms resolution below :data:`_EXACT_LATENCY_MS`, 4 significant digits above: a bounded number of keys."""
    value = max(round(latency), 0)
    if value < _EXACT_LATENCY_MS:
        return value
    step = int(10 ** (len(str(value)) - 4))
    return round(value / step) * step


def _label(value: str) -> str:
    """A user-provided string as a plotly label: entities, so plotly.js shows it literally."""
    return html.escape(value, quote=False)


# --------------------------------------------------------------------------------------------------- aggregation
@dataclass
class _ErrorStats:
    lines: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    example: str = ""


@dataclass
class ReportSummary:
    """What the page shows, folded from the result lines in one pass, chunk by chunk; bounded (module docstring)."""

    lines: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    repaired: int = 0
    retries: int = 0
    rate_limited: int = 0
    by_tick: dict[int, list[int]] = field(default_factory=dict)
    """Tick (of ``resolution`` seconds) -> [lines finished, their 429s, their retries]."""
    resolution: float = _TIME_RESOLUTION_S
    no_time: int = 0
    latencies: Counter[int] = field(default_factory=Counter)
    usage: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    priced: int = 0
    errors: dict[str, _ErrorStats] = field(default_factory=dict)
    failed_samples: list[tuple[str, str, str, str]] = field(default_factory=list)
    fields: Counter[str] = field(default_factory=Counter)
    lines_invalid: int = 0
    attempts: Counter[int] = field(default_factory=Counter)
    repairs: Counter[int] = field(default_factory=Counter)
    retries_hist: Counter[int] = field(default_factory=Counter)
    rate_limited_hist: Counter[int] = field(default_factory=Counter)
    tiers: Counter[str] = field(default_factory=Counter)
    tier_fallbacks: int = 0
    venues: Counter[str] = field(default_factory=Counter)
    """Lines per venue (``sync``, ``batch-api``; ``(no call)`` for cache hits and cancels)."""
    venue_cost: dict[str, float] = field(default_factory=dict)
    """Dollars per venue."""
    provider_batches: int = 0
    """Distinct provider batches that answered lines, counted up to the cap on distinct names."""
    _provider_batch_ids: set[str] = field(default_factory=set)

    def add_lines(self, lines: Iterable[Any]) -> None:
        """Fold a chunk of result lines in (anything that is not a mapping is skipped)."""
        for line in lines:
            if isinstance(line, Mapping):
                self.add(line)

    def add(self, line: Mapping[str, Any]) -> None:
        self.lines += 1
        self.statuses[_text(line.get("status"), "unknown")] += 1
        attempts, repairs = _int(line.get("attempts")), _int(line.get("repairs"))
        retries, rate_limited = _int(line.get("retries")), _int(line.get("rate_limited"))
        self.cache_hits += bool(line.get("cache_hit"))
        self.repaired += repairs > 0
        self.retries += retries
        self.rate_limited += rate_limited
        self.attempts[min(attempts, _MAX_HIST_VALUE)] += 1
        self.repairs[min(repairs, _MAX_HIST_VALUE)] += 1
        self.retries_hist[min(retries, _MAX_HIST_VALUE)] += 1
        self.rate_limited_hist[min(rate_limited, _MAX_HIST_VALUE)] += 1
        self.tiers[_bounded_key(self.tiers, _text(line.get("service_tier"), "(not reported)"))] += 1
        self.tier_fallbacks += bool(line.get("service_tier_fallback"))
        venue = _bounded_key(self.venues, _text(line.get("venue"), "(no call)"))
        self.venues[venue] += 1
        self.venue_cost[venue] = self.venue_cost.get(venue, 0.0) + (_num(line.get("cost_usd")) or 0.0)
        provider_batch = line.get("provider_batch_id")
        if isinstance(provider_batch, str) and len(self._provider_batch_ids) < MAX_NAMES:
            self._provider_batch_ids.add(provider_batch)
            self.provider_batches = len(self._provider_batch_ids)
        self._add_time(line.get("finished_at"), rate_limited, retries)
        latency = _num(line.get("latency_ms"))
        if latency is not None and (attempts > 0 or "attempts" not in line):
            self.latencies[_latency_key(latency)] += 1
        self._add_usage(line)
        self._add_error(line)
        self._add_fields(line.get("invalid_fields"))

    def _add_time(self, finished_at: Any, rate_limited: int, retries: int) -> None:
        moment = _epoch(finished_at)
        if moment is None:
            self.no_time += 1
            return
        tick = math.floor(moment / self.resolution)
        counts = self.by_tick.get(tick)
        if counts is None:
            self.by_tick[tick] = [1, rate_limited, retries]
            if len(self.by_tick) > MAX_TIME_TICKS:
                self._coarsen()
        else:
            counts[0] += 1
            counts[1] += rate_limited
            counts[2] += retries

    def _coarsen(self) -> None:
        """Re-bin the ticks at the next resolution until they fit (exact: each resolution divides the next)."""
        while len(self.by_tick) > MAX_TIME_TICKS and self.resolution < _TIME_RESOLUTIONS_S[-1]:
            coarser = next(r for r in _TIME_RESOLUTIONS_S if r > self.resolution)
            ratio = round(coarser / self.resolution)
            merged: dict[int, list[int]] = {}
            for tick, counts in self.by_tick.items():
                into = merged.setdefault(tick // ratio, [0, 0, 0])
                for i, count in enumerate(counts):
                    into[i] += count
            self.by_tick, self.resolution = merged, coarser

    def _add_usage(self, line: Mapping[str, Any]) -> None:
        usage = _mapping(line.get("usage"))
        for name in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens", "total_tokens"):
            self.usage[name] += _int(usage.get(name))
        cost = _num(line.get("cost_usd"))
        if cost is not None:
            self.cost_usd += cost
            self.priced += 1

    def _add_error(self, line: Mapping[str, Any]) -> None:
        error = line.get("error")
        if not isinstance(error, Mapping):
            return
        kind = _text(error.get("type"), "unknown")
        stats = self.errors.setdefault(_bounded_key(self.errors, kind), _ErrorStats())
        stats.lines += 1
        code = error.get("status_code")
        stats.codes[_bounded_key(stats.codes, _text(code, "none"))] += 1
        message = _text(error.get("message"))[:_MAX_MESSAGE_CHARS]
        if not stats.example:
            stats.example = message
        if len(self.failed_samples) < _MAX_FAILED_SAMPLES:
            self.failed_samples.append((_text(line.get("custom_id")), kind, _text(code), message))

    def _add_fields(self, invalid: Any) -> None:
        if not isinstance(invalid, list | tuple) or not invalid:
            return
        self.lines_invalid += 1
        self.fields.update({_bounded_key(self.fields, normalise_field(str(path))) for path in invalid})


def _summarise(results: Iterable[Mapping[str, Any]]) -> ReportSummary:
    summary = ReportSummary()
    summary.add_lines(results)
    return summary


async def summarise_chunks(chunks: AsyncIterable[Iterable[Mapping[str, Any]]]) -> ReportSummary:
    """Fold an async stream of chunks of result lines (``producer.batch.collect.final_result_chunks``) into a summary:
    one chunk in memory at a time."""
    summary = ReportSummary()
    async for chunk in chunks:
        summary.add_lines(chunk)
    return summary


def _percentile(counts: Counter[int], p: float) -> int:
    """Nearest rank: the smallest value with at least ``p`` percent of the values at or below it."""
    total = sum(counts.values())
    rank = max(math.ceil(p / 100 * total), 1)
    seen = 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= rank:
            return value
    return max(counts)


def _nice_width(span: float, bins: int) -> float:
    """The smallest of 1, 2, 5 x 10^k that covers ``span`` in at most ``bins`` bins."""
    raw = max(span / bins, 1.0)
    exponent = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if step * exponent >= raw:
            return float(step * exponent)
    return float(10 * exponent)  # pragma: no cover - the loop always returns


def _time_width(span_s: float) -> float:
    for width in _TIME_WIDTHS_S:
        if span_s / width <= _MAX_TIME_BINS:
            return float(width)
    return 86400.0 * math.ceil(span_s / _MAX_TIME_BINS / 86400)


# --------------------------------------------------------------------------------------------------- figures
def _layout(fig: go.Figure, title: str, **extra: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01, "xanchor": "left"},
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        **extra,
    )
    return fig


def _empty(title: str, note: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=note, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font={"size": 16})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def _moment(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    if seconds < 86400:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 86400:g} d"


def _throughput_figure(summary: ReportSummary) -> go.Figure:
    title = "Lines finished per second"
    if not summary.by_tick:
        return _empty(title, "no line with a finished_at yet")
    first, last, resolution = min(summary.by_tick), max(summary.by_tick), summary.resolution
    width = max(_time_width((last - first + 1) * resolution), resolution)
    start = math.floor(first * resolution / width)
    nbins = math.floor(last * resolution / width) - start + 1
    finished, limited, retried = [0] * nbins, [0] * nbins, [0] * nbins
    for tick, (count, rate_limited, retries) in summary.by_tick.items():
        index = math.floor(tick * resolution / width) - start
        finished[index] += count
        limited[index] += rate_limited
        retried[index] += retries
    centres = [_moment((start + i + 0.5) * width) for i in range(nbins)]
    bar_ms = width * 1000
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    fig.add_trace(
        go.Bar(
            x=centres,
            y=[count / width for count in finished],
            width=bar_ms,
            name="lines/s",
            customdata=finished,
            hovertemplate="%{x}<br>%{y:.3g} lines/s (%{customdata} lines)<extra></extra>",
            marker={"color": "#4c78a8"},
        ),
        row=1,
        col=1,
    )
    for values, name, color in ((limited, "429s", "#e45756"), (retried, "retries (errors, ran again)", "#f58518")):
        fig.add_trace(
            go.Bar(
                x=centres,
                y=values,
                width=bar_ms,
                name=name,
                hovertemplate="%{x}<br>%{y} " + name + "<extra></extra>",
                marker={"color": color},
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="lines/s", row=1, col=1, rangemode="tozero")
    fig.update_yaxes(title_text="tries", row=2, col=1, rangemode="tozero")
    fig.update_xaxes(title_text="finished at (UTC)", row=2, col=1)
    note = f" ({summary.no_time:,} without a time)" if summary.no_time else ""
    return _layout(
        fig,
        f"{title} (bins of {_duration(width)}); 429s and retries of the lines finishing in each bin{note}",
        barmode="stack",
        bargap=0,
        legend={"orientation": "h", "y": -0.18, "traceorder": "normal"},
    )


def _latency_figure(summary: ReportSummary) -> go.Figure:
    title = "Latency of lines that made calls (API time, summed per line)"
    if not summary.latencies:
        return _empty(title, "no line made a call")
    low, high = min(summary.latencies), max(summary.latencies)
    width = _nice_width(high - low + 1, _MAX_LATENCY_BINS)
    start = math.floor(low / width)
    nbins = math.floor(high / width) - start + 1
    counts = [0] * nbins
    for value, count in summary.latencies.items():
        counts[math.floor(value / width) - start] += count
    fig = go.Figure(
        go.Bar(
            x=[(start + i + 0.5) * width for i in range(nbins)],
            y=counts,
            width=width,
            customdata=[[(start + i) * width, (start + i + 1) * width] for i in range(nbins)],
            hovertemplate="%{customdata[0]:,}-%{customdata[1]:,} ms: %{y:,} lines<extra></extra>",
            marker={"color": "#54a24b"},
            name="lines",
        )
    )
    marks = [(name, _percentile(summary.latencies, p)) for name, p in (("p50", 50), ("p95", 95), ("p99", 99))]
    for row, ((name, value), dash) in enumerate(zip(marks, ("solid", "dash", "dot"), strict=True)):
        fig.add_vline(x=value, line={"color": "#333", "dash": dash, "width": 1.5})
        fig.add_annotation(  # staggered: close percentiles would print over each other
            x=value,
            y=1 - 0.09 * row,
            yref="paper",
            text=f"{name} {value:,} ms",
            showarrow=False,
            xanchor="left",
            bgcolor="rgba(255,255,255,0.85)",
        )
    fig.update_xaxes(title_text="latency (ms)")
    fig.update_yaxes(title_text="lines", rangemode="tozero")
    marked = ", ".join(f"{name} {value:,} ms" for name, value in marks)
    return _layout(fig, f"{title}: {marked}", bargap=0, showlegend=False)


def _token_kinds(usage: Mapping[str, int]) -> list[int]:
    inp, cached = usage.get("input_tokens", 0), usage.get("cached_input_tokens", 0)
    out, reasoning = usage.get("output_tokens", 0), usage.get("reasoning_tokens", 0)
    return [max(inp - cached, 0), cached, max(out - reasoning, 0), reasoning]


def _kind_costs(tokens: Sequence[int], price: Mapping[str, float]) -> list[float]:
    rates = [
        _num(price.get("input")) or 0.0,
        _num(price.get("cached_input")) or 0.0,
        _num(price.get("output")) or 0.0,
        _num(price.get("output")) or 0.0,
    ]
    return [count * rate / 1_000_000 for count, rate in zip(tokens, rates, strict=True)]


def _tokens_figure(summary: ReportSummary, batch_cost: float | None, price: Mapping[str, float] | None) -> go.Figure:
    tokens = _token_kinds(summary.usage)
    colors = ["#4c78a8", "#72b7b2", "#f58518", "#b279a2"]
    token_bar = go.Bar(
        x=list(_TOKEN_KINDS),
        y=tokens,
        marker={"color": colors},
        text=[f"{count:,}" for count in tokens],
        textposition="auto",
        hovertemplate="%{x}: %{y:,} tokens<extra></extra>",
        name="tokens",
    )
    if price is None:
        fig = go.Figure(token_bar)
        fig.update_yaxes(title_text="tokens", rangemode="tozero")
        cost = "n/a (no price)" if batch_cost is None else f"${batch_cost:,.6f}"
        return _layout(fig, f"Tokens by kind (result lines); cost {cost} (batch total)", showlegend=False)
    costs = _kind_costs(tokens, price)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("tokens", "cost (USD)"), horizontal_spacing=0.12)
    fig.add_trace(token_bar, row=1, col=1)
    fig.add_trace(
        go.Bar(
            x=list(_TOKEN_KINDS),
            y=costs,
            marker={"color": colors},
            text=[f"${usd:,.6f}" for usd in costs],
            textposition="auto",
            hovertemplate="%{x}: $%{y:.6f}<extra></extra>",
            name="cost",
        ),
        row=1,
        col=2,
    )
    fig.update_yaxes(rangemode="tozero")
    return _layout(fig, f"Tokens and cost by kind (result lines): ${sum(costs):,.6f}", showlegend=False)


def _errors_figure(summary: ReportSummary) -> go.Figure:
    title = "Error types"
    if not summary.errors:
        return _empty(title, "no errors")
    ranked = sorted(summary.errors.items(), key=lambda item: (-item[1].lines, item[0]))
    fig = go.Figure(
        go.Bar(
            x=[_label(kind) for kind, _ in ranked],
            y=[stats.lines for _, stats in ranked],
            text=[f"{stats.lines:,}" for _, stats in ranked],
            textposition="auto",
            marker={"color": "#e45756"},
            hovertemplate="%{x}: %{y:,} lines<extra></extra>",
            name="lines",
        )
    )
    fig.update_yaxes(title_text="lines", rangemode="tozero")
    fig.update_xaxes(type="category")
    return _layout(fig, f"{title} ({sum(s.lines for s in summary.errors.values()):,} lines)", showlegend=False)


def _fields_figure(summary: ReportSummary) -> tuple[go.Figure, int]:
    title = "Schema-validation failures per field (lines, repairs included)"
    if not summary.fields:
        return _empty(title, "no field failed validation"), _CHART_HEIGHT_PX
    ranked = sorted(summary.fields.items(), key=lambda item: (-item[1], item[0]))
    shown, rest = ranked[:_MAX_FIELDS], ranked[_MAX_FIELDS:]
    shown.reverse()  # horizontal bars are drawn bottom-up: the most frequent on top
    fig = go.Figure(
        go.Bar(
            x=[count for _, count in shown],
            y=[_label(name) for name, _ in shown],
            orientation="h",
            text=[f"{count:,}" for _, count in shown],
            textposition="auto",
            marker={"color": "#b279a2"},
            hovertemplate="%{y}: %{x:,} lines<extra></extra>",
            name="lines",
        )
    )
    fig.update_yaxes(type="category", automargin=True)
    fig.update_xaxes(title_text="lines", rangemode="tozero")
    more = f"; {len(rest):,} more field(s) not shown" if rest else ""
    height = max(_CHART_HEIGHT_PX, 120 + 24 * len(shown))
    return _layout(fig, f"{title}: {summary.lines_invalid:,} line(s){more}", showlegend=False), height


def _figure_html(fig: go.Figure, div_id: str, height: int = _CHART_HEIGHT_PX) -> str:
    fig.update_layout(height=height)
    body: str = pio.to_html(
        fig,
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config=_PLOTLY_CONFIG,
        default_width="100%",
        default_height=f"{height}px",
    )
    return f'<section class="chart">{body}</section>'


# --------------------------------------------------------------------------------------------------- HTML
def _e(value: Any) -> str:
    return html.escape(_text(value), quote=True)


def _count(value: Any) -> str:
    number = _num(value)
    return "n/a" if number is None else f"{round(number):,}"


def _usd(value: Any) -> str:
    number = _num(value)
    return "n/a" if number is None else f"${number:,.6f}"


def _table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], table_id: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="none">none</td></tr>'
    return (
        f'<table id="{table_id}"><caption>{_e(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _stat(stat_id: str, name: str, value: str, title: str = "") -> str:
    hint = f' title="{_e(title)}"' if title else ""
    return f'<div class="stat"{hint}><dt>{_e(name)}</dt><dd id="stat-{stat_id}">{_e(value)}</dd></div>'


def _outcome(batch: Mapping[str, Any], summary: ReportSummary, name: str) -> Any:
    """The batch's counter when the status has it, else the result lines' count."""
    value = batch.get(name)
    return value if _num(value) is not None else summary.statuses.get(name, 0)


def _budget_text(budget: Any) -> str:
    if not isinstance(budget, Mapping):
        return ""
    limits = []
    if _num(budget.get("budget_usd")) is not None:
        limits.append(f"${budget['budget_usd']:,.4f}")
    if _int(budget.get("budget_tokens")):
        limits.append(f"{_int(budget.get('budget_tokens')):,} tokens")
    spent = f"spent ${_num(budget.get('spent_usd')) or 0:,.4f} / {_int(budget.get('spent_tokens')):,} tokens"
    return f"{' and '.join(limits) or 'none'}: {spent}"


def _parameters(batch: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str, Any]] = [
        ("batch", "batch", batch.get("batch_id")),
        ("api", "api", batch.get("api")),
        ("model", "model", batch.get("model")),
        ("schema", "schema", batch.get("schema")),
        ("created", "created", batch.get("created_at")),
        ("state", "state", batch.get("state")),
    ]
    if batch.get("paused"):
        rows.append(("paused", "paused", f"since {_text(batch.get('paused_at'), '?')}: {batch['paused']}"))
    budget = _budget_text(batch.get("budget"))
    if budget:
        rows.append(("budget", "budget", budget))
    possibly = _mapping(batch.get("possibly_billed"))
    if _int(possibly.get("calls")):
        calls, tokens = _int(possibly.get("calls")), _int(possibly.get("input_tokens"))
        rows.append(("possibly-billed", "possibly billed, unrecorded", f"{calls:,} call(s), ~{tokens:,} input tokens"))
    cells = "".join(
        f'<tr><th scope="row">{_e(name)}</th><td id="param-{row_id}">{_e(_text(value, "n/a"))}</td></tr>'
        for row_id, name, value in rows
    )
    return f'<table id="parameters" class="parameters">{cells}</table>'


def _stats(batch: Mapping[str, Any], summary: ReportSummary) -> str:
    usage = _mapping(batch.get("usage"))
    batch_tokens = "/".join(
        _count(usage.get(name)) for name in ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_tokens")
    )
    cost = batch.get("cost_usd") if "cost_usd" in batch else (summary.cost_usd if summary.priced else None)
    stats = [
        _stat("total", "lines", _count(batch.get("total", summary.lines))),
        _stat("results", "result lines read", f"{summary.lines:,}"),
        _stat("succeeded", "succeeded", _count(_outcome(batch, summary, "succeeded"))),
        _stat("failed", "failed", _count(_outcome(batch, summary, "failed"))),
        _stat("cancelled", "cancelled", _count(_outcome(batch, summary, "cancelled"))),
        _stat("cache-hits", "cache hits", f"{summary.cache_hits:,}"),
        _stat("repaired", "repaired lines", f"{summary.repaired:,}", "lines with at least one repair call"),
        _stat("invalid", "lines with invalid fields", f"{summary.lines_invalid:,}"),
        _stat(
            "tries-failed",
            "retried tries",
            _count(batch.get("tries_failed", summary.retries)),
            "tries that ended in an error (not a 429) and ran again",
        ),
        _stat("rate-limited", "429s", _count(batch.get("rate_limited", summary.rate_limited)), "tries ended by a 429"),
        _stat("tokens", "tokens in/cached/out/reasoning", batch_tokens, "the batch's totals, superseded results too"),
        _stat("cost", "cost", _usd(cost), "the batch's estimated cost"),
    ]
    return f'<dl class="stats">{"".join(stats)}</dl>'


def _hist_rows(summary: ReportSummary) -> list[list[str]]:
    hists = (summary.attempts, summary.repairs, summary.retries_hist, summary.rate_limited_hist)
    values = sorted({value for hist in hists for value in hist})
    return [
        [f"{value}+" if value >= _MAX_HIST_VALUE else str(value), *(f"{hist.get(value, 0):,}" for hist in hists)]
        for value in values
    ]


def _tables(summary: ReportSummary) -> str:
    pct = f"{summary.cache_hits / summary.lines:.1%}" if summary.lines else "n/a"
    cache = _table(
        "Result cache",
        ("", "lines"),
        [("hits", f"{summary.cache_hits:,}"), ("misses", f"{summary.lines - summary.cache_hits:,}"), ("hit rate", pct)],
        "table-cache",
    )
    tiers = _table(
        "Service tiers served",
        ("tier", "lines"),
        [*((tier, f"{n:,}") for tier, n in summary.tiers.most_common())]
        + ([("flex fell back to auto", f"{summary.tier_fallbacks:,}")] if summary.tier_fallbacks else []),
        "table-tiers",
    )
    venues = _table(
        "Venues",
        ("venue", "lines", "cost"),
        [(venue, f"{n:,}", f"${summary.venue_cost.get(venue, 0.0):,.4f}") for venue, n in summary.venues.most_common()]
        + ([("provider batches", f"{summary.provider_batches:,}", "")] if summary.provider_batches else []),
        "table-venues",
    )
    hist = _table(
        "Lines by number of calls, repairs, retries and 429s",
        ("n", "attempts", "repairs", "retries", "429s"),
        _hist_rows(summary),
        "table-attempts",
    )
    errors = _table(
        "Errors",
        ("type", "lines", "status codes", "first message"),
        [
            (
                kind,
                f"{stats.lines:,}",
                ", ".join(f"{code} x{n:,}" for code, n in stats.codes.most_common()),
                stats.example,
            )
            for kind, stats in sorted(summary.errors.items(), key=lambda item: (-item[1].lines, item[0]))
        ],
        "table-errors",
    )
    samples = _table(
        f"Failed lines (first {_MAX_FAILED_SAMPLES})",
        ("custom_id", "type", "status code", "message"),
        summary.failed_samples,
        "table-failed",
    )
    return f'<div class="tables">{hist}{cache}{tiers}{venues}</div><div class="tables wide">{errors}{samples}</div>'


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem;margin:0 0 .8rem}
table{border-collapse:collapse;margin:.5rem 1.5rem .5rem 0;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.2rem .6rem;text-align:left;vertical-align:top}
td{font-variant-numeric:tabular-nums;max-width:48rem;overflow-wrap:anywhere}
caption{text-align:left;font-weight:600;padding:.3rem 0}
.parameters th{background:#f6f6f6}
.stats{display:flex;flex-wrap:wrap;gap:.5rem;margin:1rem 0}
.stat{border:1px solid #ddd;border-radius:6px;padding:.4rem .8rem;min-width:7rem}
.stat dt{font-size:.75rem;color:#666}
.stat dd{margin:0;font-size:1.2rem;font-variant-numeric:tabular-nums}
.tables{display:flex;flex-wrap:wrap;align-items:flex-start}
.chart{margin:1rem 0;border-top:1px solid #eee}
.none{color:#888}
footer{color:#888;font-size:.8rem;margin-top:2rem}
"""


def batch_report_html(
    batch: Mapping[str, Any],
    results: Iterable[Mapping[str, Any]],
    *,
    title: str | None = None,
    price: Mapping[str, float] | None = None,
) -> str:
    """The batch's report: one self-contained HTML page (plotly.js inlined once, no network needed to view it).

    ``batch`` is the ``producer status --json`` object (missing keys are shown as n/a or taken from the results);
    ``results`` the native result lines, read once (a generator is fine). ``price`` (USD per 1M tokens: ``input``,
    ``cached_input``, ``output``; reasoning is billed as output) adds the cost of each kind of token; without it the
    page shows the batch's ``cost_usd`` total only.
    """
    return summary_report_html(batch, _summarise(results), title=title, price=price)


def summary_report_html(
    batch: Mapping[str, Any],
    summary: ReportSummary,
    *,
    title: str | None = None,
    price: Mapping[str, float] | None = None,
) -> str:
    """The page of :func:`batch_report_html` from a summary already folded (:func:`summarise_chunks`)."""
    heading = title if title is not None else f"Batch {_text(batch.get('batch_id'), '(unknown)')}"
    fields_fig, fields_height = _fields_figure(summary)
    batch_cost = _num(batch.get("cost_usd"))
    if batch_cost is None and "cost_usd" not in batch and summary.priced:
        batch_cost = summary.cost_usd
    charts = "".join(
        [
            _figure_html(_throughput_figure(summary), CHART_THROUGHPUT, 460),
            _figure_html(_latency_figure(summary), CHART_LATENCY),
            _figure_html(_tokens_figure(summary, batch_cost, price), CHART_TOKENS),
            _figure_html(_errors_figure(summary), CHART_ERRORS),
            _figure_html(fields_fig, CHART_FIELDS, fields_height),
        ]
    )
    generated = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(heading)}</title><style>{_CSS}</style>"
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f"<script>{get_plotlyjs()}</script>"
        "</head><body>"
        f"<header><h1>{_e(heading)}</h1>{_parameters(batch)}{_stats(batch, summary)}</header>"
        f"<main>{charts}{_tables(summary)}</main>"
        f"<footer>generated {generated} by producer report</footer>"
        "</body></html>\n"
    )
