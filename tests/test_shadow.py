"""Shadow runs and comparisons between them: a deterministic sample run again with another API, then compared."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from producer.cli import main as producer
from producer.input.readers import InputLine, MemorySource
from producer.submit.shadow import SampledSource, in_sample, shadow_id
from schemas.jobs import Fingerprinter
from simulator import SimulatorConfig
from store.batches import BatchStore
from store.keys import Keys
from tests.conftest import API_KEY, INVOICE_TEXTS
from tests.processes import invoice_spec

PERTURBED = SimulatorConfig(require_api_key=API_KEY, perturb=("chat.completions:total", "chat.completions:vendor"))


def _text(n: int) -> str:
    return INVOICE_TEXTS[n % len(INVOICE_TEXTS)] + f" Ref {n}."


def _lines(count: int) -> MemorySource:
    return MemorySource(tuple(InputLine(n + 1, f"doc-{n:03d}", _text(n)) for n in range(count)))


def test_a_sample_is_chosen_by_fingerprint_and_is_the_same_on_a_rerun() -> None:
    spec = invoice_spec("main")
    sample = [line.custom_id for line in SampledSource(_lines(1000), spec, 0.1).lines()]
    again = [line.custom_id for line in SampledSource(_lines(1000), spec, 0.1).lines()]
    assert sample == again
    assert 60 <= len(sample) <= 140  # about 10 %
    wider = {line.custom_id for line in SampledSource(_lines(1000), spec, 0.3).lines()}
    assert set(sample) <= wider  # a larger sample contains the smaller one
    fingerprint = Fingerprinter(spec)
    for line in _lines(1000).lines():
        assert (line.custom_id in sample) == in_sample(fingerprint(line.text), 0.1)
    assert SampledSource(_lines(1000), spec, 0.1).count == len(sample)


def _cli(args: list[str], sim: Any) -> Any:
    return CliRunner().invoke(producer, args, env={"OPENAI_API_KEY": API_KEY, "OPENAI_BASE_URL": sim.base_url})


async def _acli(args: list[str], sim: Any) -> Any:
    return await asyncio.to_thread(_cli, args, sim)


@pytest.mark.parametrize("sim_config", [PERTURBED], indirect=True)
async def test_a_shadow_run_on_the_other_api_is_compared_and_shows_exactly_the_fields_that_differ(
    redis: Redis, keys: Keys, cli_env: Any, sim: Any, run_worker: Any, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(orjson.dumps({"custom_id": f"doc-{n:03d}", "text": _text(n)}) for n in range(60)))
    args = ["submit", str(source), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "main"]
    args += ["--shadow-api", "chat", "--shadow-sample", "0.3"]
    submitted = await _acli(args, sim)
    assert submitted.exit_code == 0, submitted.output
    assert "shadow batch main-shadow" in submitted.stderr
    store = BatchStore(redis, keys)
    main, shadow = await store.get("main"), await store.get(shadow_id("main"))
    assert main.spec.shadow == "main-shadow"
    assert shadow.spec.shadow_of == "main"
    assert (shadow.spec.api, shadow.spec.model) == ("chat", "gpt-4o-mini")
    assert 5 <= shadow.lines <= 30
    expected = [line.custom_id for line in SampledSource(_lines(60), main.spec, 0.3).lines()]
    # The shadow holds the lines the sample picks, and a second submit picks the same (nothing new).
    again = await _acli(args, sim)
    assert again.exit_code == 0, again.output
    assert (await store.get(shadow_id("main"))).lines == shadow.lines
    await run_worker()
    compared = await _acli(["compare", "main", "--shadow", "--json", "--html", str(tmp_path / "c.html")], sim)
    assert compared.exit_code == 0, compared.output
    report = orjson.loads(compared.stdout)
    assert report["lines"]["matched"] == shadow.lines == len(expected)
    disagreeing = sorted(f["path"] for f in report["fields"] if f["agree"] < f["compared"])
    assert disagreeing == ["total", "vendor"]
    assert (tmp_path / "c.html").read_text().count("total") >= 1
    table = await _acli(["compare", "main", "main-shadow"], sim)
    assert table.exit_code == 0, table.output
    assert "total" in table.stdout
    by_document = await _acli(["compare", "main", "main-shadow", "--by", "document", "--json"], sim)
    assert by_document.exit_code == 0, by_document.output
    assert orjson.loads(by_document.stdout)["lines"]["matched"] == shadow.lines  # the document, not the parameters
    # The batch's report, from what Redis holds.
    page = tmp_path / "report.html"
    reported = await _acli(["report", "main", "--html", str(page)], sim)
    assert reported.exit_code == 0, reported.output
    html = page.read_text()
    for chart in ("chart-throughput", "chart-latency", "chart-tokens", "chart-errors", "chart-fields"):
        assert f'id="{chart}"' in html


async def test_compare_refuses_a_batch_without_a_shadow(redis: Redis, keys: Keys, cli_env: Any, sim: Any) -> None:
    from producer.submit.submit import submit

    await submit(redis, keys, invoice_spec("solo"), _lines(3), window=10, ttl_s=0)
    result = await _acli(["compare", "solo", "--shadow"], sim)
    assert result.exit_code == 2
    assert "batch solo has no shadow batch" in result.stderr
    both = await _acli(["compare", "solo", "other", "--shadow"], sim)
    assert both.exit_code == 2
