"""Our HNSW vs hnswlib, faiss IndexHNSWFlat and usearch on one seeded CLIP-like data set.

For each configuration: build with all threads (timed), measure bytes per vector, then
sweep ef with single-thread batch-1 queries (a Python loop, one query per call) and
report QPS at recall@k = 0.90 / 0.95 / 0.99, linearly interpolated between the two
sweep points that bracket each target.

    python bench/ann.py                 # 200k x 512, all libraries available
    python bench/ann.py --quick         # 20k x 128 smoke run
    python bench/ann.py --libs hnswlib,faiss-hnsw --M 16
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import multiprocessing as mp
import os
import platform
import resource
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets  # noqa: E402  (bench/datasets.py)

TARGETS = (0.90, 0.95, 0.99)
GOAL_RECALL = 0.95
GOAL_QPS_RATIO = 1.2
DEFAULT_EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
STOP_RECALL = 0.999  # larger ef values add nothing to the table once this is reached
OURS = ("lookalike-f32", "lookalike-f16", "lookalike-int8", "lookalike-int8-f16")
DEFAULT_CONFIGS = (
    ("lookalike-f32", 16), ("lookalike-f32", 32), ("lookalike-f16", 16), ("lookalike-int8", 16),
    ("lookalike-int8-f16", 16), ("lookalike-int8-f16", 32),
    ("hnswlib", 16), ("hnswlib", 32), ("faiss-hnsw", 16), ("faiss-hnsw", 32), ("usearch", 16),
)
MEMORY_METHOD = (
    "B/vec = size of the index as written by the library's own save call / n (one method for "
    "every library; includes the vectors). RSS/vec = growth of process RSS across the build, "
    "free heap trimmed before and after, / n. self/vec = the library's own accounting "
    "(ours: memory_usage()['total_bytes']; usearch: memory_usage, which counts reserved capacity).")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- adapters
@dataclass
class Built:
    """What every adapter hands back: a ready index, measured, and a way to query it."""
    build_s: float
    file_bytes: int
    self_bytes: int | None
    searcher: Callable[[int], Callable[[np.ndarray], np.ndarray]]  # ef -> (query -> ids)
    index: object  # kept only so the runner controls when it is freed


def saved_size(save: Callable[[str], None]) -> int:
    """Bytes written by `save(path)` (a file or a directory)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index"
        save(str(path))
        if path.is_dir():
            return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return path.stat().st_size


def build_lookalike(base, M, efc, k, threads, storage, rerank) -> Built:
    from lookalike.index import HnswIndex
    t0 = time.perf_counter()
    idx = HnswIndex(dim=base.shape[1], metric="cosine", M=M, ef_construction=efc,
                    storage=storage, rerank=rerank)
    idx.add(np.arange(len(base), dtype=np.int64), base)
    build_s = time.perf_counter() - t0
    assert len(idx) == len(base)

    def searcher(ef):
        return lambda q: idx.search(q, k=k, ef=ef)[0]
    return Built(build_s, saved_size(idx.save), int(idx.memory_usage()["total_bytes"]),
                 searcher, idx)


def build_hnswlib(base, M, efc, k, threads) -> Built:
    import hnswlib
    t0 = time.perf_counter()
    idx = hnswlib.Index(space="cosine", dim=base.shape[1])
    idx.init_index(max_elements=len(base), M=M, ef_construction=efc, random_seed=100)
    idx.set_num_threads(threads)
    idx.add_items(base, np.arange(len(base)))
    build_s = time.perf_counter() - t0
    idx.set_num_threads(1)

    def searcher(ef):
        idx.set_ef(ef)
        return lambda q: idx.knn_query(q, k=k, num_threads=1)[0][0]
    return Built(build_s, saved_size(idx.save_index), None, searcher, idx)


def build_faiss(base, M, efc, k, threads) -> Built:
    import faiss
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    idx = faiss.IndexHNSWFlat(base.shape[1], M, faiss.METRIC_INNER_PRODUCT)
    idx.hnsw.efConstruction = efc
    idx.add(base)
    build_s = time.perf_counter() - t0
    faiss.omp_set_num_threads(1)

    def searcher(ef):
        params = faiss.SearchParametersHNSW(efSearch=ef)
        return lambda q: idx.search(q[None], k, params=params)[1][0]
    return Built(build_s, saved_size(lambda p: faiss.write_index(idx, p)), None, searcher, idx)


def build_usearch(base, M, efc, k, threads) -> Built:
    from usearch.index import Index
    t0 = time.perf_counter()
    idx = Index(ndim=base.shape[1], metric="cos", dtype="f32", connectivity=M, expansion_add=efc)
    idx.add(np.arange(len(base), dtype=np.uint64), base, threads=threads)
    build_s = time.perf_counter() - t0

    def searcher(ef):
        idx.expansion_search = ef
        return lambda q: idx.search(q, k, threads=1).keys
    return Built(build_s, saved_size(idx.save), int(idx.memory_usage), searcher, idx)


MODULES = {"hnswlib": "hnswlib", "faiss-hnsw": "faiss", "usearch": "usearch.index"}
BUILDERS = {
    "lookalike-f32": lambda *a: build_lookalike(*a, storage="float32", rerank=None),
    "lookalike-f16": lambda *a: build_lookalike(*a, storage="float16", rerank=None),
    "lookalike-int8": lambda *a: build_lookalike(*a, storage="int8", rerank="float32"),
    "lookalike-int8-f16": lambda *a: build_lookalike(*a, storage="int8", rerank="float16"),
    "hnswlib": build_hnswlib,
    "faiss-hnsw": build_faiss,
    "usearch": build_usearch,
}


# ----------------------------------------------------------------------------- measuring
def settle_heap() -> None:
    """Collect garbage and hand free heap pages back to the OS, so an RSS baseline taken
    next is not lowered later by allocations that merely reuse freed memory."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def recall_at_k(found: list, gt: np.ndarray) -> float:
    k = gt.shape[1]
    padded = np.full((len(found), k), -1, dtype=np.int64)
    for i, ids in enumerate(found):
        ids = np.asarray(ids, dtype=np.int64)[:k]
        padded[i, :len(ids)] = ids
    hits = (padded[:, :, None] == gt[:, None, :]).any(axis=2)
    return float(hits.sum() / gt.size)


def time_queries(search, queries: np.ndarray, clock=time.perf_counter) -> tuple[float, list]:
    """Seconds for one single-thread batch-1 pass over the queries, and the results.
    clock=time.thread_time counts this thread's CPU time only: steadier than the
    wall clock on a machine shared with other work (a search on one thread)."""
    found = []
    t0 = clock()
    for q in queries:
        found.append(search(q))
    return clock() - t0, found


def sweep(searcher, queries: np.ndarray, gt: np.ndarray, efs, repeats: int, label: str) -> list[dict]:
    """Recall and single-thread batch-1 QPS per ef. After a warm-up pass the whole sweep is
    timed `repeats` times and each ef keeps its fastest pass: repeats are spread out in time,
    so a burst of load from elsewhere spoils one pass rather than every pass of one ef."""
    time_queries(searcher(efs[0]), queries)
    points = []
    for ef in efs:
        dt, found = time_queries(searcher(ef), queries)
        points.append({"ef": ef, "recall": recall_at_k(found, gt), "seconds": dt})
        log(f"  {label} ef={ef:<4} recall@{gt.shape[1]}={points[-1]['recall']:.4f} "
            f"qps={len(queries) / dt:,.0f}")
        if points[-1]["recall"] >= STOP_RECALL:
            break
    for _ in range(repeats - 1):
        for p in points:
            p["seconds"] = min(p["seconds"], time_queries(searcher(p["ef"]), queries)[0])
    for p in points:
        dt = p.pop("seconds")
        p.update(qps=len(queries) / dt, latency_us=1e6 * dt / len(queries))
    log(f"  {label} best of {repeats}: " + ", ".join(f"ef={p['ef']} {p['qps']:,.0f}" for p in points))
    return points


def qps_at(points: list[dict], target: float) -> float | None:
    """QPS at `target` recall: linear in recall between the bracketing sweep points."""
    prev = None
    for p in points:
        if p["recall"] >= target:
            if prev is None:
                return p["qps"]  # already past the target at the smallest ef: conservative
            f = (target - prev["recall"]) / (p["recall"] - prev["recall"])
            return prev["qps"] + f * (p["qps"] - prev["qps"])
        prev = p
    return None


def run_config(lib: str, M: int, base, queries, gt, args) -> dict:
    label = f"{lib} M={M}"
    row = {"lib": lib, "M": M, "ours": lib in OURS, "label": label}
    try:  # import before the RSS baseline, so library code pages are not counted
        importlib.import_module(MODULES.get(lib, "lookalike.index"))
    except ImportError as e:
        log(f"{label}: skipped ({e})")
        return {**row, "skipped": f"import failed: {e}"}
    settle_heap()
    rss0 = rss_bytes()
    log(f"{label}: building {len(base):,} x {base.shape[1]} with {args.threads} threads")
    cpu0 = time.process_time()
    try:
        built = BUILDERS[lib](base, M, args.ef_construction, args.k, args.threads)
    except Exception as e:  # one broken library must not sink the whole run
        traceback.print_exc()
        return {**row, "skipped": f"{type(e).__name__}: {e}"}
    n = len(base)
    settle_heap()  # drop transient build buffers: count what the index keeps
    # CPU seconds we got per wall second per thread; well below 1 means others took the CPU
    row["build_cpu_share"] = (time.process_time() - cpu0) / (built.build_s * args.threads)
    row.update(build_s=built.build_s, bytes_per_vec=built.file_bytes / n,
               rss_per_vec=(rss_bytes() - rss0) / n,
               self_bytes_per_vec=None if built.self_bytes is None else built.self_bytes / n)
    log(f"{label}: built in {built.build_s:.1f}s, {row['bytes_per_vec']:.0f} B/vec saved")
    cpu0, t0 = time.process_time(), time.perf_counter()
    row["sweep"] = sweep(built.searcher, queries, gt, args.efs, args.repeats, label)
    row["sweep_cpu_share"] = (time.process_time() - cpu0) / (time.perf_counter() - t0)
    row["qps_at"] = {str(t): qps_at(row["sweep"], t) for t in TARGETS}
    del built  # the worker exits next, which frees everything anyway
    gc.collect()
    return row


def _child(lib: str, M: int, spec, args, conn) -> None:
    try:  # die with the parent (Linux), so an interrupted run leaves no worker behind
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    base, queries = datasets.clip_like(spec)
    gt_ids, _ = datasets.ground_truth(spec, base, queries, max(args.k, 100))
    conn.send(run_config(lib, M, base, queries, np.ascontiguousarray(gt_ids[:, :args.k]), args))
    conn.close()


def run_isolated(lib: str, M: int, spec, args) -> dict:
    """run_config in a fresh process: RSS deltas are not blurred by earlier indexes' freed
    heap, all memory is returned between configs, and a crash costs one row, not the run."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(lib, M, spec, args, send))
    proc.start()
    send.close()
    try:
        row = recv.recv()
    except EOFError:
        row = None
    proc.join()
    if row is None:
        log(f"{lib} M={M}: worker died (exit code {proc.exitcode})")
        row = {"lib": lib, "M": M, "ours": lib in OURS, "label": f"{lib} M={M}",
               "skipped": f"worker died, exit code {proc.exitcode}"}
    return row


# ----------------------------------------------------------------------------- reporting
def machine_info() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for pkg in ("numpy", "hnswlib", "faiss-cpu", "usearch", "scann", "lookalike"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def summarize(rows: list[dict]) -> dict:
    """Our best config at recall 0.95 against the best peer and against hnswlib."""
    key = str(GOAL_RECALL)
    done = [r for r in rows if "sweep" in r]
    ours = [r for r in done if r["ours"] and r["qps_at"][key]]
    peers = [r for r in done if not r["ours"] and r["qps_at"][key]]
    out = {"recall": GOAL_RECALL, "qps_ratio_target": GOAL_QPS_RATIO}
    if not ours or not peers:
        return {**out, "note": "needs at least one of ours and one peer reaching the recall"}
    best = max(ours, key=lambda r: r["qps_at"][key])
    peer = max(peers, key=lambda r: r["qps_at"][key])
    hnsw = [r for r in done if r["lib"] == "hnswlib"]
    ref = next((r for r in hnsw if r["M"] == best["M"]), hnsw[0] if hnsw else None)
    out.update(ours=best["label"], best_peer=peer["label"],
               qps_ratio={str(t): (best["qps_at"][str(t)] / peer["qps_at"][str(t)]
                                   if best["qps_at"][str(t)] and peer["qps_at"][str(t)] else None)
                          for t in TARGETS})
    out["qps_pass"] = out["qps_ratio"][key] >= GOAL_QPS_RATIO
    if ref:
        out.update(hnswlib_ref=ref["label"],
                   build_ratio=best["build_s"] / ref["build_s"],
                   bytes_ratio=best["bytes_per_vec"] / ref["bytes_per_vec"],
                   rss_ratio=best["rss_per_vec"] / ref["rss_per_vec"] if ref["rss_per_vec"] > 0 else None)
        out["build_pass"] = out["build_ratio"] <= 1.0
        out["bytes_pass"] = out["bytes_ratio"] <= 1.0
    return out


def fmt(x, spec=",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def render_table(result: dict) -> str:
    rows, s, m, d = result["rows"], result["summary"], result["machine"], result["dataset"]
    best_peer = {str(t): max((r["qps_at"][str(t)] or 0 for r in rows
                              if "sweep" in r and not r["ours"]), default=0) for t in TARGETS}
    head = ["config", "build s", "B/vec", "RSS/vec", "self/vec",
            "QPS@.90", "QPS@.95", "QPS@.99", "max rec", "vs best peer @.95"]
    body, skipped = [], []
    for r in rows:
        if "sweep" not in r:
            skipped.append(f"{r['label']}: skipped ({r['skipped']})")
            continue
        q = r["qps_at"]
        ratio = (f"{q['0.95'] / best_peer['0.95']:.2f}x"
                 if r["ours"] and q["0.95"] and best_peer["0.95"] else "")
        body.append([r["label"], f"{r['build_s']:.1f}", fmt(r["bytes_per_vec"]), fmt(r["rss_per_vec"]),
                     fmt(r["self_bytes_per_vec"]), fmt(q["0.9"]), fmt(q["0.95"]), fmt(q["0.99"]),
                     f"{max(p['recall'] for p in r['sweep']):.4f}", ratio])
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(  # noqa: E731
        str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    p = result["params"]
    out = [f"ANN bench: CLIP-like n={p['n']:,} dim={p['dim']} queries={p['queries']} k={p['k']} "
           f"seed={p['seed']} efC={p['ef_construction']} (LID~{d['lid_mle_median']:.0f}, "
           f"NN1 cos {d['cos_nn1_mean']:.2f}, random-pair cos {d['cos_random_pair_mean']:.2f})",
           f"machine: {m['cpu']}, {m['cores']} cores, python {m['python']}, "
           + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
           f"build: {p['threads']} threads; queries: 1 thread, batch 1 (Python loop), best of "
           f"{p['repeats']} passes per ef, QPS interpolated at recall@{p['k']}",
           "", line(head), line(["-" * w for w in widths])]
    out += [line(b) for b in body] + skipped
    busy = [f"{r['label']} (build {r['build_cpu_share']:.2f}, queries {r['sweep_cpu_share']:.2f})"
            for r in rows if "sweep" in r and min(r["build_cpu_share"], r["sweep_cpu_share"]) < 0.85]
    if busy:
        out.append("WARNING: CPU share per thread < 0.85, other load on the machine, timings "
                   "pessimistic for: " + "; ".join(busy))
    out += ["", "memory: " + MEMORY_METHOD, "",
            f"target @ recall@{p['k']}={GOAL_RECALL}: our QPS >= {GOAL_QPS_RATIO}x best peer, "
            "build time <= hnswlib, bytes/vec <= hnswlib (same M)"]
    if "qps_ratio" not in s:
        out.append("result: " + s["note"])
        return "\n".join(out)
    verdict = lambda ok: "PASS" if ok else "MISS"  # noqa: E731
    out.append(f"result: {s['ours']} vs {s['best_peer']}: QPS x"
               + " / ".join(fmt(s["qps_ratio"][str(t)], ".2f") for t in TARGETS)
               + f" at {' / '.join(map(str, TARGETS))}  -> {verdict(s['qps_pass'])} "
               f"({s['qps_ratio'][str(GOAL_RECALL)]:.2f}x vs {GOAL_QPS_RATIO}x)")
    if "build_ratio" in s:
        out.append(f"        build time {s['build_ratio']:.2f}x {s['hnswlib_ref']} -> "
                   f"{verdict(s['build_pass'])};  bytes/vec {s['bytes_ratio']:.2f}x -> "
                   f"{verdict(s['bytes_pass'])} (RSS/vec {fmt(s['rss_ratio'], '.2f')}x)")
    return "\n".join(out)


def plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 6))
    for r in result["rows"]:
        if "sweep" in r:
            ax.plot([p["recall"] for p in r["sweep"]], [p["qps"] for p in r["sweep"]],
                    "-o" if r["ours"] else "--s", lw=2 if r["ours"] else 1.2, ms=3, label=r["label"])
    for t in TARGETS:
        ax.axvline(t, color="grey", lw=0.6, ls=":")
    p = result["params"]
    ax.set(xlabel=f"recall@{p['k']}", ylabel="QPS (1 thread, batch 1)", yscale="log",
           title=f"CLIP-like {p['n']:,} x {p['dim']}, cosine, efC={p['ef_construction']}")
    ax.set_xlim(left=max(0.5, ax.get_xlim()[0]))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, help="base vectors (default 200000; 20000 with --quick)")
    ap.add_argument("--dim", type=int, help="dimension (default 512; 128 with --quick)")
    ap.add_argument("--queries", type=int, help="queries (default 1000; 200 with --quick)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--libs", default=",".join(BUILDERS), help=f"comma list of {', '.join(BUILDERS)}")
    ap.add_argument("--M", help="comma list of M for every selected lib "
                    "(default: ours f32 16,32, f16/int8 16; hnswlib & faiss 16,32; usearch 16)")
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--efs", default=",".join(map(str, DEFAULT_EFS)), help="ef sweep")
    ap.add_argument("--repeats", type=int, default=3, help="timed passes per ef; the fastest counts")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="build threads")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--quick", action="store_true", help="smoke run: 20k x 128, 200 queries")
    args = ap.parse_args(argv)
    small = {"n": 20_000, "dim": 128, "queries": 200}
    full = {"n": 200_000, "dim": 512, "queries": 1000}
    for name, value in (small if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.efs = sorted(int(e) for e in args.efs.split(","))
    libs = [lib.strip() for lib in args.libs.split(",") if lib.strip()]
    unknown = set(libs) - set(BUILDERS)
    if unknown:
        ap.error(f"unknown --libs {sorted(unknown)}; choose from {', '.join(BUILDERS)}")
    if args.M:
        ms = [int(m) for m in args.M.split(",")]
        args.configs = [(lib, m) for lib in libs for m in ms]
    else:
        args.configs = [(lib, m) for lib, m in DEFAULT_CONFIGS if lib in libs]
    return args


def ours_available() -> str | None:
    """None if lookalike.index imports, else the reason."""
    try:
        import lookalike.index  # noqa: F401
        return None
    except Exception as e:  # ImportError, or a half-built extension
        return f"{type(e).__name__}: {e}"


def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    spec = datasets.ClipLikeSpec(n=args.n, dim=args.dim, n_queries=args.queries, seed=args.seed)
    log(f"generating CLIP-like data {args.n:,} x {args.dim} (+{args.queries} queries), seed {args.seed}")
    base, queries = datasets.clip_like(spec)
    gt_ids, gt_sims = datasets.ground_truth(spec, base, queries, max(args.k, 100))
    dataset = {**datasets.describe(base, queries, gt_sims, args.seed), "spec": vars(spec.resolved())}
    log(f"data ready: {json.dumps({k: v for k, v in dataset.items() if k != 'spec'})}")

    del base, queries, gt_ids  # each config's worker regenerates them (deterministic)
    missing = ours_available()
    rows = []
    for lib, M in args.configs:
        if lib in OURS and missing:
            log(f"{lib} M={M}: skipped, lookalike.index not importable ({missing})")
            rows.append({"lib": lib, "M": M, "ours": True, "label": f"{lib} M={M}",
                         "skipped": "lookalike.index not importable"})
            continue
        rows.append(run_isolated(lib, M, spec, args))

    params = {k: v for k, v in vars(args).items() if k not in ("out", "configs", "libs", "M")}
    result = {"params": params, "machine": machine_info(), "dataset": dataset,
              "memory_method": MEMORY_METHOD, "rows": rows,
              "interpolation": "linear in recall between the two ef points bracketing the "
                               "target; if the smallest ef already exceeds it, that point's QPS"}
    result["summary"] = summarize(rows)
    result["wall_s"] = time.perf_counter() - t_start
    result["peak_worker_rss_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"ann_{args.n}x{args.dim}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, stem.with_suffix(".png"))
    print(render_table(result))
    print(f"\nwall {result['wall_s'] / 60:.1f} min; wrote {stem}.json and {stem}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
