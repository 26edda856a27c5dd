"""The service against the servers a team would run instead: lookalike over gRPC,
Milvus Lite (pymilvus) and Chroma (`chroma run`, HTTP), on one catalog, side by
side in one run (bench/peer_systems.py holds the adapters).

Each system in turn gets the machine alone: its server is started on loopback in
a temporary folder, with HNSW M / ef_construction the same for all (M=16,
efConstruction=200: lookalike's default, inside Milvus' documented ranges,
Chroma's max_neighbors default) and fed the catalog (seeded CLIP-like clustered
vectors, bench/datasets.py, with a category, a price and an in-stock flag) by
--writers threads in batches of --batch. Then, per system:

* ingest rate (products acknowledged / s), the time from the first write until
  everything ingested is searchable (probes: the newest products and a sample,
  each searched by its own vector until it is its own top hit), and until
  everything is in the system's HNSW index. An acknowledgement does not mean
  the same everywhere: lookalike acknowledges a product once it is in its
  write-ahead log, fsynced, and in the graph (the default); lookalike-logged
  (the same server, Upsert's ACKNOWLEDGE_LOGGED) once it is in the fsynced log
  and has passed every check, the graph insert following in log order, so its
  time until indexed is when Stats reports no unindexed product; Milvus Lite 3.2 once it is in a
  memtable and a log it does not fsync per write (its WAL's default sync mode
  fsyncs when the log is closed), searched by brute force until a flush writes
  a segment and a background worker builds its HNSW (the bench flushes after
  the load, as Milvus documents, and watches for each segment's index file).
  The rate to compare is products / s until indexed; Chroma's is not known to
  the bench;
* recall@10 against exact search, unfiltered and filtered (one category of 20
  and a price below the middle of its range: ~2.5% of the catalog), for each
  ef_search of --efs in turn until one reaches --target-recall on both, which
  is used for the load (comparable recall), else the largest;
* the highest open-loop rate whose p99 stays under --p99-ms with no failures,
  unfiltered and filtered, from --processes client processes (bench/open_loop.py);
* the server's resident memory (its process and children) after all that.

    python bench/service_peers.py --quick    # 10k x 512, 2-3 minutes on 2 cores
    python bench/service_peers.py            # 100k x 512, about 15 minutes on 2 cores
    python bench/service_peers.py --systems lookalike,chroma

A system that does not install or start is skipped with the reason printed.
Writes a table to stdout and bench/results/service_peers.{json,png}.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import open_loop  # noqa: E402  (bench/open_loop.py)
from ann import log, machine_info  # noqa: E402  (bench/ann.py)
from datasets import ClipLikeSpec, clip_like, ground_truth  # noqa: E402
from peer_systems import SYSTEMS, Catalog, Hnsw, exact_ids, filters_for, open_searcher  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
K = 10


def recall(found: list[np.ndarray], truth: list[np.ndarray]) -> float:
    """Mean share of each query's true top-k found (a query with fewer than k
    matches counts against what it has)."""
    return float(np.mean([len(np.intersect1d(f, t)) / max(len(t), 1) for f, t in zip(found, truth)]))


def timed(searcher, queries: np.ndarray, where: list) -> tuple[list[np.ndarray], float]:
    """The answers of the queries made one by one, and the median time of one, ms."""
    answers, times = [], []
    for q, w in zip(queries, where):
        t = time.perf_counter()
        answers.append(searcher.search(q, K, w))
        times.append(time.perf_counter() - t)
    return answers, float(np.median(times)) * 1e3


def wait_searchable(searcher, catalog: Catalog, probes: np.ndarray, seconds: float) -> bool:
    """Until each probe product is its own top hit (bounded by ``seconds``)."""
    deadline = time.monotonic() + seconds
    pending = list(probes)
    while pending and time.monotonic() < deadline:
        pending = [i for i in pending if searcher.search(catalog.vectors[i], 1, None)[:1].tolist() != [i]]
        if pending:
            time.sleep(0.05)
    return not pending


def measure(system, catalog: Catalog, queries: np.ndarray, truth: dict, args) -> dict:
    """Everything this bench reports of one system (see the module's docstring)."""
    where = filters_for(len(queries))
    with tempfile.TemporaryDirectory(prefix=f"service-peers-{system.name}-") as tmp:
        started = time.perf_counter()
        system.start(Path(tmp), catalog.vectors.shape[1])
        result = {"system": system.name, "start_s": time.perf_counter() - started}
        try:
            step = max(len(catalog) // 10, 1)
            last = [0]

            def progress(done: int) -> None:
                if done // step > last[0]:
                    last[0] = done // step
                    log(f"  {system.name}: {done}/{len(catalog)} ingested")

            started = time.perf_counter()
            system.ingest(catalog, args.batch, progress)
            acked = time.perf_counter() - started
            indexed = system.wait_indexed(len(catalog), 0)  # True here: it indexes before it acknowledges
            indexed_s = time.perf_counter() - started if indexed else None
            system.settle()
            searcher = open_searcher(system.spec())
            rng = np.random.default_rng(3)
            probes = np.concatenate([np.arange(len(catalog) - 10, len(catalog)), rng.integers(0, len(catalog), 20)])
            found = wait_searchable(searcher, catalog, probes, args.searchable_timeout)
            searcher.close()
            result.update(ingest_per_s=len(catalog) / acked, ingest_s=acked,
                          searchable_s=time.perf_counter() - started if found else None)
            if indexed is False and system.wait_indexed(len(catalog), args.searchable_timeout):
                indexed_s = time.perf_counter() - started
            result["indexed_s"] = indexed_s
            result["indexed_per_s"] = len(catalog) / result["indexed_s"] if result["indexed_s"] else None
            log(f"  {system.name}: {len(catalog) / acked:.0f} products/s acknowledged, all searchable after "
                f"{result['searchable_s'] or float('nan'):.1f} s, all in the HNSW index after "
                f"{result['indexed_s'] or float('nan'):.1f} s")

            sweep = []
            for ef in args.efs:
                searcher = open_searcher(system.spec(ef=ef))
                plain, plain_ms = timed(searcher, queries, [None] * len(queries))
                filtered, filtered_ms = timed(searcher, queries, where)
                searcher.close()
                sweep.append({"ef": ef, "recall": recall(plain, truth["plain"]),
                              "recall_filtered": recall(filtered, truth["filtered"]),
                              "median_ms_plain": plain_ms, "median_ms_filtered": filtered_ms})
                log(f"  {system.name}: ef {ef}: recall@10 {sweep[-1]['recall']:.3f}, "
                    f"filtered {sweep[-1]['recall_filtered']:.3f}")
                if min(sweep[-1]["recall"], sweep[-1]["recall_filtered"]) >= args.target_recall:
                    break  # the smallest ef that reaches the target: larger ones are not needed
            chosen = next((s for s in sweep if min(s["recall"], s["recall_filtered"]) >= args.target_recall),
                          sweep[-1])
            result.update(sweep=sweep, ef=chosen["ef"], recall=chosen["recall"],
                          recall_filtered=chosen["recall_filtered"])

            spec = system.spec(ef=chosen["ef"])
            base = open_loop.Load(rate=1.0, seconds=args.seconds, processes=args.processes, threads=args.threads)
            for label, filters in (("plain", [None]), ("filtered", where)):
                serial_ms = chosen[f"median_ms_{label}"]
                if serial_ms >= args.p99_ms:  # a p99 under load is no lower than the median of lone calls
                    log(f"  {system.name}: {label} calls take {serial_ms:.1f} ms one by one: no rate meets "
                        f"p99 < {args.p99_ms} ms")
                    best, runs = None, []
                else:
                    # The ramp starts at half of what one caller does in a row: near the
                    # answer for every system, so the steps go to narrowing it down.
                    log(f"  {system.name}: highest rate at p99 < {args.p99_ms} ms, {label}")
                    best, runs = open_loop.highest_rate(spec, queries, K, filters, base, args.p99_ms,
                                                        start=float(np.clip(0.5e3 / serial_ms, 1.0, args.max_rate)),
                                                        most=args.max_rate, steps=args.steps, log=log)
                result[f"rate_{label}"] = best.rate if best else 0.0
                result[f"p99_ms_{label}"] = best.p99_ms if best else None
                result[f"runs_{label}"] = [r.__dict__ for r in runs]
            result["rss_mb"] = system.rss() / 2**20
        finally:
            system.stop()
    return result


def table(results: list[dict]) -> str:
    lines = ["| system | ingest /s (acks) | searchable after s | indexed after s (/s) | ef | recall@10 | "
             "filtered recall@10 | rate at p99<10ms | filtered rate | RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        searchable = f"{r['searchable_s']:.1f}" if r.get("searchable_s") is not None else "never"
        indexed = (f"{r['indexed_s']:.1f} ({r['indexed_per_s']:.0f})" if r.get("indexed_s") is not None
                   else "not known")
        lines.append(f"| {r['system']} | {r['ingest_per_s']:.0f} | {searchable} | {indexed} | {r['ef']} | {r['recall']:.3f} | "
                     f"{r['recall_filtered']:.3f} | {r['rate_plain']:.0f} | {r['rate_filtered']:.0f} | "
                     f"{r['rss_mb']:.0f} |")
    return "\n".join(lines)


def plot(results: list[dict], p99_ms: float, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot")
        return
    fig, (curves, bars) = plt.subplots(1, 2, figsize=(13, 5))
    for r in results:
        for label, style in (("plain", "-o"), ("filtered", "--s")):
            runs = sorted(r[f"runs_{label}"], key=lambda run: run["rate"])
            curves.plot([run["rate"] for run in runs], [min(run["p99_ms"], 1e3) for run in runs], style,
                        label=f"{r['system']} {label}")
    curves.axhline(p99_ms, color="grey", lw=0.8)
    curves.set(xscale="log", yscale="log", xlabel="offered rate, queries/s", ylabel="p99 latency, ms",
               title="open loop, k=10")
    curves.legend(fontsize=8)
    x = np.arange(len(results))
    bars.bar(x - 0.2, [r["rate_plain"] for r in results], 0.4, label="unfiltered")
    bars.bar(x + 0.2, [r["rate_filtered"] for r in results], 0.4, label="category + price")
    bars.set_xticks(x, [f"{r['system']}\nrecall {r['recall']:.2f}/{r['recall_filtered']:.2f}" for r in results])
    bars.set(ylabel=f"highest rate at p99 < {p99_ms:g} ms, queries/s", title="sustained rate")
    bars.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10k products, 100 queries, short load steps")
    parser.add_argument("--n", type=int, default=100_000, help="products in the catalog")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200, help="queries for recall (and cycled under load)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--M", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--efs", default="32,64,128,256", help="ef_search values of the recall sweep")
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--batch", type=int, default=256, help="products per write call")
    parser.add_argument("--writers", type=int, default=2, help="threads writing at once")
    parser.add_argument("--searchable-timeout", type=float, default=600.0)
    parser.add_argument("--p99-ms", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=3, help="client processes under load")
    parser.add_argument("--threads", type=int, default=8, help="calls in flight per client process")
    parser.add_argument("--seconds", type=float, default=5.0, help="per load step")
    parser.add_argument("--steps", type=int, default=9, help="load steps per ramp")
    parser.add_argument("--max-rate", type=float, default=20_000.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries, args.seconds, args.steps, args.efs = 10_000, 100, 2.0, 5, "32,64,128"
    args.efs = [int(e) for e in args.efs.split(",")]

    spec = ClipLikeSpec(n=args.n, dim=args.dim, n_queries=args.queries)
    log(f"catalog: {args.n} x {args.dim}, {args.queries} queries")
    base, queries = clip_like(spec)
    catalog = Catalog.of(base)
    plain_ids, _ = ground_truth(spec, base, queries, K)
    truth = {"plain": list(plain_ids), "filtered": exact_ids(catalog, queries, K, filters_for(len(queries)))}
    hnsw = Hnsw(M=args.M, ef_construction=args.ef_construction)

    results, skipped = [], {}
    for name in args.systems.split(","):
        if name not in SYSTEMS:
            parser.error(f"--systems: unknown system {name!r}; known: {', '.join(SYSTEMS)}")
        log(f"{name}:")
        try:
            results.append(measure(SYSTEMS[name](hnsw, writers=args.writers), catalog, queries, truth, args))
        except Exception as e:  # a peer that does not install or start is skipped, loudly
            skipped[name] = f"{type(e).__name__}: {e}"
            print(f"SKIPPED {name}: {skipped[name]}", file=sys.stderr)
            traceback.print_exc()
    if not results:
        return 1
    print(table(results))
    for name, reason in skipped.items():
        print(f"\nskipped {name}: {reason}")
    versions = {}
    for package in ("pymilvus", "milvus-lite", "chromadb", "grpcio"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "service_peers.json").write_text(json.dumps(
        {"machine": {**machine_info(), "load_average_1min_at_end": os.getloadavg()[0]}, "versions": versions,
         "settings": settings, "results": results, "skipped": skipped}, indent=2) + "\n")
    plot(results, args.p99_ms, args.out / "service_peers.png")
    log(f"results in {args.out}/service_peers.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
