"""Where a vector query's time goes inside the server: gRPC, the handler around
the index call, and the index call itself.

An in-process server (vectors only, --n products of --dim, a category and a price
per product, each call's JSON log line written as `lookalike serve` writes it)
is sent --calls vector queries in a row over a real loopback gRPC channel, for
each kind of query (plain k=10, category-filtered, with metadata). The requests
are serialised beforehand and the answers parsed afterwards, so the client does
no protobuf work inside the timing. Reported per kind, medians in microseconds:

* ``e2e``: the client's latency;
* ``index``: StageTimings.search_us, the native index call;
* ``handler_outside_index``: total_us - search_us, the servicer's own work
  (parsing the vector and filter, building the response);
* ``server_outside_index``: median over calls of e2e - (the health check sent
  just before it) - index: what a Search
  costs beyond a trivial gRPC call on the same channel and the index call, i.e.
  the handler's work plus the interceptors (metrics, the call's log line), the
  in-flight limit and the larger messages' (de)serialisation. The health check
  (no interceptor, empty messages) is gRPC's own cost per call on both sides.
* ``cpu_outside_index``: the process's CPU time over a Search minus over the
  health check before it, less the index call (means over the calls): the
  same quantity in CPU time, which waiting for a core on a loaded machine does
  not inflate (client and server share the process; the client's work is the
  same bytes-in, bytes-out call for both).

Then a cProfile of the handler thread (the servicer's method wrapped for this
script only) lists the functions that take the time outside the index.

    python bench/search_hot_path.py                  # 20k x 512, 3000 calls per kind
    python bench/search_hot_path.py --calls 1000 --profile-top 25

Writes bench/results/search_hot_path.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann import log, machine_info  # noqa: E402  (bench/ann.py)
from datasets import ClipLikeSpec, clip_like  # noqa: E402

from lookalike.client import Client, Filter, Product, packed  # noqa: E402
from lookalike.index.collection import SpaceConfig  # noqa: E402
from lookalike.service.config import ServiceConfig  # noqa: E402
from lookalike.service.server import Server  # noqa: E402
from lookalike.v1 import filter_pb2, search_pb2  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CATEGORY = Filter(must=[filter_pb2.Condition(match=filter_pb2.Match(attribute="category", value="c03"))])


KINDS = {"plain": {}, "filtered": {"filter": CATEGORY}, "with_metadata": {"with_metadata": True}}
SEARCH = "/lookalike.v1.SearchService/Search"
CHECK = "/grpc.health.v1.Health/Check"


def measure(channel: grpc.Channel, queries: np.ndarray, calls: int, options: dict) -> dict:
    """Searches of already serialised requests, each right after a health check
    (the machine's load drifts: pairs see the same load); answers are parsed
    after the timing, so the client does no protobuf work inside it."""
    search, check = channel.unary_unary(SEARCH), channel.unary_unary(CHECK)
    requests = [search_pb2.SearchRequest(query=search_pb2.Query(vector=packed(q)), k=10, **options)
                .SerializeToString() for q in queries]
    ping = health_pb2.HealthCheckRequest().SerializeToString()
    e2e, floor, cpu, answers = [], [], [], []
    for i in range(calls):
        c0, t0 = time.process_time(), time.perf_counter()
        check(ping, timeout=10)
        c1, t1 = time.process_time(), time.perf_counter()
        answers.append(search(requests[i % len(requests)], timeout=10))
        c2, t2 = time.process_time(), time.perf_counter()
        floor.append((t1 - t0) * 1e6)
        e2e.append((t2 - t1) * 1e6)
        cpu.append(((c2 - c1) - (c1 - c0)) * 1e6)
    timings = [search_pb2.SearchResponse.FromString(a).timings for a in answers]
    index = [t.search_us for t in timings]
    return {"e2e": statistics.median(e2e), "health_check": statistics.median(floor), "index": statistics.median(index),
            "handler_outside_index": statistics.median(t.total_us - t.search_us for t in timings),
            "server_outside_index": statistics.median(e - f - x for e, f, x in zip(e2e, floor, index)),
            "cpu_outside_index": statistics.mean(cpu) - statistics.mean(index)}


def profile(server: Server, client: Client, queries: np.ndarray, calls: int, top: int) -> str:
    """cProfile of the handler thread over `calls` plain queries."""
    servicer = server._servicer
    original = servicer._search
    profiler = cProfile.Profile()

    def profiled(request, context):
        profiler.enable()
        try:
            return original(request, context)
        finally:
            profiler.disable()

    servicer._search = profiled
    try:
        for i in range(calls):
            client.search(vector=queries[i % len(queries)], k=10)
    finally:
        del servicer._search
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--calls", type=int, default=3000, help="calls per kind of query")
    parser.add_argument("--profile-top", type=int, default=20)
    args = parser.parse_args()

    # As `lookalike serve` does: each call's JSON log line is formatted and written.
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))
    base, queries = clip_like(ClipLikeSpec(n=args.n, dim=args.dim, n_queries=200))
    with tempfile.TemporaryDirectory(prefix="lookalike-hot-path-") as tmp:
        config = ServiceConfig(address="127.0.0.1:0", data_dir=tmp, spaces=(SpaceConfig("clip", args.dim),),
                               schema={"category": "keyword", "price": "numeric"})
        server = Server(config)
        server.start()
        try:
            with Client(server.address, timeout=600) as client:
                log(f"loading {args.n} products")
                client.upsert((Product(id=i, title=f"product {i}", vectors={"clip": packed(v)}, attributes={
                    "category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[f"c{i % 20:02d}"])),
                    "price": search_pb2.AttributeValue(number=float(i % 1000))}) for i, v in enumerate(base)),
                    batch=256)
                with grpc.insecure_channel(server.address) as channel:
                    measure(channel, queries, 300, {})  # warm-up
                    rows = {}
                    for kind, options in KINDS.items():
                        rows[kind] = row = measure(channel, queries, args.calls, options)
                        log(f"{kind:14s} e2e {row['e2e']:6.0f} us, index {row['index']:5.0f} us, handler outside "
                            f"the index {row['handler_outside_index']:5.0f} us, server outside the index "
                            f"{row['server_outside_index']:5.0f} us (a health check: {row['health_check']:.0f} us); "
                            f"CPU outside the index {row['cpu_outside_index']:5.0f} us")
                report = profile(server, client, queries, args.calls, args.profile_top)
        finally:
            server.stop(grace=1)
    print(report)
    result = {"machine": machine_info(), "load_average_1min": os.getloadavg()[0], "n": args.n, "dim": args.dim,
              "calls": args.calls, "kinds": rows, "profile": report}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_hot_path.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
