"""The scaling model's measurements: build and query cost per index kind and size.

For each size (--sizes) and index kind (--kinds) on the CLIP-like data of
datasets.py: build seconds (IVF-PQ: train + add, apart), RAM bytes a vector
(the index's own memory_usage()), and, at the cheapest setting that reaches
recall@10 >= --recall, single-thread batch-1 QPS and per-query latency
percentiles (p50, p99), each query timed on its own. docs/scaling.md turns the
JSON into a projection to 100M products.

Kinds, with the parameters lookalike.index.choose_index gives them:

- ``flat``: exact scan (HnswIndex float32 searched with exact=True; its build
  is the float32 graph's, shared with ``hnsw``);
- ``hnsw``: HNSW float32, M=16; ``hnsw-int8``: int8 codes + float16 re-rank
  copies (the service's default);
- ``ivf_pq``: 4-bit PQ, the float vectors in a memory-mapped file, exact
  re-rank; nlist from choose_index, m from --pq-m (default choose_index's).

    python bench/scaling.py --sizes 20000 --queries 200          # smoke run
    python bench/scaling.py --sizes 100000,1000000 --dim 256 --pq-m 64

Every kind's rows are written to the JSON as soon as they are measured, so an
interrupted run keeps what it finished.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets  # noqa: E402
from ann import log, machine_info, recall_at_k  # noqa: E402

KINDS = ("flat", "hnsw", "hnsw-int8", "ivf_pq")
EFS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# (nprobe, candidates re-ranked), cheapest first.
IVF_POINTS = ((8, 100), (16, 100), (16, 200), (16, 400), (32, 400), (16, 800), (32, 800), (32, 1600),
              (64, 1600), (64, 3200))
K = 10


def timed(search, queries: np.ndarray) -> tuple[np.ndarray, list]:
    """Seconds of each single-thread batch-1 query, and the ids found."""
    seconds = np.empty(len(queries))
    found = []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        found.append(search(q))
        seconds[i] = time.perf_counter() - t
    return seconds, found


def operating_point(searcher, settings, queries, gt, target: float, label: str) -> dict:
    """The first setting (settings go cheapest first) whose recall reaches the
    target, with its latencies re-measured on a second pass (the faster pass
    counts: a burst of load from the machine's other users spoils one pass)."""
    timed(searcher(settings[0]), queries[:50])  # warm-up
    tried = []
    for setting in settings:
        seconds, found = timed(searcher(setting), queries)
        recall = recall_at_k(found, gt)
        tried.append({"setting": setting, "recall": recall, "qps": len(queries) / seconds.sum()})
        log(f"  {label} {setting}: recall@{K} {recall:.4f}, {tried[-1]['qps']:,.0f} QPS")
        if recall >= target:
            again, _ = timed(searcher(setting), queries)
            seconds = again if again.sum() < seconds.sum() else seconds
            ms = 1e3 * seconds
            return {"setting": setting, "recall": recall, "qps": len(queries) / seconds.sum(),
                    "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
                    "mean_ms": float(ms.mean()), "tried": tried}
    return {"setting": None, "recall": max(t["recall"] for t in tried), "tried": tried,
            "note": f"no setting reached recall {target}"}


def run_hnsw(kind: str, base, queries, gt, args, with_flat: bool) -> list[dict]:
    """HNSW rows: the graph at its operating point, and the exact scan of the
    same float32 index when ``with_flat`` (the flat kind keeps that graph)."""
    from lookalike.index import HnswIndex, choose_index
    params = {"M": choose_index(len(base), base.shape[1]).params.get("M", 16)}
    if kind == "hnsw-int8":
        params.update(storage="int8", rerank="float16")
    t = time.perf_counter()
    index = HnswIndex(base.shape[1], "cosine", ef_construction=200, **params)
    index.add(np.arange(len(base)), base, threads=args.threads)
    build = {"build_s": time.perf_counter() - t, "params": params,
             "bytes_per_vector": index.memory_usage()["total_bytes"] / len(base)}
    log(f"{kind} {len(base):,}: built in {build['build_s']:.1f} s, {build['bytes_per_vector']:.0f} B/vector")
    rows = []
    if kind in args.kinds:
        point = operating_point(lambda ef: lambda q: index.search(q, K, ef=ef, threads=1)[0],
                                EFS, queries, gt, args.recall, kind)
        rows.append({"kind": kind, **build, **point, "queries": len(queries)})
    if with_flat:
        few = queries[:args.flat_queries]
        point = operating_point(lambda _: lambda q: index.search(q, K, exact=True, threads=1)[0],
                                ["exact"], few, gt[:len(few)], args.recall, "flat")
        rows.append({"kind": "flat", **build, **point, "queries": len(few)})
    return rows


def run_ivf_pq(base, queries, gt, args) -> list[dict]:
    from lookalike.index import IvfPqIndex
    from lookalike.index.choose import default_nlist, default_pq_m
    # choose_index's IVF-PQ parameters (it picks the kind itself only from 10M on).
    params = {"nlist": default_nlist(len(base)), "m": args.pq_m or default_pq_m(base.shape[1]), "nbits": 4}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        index = IvfPqIndex(base.shape[1], "cosine", vectors_path=Path(tmp) / "vectors.f32", **params)
        t = time.perf_counter()
        index.train(base, threads=args.threads)
        train_s = time.perf_counter() - t
        index.add(np.arange(len(base)), base, threads=args.threads)
        add_s = time.perf_counter() - t - train_s
        row = {"kind": "ivf_pq", "params": params, "train_s": train_s, "add_s": add_s, "build_s": train_s + add_s,
               "bytes_per_vector": index.memory_usage()["total_bytes"] / len(base),
               "vectors_file_bytes_per_vector": 4 * base.shape[1]}
        log(f"ivf_pq {len(base):,}: train {train_s:.1f} s + add {add_s:.1f} s, {row['bytes_per_vector']:.0f} B/vector")
        point = operating_point(
            lambda s: lambda q: index.search(q, K, nprobe=s[0], rerank_k=s[1], threads=1)[0],
            IVF_POINTS, queries, gt, args.recall, "ivf_pq")
        del index
    return [{**row, **point, "queries": len(queries)}]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000", help="comma list of base sizes, run in this order")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--flat-queries", type=int, default=100, help="queries for the exact scan (slow at 1M)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--recall", type=float, default=0.95, help="recall@10 of the operating point")
    ap.add_argument("--pq-m", type=int, default=0, help="PQ sub-spaces (0: choose_index's dim / 8)")
    ap.add_argument("--threads", type=int, default=0, help="build threads (0: every core)")
    ap.add_argument("--tmp", default=None, help="where IVF-PQ's vectors file goes while measured")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "scaling.json")
    args = ap.parse_args(argv)
    kinds = args.kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        ap.error(f"unknown kinds {sorted(unknown)} (known: {', '.join(KINDS)})")
    threads = args.threads or os.cpu_count()
    result = {"machine": machine_info(), "build_threads": threads, "dim": args.dim, "k": K,
              "target_recall": args.recall, "load_average_at_start": os.getloadavg(), "sizes": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n in (int(s) for s in args.sizes.split(",")):
        spec = datasets.ClipLikeSpec(n=n, dim=args.dim, n_queries=args.queries)
        t = time.perf_counter()
        base, queries = datasets.clip_like(spec)
        gt = np.ascontiguousarray(datasets.ground_truth(spec, base, queries, 100)[0][:, :K])
        log(f"{n:,} x {args.dim}: data and ground truth in {time.perf_counter() - t:.1f} s")
        size = {"n": n, "rows": []}
        result["sizes"].append(size)
        runs = []
        if "flat" in kinds or "hnsw" in kinds:  # one float32 graph serves both
            runs.append(lambda: run_hnsw("hnsw", base, queries, gt, args, with_flat="flat" in kinds))
        if "hnsw-int8" in kinds:
            runs.append(lambda: run_hnsw("hnsw-int8", base, queries, gt, args, with_flat=False))
        if "ivf_pq" in kinds:
            runs.append(lambda: run_ivf_pq(base, queries, gt, args))
        for run in runs:
            size["rows"] += run()
            size["load_average_at_end"] = os.getloadavg()
            args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")  # kept if interrupted
            log(f"wrote {args.out}")
        del base, queries
    print("| n | kind | build s | RAM B/vector | setting | recall@10 | QPS (1 thread) | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in result["sizes"]:
        for r in size["rows"]:
            f = lambda key, spec: format(r[key], spec) if r.get(key) is not None else "n/a"  # noqa: E731
            print(f"| {size['n']:,} | {r['kind']} | {f('build_s', '.1f')} | {f('bytes_per_vector', ',.0f')} | "
                  f"{r['setting']} | {r['recall']:.3f} | {f('qps', ',.0f')} | {f('p50_ms', '.2f')} | {f('p99_ms', '.2f')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
