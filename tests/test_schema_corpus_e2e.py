"""A sample of the schema corpus end to end (issue 22): each schema submitted with ``--schema FILE`` through the
producer library, answered by a real arq worker over real HTTP, collected, and every stored answer checked against
the user's ORIGINAL schema.

The sample is deterministic and covers every kind folder of ``tests/schema_corpus``: per kind, in the order of the
SHA-256 of ``kind/name``, the first issue-22 defect, the first generated schema and the first other hand-written one,
then the next ones in that order, :data:`PER_KIND` in all. Each becomes a batch of :data:`DOCS_PER_SCHEMA` documents
(the schema's own valid instances, written out as the documents to extract from); the batches alternate between
the Responses and the Chat Completions API, and one burst worker drains all of them.

Every line must end succeeded, or failed with a typed error other than ``internal_error`` (never a line left
pending, never an exception logged by the worker); every succeeded output must be valid under the user's schema,
checked with jsonschema under the schema's own draft with formats on; the unsatisfiable kind must be refused at
submit, and at least 95 % of the other sampled schemas accepted.

Two targets:

* the built-in simulator (always): it answers with instances of the STRICT schema it is sent, so the whole codec
  round trip is exercised; the request bodies it got must also be valid requests under OpenAI's OpenAPI spec, each
  carrying one of the strict schemas the producer built, each answered 200 (the schema was within strict mode's
  rules).
* a real OpenAI-compatible server (opt-in): set ``EXTRACT_E2E_BASE_URL`` (e.g. ``http://127.0.0.1:8080/v1`` for a
  ``llama-server``), optionally ``EXTRACT_E2E_MODEL`` (``local``), ``EXTRACT_E2E_API`` (``chat``),
  ``EXTRACT_E2E_API_KEY``, ``EXTRACT_E2E_PER_KIND`` (schemas per kind, ``all`` for the whole corpus),
  ``EXTRACT_E2E_MAX_OUTPUT_TOKENS`` (512), ``EXTRACT_E2E_CONCURRENCY`` (2), ``EXTRACT_E2E_TIMEOUT_S`` (3600, the
  test's limit) and ``EXTRACT_E2E_REPORT`` (a path: the figures as JSON). The same checks hold, and the figures
  (lines succeeded, failed by error type) are printed. docs/schemas.md "Running the corpus on a real server" says
  how to build one offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
from collections import Counter
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from producer import plan_submit, read_status, submit_plan
from producer.batch.collect import collect
from producer.errors import InputError
from schemas.settings import ProducerSettings, Settings
from simulator import SimulatorConfig, running_simulator
from store.keys import Keys
from tests.conftest import API_KEY
from tests.helpers import sim_get
from tests.openapi_spec import spec_path, validate_component
from tests.schema_corpus.loader import Entry, load
from worker.app import build_worker

Api = Literal["responses", "chat"]

PER_KIND = 3
"""Schemas sampled per kind folder against the simulator."""
DOCS_PER_SCHEMA = 2
MIN_ACCEPTED = 0.95
"""The share of the sampled satisfiable schemas that must be accepted at submit."""
DOCUMENT_CHARS = 1500
"""A document is a valid instance written out, cut to this many characters (``limits`` has huge instances)."""
UNSATISFIABLE = "unsatisfiable"
PREFIX = "e2e-corpus:"
REQUEST_COMPONENT = {"responses": "CreateResponse", "chat": "CreateChatCompletionRequest"}
CALLS: dict[str, Api] = {"responses": "responses", "chat.completions": "chat"}
"""The simulator's request log names the endpoints so."""
INSTRUCTIONS = (
    "Extract the record the document describes as JSON that follows the response schema exactly. "
    "The document gives the record's values; copy them, and leave out what it does not give where the schema allows."
)

CORPUS = load()

# The opt-in real server, read at import: the autouse fixture of tests/conftest.py clears EXTRACT_* for each test.
REAL_BASE_URL = os.environ.get("EXTRACT_E2E_BASE_URL", "").strip()
REAL_MODEL = os.environ.get("EXTRACT_E2E_MODEL", "").strip() or "local"
REAL_API_NAME = os.environ.get("EXTRACT_E2E_API", "").strip() or "chat"
REAL_API_KEY = os.environ.get("EXTRACT_E2E_API_KEY", "").strip() or "sk-no-key-needed"
REAL_PER_KIND = os.environ.get("EXTRACT_E2E_PER_KIND", "").strip() or str(PER_KIND)
REAL_MAX_OUTPUT_TOKENS = int(os.environ.get("EXTRACT_E2E_MAX_OUTPUT_TOKENS", "") or 512)
REAL_CONCURRENCY = int(os.environ.get("EXTRACT_E2E_CONCURRENCY", "") or 2)
REAL_TIMEOUT_S = float(os.environ.get("EXTRACT_E2E_TIMEOUT_S", "") or 3600)
REAL_REPORT = os.environ.get("EXTRACT_E2E_REPORT", "").strip()


# -- the sample --------------------------------------------------------------------------------------------------------


def _rank(entry: Entry) -> str:
    return hashlib.sha256(entry.key.encode()).hexdigest()


def _origin(entry: Entry) -> str:
    if entry.name.startswith("issue22-"):
        return "defect"
    return "generated" if entry.name.startswith("gen-") else "hand-written"


def sample(entries: list[Entry], per_kind: int | None) -> list[Entry]:
    """``per_kind`` schemas of every kind (all of them for None), one of each origin first, in hash order."""
    chosen: list[Entry] = []
    for kind in CORPUS.kinds():
        ranked = sorted((entry for entry in entries if entry.kind == kind), key=_rank)
        firsts: list[Entry] = []
        for origin in ("defect", "generated", "hand-written"):
            firsts += [entry for entry in ranked if _origin(entry) == origin][:1]
        ordered = firsts + [entry for entry in ranked if entry not in firsts]
        chosen += ordered if per_kind is None else ordered[:per_kind]
    return chosen


def _per_kind(text: str) -> int | None:
    return None if text.lower() == "all" else max(1, int(text))


SAMPLE = sample(CORPUS.entries, PER_KIND)


# -- one run: submit every sampled schema, drain with one worker, collect ----------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where the worker sends its calls: the simulator (``base_url`` None: started by the run) or a real server."""

    name: str
    base_url: str | None
    model: str
    api_key: str
    apis: tuple[Api, ...]
    max_output_tokens: int | None
    concurrency: int
    request_timeout_s: float
    failures: frozenset[str] | None = None
    """The error types a line may fail with; None: any typed error but ``internal_error``."""


@dataclass
class Outcome:
    """What became of one sampled schema."""

    entry: Entry
    api: Api
    batch_id: str
    refused: str | None = None
    warnings: list[str] = field(default_factory=list)
    strict_schema: dict[str, Any] | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)
    missing: int = 0
    complete: bool = False


@dataclass
class Run:
    target: Target
    outcomes: list[Outcome]
    requests: list[dict[str, Any]]
    crashes: list[str]
    seconds: float

    def outcome(self, key: str) -> Outcome:
        return next(outcome for outcome in self.outcomes if outcome.entry.key == key)


class _Crashes(logging.Handler):
    """Log records that carry an exception (the worker logs an internal error with its traceback)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.seen.append(f"{record.name}: {record.getMessage()}")


def _documents(entry: Entry) -> dict[str, str]:
    texts = {}
    for n, instance in enumerate(entry.valid[:DOCS_PER_SCHEMA], start=1):
        written = json.dumps(instance, ensure_ascii=False, indent=1)[:DOCUMENT_CHARS]
        texts[f"{entry.name}-{n}"] = f"Record {n} ({entry.kind}):\n{written}"
    if not texts:  # an unsatisfiable schema has no valid instance: it is refused before its documents matter
        texts[f"{entry.name}-1"] = "Nothing can satisfy this schema."
    return texts


def _write_inputs(entry: Entry, folder: Path) -> tuple[Path, Path]:
    schema_file = folder / f"{entry.name}.json"
    schema_file.write_text(json.dumps(entry.schema), encoding="utf-8")
    documents = folder / f"{entry.name}.jsonl"
    rows = [orjson.dumps({"custom_id": cid, "text": text}) for cid, text in _documents(entry).items()]
    documents.write_bytes(b"\n".join(rows) + b"\n")
    return schema_file, documents


def _flush(redis_url: str) -> None:
    client = SyncRedis.from_url(redis_url, socket_connect_timeout=2)
    try:
        client.flushdb()  # the test database only (TEST_REDIS_URL), as tests/conftest.py does
    finally:
        client.close()


async def _submit_all(
    redis: Redis, redis_url: str, target: Target, base_url: str, entries: list[Entry], folder: Path
) -> list[Outcome]:
    keys = Keys(PREFIX)
    outcomes = []
    for n, entry in enumerate(entries):
        api = target.apis[n % len(target.apis)]
        outcome = Outcome(entry, api, f"e2e-{n:03d}-{entry.kind}-{entry.name}"[:128])
        outcomes.append(outcome)
        subfolder = folder / f"{n:03d}-{entry.kind}"
        subfolder.mkdir(parents=True)
        schema_file, documents = _write_inputs(entry, subfolder)
        settings = ProducerSettings(
            redis_url=redis_url,
            key_prefix=PREFIX,
            openai_base_url=base_url,
            openai_api_key=target.api_key,
            model=target.model,
            api=api,
            schema_spec=str(schema_file),
            instructions=INSTRUCTIONS,
            max_output_tokens=target.max_output_tokens,
        )
        try:
            plan = plan_submit(settings, documents, outcome.batch_id, on_warning=outcome.warnings.append)
        except InputError as exc:  # the codec's SchemaError arrives as an OptionError that says where
            outcome.refused = str(exc)
            continue
        outcome.strict_schema = plan.spec.json_schema
        await submit_plan(redis, keys, settings, plan)
    return outcomes


async def _drain(redis_url: str, target: Target, base_url: str) -> None:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=PREFIX,
        openai_base_url=base_url,
        openai_api_key=target.api_key,
        burst=True,
        concurrency=target.concurrency,
        backoff_base_s=0.01 if target.base_url is None else 0.5,
        backoff_cap_s=0.05 if target.base_url is None else 5.0,
        max_tries=3,
        retry_horizon_s=30.0,
        request_timeout_s=target.request_timeout_s,
        job_timeout_s=target.request_timeout_s * 3 + 30,
        pause_after_failures=0,  # a schema the server refuses fails its lines (typed) instead of pausing the batch
        worker_name="e2e-corpus-worker",
        metrics_port=0,
    )
    worker = build_worker(settings, handle_signals=False)
    try:
        await worker.main()
    finally:
        await worker.close()


async def _collect_all(redis: Redis, keys: Keys, outcomes: list[Outcome], folder: Path) -> None:
    for outcome in outcomes:
        if outcome.refused is not None:
            continue
        out = folder / f"{outcome.batch_id}.results.jsonl"
        _written, outcome.missing = await collect(redis, keys, outcome.batch_id, out)
        outcome.lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        outcome.complete = (await read_status(redis, keys, outcome.batch_id)).complete


async def _run(target: Target, entries: list[Entry], redis_url: str, folder: Path) -> Run:
    started = time.monotonic()
    _flush(redis_url)
    crashes = _Crashes()
    logging.getLogger().addHandler(crashes)
    simulator: AbstractAsyncContextManager[Any] = (
        running_simulator(SimulatorConfig(require_api_key=API_KEY), port=0)
        if target.base_url is None
        else nullcontext(None)
    )
    redis = Redis.from_url(redis_url)
    try:
        async with simulator as sim:
            base_url = target.base_url or sim.base_url
            outcomes = await _submit_all(redis, redis_url, target, base_url, entries, folder)
            await _drain(redis_url, target, base_url)
            await _collect_all(redis, Keys(PREFIX), outcomes, folder)
            requests: list[dict[str, Any]] = await sim_get(sim, "/_sim/requests") if sim is not None else []
    finally:
        logging.getLogger().removeHandler(crashes)
        await redis.aclose()
        _flush(redis_url)
    return Run(target, outcomes, requests, crashes.seen, time.monotonic() - started)


# -- the checks --------------------------------------------------------------------------------------------------------


def original_validator(schema: Any) -> Any:
    """The user's own schema under its own draft (2020-12 when it names none), formats checked."""
    cls = validator_for(schema, default=Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def line_problems(outcome: Outcome, failures: frozenset[str] | None = None) -> list[str]:
    """What is wrong with an accepted schema's lines: missing, untyped or internal failures, invalid stored output."""
    key = outcome.entry.key
    problems = []
    if outcome.missing or not outcome.complete:
        problems.append(f"{key}: batch not complete ({outcome.missing} line(s) without a final result)")
    if len(outcome.lines) != len(_documents(outcome.entry)):
        problems.append(f"{key}: {len(outcome.lines)} result line(s) for {len(_documents(outcome.entry))} documents")
    validator = original_validator(outcome.entry.schema)
    for line in outcome.lines:
        where = f"{key} line {line.get('custom_id')!r} ({outcome.api})"
        status, error = line.get("status"), line.get("error")
        if status == "succeeded":
            if "output" not in line:
                problems.append(f"{where}: succeeded without an output")
                continue
            problems.extend(
                f"{where}: stored output invalid under the original schema at {found.json_path}: {found.message[:300]}"
                for found in validator.iter_errors(line["output"])
            )
        elif status == "failed":
            if not isinstance(error, dict) or not error.get("type"):
                problems.append(f"{where}: failed without a typed error: {error!r}")
            elif error["type"] == "internal_error" or (failures is not None and error["type"] not in failures):
                problems.append(f"{where}: failed as {error['type']}: {str(error.get('message'))[:300]}")
        else:
            problems.append(f"{where}: status {status!r}")
    return problems


def figures(run: Run) -> dict[str, Any]:
    """The run in numbers: schemas accepted or refused, lines succeeded and failed by error type."""
    accepted = [outcome for outcome in run.outcomes if outcome.refused is None]
    lines = [line for outcome in accepted for line in outcome.lines]
    failed: Counter[str] = Counter(
        str((line.get("error") or {}).get("type")) for line in lines if line.get("status") == "failed"
    )
    invalid = sum(
        1
        for outcome in accepted
        for line in outcome.lines
        if line.get("status") == "succeeded" and not original_validator(outcome.entry.schema).is_valid(line["output"])
    )
    by_kind: dict[str, dict[str, int]] = {}
    for outcome in run.outcomes:
        counts = by_kind.setdefault(outcome.entry.kind, {"schemas": 0, "refused": 0, "succeeded": 0, "failed": 0})
        counts["schemas"] += 1
        counts["refused"] += outcome.refused is not None
        counts["succeeded"] += sum(line.get("status") == "succeeded" for line in outcome.lines)
        counts["failed"] += sum(line.get("status") == "failed" for line in outcome.lines)
    return {
        "target": run.target.name,
        "model": run.target.model,
        "apis": list(run.target.apis),
        "seconds": round(run.seconds, 1),
        "schemas": len(run.outcomes),
        "refused_at_submit": {o.entry.key: o.refused[:200] for o in run.outcomes if o.refused is not None},
        "lines": len(lines),
        "succeeded": sum(line.get("status") == "succeeded" for line in lines),
        "failed_by_type": dict(sorted(failed.items())),
        "failed_lines": [
            f"{o.entry.key} {line.get('custom_id')}: {(line.get('error') or {}).get('type')}: "
            f"{str((line.get('error') or {}).get('message'))[:200]}"
            for o in accepted
            for line in o.lines
            if line.get("status") == "failed"
        ],
        "stored_invalid_under_original": invalid,
        "crashes": len(run.crashes),
        "by_kind": by_kind,
    }


def run_problems(run: Run) -> list[str]:
    """Everything the run must not show, over all its schemas."""
    problems = [f"crash logged: {crash}" for crash in run.crashes]
    satisfiable = [outcome for outcome in run.outcomes if outcome.entry.kind != UNSATISFIABLE]
    accepted = [outcome for outcome in satisfiable if outcome.refused is None]
    if len(accepted) < MIN_ACCEPTED * len(satisfiable):
        refused = [outcome.entry.key for outcome in satisfiable if outcome.refused is not None]
        problems.append(f"only {len(accepted)} of {len(satisfiable)} satisfiable schemas accepted: {refused}")
    for outcome in run.outcomes:
        if outcome.entry.kind == UNSATISFIABLE and outcome.refused is None:
            problems.append(f"{outcome.entry.key}: an unsatisfiable schema was accepted at submit")
        if outcome.refused is None:
            problems += line_problems(outcome, run.target.failures)
    return problems


# -- against the simulator ---------------------------------------------------------------------------------------------

SIMULATOR = Target(
    name="simulator",
    base_url=None,
    model="gpt-4o-mini",
    api_key=API_KEY,
    apis=("responses", "chat"),
    max_output_tokens=None,
    concurrency=16,
    request_timeout_s=10.0,
    # The simulator answers every call 200 with an instance of the strict schema it was sent; it only misses what it
    # cannot generate (an unmatched pattern, what is checked locally, a key given twice in pairs), and then the
    # line fails validation after its repair. Any other failure is a bug.
    failures=frozenset({"schema_validation"}),
)


@pytest.fixture(scope="module")
def simulated(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The whole sample through one worker against the simulator (one run for every test of this module)."""
    return asyncio.run(_run(SIMULATOR, SAMPLE, redis_url, tmp_path_factory.mktemp("corpus-e2e")))


def test_the_sample_covers_every_kind_deterministically() -> None:
    counts = Counter(entry.kind for entry in SAMPLE)
    assert set(counts) == set(CORPUS.kinds())
    assert all(count == PER_KIND for count in counts.values()), counts
    assert sample(CORPUS.entries, PER_KIND) == SAMPLE
    assert len({entry.key for entry in SAMPLE}) == len(SAMPLE)
    for kind in CORPUS.kinds():  # a defect of the issue, a generated and a hand-written schema where the kind has them
        origins = {_origin(entry) for entry in CORPUS.entries if entry.kind == kind}
        assert {_origin(entry) for entry in SAMPLE if entry.kind == kind} == origins, kind


def test_the_sample_runs_in_one_worker_without_crashing(simulated: Run) -> None:
    """No crash, the unsatisfiable refused, 95 % of the rest accepted: the run's verdicts over all its schemas."""
    assert simulated.crashes == []
    summary = figures(simulated)
    assert summary["schemas"] == len(SAMPLE)
    satisfiable = [outcome for outcome in simulated.outcomes if outcome.entry.kind != UNSATISFIABLE]
    accepted = [outcome for outcome in satisfiable if outcome.refused is None]
    assert len(accepted) >= MIN_ACCEPTED * len(satisfiable), summary["refused_at_submit"]
    assert summary["stored_invalid_under_original"] == 0


@pytest.mark.parametrize("entry", SAMPLE, ids=lambda entry: entry.key)
def test_each_schema_end_to_end_on_the_simulator(simulated: Run, entry: Entry) -> None:
    """Refused at submit with a located reason (unsatisfiable), or every line final and typed, what is stored valid
    under the user's original schema."""
    outcome = simulated.outcome(entry.key)
    if entry.kind == UNSATISFIABLE:
        assert outcome.refused is not None, "an unsatisfiable schema was accepted"
        assert "$" in outcome.refused or "#" in outcome.refused, outcome.refused
        return
    if outcome.refused is not None:
        pytest.skip(f"refused at submit: {outcome.refused[:300]}")
    assert line_problems(outcome, SIMULATOR.failures) == []
    assert outcome.lines, "no line was answered"


def test_the_simulator_got_valid_strict_requests(simulated: Run) -> None:
    """Each call is a valid request under OpenAI's OpenAPI spec, carries the strict schema a batch was submitted
    with, and was answered 200: the strict schema was within strict mode's rules."""
    sent = {orjson.dumps(o.strict_schema, option=orjson.OPT_SORT_KEYS) for o in simulated.outcomes if o.strict_schema}
    calls = [entry for entry in simulated.requests if entry["endpoint"] in CALLS]
    answered = sum(len(outcome.lines) for outcome in simulated.outcomes)
    assert len(calls) >= answered > 0
    check_spec = spec_path().is_file()
    for call in calls:
        body = call["body"]
        api = CALLS[call["endpoint"]]
        assert call["status"] == 200, (call["status"], body.get("text") or body.get("response_format"))
        schema = body["text"]["format"]["schema"] if api == "responses" else body["response_format"]["json_schema"]
        if api == "chat":
            assert schema["strict"] is True
            schema = schema["schema"]
        else:
            assert body["text"]["format"]["strict"] is True
        assert orjson.dumps(schema, option=orjson.OPT_SORT_KEYS) in sent
        if check_spec:
            validate_component(REQUEST_COMPONENT[api], body)


# -- against a real server (opt-in) ------------------------------------------------------------------------------------


def _real_target() -> Target:
    if REAL_API_NAME not in REQUEST_COMPONENT:
        raise ValueError(f"EXTRACT_E2E_API must be responses or chat, not {REAL_API_NAME!r}")
    api: Api = "chat" if REAL_API_NAME == "chat" else "responses"
    return Target(
        name=REAL_BASE_URL,
        base_url=REAL_BASE_URL,
        model=REAL_MODEL,
        api_key=REAL_API_KEY,
        apis=(api,),
        max_output_tokens=REAL_MAX_OUTPUT_TOKENS,
        concurrency=REAL_CONCURRENCY,
        request_timeout_s=max(60.0, REAL_TIMEOUT_S / 6),
    )


@pytest.fixture
def real_server_env() -> None:
    if not REAL_BASE_URL:
        pytest.skip(
            "opt-in: set EXTRACT_E2E_BASE_URL to an OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1 of a "
            "llama-server; docs/schemas.md, 'Running the corpus on a real server')"
        )


@pytest.mark.timeout(REAL_TIMEOUT_S)
def test_the_sample_end_to_end_on_a_real_server(real_server_env: None, redis_url: str, tmp_path: Path) -> None:
    """The same sample (``EXTRACT_E2E_PER_KIND`` per kind) against a real server: its answers may fail (typed), but
    nothing crashes, nothing is left pending, and every stored answer is valid under the user's original schema."""
    entries = sample(CORPUS.entries, _per_kind(REAL_PER_KIND))
    run = asyncio.run(_run(_real_target(), entries, redis_url, tmp_path))
    summary = figures(run)
    print(json.dumps(summary, indent=1))
    if REAL_REPORT:
        Path(REAL_REPORT).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    assert run_problems(run) == []
    assert summary["stored_invalid_under_original"] == 0
    assert summary["crashes"] == 0
