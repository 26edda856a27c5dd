"""Where a vector query's time goes inside the server: gRPC, the handler around
the index call, and the index call itself.

An in-process server (vectors only, --n products of --dim, a category and a price
per product) is asked --calls vector queries in a row by one caller over a real
loopback gRPC channel, for each kind of query (plain k=10, category-filtered,
with metadata). Per call it reads the client's latency and the server's
StageTimings; a health check on the same channel gives the cost of a trivial
gRPC call (the floor). Reported per kind, medians in microseconds:

* ``e2e``: the client's latency;
* ``index``: StageTimings.search_us, the native index call;
* ``handler_outside_index``: total_us - search_us, the handler's own work
  (parsing the vector and filter, pinning, building the response);
* ``server_outside_index``: e2e - floor - search_us + the floor's own server
  time being ~0: what a Search costs beyond a trivial call and the index, i.e.
  the handler's work plus interceptors, metrics, the call's log line and the
  larger messages' (de)serialisation.

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
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

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


def measure(client: Client, queries: np.ndarray, calls: int, options: dict) -> dict[str, float]:
    e2e, index, handler = [], [], []
    for i in range(calls):
        t = time.perf_counter()
        response = client.search(vector=queries[i % len(queries)], k=10, **options)
        e2e.append((time.perf_counter() - t) * 1e6)
        index.append(response.timings.search_us)
        handler.append(response.timings.total_us - response.timings.search_us)
    return {"e2e": statistics.median(e2e), "index": statistics.median(index),
            "handler_outside_index": statistics.median(handler)}


def floor(address: str, calls: int) -> float:
    """The median latency of a health check: a trivial call over the same kind of channel."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest()
        stub.Check(request, timeout=10)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            stub.Check(request, timeout=10)
            times.append((time.perf_counter() - t) * 1e6)
    return statistics.median(times)


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
                measure(client, queries, 300, {})  # warm-up
                floor_us = floor(server.address, args.calls)
                rows = {}
                for kind, options in KINDS.items():
                    row = measure(client, queries, args.calls, options)
                    row["server_outside_index"] = row["e2e"] - floor_us - row["index"]
                    rows[kind] = row
                    log(f"{kind:14s} e2e {row['e2e']:6.0f} us, index {row['index']:5.0f} us, handler outside "
                        f"the index {row['handler_outside_index']:5.0f} us, server outside the index "
                        f"{row['server_outside_index']:5.0f} us (floor {floor_us:.0f} us)")
                report = profile(server, client, queries, args.calls, args.profile_top)
        finally:
            server.stop(grace=1)
    print(report)
    result = {"machine": machine_info(), "load_average_1min": os.getloadavg()[0], "n": args.n, "dim": args.dim,
              "calls": args.calls, "floor_us": floor_us, "kinds": rows, "profile": report}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "search_hot_path.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
