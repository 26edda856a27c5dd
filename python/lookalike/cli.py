"""The `lookalike` command.

    lookalike serve [--config lookalike.toml] [--address HOST:PORT] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys

from lookalike.service.config import ServiceConfig


def _serve(args: argparse.Namespace) -> int:
    from lookalike.service.server import Server

    config = ServiceConfig.load(args.config, address=args.address, data_dir=args.data_dir, workers=args.workers)
    server = Server(config)
    server.stop_on_signals()
    server.start()
    # Scripts and tests read the address (with the real port) from this line.
    print(f"lookalike serving on {server.address} (data in {config.data_dir})", file=sys.stderr, flush=True)
    server.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lookalike", description="Visual product search.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gRPC search service")
    serve.add_argument("--config", help="TOML file (see lookalike.service.config)")
    serve.add_argument("--address", help="host:port to listen on (default 127.0.0.1:50051)")
    serve.add_argument("--data-dir", help="where the collection and catalog live (default ./lookalike-data)")
    serve.add_argument("--workers", type=int, help="gRPC handler threads")
    serve.set_defaults(run=_serve)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
