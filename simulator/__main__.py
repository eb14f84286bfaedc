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

from simulator.config import SimulatorConfig
from simulator.faults import FaultKind, FaultRule
from simulator.server import running_simulator


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator",
        description="OpenAI-compatible simulator (POST /v1/responses, /v1/chat/completions; control under /_sim).",
        epilog=f"fault kinds: {', '.join(FaultKind)}",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on startup)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--latency-jitter-ms", type=float, default=0.0)
    parser.add_argument("--ms-per-output-token", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--require-api-key", metavar="KEY", default=None)
    parser.add_argument(
        "--fault",
        dest="faults",
        metavar="KIND:MATCH:TIMES",
        action="append",
        default=[],
        type=_fault_rule,
        help="inject a fault, e.g. refusal::1 or http_500:invoice-7:2 (repeatable)",
    )
    return parser.parse_args(argv)


def _fault_rule(spec: str) -> FaultRule:
    try:
        return FaultRule.parse_cli(spec)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError too
        raise argparse.ArgumentTypeError(f"bad fault {spec!r} (want KIND:MATCH:TIMES): {exc}") from None


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        ms_per_output_token=args.ms_per_output_token,
        seed=args.seed,
        require_api_key=args.require_api_key,
        faults=list(args.faults),
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
    asyncio.run(serve(config_from_args(args), args.host, args.port))


if __name__ == "__main__":
    main()
