"""The ``tallygate`` command line: serve, demo, keys, config."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from config import ConfigError, Settings, load_settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tallygate", description="LLM gateway with built-in metering."
    )
    parser.add_argument("--config", help="TOML settings file (default: $TALLYGATE_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--host", help="listen address (default from settings: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default from settings: 8080)")

    demo = commands.add_parser("demo", help="run the gateway in front of a simulated OpenAI")
    demo.add_argument("--port", type=int, default=8080, help="gateway port (default 8080)")
    demo.add_argument("--db", default="./tallygate-demo.db", help="SQLite file for the demo")

    keys = commands.add_parser("keys", help="manage virtual API keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key (and its customer/subscription)")
    create.add_argument("--customer", required=True, help="the customer's external id")
    create.add_argument("--plan", help="plan code (default: the catalog's default plan)")
    create.add_argument("--name", help="a label for the key")
    create.add_argument("--subscription", help="subscription external id (default customer:plan)")
    keys.add_parser("list", help="list keys (prefixes only)")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")

    config = commands.add_parser("config", help="inspect the configuration").add_subparsers(
        dest="config_command", required=True
    )
    check = config.add_parser("check", help="validate and print the effective settings")
    check.add_argument("--config", dest="check_config", help="TOML settings file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tallygate`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    config_path = getattr(args, "check_config", None) or args.config
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        print(f"tallygate: {exc}", file=sys.stderr)
        return 2
    return _dispatch(args, settings)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    # Imported per command so that `config check` or `keys list` never load the web stack.
    if args.command == "serve":
        from proxy.server import serve

        return serve(settings, host=args.host, port=args.port)
    if args.command == "demo":
        from proxy.demo import run_demo

        return run_demo(settings, port=args.port, db=args.db)
    if args.command == "keys":
        from proxy import cli_keys

        return asyncio.run(cli_keys.run(args, settings))
    from proxy.cli_config import print_config

    return print_config(settings)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
