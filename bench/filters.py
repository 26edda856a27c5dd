"""Filtered search: our planner vs hnswlib's filter, faiss with an IDSelector and usearch.

Realistic attributes on the CLIP-like set (bench/datasets.py): a two-level category
tree whose leaves follow the embedding clusters and are Zipf-like in size, log-normal
prices, 90% in stock. Filters of about 50%, 10%, 1%, 0.1% and 0.01% selectivity are
built from them ("in stock under $X", "in stock in <category> under $X", ...). For
each library and filter: recall@k against the exact filtered answer, and single-thread
batch-1 QPS; plus each library's unfiltered QPS at the same ef.

    python bench/filters.py --quick     # 20k x 128, 200 queries, a couple of minutes
    python bench/filters.py             # 200k x 512, 300 queries
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets  # noqa: E402  (bench/datasets.py)
from ann import log, machine_info, recall_at_k  # noqa: E402  (bench/ann.py)

SELECTIVITIES = (0.5, 0.1, 0.01, 0.001, 0.0001)
LIBS = ("lookalike", "hnswlib", "faiss-hnsw", "usearch-postfilter")
GOAL_RECALL, GOAL_QPS_SHARE = 0.95, 0.5  # recall at every selectivity; QPS at 1% vs unfiltered


# ----------------------------------------------------------------------------- attributes
def make_attributes(base: np.ndarray, seed: int) -> dict:
    """Category tree (8 parents x 8 leaves), prices and stock for every base vector.

    A product's leaf is, 3 times in 4, the leaf of its nearest anchor (64 base vectors
    drawn at random), so categories follow the embedding's Zipf-sized clusters; else a
    Zipf-random leaf. Prices are log-normal (median ~$30) with a per-parent level."""
    rng = np.random.default_rng([seed, 77])
    n, leaves = len(base), 64
    anchors = base[rng.choice(n, leaves, replace=False)]
    nearest = np.concatenate([np.argmax(base[i:i + 65536] @ anchors.T, axis=1) for i in range(0, n, 65536)])
    zipf = 1.0 / np.arange(1, leaves + 1) ** 1.1
    leaf = np.where(rng.random(n) < 0.75, nearest, rng.choice(leaves, n, p=zipf / zipf.sum()))
    parent = leaf // 8
    price = np.round(rng.lognormal(3.4, 0.9, n) * np.exp(rng.normal(0, 0.3, 8))[parent], 2)
    return {"leaf": leaf, "parent": parent, "price": price, "in_stock": rng.random(n) < 0.9}


def make_filters(attrs: dict, n: int) -> list[dict]:
    """One filter per target selectivity: in stock, in the narrowest category that still
    holds twice the target (none for broad targets), under the price that hits it."""
    from lookalike.index import Is, Match, Must, Range

    stock = attrs["in_stock"]
    groups = [("", np.ones(n, bool))]
    groups += [(f"p{p}", attrs["parent"] == p) for p in range(8)]
    groups += [(f"p{leaf // 8}/c{leaf}", attrs["leaf"] == leaf) for leaf in range(64)]
    out = []
    for target in SELECTIVITIES:
        want = max(1, round(target * n))
        fits = [(int((m & stock).sum()), name, m) for name, m in groups if (m & stock).sum() >= 2 * want]
        size, name, mask = min(fits, key=lambda f: f[0]) if fits else (n, "", np.ones(n, bool))
        prices = np.sort(attrs["price"][mask & stock])
        cut = float(prices[min(want, len(prices) - 1)])
        clauses = [Is("in_stock", True), Range("price", lt=cut)] + ([Match("category", name)] if name else [])
        allowed = mask & stock & (attrs["price"] < cut)
        out.append({"target": target, "clause": Must(*clauses), "mask": allowed,
                    "description": f"in stock{' in ' + name if name else ''} under ${cut:.2f}",
                    "selectivity": float(allowed.mean())})
    return out


def filtered_truth(base, queries, mask, k) -> np.ndarray:
    """Exact top-k among the allowed rows (ids = row numbers)."""
    rows = np.flatnonzero(mask)
    ids, _ = datasets.exact_topk(base[rows], queries, min(k, len(rows)))
    return rows[ids]


# ----------------------------------------------------------------------------- libraries
def build(lib: str, base, attrs, args):
    """An index of `base` and a function (ef, filter) -> (query -> ids)."""
    n, dim = base.shape
    ids = np.arange(n, dtype=np.int64)
    if lib == "lookalike":
        from lookalike.index import AttributeStore, HnswIndex
        index = HnswIndex(dim, "cosine", M=args.M, ef_construction=args.ef_construction)
        index.add(ids, base, threads=args.threads)
        store = AttributeStore({"category": "keyword", "price": "numeric", "in_stock": "bool"})
        store.set(ids, {"category": [[f"p{p}", f"p{p}/c{c}"] for p, c in zip(attrs["parent"], attrs["leaf"])],
                        "price": attrs["price"], "in_stock": attrs["in_stock"]})

        def searcher(ef, flt):
            if flt is None:
                return lambda q: index.search(q, args.k, ef=ef).ids
            # The filter is compiled per query, as a service would.
            return lambda q: index.search(q, args.k, ef=ef, filter=store.compile(flt["clause"])).ids

        def plan_of(ef, flt, q):
            return index.search(q, args.k, ef=ef, filter=store.compile(flt["clause"]), return_stats=True).stats.plan
        return searcher, plan_of
    if lib == "hnswlib":
        import hnswlib
        index = hnswlib.Index(space="cosine", dim=dim)
        index.init_index(max_elements=n, M=args.M, ef_construction=args.ef_construction, random_seed=100)
        index.set_num_threads(args.threads)
        index.add_items(base, ids)
        index.set_num_threads(1)

        def searcher(ef, flt):
            index.set_ef(ef)
            if flt is None:
                return lambda q: index.knn_query(q, k=args.k, num_threads=1)[0][0]
            allowed = flt["mask"].tolist().__getitem__  # a Python callable per visited node: hnswlib's API
            k = min(args.k, int(flt["mask"].sum()))  # hnswlib raises when it finds fewer than k
            return lambda q: index.knn_query(q, k=k, num_threads=1, filter=allowed)[0][0]
        return searcher, None
    if lib == "faiss-hnsw":
        import faiss
        faiss.omp_set_num_threads(args.threads)
        index = faiss.IndexHNSWFlat(dim, args.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = args.ef_construction
        index.add(base)
        faiss.omp_set_num_threads(1)

        def searcher(ef, flt):
            if flt is None:
                params = faiss.SearchParametersHNSW(efSearch=ef)
            else:
                bits = np.packbits(flt["mask"], bitorder="little")
                sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
                params = faiss.SearchParametersHNSW(efSearch=ef, sel=sel)
                # The selector reads `bits`, and params holds `sel` unowned: the closure keeps both alive.
                return lambda q, keep=(bits, sel): index.search(q[None], args.k, params=params)[1][0]
            return lambda q: index.search(q[None], args.k, params=params)[1][0]
        return searcher, None
    if lib == "usearch-postfilter":
        from usearch.index import Index
        index = Index(ndim=dim, metric="cos", dtype="f32", connectivity=args.M, expansion_add=args.ef_construction)
        index.add(ids.astype(np.uint64), base, threads=args.threads)

        def searcher(ef, flt):
            index.expansion_search = ef
            if flt is None:
                return lambda q: index.search(q, args.k, threads=1).keys
            # usearch's Python API has no filtered search: ask for k / selectivity
            # (at most 4096) and keep the allowed ones.
            mask, count = flt["mask"], min(4096, math.ceil(args.k / max(flt["selectivity"], 1e-9)))

            def post_filter(q):
                keys = index.search(q, count, threads=1).keys.astype(np.int64)
                return keys[mask[keys]][:args.k]
            return post_filter
        return searcher, None
    raise ValueError(lib)


def measure(search, queries, gt, max_seconds: float) -> dict:
    """Recall and single-thread QPS over the queries, stopping early after max_seconds."""
    search(queries[0])  # warm-up
    found, t0 = [], time.perf_counter()
    for q in queries:
        found.append(search(q))
        if time.perf_counter() - t0 > max_seconds and len(found) >= 20:
            break
    dt = time.perf_counter() - t0
    return {"recall": recall_at_k(found, gt[:len(found)]), "qps": len(found) / dt, "queries": len(found)}


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int)
    ap.add_argument("--dim", type=int)
    ap.add_argument("--queries", type=int)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--M", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", type=int, default=64, help="search ef for every library (ours raises it when filtering)")
    ap.add_argument("--libs", default=",".join(LIBS), help=f"comma list of {', '.join(LIBS)}")
    ap.add_argument("--threads", type=int, default=0, help="build threads (0: every core)")
    ap.add_argument("--max-seconds", type=float, default=30.0, help="per library and filter")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20k x 128, 200 queries")
    args = ap.parse_args(argv)
    for name, (small, full) in {"n": (20_000, 200_000), "dim": (128, 512), "queries": (200, 300)}.items():
        if getattr(args, name) is None:
            setattr(args, name, small if args.quick else full)
    import os
    args.threads = args.threads or os.cpu_count()
    args.libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(args.libs) - set(LIBS)
    if unknown:
        ap.error(f"unknown --libs {sorted(unknown)}; choose from {', '.join(LIBS)}")
    return args


def render(result: dict) -> str:
    p, m = result["params"], result["machine"]
    head = ["library", "unfiltered QPS"] + [f"{f['target']:.2%} rec / QPS" for f in result["filters"]] + [
        "QPS@1% / unfiltered"]
    body = []
    for r in result["rows"]:
        if "skipped" in r:
            body.append([r["lib"], f"skipped: {r['skipped']}"] + [""] * (len(head) - 2))
            continue
        cells = [r["lib"], f"{r['unfiltered']['qps']:,.0f}"]
        cells += [f"{c['recall']:.3f} / {c['qps']:,.0f}" for c in r["filtered"]]
        one = next(c for f, c in zip(result["filters"], r["filtered"]) if f["target"] == 0.01)
        cells.append(f"{one['qps'] / r['unfiltered']['qps']:.2f}")
        body.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    out = [f"Filtered search: CLIP-like n={p['n']:,} dim={p['dim']} queries={p['queries']} k={p['k']} "
           f"M={p['M']} efC={p['ef_construction']} ef={p['ef']}",
           f"machine: {m['cpu']}, {m['cores']} cores; build {p['threads']} threads, queries 1 thread batch 1",
           "filters: " + "; ".join(f"{f['target']:.2%}: {f['description']} (actual {f['selectivity']:.3%})"
                                   for f in result["filters"]), "", line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    ours = next((r for r in result["rows"] if r["lib"] == "lookalike" and "filtered" in r), None)
    if ours:
        plans = ", ".join(f"{f['target']:.2%}: {pl}" for f, pl in zip(result["filters"], ours["plans"]))
        out.append(f"\nour plans: {plans}")
        worst = min(c["recall"] for c in ours["filtered"])
        share = next(c for f, c in zip(result["filters"], ours["filtered"]) if f["target"] == 0.01)["qps"] / \
            ours["unfiltered"]["qps"]
        verdict = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
        out.append(f"target: recall@{p['k']} >= {GOAL_RECALL} at every selectivity -> {worst:.3f} "
                   f"{verdict(worst >= GOAL_RECALL)}; QPS at 1% >= {GOAL_QPS_SHARE} x unfiltered -> "
                   f"{share:.2f} {verdict(share >= GOAL_QPS_SHARE)}")
    out.append("usearch-postfilter: usearch's Python API (this version) has no filtered search; the row asks "
               "for k / selectivity results (at most 4096) and drops those the filter rejects.")
    return "\n".join(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    spec = datasets.ClipLikeSpec(n=args.n, dim=args.dim, n_queries=args.queries, seed=args.seed)
    log(f"generating CLIP-like data {args.n:,} x {args.dim} (+{args.queries} queries) and attributes")
    base, queries = datasets.clip_like(spec)
    attrs = make_attributes(base, args.seed)
    filters = make_filters(attrs, args.n)
    gt_all, _ = datasets.ground_truth(spec, base, queries, max(args.k, 100))
    gt_all = gt_all[:, :args.k]
    for f in filters:
        f["gt"] = filtered_truth(base, queries, f["mask"], args.k)
        log(f"filter {f['target']:.2%}: {f['description']}: {f['mask'].sum():,} match ({f['selectivity']:.3%})")

    rows = []
    for lib in args.libs:
        log(f"{lib}: building {args.n:,} x {args.dim} with {args.threads} threads")
        t0 = time.perf_counter()
        try:
            searcher, plan_of = build(lib, base, attrs, args)
        except ImportError as e:
            rows.append({"lib": lib, "skipped": f"import failed: {e}"})
            continue
        row = {"lib": lib, "build_s": time.perf_counter() - t0}
        log(f"{lib}: built in {row['build_s']:.0f}s")
        row["unfiltered"] = measure(searcher(args.ef, None), queries, gt_all, args.max_seconds)
        log(f"{lib} unfiltered: recall {row['unfiltered']['recall']:.3f}, {row['unfiltered']['qps']:,.0f} QPS")
        row["filtered"] = []
        for f in filters:
            cell = measure(searcher(args.ef, f), queries, f["gt"], args.max_seconds)
            row["filtered"].append(cell)
            log(f"{lib} {f['target']:.2%}: recall {cell['recall']:.3f}, {cell['qps']:,.0f} QPS ({cell['queries']} queries)")
        if plan_of:
            row["plans"] = [plan_of(args.ef, f, queries[0]) for f in filters]
        rows.append(row)
        del searcher, plan_of

    params = {k: v for k, v in vars(args).items() if k not in ("out",)}
    result = {"params": params, "machine": machine_info(), "rows": rows,
              "filters": [{k: v for k, v in f.items() if k not in ("mask", "gt", "clause")} |
                          {"clause": f["clause"].to_dict()} for f in filters],
              "wall_s": time.perf_counter() - t_start}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"filters_{args.n}x{args.dim}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"\nwall {result['wall_s'] / 60:.1f} min; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
