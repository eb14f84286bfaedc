"""The producer as a library: what the commands do, done from a script without click (``producer/__init__.py``).

A plan is checked before Redis is touched and says what is wrong as a typed error; a planned submit is carried out
and drained by a real worker against the simulator over HTTP; the results are collected and two runs compared, all
through the entry points ``producer`` names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

import producer
from producer import (
    CompareOptions,
    SubmitEvents,
    collect,
    compare_runs,
    estimate_plan,
    plan_submit,
    read_status,
    retry_batch,
    submit_plan,
)
from producer.errors import InputError, OptionError
from producer.submit.plan import InvalidLinesError, RequestRefusedError
from schemas.settings import ProducerSettings
from store.keys import Keys
from tests.conftest import API_KEY, INVOICE_TEXTS


def _settings(redis_url: str, sim: Any, **flags: Any) -> ProducerSettings:
    return ProducerSettings(
        redis_url=redis_url,
        key_prefix="test:",
        openai_api_key=API_KEY,
        openai_base_url=sim.base_url,
        **{"model": "gpt-4o-mini", "schema_spec": "invoice", **flags},
    )


def _input(tmp_path: Path, count: int, *, bad: int | None = None) -> Path:
    path = tmp_path / ("in.jsonl" if bad is None else f"in-bad-{bad}.jsonl")
    lines = [
        orjson.dumps({"custom_id": f"doc-{n}", "text": INVOICE_TEXTS[n % len(INVOICE_TEXTS)]}) for n in range(count)
    ]
    if bad is not None:
        lines[bad] = b'{"custom_id": "broken", "text": '
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_the_entry_points_are_the_ones_the_package_names() -> None:
    for name in ("plan_submit", "submit_plan", "estimate_plan", "collect", "follow", "retry_batch", "compare_runs"):
        assert name in producer.__all__
        assert callable(getattr(producer, name))


def test_a_plan_says_what_is_wrong_as_a_typed_error_before_redis_is_touched(tmp_path: Path, sim: Any) -> None:
    unused = "redis://127.0.0.1:1/0"  # nothing listens there: a plan never connects
    path = _input(tmp_path, 3)
    with pytest.raises(OptionError, match="--model is required"):
        plan_submit(ProducerSettings(redis_url=unused, schema_spec="invoice"), path)
    with pytest.raises(OptionError, match="--batch-id"):
        plan_submit(_settings(unused, sim), path, "no spaces allowed")
    with pytest.raises(RequestRefusedError) as refused:
        plan_submit(_settings(unused, sim, model="o3-mini", temperature=0.5), path)
    assert refused.value.problems
    assert "temperature" in refused.value.problems[0]
    with pytest.raises(InvalidLinesError) as invalid:
        plan_submit(_settings(unused, sim), _input(tmp_path, 3, bad=1))
    assert isinstance(invalid.value, InputError)
    assert [error.line for error in invalid.value.source.scan.errors] == [2]
    warnings: list[str] = []
    plan = plan_submit(
        _settings(unused, sim, skip_invalid=True, model="my-own-model"), path, on_warning=warnings.append
    )
    assert plan.spec.batch_id.startswith("in-")
    assert plan.source.scan.count == 3
    assert plan.skipped == 0
    assert any("my-own-model" in warning for warning in warnings)  # an unpriced model: warned, not refused
    skipping = plan_submit(_settings(unused, sim, skip_invalid=True), _input(tmp_path, 3, bad=1), "b")
    assert (skipping.source.scan.count, skipping.skipped) == (2, 1)


async def test_plan_submit_drain_collect_and_compare_without_click(
    redis: Redis, keys: Keys, flushed_redis: str, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    settings = _settings(flushed_redis, sim)
    path = _input(tmp_path, 12)
    plan = plan_submit(settings, path, "lib-a")
    estimated = await estimate_plan(redis, keys, settings, plan)
    assert estimated.lines == 12
    assert estimated.input_tokens > 0
    opened: list[str] = []
    report = await submit_plan(
        redis, keys, settings, plan, events=SubmitEvents(on_opened=lambda b: opened.append(b.record.batch_id))
    )
    assert opened == ["lib-a"]
    assert (report.result.created, report.result.lines, report.result.enqueued, report.shadows) == (True, 12, 12, [])
    again = await submit_plan(redis, keys, settings, plan_submit(settings, path, "lib-a"))
    assert (again.result.created, again.result.enqueued) == (False, 0)  # a second submit goes on: nothing twice

    other = _settings(flushed_redis, sim, api="chat")
    await submit_plan(redis, keys, other, plan_submit(other, path, "lib-b"))
    await run_worker()
    record = await read_status(redis, keys, "lib-a")
    assert record.complete
    assert record.succeeded == 12

    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert await collect(redis, keys, "lib-a", out_a) == (12, 0)
    assert await collect(redis, keys, "lib-b", out_b) == (12, 0)
    lines_a = [orjson.loads(line) for line in out_a.read_bytes().splitlines()]
    lines_b = [orjson.loads(line) for line in out_b.read_bytes().splitlines()]
    assert [line["custom_id"] for line in lines_a] == [f"doc-{n}" for n in range(12)]
    comparison = compare_runs(
        lines_a, lines_b, json_schema=plan.spec.json_schema, names=("lib-a", "lib-b"), options=CompareOptions()
    )
    assert comparison.matched == 12
    assert (comparison.a.name, comparison.b.name) == ("lib-a", "lib-b")


async def test_retry_batch_refuses_an_input_that_is_not_the_batchs(
    redis: Redis, keys: Keys, flushed_redis: str, sim: Any, tmp_path: Path
) -> None:
    settings = _settings(flushed_redis, sim)
    await submit_plan(redis, keys, settings, plan_submit(settings, _input(tmp_path, 4), "lib-r"))
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(OptionError, match="not the batch's input"):
        await retry_batch(redis, keys, settings, "lib-r", _input(other, 5))
    assert (await retry_batch(redis, keys, settings, "lib-r")).enqueued == 0  # nothing failed: nothing again
