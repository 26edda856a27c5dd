"""The `lookalike` command.

    lookalike serve  [--config lookalike.toml] [--address HOST:PORT] [--data-dir DIR]
    lookalike ingest FOLDER_OR_MANIFEST.jsonl [--address HOST:PORT]
    lookalike search [--image PATH] [--text WORDS] [--product-id ID] [--filter JSON] [-k 10]

Clients read the API key from LOOKALIKE_API_KEY when the server asks for one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

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


def _client(args: argparse.Namespace):
    from lookalike.client import Client

    return Client(args.address, api_key=os.environ.get("LOOKALIKE_API_KEY"), timeout=args.timeout)


def _ingest(args: argparse.Namespace) -> int:
    from lookalike.ingest import ingest

    source = Path(args.source)
    if not source.exists():
        print(f"lookalike ingest: {source} does not exist", file=sys.stderr)
        return 2
    with _client(args) as client:
        try:
            stored, failed = ingest(client, source, batch=args.batch)
        except ValueError as e:  # a broken manifest line: named, with what was stored before it
            print(f"\nlookalike ingest: {e}", file=sys.stderr)
            return 2
    for result in failed[:20]:
        print(f"product {result.id}: {result.error}", file=sys.stderr)
    print(f"{stored} products stored, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


def _search(args: argparse.Namespace) -> int:
    from google.protobuf import json_format

    from lookalike.client import Filter

    query: dict = {}
    if args.image:
        query["image"] = Path(args.image).read_bytes()
    if args.text:
        query["text"] = args.text
    if args.product_id is not None:
        query["product_id"] = args.product_id
    if not query:
        print("lookalike search: give --image, --text (or both) or --product-id", file=sys.stderr)
        return 2
    # The filter in the API's JSON form, e.g. '{"must": [{"match": {"attribute": "category", "value": "dresses"}}]}'
    flt = json_format.Parse(args.filter, Filter()) if args.filter else None
    with _client(args) as client:
        reply = client.search(k=args.k, using=args.using, filter=flt, with_metadata=True, **query)
    print(f"{'rank':>4}  {'id':>10}  {'score':>7}  title")
    for rank, hit in enumerate(reply.hits, 1):
        print(f"{rank:>4}  {hit.id:>10}  {hit.score:7.4f}  {hit.metadata.title}")
    t = reply.timings
    print(f"plan {reply.plan.plan}; encode {t.encode_us / 1e3:.1f} ms, search {t.search_us / 1e3:.2f} ms, "
          f"total {t.total_us / 1e3:.1f} ms", file=sys.stderr)
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

    for name, run, help_ in (("ingest", _ingest, "send a folder of images or a JSONL manifest to a server"),
                             ("search", _search, "query a server and print the hits")):
        command = commands.add_parser(name, help=help_)
        command.add_argument("--address", default="127.0.0.1:50051")
        command.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
        command.set_defaults(run=run)
        if name == "ingest":
            command.add_argument("source", help="a folder of images, or a .jsonl manifest (see lookalike.ingest)")
            command.add_argument("--batch", type=int, default=64, help="products per message")
        else:
            command.add_argument("--image", help="a photo to search with")
            command.add_argument("--text", help="words to search with (with --image: a hybrid query)")
            command.add_argument("--product-id", type=int, help="more like this product")
            command.add_argument("--filter", help="a filter in the API's JSON form")
            command.add_argument("--using", default="", help="the vector space (default: the server's)")
            command.add_argument("-k", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
