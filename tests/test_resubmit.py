"""A known batch id submitted again: compared line by line by custom_id, refused or replaced or appended."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from redis.asyncio import Redis

from producer.cli import main
from producer.errors import EXIT_INVALID_INPUT
from producer.input.readers import InputLine, MemorySource
from producer.submit.indexer import BatchExistsError
from producer.submit.resubmit import ResubmitRefusedError
from producer.submit.submit import SubmitResult, submit
from schemas.results import Status
from store.batches import BatchStore
from store.keys import Keys
from tests.helpers import results_by_id, sim_get
from tests.processes import invoice_spec

DOCS = [
    ("a", "Invoice 1 from ACME, total 10 USD."),
    ("b", "Invoice 2 from Globex, total 20 USD."),
    ("c", "Invoice 3 from Initech, total 30 USD."),
]


def _source(docs: list[tuple[str, str]]) -> MemorySource:
    return MemorySource(tuple(InputLine(n, cid, text) for n, (cid, text) in enumerate(docs, start=1)))


async def _submit(
    redis: Redis, keys: Keys, docs: list[tuple[str, str]], *, replace_changed: bool = False, append: bool = False
) -> SubmitResult:
    return await submit(
        redis,
        keys,
        invoice_spec("nightly"),
        _source(docs),
        window=100,
        ttl_s=0,
        replace_changed=replace_changed,
        append=append,
    )


async def test_the_same_lines_in_another_order_are_nothing_new(redis, keys, sim, run_worker) -> None:
    await _submit(redis, keys, DOCS)
    await run_worker()
    again = await _submit(redis, keys, list(reversed(DOCS)))
    assert (again.enqueued, again.replaced, again.appended) == (0, 0, 0)
    await run_worker()
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 3


async def test_a_changed_document_is_refused_with_its_line_and_replaced_on_request(
    redis, keys, sim, run_worker
) -> None:
    await _submit(redis, keys, DOCS)
    await run_worker()
    before = await results_by_id(redis, keys, "nightly")
    changed = [DOCS[0], ("b", "Invoice 2 from Globex, total 25 USD (corrected)."), DOCS[2]]
    with pytest.raises(ResubmitRefusedError) as refused:
        await _submit(redis, keys, changed)
    assert refused.value.problems == [
        "line 2: the document of 'b' differs from the one the batch has (--replace-changed runs it again)"
    ]
    replaced = await _submit(redis, keys, changed, replace_changed=True)
    assert replaced.replaced == 1
    record = await BatchStore(redis, keys).get("nightly")
    assert (record.done, record.replaced) == (2, 1)
    await run_worker()
    after = await results_by_id(redis, keys, "nightly")
    assert after["b"].fingerprint != before["b"].fingerprint
    assert after["a"] == before["a"]
    assert all(r.status is Status.SUCCEEDED for r in after.values())
    assert (await BatchStore(redis, keys).get("nightly")).complete
    assert (await sim_get(sim, "/_sim/ledger"))["requests"]["total"] == 4  # the changed line, once more
    assert (await _submit(redis, keys, changed)).enqueued == 0  # now it is what the batch has


async def test_new_lines_are_refused_unless_appended(redis, keys, sim, run_worker) -> None:
    await _submit(redis, keys, DOCS)
    await run_worker()
    more = [*DOCS, ("d", "Invoice 4 from Umbrella, total 40 USD.")]
    with pytest.raises(ResubmitRefusedError) as refused:
        await _submit(redis, keys, more)
    assert refused.value.problems == ["line 4: the batch has no line 'd' (--append adds it)"]
    appended = await _submit(redis, keys, more, append=True)
    assert (appended.appended, appended.enqueued) == (1, 1)
    record = await BatchStore(redis, keys).get("nightly")
    assert (record.lines, record.fed, record.complete) == (4, 4, False)
    await run_worker()
    results = await results_by_id(redis, keys, "nightly")
    assert sorted(results) == ["a", "b", "c", "d"]
    assert (await BatchStore(redis, keys).get("nightly")).complete


async def test_other_parameters_name_what_differs(redis, keys) -> None:
    await _submit(redis, keys, DOCS)
    other = invoice_spec("nightly", max_output_tokens=400)
    with pytest.raises(BatchExistsError, match=r"params: .*None.* vs .*400"):
        await submit(redis, keys, other, _source(DOCS), window=100, ttl_s=0)


def test_the_cli_refuses_a_changed_file_with_exit_2(flushed_redis, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REDIS_URL", flushed_redis)
    monkeypatch.setenv("EXTRACT_KEY_PREFIX", "test:")
    path = tmp_path / "in.jsonl"
    path.write_text('{"custom_id": "a", "text": "x"}\n{"custom_id": "b", "text": "y"}\n')
    args = ["submit", str(path), "--schema", "invoice", "--model", "gpt-4o-mini", "--batch-id", "cli"]
    assert CliRunner().invoke(main, args).exit_code == 0
    path.write_text(
        '{"custom_id": "a", "text": "x"}\n{"custom_id": "b", "text": "y2"}\n{"custom_id": "c", "text": "z"}\n'
    )
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == EXIT_INVALID_INPUT
    assert "line 2: the document of 'b' differs" in refused.output
    assert "line 3: the batch has no line 'c'" in refused.output
    assert "2 line(s) refused; nothing was changed" in refused.output
    accepted = CliRunner().invoke(main, [*args, "--replace-changed", "--append"])
    assert accepted.exit_code == 0, accepted.output
    assert "1 changed line(s) run again, 1 appended" in accepted.output
