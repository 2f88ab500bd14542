"""`python -m proxy.simulator`: serve the simulated OpenAI upstream in the foreground.

Prints one line, `simulator listening on http://<host>:<port>/v1`, once the socket is bound, so a
benchmark script can wait for it; stops on SIGINT / SIGTERM.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from proxy.background import bind_socket
from proxy.simulator.app import create_app
from proxy.simulator.config import Faults, SimulatorConfig
from proxy.simulator.server import uvicorn_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m proxy.simulator", description="Simulated OpenAI upstream for tallygate."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require this key (Bearer or api-key)")
    parser.add_argument("--completion-tokens", type=int, default=16, help="per choice")
    parser.add_argument("--cached-tokens", type=int, default=0)
    parser.add_argument("--reasoning-tokens", type=int, default=0)
    parser.add_argument("--chunk-delay-ms", type=int, default=0, help="pause between SSE events")
    parser.add_argument("--delay-ms", type=int, default=0, help="pause before each answer")
    parser.add_argument("--chunks", type=int, default=None, help="content chunks per choice")
    parser.add_argument(
        "--canned",
        action="store_true",
        help="benchmarks: chat completions answered with bytes rendered once (see canned.py)",
    )
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop", "auto"))
    parser.add_argument("--log-level", default="warning")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    args = _parser().parse_args(argv)
    faults = Faults(
        completion_tokens=args.completion_tokens,
        cached_tokens=args.cached_tokens,
        reasoning_tokens=args.reasoning_tokens,
        chunk_delay_ms=args.chunk_delay_ms,
        delay_ms=args.delay_ms,
        chunks=args.chunks,
    )
    config = SimulatorConfig(api_key=args.api_key, faults=faults, canned=args.canned)
    sock = bind_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"simulator listening on http://{host}:{port}/v1", flush=True)
    server = uvicorn.Server(
        uvicorn_config(create_app(config), log_level=args.log_level, quiet=False, loop=args.loop)
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


if __name__ == "__main__":
    main()
