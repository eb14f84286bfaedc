"""``report`` and ``compare`` read a batch as a stream of chunks, in memory that does not grow with the batch.

Batches of result lines are recorded through the store (``ResultStore.record``, as a worker records them) into a real
Redis and read back with ``final_result_chunks``; tracemalloc's peak while folding a batch of N lines is compared
with the peak for 2N lines (a ratio, so the figure does not depend on the machine).
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from producer.analysis.compare import (
    CompareOptions,
    CompareStream,
    Comparison,
    PendingLimitError,
    compare_chunks,
    compare_runs,
    comparison_json,
)
from producer.analysis.report import (
    MAX_TIME_TICKS,
    ReportSummary,
    batch_report_html,
    summarise_chunks,
    summary_report_html,
)
from producer.batch.collect import final_result_chunks, final_results
from schemas.records import CallTotals, line_result
from schemas.results import ErrorInfo, ErrorType, Status, Usage
from store.batches import BatchStore
from store.codec import ResultCodec
from store.keys import Keys
from store.lines import LineIndex
from store.results import ResultStore
from store.scripts import RoundTrip
from tests.processes import invoice_spec

_GENERATED = re.compile(r"generated [0-9TZ:-]+")
N = 20_000
GROWTH_LIMIT = 1.25
"""peak(2N) / peak(N): a reader holding every line would be near 2."""


def _fp(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def _output(n: int, *, other: bool) -> dict[str, Any]:
    """An invoice; run B differs in its currency every 10th line and its vendor (a new value each time) every 7th."""
    return {
        "vendor": f"Vendor {n}" if other and n % 7 == 0 else f"Vendor {n % 13}",
        "vendor_address": None,
        "invoice_number": f"INV-{n}",
        "invoice_date": "2026-11-22",
        "due_date": None,
        "currency": "EUR" if other and n % 10 == 0 else "USD",
        "line_items": [{"description": "Widget", "quantity": n % 5 + 1, "unit_price": 2.5, "amount": 2.5}],
        "subtotal": float(n),
        "tax": None,
        "total": float(n) * (1.001 if other else 1.0),
    }


async def _record_batch(redis: Redis, keys: Keys, batch_id: str, lines: int, *, other: bool = False) -> None:
    """A batch of ``lines`` results recorded through the store, every 50th line failed."""
    spec = invoice_spec(batch_id)
    bk, codec, results = keys.batch(batch_id), ResultCodec(spec.json_schema), ResultStore(redis)
    assert await BatchStore(redis, keys).create(spec, lines=lines, ttl_ms=0, input_ref=None, created_ms=1)
    assert await LineIndex(redis).append(bk, 0, [(_fp(n), f"id-{n}") for n in range(lines)]) == (1, lines)
    for first in range(0, lines, 1000):
        trip = RoundTrip(redis)
        for n in range(first, min(first + 1000, lines)):
            failed = n % 50 == 0
            result = line_result(
                spec,
                custom_id=f"id-{n}",
                fingerprint=_fp(n),
                status=Status.FAILED if failed else Status.SUCCEEDED,
                totals=CallTotals(
                    usage=Usage(input_tokens=100, output_tokens=20, total_tokens=120),
                    attempts=1,
                    latency_ms=100 + n % 3000 + (200 if other else 0),
                ),
                price=None,
                output=None if failed else _output(n, other=other),
                error=ErrorInfo(type=ErrorType.SCHEMA_VALIDATION, message=f"bad {n}") if failed else None,
                invalid_fields=("total", f"line_items[{n % 3}].amount") if failed else (),
            )
            results.queue_record(trip, bk, keys.queue, n, result, codec, job_id=keys.job_id(batch_id, n))
        await trip.run()


async def _peak(work: Callable[[], Awaitable[Any]]) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        value = await work()
        return tracemalloc.get_traced_memory()[1] - base, value
    finally:
        tracemalloc.stop()


async def test_report_and_compare_peaks_do_not_grow_with_the_batch(redis, keys) -> None:
    """Doubling the batch leaves the peak memory of ``report`` and ``compare`` (nearly) where it was."""
    peaks: dict[str, list[int]] = {"report": [], "compare": []}
    for lines in (N, 2 * N):
        a, b = f"a{lines}", f"b{lines}"
        await _record_batch(redis, keys, a, lines)
        await _record_batch(redis, keys, b, lines, other=True)

        def report(a: str = a) -> Awaitable[ReportSummary]:
            return summarise_chunks(final_result_chunks(redis, keys, a))

        peak, summary = await _peak(report)
        peaks["report"].append(peak)
        assert isinstance(summary, ReportSummary)
        assert (summary.lines, summary.statuses["failed"], summary.lines_invalid) == (lines, lines // 50, lines // 50)
        assert summary.usage["total_tokens"] == 120 * lines
        page = summary_report_html({"batch_id": a}, summary)
        assert f"{lines:,}" in page

        def run(a: str = a, b: str = b) -> Awaitable[Comparison]:
            chunks = final_result_chunks(redis, keys, a), final_result_chunks(redis, keys, b)
            return compare_chunks(*chunks, json_schema=invoice_spec(a).json_schema, names=(a, b))

        peak, comparison = await _peak(run)
        peaks["compare"].append(peak)
        assert isinstance(comparison, Comparison)
        failed = lines // 50
        assert (comparison.matched, comparison.only_a, comparison.only_b) == (lines, 0, 0)
        assert comparison.records.compared == lines - failed
        assert comparison.status.both_failed == failed
        currency = comparison.field("currency")
        assert currency.agree == currency.compared - sum(1 for n in range(lines) if n % 10 == 0 and n % 50)
        vendor = comparison.field("vendor")
        assert vendor.compared - vendor.agree == sum(1 for n in range(lines) if n % 7 == 0 and n >= 13 and n % 50)
        assert comparison.usage.a.latency_lines == lines
        assert comparison.usage.b.latency_p50_ms is not None
        assert comparison.usage.a.latency_p50_ms is not None
        assert 180 < comparison.usage.b.latency_p50_ms - comparison.usage.a.latency_p50_ms < 220
    for name, (small, large) in peaks.items():
        print(f"{name}: peak {small / 1e6:.2f} MB at {N:,} lines, {large / 1e6:.2f} MB at {2 * N:,}")
        assert large / small < GROWTH_LIMIT, (name, small, large)


async def test_streamed_compare_equals_the_whole_batch_compare(redis, keys) -> None:
    """Chunk by chunk from the store or over two lists: the same comparison, in every output form."""
    await _record_batch(redis, keys, "a", 2500)
    await _record_batch(redis, keys, "b", 2500, other=True)
    schema = invoice_spec("a").json_schema
    small = CompareOptions(examples=2)
    streamed = await compare_chunks(
        final_result_chunks(redis, keys, "a", chunk=300),
        final_result_chunks(redis, keys, "b", chunk=700),
        json_schema=schema,
        options=small,
    )
    whole = compare_runs(
        await final_results(redis, keys, "a"), await final_results(redis, keys, "b"), json_schema=schema, options=small
    )
    assert comparison_json(streamed) == comparison_json(whole)
    streamed_page = summary_report_html(
        {"batch_id": "a"}, await summarise_chunks(final_result_chunks(redis, keys, "a"))
    )
    whole_page = batch_report_html({"batch_id": "a"}, await final_results(redis, keys, "a"))
    assert _GENERATED.sub("", streamed_page) == _GENERATED.sub("", whole_page)


def _line(n: int) -> dict[str, Any]:
    return {"custom_id": f"id-{n}", "status": "succeeded", "output": _output(n, other=False), "latency_ms": n}


def test_runs_in_different_orders_are_joined_within_the_cap() -> None:
    """Runs in opposite orders hold the lines waiting for a partner: matched all the same, up to the cap."""
    a = [_line(n) for n in range(3000)]
    b = list(reversed(a))
    schema = invoice_spec("x").json_schema
    c = compare_runs(a, b, json_schema=schema, options=CompareOptions(max_pending=3000))
    assert (c.matched, c.only_a, c.only_b, c.records.agree) == (3000, 0, 0, 3000)
    with pytest.raises(PendingLimitError, match="more than 2,999 lines wait for their partner"):
        compare_runs(a, b, json_schema=schema, options=CompareOptions(max_pending=2999))


def test_runs_in_the_same_order_hold_about_one_chunk() -> None:
    """A merge over the input order: a chunk of A waits for the chunk of B, which leaves nothing waiting."""
    stream = CompareStream(json_schema=invoice_spec("x").json_schema, options=CompareOptions(max_pending=1000))
    for first in range(0, 5000, 1000):
        chunk = [_line(n) for n in range(first, first + 1000)]
        stream.add(chunk, chunk)
        assert stream.held == 0
    c = stream.result()
    assert (c.matched, c.usage.a.latency_lines) == (5000, 5000)
    assert c.usage.a.latency_p50_ms == 2499.5  # exact below the sample size


def test_latency_percentiles_past_the_sample_are_close() -> None:
    """Past LATENCY_SAMPLE matched lines the percentiles come from a uniform sample: close to the exact ones."""
    a = [_line(n) for n in range(50_000)]
    c = compare_runs(a, a, json_schema={"type": "object", "properties": {}})
    assert c.usage.a.latency_lines == 50_000
    assert c.usage.a.latency_p50_ms == pytest.approx(25_000, rel=0.03)
    assert c.usage.a.latency_p95_ms == pytest.approx(47_500, rel=0.01)


def test_report_ticks_coarsen_past_the_cap() -> None:
    """A long batch: ticks re-bin to a coarser resolution, the chart still counts every line."""
    summary = ReportSummary()
    day_lines = [
        {"status": "succeeded", "finished_at": f"2026-11-22T{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z", "latency_ms": 12_345}
        for h in range(24)
        for m in range(0, 60, 3)
        for s in range(0, 60, 7)
        for ms in (0, 500)
    ]
    summary.add_lines(day_lines)
    assert len(summary.by_tick) <= MAX_TIME_TICKS
    assert summary.resolution > 0.1
    assert sum(counts[0] for counts in summary.by_tick.values()) == len(day_lines)
    assert list(summary.latencies) == [12_340]
    page = summary_report_html({"batch_id": "long"}, summary)
    assert "chart-throughput" in page
