"""Shared fixtures: a real Redis (its own database, flushed per test), the simulator over real HTTP, workers.

Redis: ``TEST_REDIS_URL`` or ``redis://127.0.0.1:6379/13``. Only that database is ever flushed.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer.input.readers import InputLine, MemorySource
from producer.submit.submit import SubmitOptions, build_spec, submit
from schemas.jobs import DEFAULT_INSTRUCTIONS, ApiKind, BatchSpec, GenerationParams, ResultsSink
from schemas.registry import resolve_schema
from schemas.settings import Settings
from simulator import SimulatorConfig, running_simulator
from store.keys import Keys
from tests.s3_server import S3Server
from worker.app import build_worker

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
API_KEY = "sk-test-DO-NOT-LEAK-4f1b2c3d5e6f"
"""A recognisable fake key: tests grep logs and results for it."""
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the developer's shell."""
    for name in list(os.environ):
        if name.startswith(("EXTRACT_", "OPENAI_", "AWS_")) or name == "REDIS_URL":
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = SyncRedis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:  # pragma: no cover - environment problem, say so plainly
        pytest.fail(f"tests need a Redis at {TEST_REDIS_URL} ({exc}); .ci/run starts one")
    finally:
        client.close()
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server over HTTP (moto's), behind a fault-injecting proxy (``tests.s3_server``)."""
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> S3Server:
    """The S3 server with no faults armed, its AWS variables set for this test, and a fresh bucket ``bucket``."""
    s3_server.disarm()
    for name, value in s3_server.env.items():
        monkeypatch.setenv(name, value)
    client = s3_server.client()
    for bucket in client.list_buckets().get("Buckets", []):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket["Name"], Key=obj["Key"])
        client.delete_bucket(Bucket=bucket["Name"])
    s3_server.create_bucket("bucket")
    return s3_server


@pytest.fixture
def flushed_redis(redis_url: str) -> str:
    client = SyncRedis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


@pytest.fixture
async def redis(flushed_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(flushed_redis)
    yield client
    await client.aclose()


INVOICE_TEXTS = (
    "Invoice INV-001 from ACME Corp, dated 2026-03-01. 3 x Widget at 10.00 = 30.00. Total due 30.00 USD.",
    "Invoice 7781 by Globex. Consulting, 2 hours at 150 EUR. Subtotal 300, VAT 57, total 357 EUR.",
    "Rechnung 2026-17 von Initech GmbH: 1 Lizenz 499,00 EUR. Gesamtbetrag 499,00 EUR.",
    "Bill from Umbrella Ltd, no. U-55, 10 boxes of gloves, 4.50 each, total 45.00 GBP, due 2026-04-30.",
    "Stark Industries invoice SI-9 for one arc reactor service visit, 1200 USD, payable in 30 days.",
)


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimulatorConfig:
    """The simulator's configuration; override per test with ``@pytest.mark.parametrize(..., indirect=True)``."""
    config: SimulatorConfig = getattr(request, "param", SimulatorConfig(require_api_key=API_KEY))
    return config


@pytest.fixture
async def sim(sim_config: SimulatorConfig) -> AsyncIterator[Any]:
    async with running_simulator(sim_config, port=0) as running:
        yield running


@pytest.fixture
def settings(flushed_redis: str, sim: Any) -> Settings:
    return Settings(
        redis_url=flushed_redis,
        openai_base_url=sim.base_url,
        openai_api_key=API_KEY,
        key_prefix="test:",
        burst=True,
        concurrency=8,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        request_timeout_s=10,
        job_timeout_s=30,
        worker_name="test-worker",
        metrics_port=0,
    )


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


Submit = Callable[..., Awaitable[BatchSpec]]


def memory_source(texts: dict[str, str]) -> MemorySource:
    """Lines in input order from {custom_id: text}, as the fixture submits them."""
    return MemorySource(tuple(InputLine(n, cid, text) for n, (cid, text) in enumerate(texts.items(), start=1)))


@pytest.fixture
def submit_batch(redis: Redis, settings: Settings, keys: Keys) -> Submit:
    async def _submit(
        texts: dict[str, str],
        *,
        schema: str = "invoice",
        api: ApiKind = "responses",
        model: str = "gpt-4o-mini",
        batch_id: str = "b1",
        max_output_tokens: int | None = None,
        use_cache: bool = True,
        results: ResultsSink | None = None,
    ) -> BatchSpec:
        spec = build_spec(
            SubmitOptions(
                batch_id=batch_id,
                api=api,
                model=model,
                schema=resolve_schema(schema),
                instructions=DEFAULT_INSTRUCTIONS,
                params=GenerationParams(max_output_tokens=max_output_tokens),
                use_cache=use_cache,
                results=results,
            )
        )
        await submit(
            redis,
            keys,
            spec,
            memory_source(texts),
            window=settings.queue_window,
            ttl_s=settings.batch_ttl_s,
        )
        return spec

    return _submit


@pytest.fixture
def run_worker(settings: Settings) -> Callable[..., Awaitable[None]]:
    """Drain the queue with a real arq worker in burst mode, in this event loop."""

    async def _run(**overrides: Any) -> None:
        worker = build_worker(Settings(**{**settings.model_dump(), **overrides}), handle_signals=False)
        try:
            await worker.main()
        finally:
            await worker.close()

    return _run


@pytest.fixture
def cli_env(flushed_redis: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SyncRedis]:
    """The producer CLI pointed at the test database (prefix ``test:``), and a sync client to look at it."""
    monkeypatch.setenv("REDIS_URL", flushed_redis)
    monkeypatch.setenv("EXTRACT_KEY_PREFIX", "test:")
    client = SyncRedis.from_url(flushed_redis)
    yield client
    client.close()
