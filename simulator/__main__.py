"""``python -m simulator``: serve the simulator until SIGTERM/SIGINT.

Prints exactly one line, ``simulator listening on http://HOST:PORT``, once the
socket is bound (with the real port when ``--port 0``), so a parent process
can wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from simulator.batches import MAX_INPUT_BYTES, MAX_LINES
from simulator.config import SimulatorConfig
from simulator.faults import RATE_FAULT_KINDS, FaultKind, FaultRule, check_rates
from simulator.ratelimit import CHARGE_OUTPUT_MODES
from simulator.server import running_simulator
from simulator.tiers import check_rate


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="OpenAI-compatible simulator (POST /v1/responses, /v1/chat/completions; control under /_sim).",
        epilog=f"fault kinds: {', '.join(FaultKind)}. "
        'Rate limits can change mid-run: POST /_sim/limits {"rpm": N, "tpm": N} (each optional, 0 = unlimited; '
        "buckets keep their level, clipped to the new capacity); GET /_sim/limits shows them. "
        "GET /_sim/ledger?tiers=1 adds the billed usage per served tier (default, flex, priority) and the count of "
        "flex 429s; GET /_sim/requests has each call's x-request-id, served tier and reasoning effort. "
        "The Batch API (/v1/batches) runs on the --batch-* settings, which POST /_sim/batches changes mid-run "
        "(GET /_sim/batches shows them and every batch); GET /_sim/ledger?venues=1 splits the bill into sync and "
        "batch (half price).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on startup)")
    parser.add_argument(
        "--rpm",
        type=int,
        default=0,
        metavar="N",
        help="requests per minute per model (0 = unlimited; see /_sim/limits)",
    )
    parser.add_argument(
        "--tpm", type=int, default=0, metavar="N", help="tokens per minute per model (0 = unlimited; see /_sim/limits)"
    )
    parser.add_argument(
        "--limit-window-s",
        type=float,
        default=1.0,
        metavar="S",
        help="rate-limit buckets hold S seconds' worth of the per-minute limits (default 1.0)",
    )
    parser.add_argument(
        "--default-max-output-tokens",
        type=int,
        default=1024,
        metavar="N",
        help="output tokens a request without a max is charged against --tpm on admission "
        "under --charge-output max (default 1024)",
    )
    parser.add_argument(
        "--charge-output",
        choices=CHARGE_OUTPUT_MODES,
        default="max",
        help="what a request without a max output is charged against --tpm: 'max' (default) = its input plus "
        "--default-max-output-tokens on admission; 'actual' = only its input on admission, then the output tokens "
        "it really produced once its billed answer is generated (the bucket may go into debt; the 200's "
        "x-ratelimit-* headers are then as of the response). A request with a max is charged input + max on "
        "admission either way",
    )
    headers = parser.add_mutually_exclusive_group()
    headers.add_argument(
        "--no-limit-headers",
        dest="limit_headers",
        action="store_const",
        const="none",
        default="openai",
        help="send no x-ratelimit-* header on any response, like a local vLLM or llama.cpp server (limits are "
        "still enforced; a 429 keeps retry-after and retry-after-ms)",
    )
    headers.add_argument(
        "--azure-headers",
        dest="limit_headers",
        action="store_const",
        const="azure",
        help="send x-ratelimit-limit-* -1 and x-ratelimit-remaining-* 0 on every response, no x-ratelimit-reset-*, "
        "and 429s without retry-after or retry-after-ms (the message still says 'Please try again in ...')",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="MS")
    parser.add_argument("--latency-jitter-ms", type=float, default=0.0, metavar="MS")
    parser.add_argument("--ms-per-output-token", type=float, default=0.0, metavar="MS")
    parser.add_argument("--seed", type=int, default=0, help="seeds generated outputs and latency jitter")
    parser.add_argument("--require-api-key", metavar="KEY", default=None)
    parser.add_argument(
        "--fault-rate",
        dest="fault_rates",
        metavar="KIND=P",
        action="append",
        default=[],
        type=_fault_rate,
        help=f"fault this share of requests (repeatable; kinds: {', '.join(RATE_FAULT_KINDS)})",
    )
    parser.add_argument("--fault-seed", type=int, default=0, metavar="N", help="seed of the --fault-rate draws")
    parser.add_argument(
        "--max-faults-per-input",
        type=int,
        default=1,
        metavar="N",
        help="rate-fault an input (model + document) at most N times, then answer it normally (default 1)",
    )
    parser.add_argument(
        "--slow-response-ms",
        type=float,
        default=30_000.0,
        metavar="MS",
        help="how long a slow_response fault takes to answer (default 30000)",
    )
    parser.add_argument(
        "--flex-unavailable-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="answer this share of service_tier=flex requests with OpenAI's unbilled 429 resource_unavailable "
        "(drawn from --fault-seed and the request's document, so a retry draws afresh; default 0)",
    )
    parser.add_argument(
        "--perturb",
        metavar="ENDPOINT:PATH",
        action="append",
        default=[],
        help="answers on ENDPOINT (responses or chat.completions) differ at the output field PATH, e.g. "
        "chat.completions:total (repeatable; for comparing runs)",
    )
    parser.add_argument(
        "--context-window",
        dest="context_windows",
        metavar="MODEL=TOKENS",
        action="append",
        default=[],
        type=_context_window,
        help="the context window of a model or model family, e.g. gpt-4o-mini=2000 (repeatable; 0 = unlimited); "
        "a request whose input is larger gets OpenAI's 400 context_length_exceeded. Default: OpenAI's figures "
        "(gpt-4o 128000, gpt-4.1 1047576, o3 200000, gpt-5 400000 ...); models in no known family are unlimited",
    )
    parser.add_argument(
        "--fetch-urls",
        action="store_true",
        help="download images and files that requests give by http(s) URL (off by default: such a part gets the "
        "API's 400 'Error while downloading'). Whoever can reach the simulator picks the URL, so loopback and "
        "private addresses are still refused, and link-local (cloud metadata), unspecified, multicast and reserved "
        "ones always are",
    )
    parser.add_argument(
        "--fetch-private",
        action="store_true",
        help="with --fetch-urls, also fetch from loopback and private addresses (127.0.0.1, 10/8, 192.168/16, "
        "fc00::/7 ...), e.g. a test's local file server; never link-local",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        metavar="KIND:MATCH:TIMES",
        action="append",
        default=[],
        type=_fault_rule,
        help="inject a fault, e.g. refusal::1 or http_500:invoice-7:2 (repeatable)",
    )
    _add_batch_arguments(parser)
    return parser.parse_args(argv)


def _add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    batch = parser.add_argument_group("batches (/v1/batches; POST /_sim/batches changes these mid-run)")
    batch.add_argument("--batch-validating-s", type=float, default=0.5, metavar="S", help="time validating (0.5)")
    batch.add_argument(
        "--batch-lines-per-s", type=float, default=2000.0, metavar="N", help="lines answered per second (2000)"
    )
    batch.add_argument("--batch-finalizing-s", type=float, default=0.5, metavar="S", help="time finalizing (0.5)")
    batch.add_argument("--batch-cancelling-s", type=float, default=0.5, metavar="S", help="time cancelling (0.5)")
    batch.add_argument(
        "--batch-creates-per-hour",
        type=int,
        default=2000,
        metavar="N",
        help="batch creations per rolling hour, then 429 rate_limit_exceeded (default 2000; 0 = unlimited)",
    )
    batch.add_argument(
        "--batch-enqueued-token-limit",
        dest="batch_enqueued_token_limit",
        metavar="MODEL=TOKENS",
        action="append",
        default=[],
        type=_token_limit,
        help="the input tokens MODEL's pending batches may hold; a batch past it fails token_limit_exceeded "
        "(repeatable; default unlimited)",
    )
    batch.add_argument("--batch-max-input-bytes", type=int, default=MAX_INPUT_BYTES, metavar="N")
    batch.add_argument("--batch-max-lines", type=int, default=MAX_LINES, metavar="N")
    batch.add_argument(
        "--batch-hold", action="store_true", help="start with batches held in_progress (release: POST /_sim/batches)"
    )
    batch.add_argument(
        "--batch-expire-after-lines", type=int, default=None, metavar="N", help="a batch expires after N lines"
    )
    batch.add_argument(
        "--batch-server-error-share",
        type=_probability,
        default=0.0,
        metavar="P",
        help="this share of each batch's lines ends in its error file as an HTTP 500",
    )
    batch.add_argument(
        "--batch-invalid-answer-share",
        type=_probability,
        default=0.0,
        metavar="P",
        help="this share of each batch's answers fails the request's schema",
    )
    batch.add_argument(
        "--batch-drop-lines", type=int, default=0, metavar="N", help="N answered lines per batch are in neither file"
    )
    batch.add_argument(
        "--batch-no-output-file",
        action="store_true",
        help="batches complete with no output file (their answered lines are in neither file)",
    )


def _token_limit(spec: str) -> tuple[str, int]:
    model, sep, tokens = spec.partition("=")
    try:
        if not sep or not model.strip():
            raise ValueError("missing MODEL=")
        value = int(tokens)
        if value < 0:
            raise ValueError("TOKENS must be >= 0")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad enqueued token limit {spec!r} (want MODEL=TOKENS): {exc}") from None
    return model.strip(), value


def _fault_rule(spec: str) -> FaultRule:
    try:
        return FaultRule.parse_cli(spec)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise argparse.ArgumentTypeError(f"bad fault {spec!r} (want KIND:MATCH:TIMES): {exc}") from None


def _fault_rate(spec: str) -> tuple[FaultKind, float]:
    kind, sep, rate = spec.partition("=")
    try:
        if not sep:
            raise ValueError("missing '='")
        checked = check_rates({kind.strip(): float(rate)})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad fault rate {spec!r} (want KIND=P, P in [0, 1]): {exc}") from None
    return next(iter(checked.items()))


def _probability(spec: str) -> float:
    try:
        return check_rate(float(spec))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad rate {spec!r} (want P in [0, 1]): {exc}") from None


def _context_window(spec: str) -> tuple[str, int]:
    model, sep, tokens = spec.partition("=")
    try:
        if not sep or not model.strip():
            raise ValueError("missing MODEL=")
        value = int(tokens)
        if value < 0:
            raise ValueError("TOKENS must be >= 0")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad context window {spec!r} (want MODEL=TOKENS): {exc}") from None
    return model.strip(), value


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The config the parsed flags describe; ValueError if they contradict each other (e.g. rates above 1)."""
    return SimulatorConfig(
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        ms_per_output_token=args.ms_per_output_token,
        seed=args.seed,
        require_api_key=args.require_api_key,
        faults=list(args.faults),
        rpm=args.rpm,
        tpm=args.tpm,
        limit_window_s=args.limit_window_s,
        default_max_output_tokens=args.default_max_output_tokens,
        charge_output=args.charge_output,
        limit_headers=args.limit_headers,
        fault_rates=dict(args.fault_rates),
        fault_seed=args.fault_seed,
        max_faults_per_input=args.max_faults_per_input,
        slow_response_ms=args.slow_response_ms,
        context_windows=dict(args.context_windows),
        flex_unavailable_rate=args.flex_unavailable_rate,
        perturb=tuple(args.perturb),
        fetch_urls=args.fetch_urls,
        fetch_private=args.fetch_private,
        batch_validating_s=args.batch_validating_s,
        batch_lines_per_s=args.batch_lines_per_s,
        batch_finalizing_s=args.batch_finalizing_s,
        batch_cancelling_s=args.batch_cancelling_s,
        batch_creates_per_hour=args.batch_creates_per_hour,
        batch_enqueued_token_limit=dict(args.batch_enqueued_token_limit),
        batch_max_input_bytes=args.batch_max_input_bytes,
        batch_max_lines=args.batch_max_lines,
        batch_hold=args.batch_hold,
        batch_expire_after_lines=args.batch_expire_after_lines,
        batch_server_error_share=args.batch_server_error_share,
        batch_invalid_answer_share=args.batch_invalid_answer_share,
        batch_drop_lines=args.batch_drop_lines,
        batch_no_output_file=args.batch_no_output_file,
    )


async def serve(config: SimulatorConfig, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then shut down cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running_simulator(config, host=host, port=port) as sim:
        sys.stdout.write(f"simulator listening on {sim.url}\n")
        sys.stdout.flush()
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        sys.stderr.write(f"python -m simulator: error: {exc}\n")
        raise SystemExit(2) from None
    asyncio.run(serve(config, args.host, args.port))


if __name__ == "__main__":
    main()
