"""Typed settings: a class per process (``WorkerSettings``, ``ProducerSettings``) over the ones both read.

Every command-line flag has an environment twin: the flag wins when given, the environment fills the rest
(Kubernetes passes settings as environment variables from a ConfigMap, and the API key from a Secret,
either as the variable ``OPENAI_API_KEY`` or as a file in ``secrets_dir``).

Our own variables share the prefix ``EXTRACT_`` (``EXTRACT_CONCURRENCY``, ``EXTRACT_MAX_REPAIRS`` ...).
Three variables keep the names the ecosystem already uses: ``REDIS_URL``, ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL``.

``EXTRACT_SECRETS_DIR`` names a directory of files, one per setting, named like its variable (a Kubernetes Secret
mounted as a volume: ``OPENAI_API_KEY``, ``REDIS_URL`` ...). Flags win over the environment, the environment over
those files. An invalid value raises :class:`InvalidSettingsError`, one line naming the flag, variable or file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import AliasChoices, BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from schemas.jobs import ResultsFormat
from schemas.models import Effort, RequestTier
from schemas.pricing import ModelPrice, PriceOverride, price_for
from schemas.venues import VenueSetting

T = TypeVar("T")

SECRETS_DIR_VARIABLE = "EXTRACT_SECRETS_DIR"
"""The directory of secret files (a mounted Kubernetes Secret); unset = none."""
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class InvalidSettingsError(ValueError):
    """A flag, variable or secret file holds a value the settings refuse; ``str()`` is one line naming each."""


class RateLimit(BaseModel):
    """A provider's per-minute limits for one model (0 = that limit is not enforced)."""

    rpm: int = Field(default=0, ge=0)
    tpm: int = Field(default=0, ge=0)


class CommonSettings(BaseSettings):
    """The settings every process reads: where Redis is, the key prefix, input limits and prices.

    Each process validates its own class (:class:`WorkerSettings`, :class:`ProducerSettings`), so a variable only
    the other one reads cannot stop it: a typo in ``EXTRACT_CONCURRENCY`` does not break ``producer status``.
    """

    model_config = SettingsConfigDict(
        env_prefix="EXTRACT_",
        extra="forbid",  # Settings(concurency=3) is a typo, not a setting to ignore
        populate_by_name=True,
        secrets_dir=None,  # EXTRACT_SECRETS_DIR, read in settings_customise_sources
    )

    # --- connections -------------------------------------------------------------------------------------
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("redis_url", "EXTRACT_REDIS_URL", "REDIS_URL"),
    )
    """Redis holding the queue, batch records, results and caches (one standalone or Sentinel server)."""
    key_prefix: str = "extract:"
    """Prefix of every key this service writes: one segment ending in ``:`` (checked by ``store.keys``)."""
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("openai_api_key", "EXTRACT_OPENAI_API_KEY", "OPENAI_API_KEY"),
    )
    """The API key (the worker's calls; the producer's uploads with ``--attach upload``). Never logged or written
    anywhere; only its hash names rate-limit scopes."""
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("openai_base_url", "EXTRACT_OPENAI_BASE_URL", "OPENAI_BASE_URL"),
    )
    """Point the SDK at a compatible server (the simulator, a proxy). None = api.openai.com."""

    # --- input limits (checked per line at submit, and by the worker before a call) ---------------------------------
    max_document_bytes: int = Field(default=1_000_000, ge=0)
    """A document larger than this many UTF-8 bytes is refused (``schemas.input_limits``); 0 = no byte limit."""
    context_windows: dict[str, Annotated[int, Field(ge=0)]] = Field(default_factory=dict)
    """Context windows in tokens merged over ``schemas.input_limits.DEFAULT_CONTEXT_WINDOWS``, e.g.
    EXTRACT_CONTEXT_WINDOWS='{"my-finetune": 128000}' (family prefixes match snapshots); 0 = no check for it."""

    # --- the provider's limits (the worker admits calls by them; ``producer estimate`` times a batch by them) -----
    rpm: int | None = Field(default=None, ge=0)
    """A ceiling on requests per minute for every model without an entry in ``rate_limits``; None or 0 = none: the
    provider's own limit is learned from its ``x-ratelimit-limit-*`` headers (``worker.admission``)."""
    tpm: int | None = Field(default=None, ge=0)
    """A ceiling on tokens per minute, as ``rpm``; None or 0 = learned from the provider."""
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    """Per-model limits, e.g. EXTRACT_RATE_LIMITS='{"gpt-4o-mini": {"rpm": 5000, "tpm": 4000000}}'."""

    # --- pricing ---------------------------------------------------------------------------------------------
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    """Overrides merged over the built-in table: a price (the default tier) or prices per tier (see ``price_for``)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """pydantic-settings' sources, with the secret files read from ``EXTRACT_SECRETS_DIR`` when it is set."""
        directory = os.environ.get(SECRETS_DIR_VARIABLE, "").strip()
        if directory and getattr(file_secret_settings, "secrets_dir", None) is None:
            if not Path(directory).is_dir():
                raise SettingsError(f"{SECRETS_DIR_VARIABLE}: {directory} is not a directory")
            file_secret_settings = SecretsSettingsSource(settings_cls, secrets_dir=directory)
        return init_settings, env_settings, dotenv_settings, file_secret_settings

    @classmethod
    def from_flags(cls, **flags: Any) -> Self:
        """Command-line flags over the environment: a flag left unset (None) defers to its environment twin.

        Raises:
            TypeError: a keyword names no setting (a caller's typo, never silently ignored).
            InvalidSettingsError: a flag, variable or secret file holds an invalid value.
        """
        unknown = sorted(set(flags) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"{cls.__name__}.from_flags() got unknown setting(s): {', '.join(unknown)}")
        given = {name: value for name, value in flags.items() if value is not None}
        try:
            return cls(**given)
        except (ValidationError, SettingsError) as exc:
            raise InvalidSettingsError(describe_settings_error(exc, flags=given)) from exc

    def api_key(self) -> str | None:
        """The API key in plain text, or None when none is set (an empty or blank value counts as none). The one
        place that reads ``openai_api_key``: keep what it returns out of logs, messages and records."""
        key = self.openai_api_key.get_secret_value() if self.openai_api_key is not None else ""
        return key if key.strip() else None

    def limits_for(self, model: str) -> RateLimit:
        """Per-model limits (exact name, then the longest ``name-`` prefix), else the ``rpm``/``tpm`` defaults."""
        match = _lookup(self.rate_limits, model)
        return match if match is not None else RateLimit(rpm=self.rpm or 0, tpm=self.tpm or 0)

    def price_for(self, model: str, tier: str | None = "default") -> ModelPrice | None:
        """The price of ``model`` at the service ``tier`` that served it (None or ``auto``: the default tier):
        ``EXTRACT_PRICES`` first, then the built-in table (``schemas.pricing``; dated snapshots price like their
        family)."""
        return price_for(model, tier, self.prices)


class WorkerSettings(CommonSettings):
    """What ``worker run`` reads: the API connection, concurrency, retries, cache, admission control."""

    # --- worker --------------------------------------------------------------------------------------------
    concurrency: int = Field(default=32, ge=1, le=1024)
    """Jobs one worker process runs at once (arq ``max_jobs``)."""
    request_timeout_s: float = Field(default=120.0, gt=0)
    """Client timeout of one API call. Kept below ``job_timeout_s`` so a hung call ends as a retry."""
    flex_request_timeout_s: float = Field(default=900.0, gt=0)
    """Client timeout of a call on the flex tier, which is slower (OpenAI advises at least 15 minutes), within the
    try's own limit: a flex call gets at most ``job_timeout_s`` less 10 s, and never less than ``request_timeout_s``
    (``worker.state.flex_call_timeout_s``), so raise ``EXTRACT_JOB_TIMEOUT_S`` to 910 s or more to give it all of
    this."""
    connect_timeout_s: float = Field(default=10.0, gt=0)
    job_timeout_s: float = Field(default=300.0, gt=0)
    """Upper bound on one job run (all calls and repairs of one try)."""
    job_lease_s: float = Field(default=10.0, ge=1, le=300)
    """A worker holds each job it runs for this long and renews the hold every third of it (``store.workers``): the
    jobs of a worker that dies (SIGKILL, a lost node) are taken up by the others within this time, not after the job
    timeout. Raise it only if Redis often stalls for more than two thirds of it."""
    max_tries: int = Field(default=100, ge=1)
    """Failed tries per line for transient errors (5xx, 408, 409, timeouts, connection errors): a guard against a
    line that fails fast forever. With the default backoff, ``retry_horizon_s`` ends retrying long before this.
    Admission waits and 429s do not count (the retry horizon bounds 429s)."""
    retry_horizon_s: float = Field(default=600.0, gt=0)
    """A line fails as ``retries_exhausted`` only once its transient errors have lasted this long: a provider outage
    shorter than this never fails a job."""
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)
    schema_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Modules whose pydantic classes this worker may import to validate a batch's ``module:Class`` schema
    (EXTRACT_SCHEMA_MODULES, comma-separated; a package allows its submodules). Empty by default: a batch record
    is data from Redis and never decides what code runs; such batches validate with their recorded JSON Schema."""
    max_repairs: int = Field(default=1, ge=0, le=5)
    """How many times a job re-asks the model with the validation error before failing."""
    pause_after_failures: int = Field(default=3, ge=0)
    """Pause a batch once this many of its calls failed for a reason no retry fixes and that every line shares (a
    bad API key, no access, an unknown model, a schema or parameter the model refuses, no quota left); its lines wait
    for ``producer resume``. 0 = never pause: such lines fail one by one."""
    pause_recheck_s: float = Field(default=300.0, gt=0)
    """How often a waiting line of a paused batch looks again (``resume`` also wakes them at once)."""
    store: bool = False
    """Send ``store: true`` to the Responses API (keeps responses on OpenAI's side)."""
    burst: bool = False
    """Exit when the queue is empty (tests, one-off runs)."""
    health_check_interval_s: int = Field(default=10, ge=1)
    worker_name: str | None = None
    """Names the per-worker health key; on Kubernetes pass the pod name."""
    log_level: str = "INFO"
    """One of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)."""
    queue_read_limit: int = Field(default=0, ge=0)
    """Queue entries a worker reads per poll; 0 = max(4 x concurrency, 100). Running jobs stay at the head of arq's
    queue, so across a fleet it must be at least 1.5 x replicas x concurrency or idle workers see no due work."""
    metrics_host: str = "0.0.0.0"  # noqa: S104 - probes and Prometheus reach the pod on its own address
    """Address the health server binds (``127.0.0.1`` to keep it local; ``::`` for IPv6)."""
    metrics_port: int | None = Field(default=9100, ge=0, le=65535)
    """Port of the worker's /healthz, /readyz and /metrics server; 0 = any free port; unset (None) = no server."""

    # --- result cache, coalescing, shutdown ------------------------------------------------------------------
    cache_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    """How long a succeeded answer is reused for the same fingerprint, across batches: at least this long and at most
    twice (the cache's generations, ``store.cache``), and only while the batch that answered it is kept (its results
    in Redis or in its results sink: ``EXTRACT_BATCH_TTL_S``); 0 disables the cache."""
    coalesce_lease_s: float = Field(default=10.0, gt=0)
    """Lease of the job calling the API for a fingerprint; refreshed while it works. Identical jobs wait for it; if
    its worker dies, the lease lapses within this time and another job takes over."""
    job_completion_wait_s: int = Field(default=30, ge=0)
    """On SIGTERM, running jobs get this long to finish before they are cancelled and handed back to the queue.
    Keep it below the pod's terminationGracePeriodSeconds."""

    # --- admission control (shared token buckets per API key and model) ----------------------------------------
    limit_window_s: float = Field(default=1.0, gt=0, le=60)
    """Bucket capacity in seconds of the limit. Providers enforce limits over sub-minute slices, so a bucket
    holding a whole minute would let a burst through that the provider rejects."""
    limit_headroom: float = Field(default=0.98, gt=0, le=1)
    """Fraction of the limits in force (configured or learned) the buckets fill at, leaving room for clock skew and
    estimate error."""
    admission_max_sleep_s: float = Field(default=5.0, ge=0)
    """Admission waits up to this long are slept in the job; longer ones hand the slot back (arq Retry). A job waits
    this long, too, for an identical line in flight before it hands its slot back."""
    default_output_reserve: int = Field(default=1024, ge=1)
    """The most a call without a max output tokens reserves for output: until the provider's account shows what it
    charges for output (``worker.admission``), this; afterwards what it charges, never more. A batch's budget
    reserves this much for such a call (``store.budget``)."""
    max_internal_errors: int = Field(default=3, ge=1)
    """Tries of a line that ended in an unexpected error (a bug, Redis failing past its retries) before the line fails
    as ``internal_error``."""
    max_deferrals: int = Field(default=1000, ge=1)
    """How often a job may hand its slot back while waiting for admission or for an identical line in flight before
    it fails."""

    # --- the Batch API venue (``worker.venue``: provider batches) ----------------------------------------------
    batch_poll_s: float = Field(default=60.0, ge=1)
    """How often a provider batch in flight is looked at (``GET /v1/batches/{id}``); its results are recorded within
    one interval (and the time to read its files) of its end."""
    batch_part_lines: int = Field(default=10_000, ge=1, le=50_000)
    """Lines per provider batch at most (the provider's cap is 50,000): smaller parts finish, and flow, sooner."""
    batch_part_bytes: int = Field(default=100_000_000, ge=1_000, le=200_000_000)
    """Bytes per provider batch input file at most (the provider's cap is 200 MB, base64 attachments included)."""
    batch_part_wait_s: float = Field(default=30.0, ge=0)
    """How long staged lines wait for more before a part smaller than ``batch_part_lines`` is sent."""
    batch_keep_files: bool = False
    """Keep a finished provider batch's input, output and error files at the provider (they expire after 30 days);
    by default they are deleted once its lines are recorded."""
    batch_queue_tokens: int | None = Field(default=None, ge=1)
    """The provider's enqueued-token limit for a model (input tokens of all its pending provider batches), if known;
    unset: learned from the first ``token_limit_exceeded`` failure. Reserved fleet-wide per model and API key."""
    batch_creates_per_hour: int = Field(default=2000, ge=1)
    """Provider batches created per hour at most, per API key (the provider's cap is 2,000)."""

    # --- the results sink (``worker.sink_writer``: parts out of Redis) ------------------------------------------
    sink_part_lines: int = Field(default=10_000, ge=1, le=1_000_000)
    """Result lines per part at most; a part is written once this many wait, or the oldest has waited
    ``sink_flush_after_s``, or the batch is done. Redis holds about this many results per batch before they leave."""
    sink_flush_after_s: float = Field(default=10.0, ge=0)
    """How long a finished line may wait in Redis for its part to fill."""
    sink_tick_s: float = Field(default=2.0, gt=0)
    """How often each worker's sink writer looks for batches with results to write."""
    sink_lease_s: float = Field(default=30.0, ge=2)
    """How long a writer's claim on a batch keeps the others off; a dead writer's batch is taken up after this. A
    claim writes for at most half of it, so a live writer never outlasts its claim (a late commit is refused
    anyway)."""

    @field_validator("schema_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _known_level(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.strip().upper() not in LOG_LEVELS:
                raise ValueError(f"not a log level: use one of {', '.join(LOG_LEVELS)}")
            return value.strip().upper()
        return value


class ProducerSettings(CommonSettings):
    """What the ``producer`` commands read: defaults of ``submit``/``run`` (their flags override them), feeding."""

    # --- producer (defaults for ``producer submit`` / ``run``; the flags override them) -------------------------
    submit_chunk_size: int = Field(default=1000, ge=1, le=10_000)
    """Lines per round trip when writing a batch's index and enqueuing its jobs."""
    queue_window: int = Field(default=10_000, ge=1)
    """Lines of one batch in the queue at most (waiting, deferred or running); the producer feeds the rest as lines
    finish. Each queued line holds its document in Redis, so this bounds a batch's queue memory; keep it several
    times the fleet's concurrency so no worker waits for the feeder."""
    batch_ttl_s: int = Field(default=7 * 24 * 3600, ge=0)
    """How long a batch's keys (record, index, results) stay once its last line is final; 0 keeps them."""
    api: Literal["responses", "chat"] = "responses"
    model: str | None = None
    schema_spec: str | None = Field(default=None, validation_alias=AliasChoices("schema_spec", "EXTRACT_SCHEMA"))
    """A built-in schema name, a JSON Schema file, or ``package.module:Class``."""
    instructions: str | None = None
    instructions_file: str | None = None
    id_field: str = "custom_id"
    text_field: str = "text"
    files_field: str = "files"
    """The field of a native line listing its attachment files (paths relative to the input file)."""
    urls_field: str = "urls"
    """The field listing ``http(s)`` or ``data:`` URLs of images and PDFs."""
    file_ids_field: str = "file_ids"
    """The field listing OpenAI file ids (``"file-..."`` is a PDF; ``{"id": ..., "kind": "image"}`` an image)."""
    glob: str = "**/*"
    """Which files of a folder input are documents (``submit DIR --glob``)."""
    image_detail: Literal["auto", "low", "high", "original"] = "auto"
    """The ``detail`` sent with every image."""
    attach: Literal["inline", "upload"] = "inline"
    """How attachments travel: bytes in Redis once per content (inline), or uploaded once to the Files API."""
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    budget_tokens: int | None = Field(default=None, ge=1)
    """The most tokens (input + output) the batch may be billed, enforced across the fleet (``store.budget``)."""
    budget_usd: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """The most the batch may cost, at the prices of ``schemas.pricing`` (``store.budget``)."""
    reasoning_effort: Effort | None = None
    service_tier: RequestTier | None = None
    flex_fallback_after_s: float | None = Field(default=None, gt=0)
    """A flex line refused for capacity this long is sent with ``auto`` (``--flex-fallback-after``); None = never."""
    count_tokens: Literal["estimate", "exact"] = "estimate"
    """``exact``: size each call by the provider's input-token counter instead of our estimate."""
    shadow_api: Literal["responses", "chat"] | None = None
    """Run a sample of the lines again through this API as a linked shadow batch (``producer.submit.shadow``)."""
    shadow_model: str | None = None
    """... or with this model (or both)."""
    shadow_sample: float = Field(default=0.1, gt=0, le=1)
    """The share of lines the shadow batch runs (chosen by fingerprint: a rerun picks the same ones)."""
    skip_invalid: bool = False
    replace_changed: bool = False
    """A resubmit runs lines whose document changed again (their new result supersedes the old one)."""
    append: bool = False
    """A resubmit adds lines the batch does not have at its end."""
    no_cache: bool = False
    """Submit a batch that neither reads nor writes the result cache (and does not coalesce)."""
    venue: VenueSetting = "sync"
    """Where lines are answered: ``sync`` (a call per line), ``batch-api`` (provider batches: half the price,
    within 24 h), ``auto`` (the Batch API when the deadline leaves room, else flex where offered, else sync)."""
    deadline: str | None = None
    """When the batch must be done: a duration (``36h``, ``2d``) or an ISO time; what ``auto`` chooses by."""
    results: str | None = None
    """Where result lines go as they are made (``--results``): a local folder every worker sees, or
    ``s3://bucket/prefix`` (``store.sink``); unset: they stay in Redis until ``collect``."""
    results_format: ResultsFormat = "jsonl"
    """The format of the parts (``--results-format``): ``jsonl``, ``jsonl.gz`` or ``parquet``."""


class Settings(WorkerSettings, ProducerSettings):
    """Every setting of both processes, for code that plays both parts (tests, benchmarks, the demo)."""


def _lookup(table: Mapping[str, T], model: str) -> T | None:
    """Exact model name, else the longest known family prefix (``gpt-4o-mini-2024-07-18`` → ``gpt-4o-mini``)."""
    if model in table:
        return table[model]
    matches = [name for name in table if model.startswith(name + "-")]
    return table[max(matches, key=len)] if matches else None


_SOURCE_ERROR = re.compile(r'field "(\w+)" from source "(\w+)"')
_SECRET_FIELDS = frozenset({"openai_api_key", "redis_url"})
"""Fields whose values never appear in a message (a Redis URL may hold a password)."""


def describe_settings_error(exc: ValidationError | SettingsError, *, flags: Collection[str] = ()) -> str:
    """One line naming each flag (``--concurrency``), variable (``EXTRACT_RATE_LIMITS``) or file that is invalid.

    ``flags`` are the settings given as flags (they won over the environment, so an error in one is the flag's).
    """
    if isinstance(exc, SettingsError):  # a variable or file pydantic-settings could not decode (not JSON ...)
        match = _SOURCE_ERROR.search(str(exc))
        if match is None:
            return str(exc)
        field, source = match.groups()
        cause = exc.__cause__
        reason = f"not valid JSON ({cause})" if isinstance(cause, json.JSONDecodeError) else str(cause or exc)
        return f"{_origin(field, secrets=source == SecretsSettingsSource.__name__)}: {reason}"
    problems = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        field = _field_named(loc[0]) if loc else None
        if field is None:
            name = loc[0] if loc else "settings"
        elif field in flags:
            name = "--" + field.replace("_", "-")
        else:
            name = _origin(field, secrets=False)
        where = ".".join(loc[1:])
        message = str(error["msg"]).removeprefix("Value error, ")
        value = error.get("input")
        shown = ""
        if field not in _SECRET_FIELDS and isinstance(value, str | int | float) and len(repr(value)) <= 60:
            shown = f" (got {value!r})"
        problems.append(f"{name}: {where + ': ' if where else ''}{message}{shown}")
    return "; ".join(problems)


def _field_named(name: str) -> str | None:
    """The field a validation error's location names: a field name, or one of its aliases."""
    if name in Settings.model_fields:
        return name
    for field, info in Settings.model_fields.items():
        if name in _aliases(info.validation_alias):
            return field
    return None


def _aliases(alias: object) -> list[str]:
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    return [alias] if isinstance(alias, str) else []


def _origin(field: str, *, secrets: bool) -> str:
    """The variable that set ``field`` (of its names, the one in the environment), or its file in the secrets dir."""
    names = [a for a in _aliases(Settings.model_fields[field].validation_alias) if a.isupper()]
    names = names or [f"EXTRACT_{field.upper()}"]
    environ = {name.upper() for name in os.environ}
    if not secrets:
        for name in names:
            if name in environ:
                return name
    name = names[-1]
    return f"{name} (file in {SECRETS_DIR_VARIABLE})" if secrets or os.environ.get(SECRETS_DIR_VARIABLE) else name
