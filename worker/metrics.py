"""Prometheus metrics of one worker process (its own registry, so several workers in one test process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from schemas.results import Usage

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs_finished = Counter(
            "extract_jobs_finished", "Lines recorded by this worker, by final status.", ["status"], registry=r
        )
        self.api_calls = Counter(
            "extract_api_calls",
            "API calls by API, model and HTTP status ('error' without a response).",
            ["api", "model", "status"],
            registry=r,
        )
        self.tokens = Counter(
            "extract_tokens",
            "Tokens billed, by kind (input, cached, output, reasoning).",
            ["model", "kind"],
            registry=r,
        )
        self.call_latency = Histogram(
            "extract_api_call_seconds",
            "Time of one API call.",
            ["api", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.admission_wait = Histogram(
            "extract_admission_wait_seconds",
            "Time a call waited for the shared rate limit.",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter("extract_rate_limited", "429 answers for the rate limit.", ["model"], registry=r)
        self.cache_hits = Counter("extract_cache_hits", "Lines answered from the result cache.", registry=r)
        self.jobs_in_flight = Gauge("extract_jobs_in_flight", "Jobs this worker is running now.", registry=r)
        self.queue_due = Gauge(
            "extract_queue_due_jobs",
            "Jobs in the queue whose time has come (not deferred), read at scrape time.",
            registry=r,
        )

        self.provider_batches = Gauge(
            "extract_provider_batches",
            "Provider batches (the Batch API venue) in flight across the fleet, by state, read at scrape time.",
            ["state"],
            registry=r,
        )
        self.provider_lines = Gauge(
            "extract_provider_lines_waiting",
            "Lines waiting inside provider batches across the fleet (not due work: their jobs are parked).",
            registry=r,
        )
        self.provider_parts_done = Counter(
            "extract_provider_batches_done",
            "Provider batches this worker finished reading, by the provider's final status.",
            ["status"],
            registry=r,
        )
        self.sink_parts = Counter(
            "extract_sink_parts_written",
            "Result parts this worker wrote to a results sink (and committed).",
            registry=r,
        )
        self.sink_lines = Counter(
            "extract_sink_lines_written", "Result lines this worker moved out of Redis into sink parts.", registry=r
        )
        self.sink_errors = Counter(
            "extract_sink_errors", "Failed runs of this worker's sink writer (the lines wait in Redis).", registry=r
        )

    def count_call(self, api: str, model: str, status: str, latency_s: float, usage: Usage | None) -> None:
        self.api_calls.labels(api, model, status).inc()
        self.call_latency.labels(api, model).observe(latency_s)
        if usage is not None:
            uncached = usage.input_tokens - usage.cached_input_tokens
            for kind, value in (
                ("input", uncached),
                ("cached", usage.cached_input_tokens),
                ("output", usage.output_tokens),
                ("reasoning", usage.reasoning_tokens),
            ):
                if value:
                    self.tokens.labels(model, kind).inc(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
