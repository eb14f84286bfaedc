"""Simulator settings, shared by the CLI (``python -m simulator``) and the in-process API."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.batches import MAX_INPUT_BYTES, MAX_LINES, BatchSettings
from simulator.documents import MIB, DocumentLimits
from simulator.faults import FaultKind, FaultRule, check_rates
from simulator.ratelimit import CHARGE_OUTPUT_MODES, LIMIT_HEADER_STYLES, ChargeOutput, LimitHeaders
from simulator.tiers import check_rate


@dataclass(slots=True)
class SimulatorConfig:
    """How the simulated API behaves. Defaults give an instant, fault-free, unlimited, unauthenticated server.

    ``seed`` feeds both output generation (together with the request content) and
    the latency jitter, so two runs with the same seed and inputs agree.
    ``require_api_key`` is kept out of ``repr`` so it never lands in logs.

    Rate limits (0 = unlimited): ``rpm`` requests and ``tpm`` tokens per minute
    per model, enforced by token buckets holding ``limit_window_s`` seconds'
    worth (see :mod:`simulator.ratelimit`); ``POST /_sim/limits`` can change
    ``rpm``/``tpm`` mid-run (this config keeps the starting values). A request's
    token charge is its input tokens plus its max output tokens. When the
    request sets no max, ``charge_output`` decides: ``"max"`` charges
    ``default_max_output_tokens`` on admission; ``"actual"`` charges only the
    input on admission and the output tokens really produced once a billed
    answer has been generated (the bucket may go into debt).

    ``limit_headers``: ``"openai"`` sends OpenAI's ``x-ratelimit-*`` headers;
    ``"none"`` sends none (limits are still enforced; a 429 keeps
    ``retry-after``/``retry-after-ms``); ``"azure"`` sends ``-1`` for every
    limit, ``0`` for every remaining, no reset, and no ``retry-after``/
    ``retry-after-ms`` on a 429 (the message still says how long to wait).

    Faults: ``faults`` are count-limited rules (checked first);
    ``fault_rates`` maps kinds to probabilities, drawn reproducibly from
    ``fault_seed``, at most ``max_faults_per_input`` times per input;
    ``slow_response_ms`` is how long a ``slow_response`` fault takes.
    ``flex_unavailable_rate`` (0 to 1) is the share of ``service_tier: "flex"``
    requests answered ``429 resource_unavailable`` (unbilled, not admitted),
    drawn from ``fault_seed`` and the request's input (:mod:`simulator.tiers`).

    ``clock`` is the monotonic clock of the rate limiter and the ledger's
    timings (tests inject a fake one; latencies still sleep in real time).

    ``context_windows`` overrides the per-model context windows
    (:mod:`simulator.context_window`; model or family name -> tokens, 0 =
    unlimited): a request whose input exceeds its model's window gets the
    API's 400 ``context_length_exceeded``, unbilled.

    Documents (:mod:`simulator.documents`): ``max_file_bytes`` per file,
    ``max_request_file_bytes`` for all files of a request, ``max_request_image_bytes``
    for all its images (decoded bytes; OpenAI's 50 MB, 50 MB and 512 MB by
    default), ``download_timeout_s`` for an image or file given by URL, and
    ``pdf_page_dpi``, the resolution PDF pages are charged at as images (72 =
    one pixel per PDF point: an assumption, OpenAI does not publish it).

    URLs (:mod:`simulator.fetch`): an image or file given by http(s) URL is
    downloaded only with ``fetch_urls`` (off: the API's "Error while
    downloading" 400, nothing fetched), since whoever sends a request picks
    the URL. Even then loopback and private addresses need ``fetch_private``
    too (tests serving files on 127.0.0.1), and link-local (cloud metadata),
    unspecified, multicast and reserved addresses are never fetched.

    Batches (``/v1/batches``, :mod:`simulator.batches`): the ``batch_*`` fields are the starting values of
    ``POST /_sim/batches``'s keys (the key is the field's name, less its ``batch_`` prefix unless the key has it
    too: ``batch_validating_s``, ``creates_per_hour`` ...); :meth:`batch_settings` gathers them.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    ms_per_output_token: float = 0.0
    seed: int = 0
    require_api_key: str | None = field(default=None, repr=False)
    faults: list[FaultRule] = field(default_factory=list)
    request_log_size: int = 1000
    rpm: int = 0
    tpm: int = 0
    limit_window_s: float = 1.0
    default_max_output_tokens: int = 1024
    charge_output: ChargeOutput = "max"
    limit_headers: LimitHeaders = "openai"
    fault_rates: dict[FaultKind, float] = field(default_factory=dict)
    fault_seed: int = 0
    max_faults_per_input: int = 1
    slow_response_ms: float = 30_000.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    context_windows: dict[str, int] = field(default_factory=dict)
    max_file_bytes: int = 50 * MIB
    max_request_file_bytes: int = 50 * MIB
    max_request_image_bytes: int = 512 * MIB
    download_timeout_s: float = 10.0
    pdf_page_dpi: float = 72.0
    flex_unavailable_rate: float = 0.0
    fetch_urls: bool = False
    """Download images and files given by http(s) URL (``--fetch-urls``); off, such a part gets a 400."""
    fetch_private: bool = False
    """Also from loopback and private addresses (``--fetch-private``); needs ``fetch_urls``."""
    perturb: tuple[str, ...] = ()
    """``ENDPOINT:PATH`` rules (``simulator.perturb``): answers on that endpoint differ at that field."""
    batch_validating_s: float = 0.5
    """How long a batch stays ``validating`` (seconds of the event loop's clock)."""
    batch_lines_per_s: float = 2000.0
    """How fast an ``in_progress`` batch answers its lines."""
    batch_finalizing_s: float = 0.5
    batch_cancelling_s: float = 0.5
    batch_creates_per_hour: int = 2000
    """Batch creations per rolling hour, then ``POST /v1/batches`` answers 429 (0 = unlimited)."""
    batch_enqueued_token_limit: dict[str, int] = field(default_factory=dict)
    """Model -> input tokens its pending batches may hold; a batch past it fails ``token_limit_exceeded``."""
    batch_max_input_bytes: int = MAX_INPUT_BYTES
    batch_max_lines: int = MAX_LINES
    batch_hold: bool = False
    """Batches answer no line and stay ``in_progress`` until ``POST /_sim/batches {"hold": false}``."""
    batch_expire_after_lines: int | None = None
    """A batch expires once it has answered this many lines (None = never)."""
    batch_server_error_share: float = 0.0
    batch_invalid_answer_share: float = 0.0
    batch_drop_lines: int = 0
    batch_no_output_file: bool = False

    def batch_settings(self) -> BatchSettings:
        """The batch settings these fields describe (pydantic's ValidationError, a ValueError, if they are bad)."""
        return BatchSettings(
            batch_validating_s=self.batch_validating_s,
            batch_lines_per_s=self.batch_lines_per_s,
            batch_finalizing_s=self.batch_finalizing_s,
            batch_cancelling_s=self.batch_cancelling_s,
            creates_per_hour=self.batch_creates_per_hour,
            enqueued_token_limit=dict(self.batch_enqueued_token_limit),
            max_input_bytes=self.batch_max_input_bytes,
            max_lines=self.batch_max_lines,
            hold=self.batch_hold,
            expire_after_lines=self.batch_expire_after_lines,
            server_error_share=self.batch_server_error_share,
            invalid_answer_share=self.batch_invalid_answer_share,
            drop_lines=self.batch_drop_lines,
            no_output_file=self.batch_no_output_file,
        )

    def perturbed(self, endpoint: str) -> tuple[str, ...]:
        """The field paths answers on ``endpoint`` change (``responses`` or ``chat.completions``)."""
        return tuple(path for rule in self.perturb for where, _, path in [rule.partition(":")] if where == endpoint)

    def document_limits(self) -> DocumentLimits:
        return DocumentLimits(
            max_file_bytes=self.max_file_bytes,
            max_request_file_bytes=self.max_request_file_bytes,
            max_request_image_bytes=self.max_request_image_bytes,
            download_timeout_s=self.download_timeout_s,
            pdf_page_dpi=self.pdf_page_dpi,
            fetch_urls=self.fetch_urls,
            fetch_private=self.fetch_private,
        )

    def __post_init__(self) -> None:
        _check_perturb_rules(self.perturb)
        if self.latency_ms < 0 or self.latency_jitter_ms < 0 or self.ms_per_output_token < 0:
            raise ValueError("latencies must be >= 0")
        if self.request_log_size < 0:
            raise ValueError("request_log_size must be >= 0")
        if self.rpm < 0 or self.tpm < 0:
            raise ValueError("rpm and tpm must be >= 0 (0 = unlimited)")
        if self.limit_window_s <= 0:
            raise ValueError("limit_window_s must be > 0")
        if self.default_max_output_tokens < 1:
            raise ValueError("default_max_output_tokens must be >= 1")
        if self.charge_output not in CHARGE_OUTPUT_MODES:
            raise ValueError(f"charge_output must be one of {', '.join(CHARGE_OUTPUT_MODES)}")
        if self.limit_headers not in LIMIT_HEADER_STYLES:
            raise ValueError(f"limit_headers must be one of {', '.join(LIMIT_HEADER_STYLES)}")
        if self.max_faults_per_input < 0 or self.slow_response_ms < 0:
            raise ValueError("max_faults_per_input and slow_response_ms must be >= 0")
        if any(not isinstance(tokens, int) or tokens < 0 for tokens in self.context_windows.values()):
            raise ValueError("context_windows must map model names to token counts >= 0 (0 = unlimited)")
        if min(self.max_file_bytes, self.max_request_file_bytes, self.max_request_image_bytes) < 1:
            raise ValueError("document size limits must be >= 1 byte")
        if self.download_timeout_s <= 0 or self.pdf_page_dpi <= 0:
            raise ValueError("download_timeout_s and pdf_page_dpi must be > 0")
        if self.fetch_private and not self.fetch_urls:
            raise ValueError(
                "fetch_private (--fetch-private) needs fetch_urls (--fetch-urls): nothing is fetched without it"
            )
        self.batch_settings()  # raises for bad batch settings
        self.fault_rates = check_rates(self.fault_rates)
        self.flex_unavailable_rate = check_rate(self.flex_unavailable_rate)


def _check_perturb_rules(rules: tuple[str, ...]) -> None:
    for rule in rules:
        where, sep, path = rule.partition(":")
        if not sep or where not in ("responses", "chat.completions") or not path:
            raise ValueError(f"perturb rule {rule!r}: write ENDPOINT:PATH, ENDPOINT responses or chat.completions")
