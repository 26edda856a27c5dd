"""Compressed indexes: our IvfPqIndex (PQ codes and RaBitQ codes) vs faiss
IndexIVFPQ / IndexIVFPQFastScan / IndexIVFRaBitQ / IndexIVFRaBitQFastScan and
ScaNN, each with an exact re-rank (faiss: IndexRefineFlat, ScaNN: reorder, both
with float vectors in RAM; ours: float vectors in a memory-mapped file, assumed
in the page cache: the bench's queries touch it warm), on the CLIP-like data
of datasets.py.

For each configuration: train and add with all threads (timed apart), RAM bytes
per vector, then a sweep of two knobs with single-thread batch-1 queries,
reporting QPS at recall@10 = 0.90 / 0.95 / 0.99 (the fastest sweep point
reaching it). The knobs: nprobe and the re-rank candidates (PQ, ScaNN; faiss's
k_factor is candidates / k), or nprobe and the bound's width in standard
deviations (our RaBitQ: the bound decides which candidates are read). PQ
configurations code a vector in --code-bytes bytes (default 32): 4-bit PQ with
2 * code-bytes sub-spaces, 8-bit PQ with code-bytes, ScaNN's 4-bit anisotropic
codes with dim / (2 * code-bytes) dimensions a block. RaBitQ codes are dim / 8
bytes of bits plus factors (ours 3 bytes, faiss 8); our RaBitQ index uses
--rabitq-nlist cells (fewer than the PQ runs: its centroids count in its RAM).
--ex-bits adds our RaBitQ index with extended RaBitQ codes of 1 + ex_bits bits a
dimension (default 2 and 4), kept in a file beside the vectors file (not RAM):
their rows report the ex-code rows read a query besides the float rows, and the
bytes both cost (what a query reads from disk when the files are not cached).

    python bench/compressed.py                              # 200k x 512, ~10 min on 2 cores
    python bench/compressed.py --n 1000000 --nlist 4096 --rabitq-nlist 1024 --skip ivfpq,IVFPQ,scann --cpu-time
                                                            # the 1M run: ~45 min on 2 cores (faiss trains 4096 cells)
    python bench/compressed.py --quick                      # 20k x 128 smoke run, ~2 min

--wide-m4 M adds our 4-bit index with M sub-spaces (M need not divide dim):
the longest code that still keeps RAM under 80 bytes a vector (44 B, m=88, at
256 dims; see the README's measured section).

ScaNN is a peer when `pip install scann` works (1.4 wheels need no TensorFlow);
its rows are skipped with a note when it does not import.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets  # noqa: E402
from ann import log, machine_info, recall_at_k, time_queries  # noqa: E402

TARGETS = (0.90, 0.95, 0.99)
# (nprobe, candidates re-ranked); faiss's k_factor is candidates / k.
SWEEP = ((4, 40), (8, 50), (8, 100), (16, 100), (16, 200), (32, 200), (24, 300), (16, 400), (32, 400),
         (16, 800), (32, 800), (32, 1600), (64, 1600))
# (nprobe, k_factor) for faiss's RaBitQ with refine: it re-ranks k_factor * k candidates.
RABITQ_SWEEP = ((6, 5), (8, 5), (8, 10), (10, 10), (8, 15), (10, 15), (12, 10), (16, 10), (12, 20), (16, 20),
                (24, 20), (24, 30), (32, 30), (24, 50), (32, 50), (48, 50), (64, 100))
# (nprobe, bound width in standard deviations) for our RaBitQ index.
BOUND_SWEEP = tuple((nprobe, sigmas) for nprobe in (4, 5, 6, 8, 10, 12, 16, 20, 24, 32, 48)
                    for sigmas in (1.0, 1.5, 2.0, 2.5, 3.0))
ROWS_METHOD = ("rows/q: float vectors re-ranked a query at the fastest point reaching the recall. Ours: "
               "counted, rows read from the memory-mapped vectors file (RaBitQ: as many as its bound asks for). "
               "faiss: k_factor * k from the refine's floats in RAM; ScaNN: its reorder count. "
               "ex rows/q: ours with ex_bits, rows read from the ex-codes file. disk KB/q: ours, float rows "
               "x dim x 4 + ex rows x the ex row's bytes: what a query reads from its files (from disk when "
               "they are not in the page cache); the peers keep their floats in RAM.")
RAM_METHOD = ("RAM B/vec: what the index holds in RAM / n. Ours: memory_usage()['total_bytes'] "
              "(codes, factors, list slots and headers, ids, id map, tombstones, centroids, rotation, coarse graph; "
              "the vectors file is on disk / "
              "page cache). faiss: codes + 8-byte ids + the float32 vectors IndexRefineFlat keeps. "
              "ScaNN: codes + the float32 vectors its reorder keeps. faiss RaBitQ: its code_size (bits + "
              "factors) + 8-byte ids + the refine floats + centroids.")


def sweep(searcher, queries, gt, points, repeats, label, knob, clock, rows_read) -> list[dict]:
    """Recall, single-thread batch-1 QPS and float rows re-ranked a query per (nprobe,
    knob value), best of `repeats` passes after a warm-up (as ann.sweep, whose knob is a
    single ef). rows_read (RowsRead) gives the rows a query re-ranks at a point."""
    time_queries(searcher(points[0]), queries)
    out = []
    for nprobe, value in points:
        total = rows_read.counter()
        runs = [time_queries(searcher((nprobe, value)), queries, clock) for _ in range(repeats)]
        dt = min(r[0] for r in runs)
        reads = rows_read.per_query((nprobe, value), total, repeats * len(queries))
        out.append({"nprobe": nprobe, knob: value, "recall": recall_at_k(runs[0][1], gt),
                    "qps": len(queries) / dt, "latency_us": 1e6 * dt / len(queries), **reads})
        log(f"  {label} nprobe={nprobe} {knob}={value} recall={out[-1]['recall']:.4f} qps={out[-1]['qps']:,.0f} "
            f"rows/query={reads['rows_read']:,.1f} ex rows/query={reads['ex_rows_read']:,.1f}")
    return out


class RowsRead:
    """Float rows re-ranked a query: counted by our index (rows read from its vectors
    file, and rows of its ex-codes file), or fixed by a peer's knob (`fixed(point)`:
    faiss k_factor * k, ScaNN's reorder)."""

    def __init__(self, index=None, fixed=None):
        self.index, self.fixed = index, fixed

    def counter(self) -> tuple[int, int]:
        return (self.index.rows_read, self.index.ex_rows_read) if self.index is not None else (0, 0)

    def per_query(self, point, total_before: tuple[int, int], queries: int) -> dict:
        if self.index is None:
            return {"rows_read": float(self.fixed(point)), "ex_rows_read": 0.0, "disk_bytes_read": None}
        rows, ex_rows = ((now - before) / queries for now, before in zip(self.counter(), total_before))
        memory = self.index.memory_usage()
        ex_row_bytes = memory["ex_code_file_bytes"] / max(memory["slots"], 1)
        return {"rows_read": rows, "ex_rows_read": ex_rows,
                "disk_bytes_read": rows * self.index.dim * 4 + ex_rows * ex_row_bytes}


def best_point(points: list[dict], target: float) -> dict | None:
    """The fastest sweep point reaching `target` recall (two knobs make the points a
    cloud, not a curve, so there is nothing to interpolate along)."""
    return max((p for p in points if p["recall"] >= target), key=lambda p: p["qps"], default=None)


def build_ours(base, k, threads, nlist, tmp, knob, **index_args):
    """Our IVF index with the codes index_args ask for; a sweep point is (nprobe, the
    value of the search argument `knob`: rerank_k for PQ codes, bound_sigmas for RaBitQ)."""
    from lookalike.index import IvfPqIndex
    t0 = time.perf_counter()
    idx = IvfPqIndex(base.shape[1], "cosine", nlist=nlist, vectors_path=Path(tmp) / "vectors.f32", **index_args)
    idx.train(base, threads=threads)
    train_s = time.perf_counter() - t0
    idx.add(np.arange(len(base)), base, threads=threads)
    add_s = time.perf_counter() - t0 - train_s
    ram = idx.memory_usage()["total_bytes"]

    def searcher(point):
        nprobe, value = point
        return lambda q: idx.search(q, k, nprobe=nprobe, threads=1, **{knob: value})[0]
    return train_s, add_s, ram, searcher, idx, RowsRead(index=idx)


def build_ours_pq(base, k, threads, nlist, m, nbits, tmp):
    return build_ours(base, k, threads, nlist, tmp, "rerank_k", m=m, nbits=nbits)


def build_ours_rabitq(base, k, threads, nlist, tmp, ex_bits=0):
    # No read cap: the bound alone decides the re-rank.
    return build_ours(base, k, threads, nlist, tmp, "bound_sigmas", code="rabitq", rerank_k=len(base),
                      ex_bits=ex_bits)


def build_faiss(base, k, threads, nlist, make_ivf, k_factor_of):
    """faiss IVF with IndexRefineFlat: make_ivf(quantizer, d) makes the IVF index; a
    sweep point is (nprobe, x) with k_factor = k_factor_of(x)."""
    import faiss
    faiss.omp_set_num_threads(threads)
    d = base.shape[1]
    t0 = time.perf_counter()
    ivf = make_ivf(faiss.IndexFlatIP(d), d)
    idx = faiss.IndexRefineFlat(ivf)
    idx.train(base)
    train_s = time.perf_counter() - t0
    idx.add(base)
    add_s = time.perf_counter() - t0 - train_s
    faiss.omp_set_num_threads(1)
    n = len(base)
    ram = nlist * d * 4 + n * (ivf.code_size + 8) + n * d * 4

    def searcher(point):
        nprobe, x = point
        ivf.nprobe = nprobe
        idx.k_factor = k_factor_of(x)
        return lambda q: idx.search(q[None], k)[1][0]
    return train_s, add_s, ram, searcher, idx, RowsRead(fixed=lambda point: k_factor_of(point[1]) * k)


def build_faiss_rabitq(base, k, threads, nlist, fast_scan):
    import faiss
    kind = faiss.IndexIVFRaBitQFastScan if fast_scan else faiss.IndexIVFRaBitQ
    return build_faiss(base, k, threads, nlist, lambda quantizer, d: kind(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT),
                       lambda k_factor: k_factor)


def build_faiss_pq(base, k, threads, nlist, m, nbits, fast_scan):
    import faiss
    kind = faiss.IndexIVFPQFastScan if fast_scan else faiss.IndexIVFPQ
    return build_faiss(base, k, threads, nlist,
                       lambda quantizer, d: kind(quantizer, d, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT),
                       lambda rerank_k: rerank_k / k)


def build_scann(base, k, threads, nlist, code_bytes):
    import scann
    n, d = base.shape
    t0 = time.perf_counter()
    # ScaNN trains and adds in one build(); its training sample is capped as ours is.
    builder = (scann.scann_ops_pybind.builder(base, k, "dot_product")
               .tree(num_leaves=nlist, num_leaves_to_search=16, training_sample_size=min(n, 64 * nlist))
               .score_ah(d // (2 * code_bytes), anisotropic_quantization_threshold=0.2)
               .reorder(100))
    if hasattr(builder, "set_n_training_threads"):
        builder = builder.set_n_training_threads(threads)
    idx = builder.build()
    train_s, add_s = time.perf_counter() - t0, 0.0
    ram = nlist * d * 4 + n * (code_bytes + 4 * d)

    def searcher(point):
        nprobe, rerank_k = point
        return lambda q: idx.search(q, final_num_neighbors=k, pre_reorder_num_neighbors=rerank_k,
                                    leaves_to_search=nprobe)[0]
    return train_s, add_s, ram, searcher, idx, RowsRead(fixed=lambda point: point[1])


def scann_missing() -> str | None:
    """Why ScaNN cannot run here, or None when it can."""
    try:
        import scann  # noqa: F401
    except ImportError as e:
        return f"scann does not import ({e}); `pip install scann` (1.4+, no TensorFlow needed) to add its rows"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--nlist", type=int, default=1024)
    ap.add_argument("--rabitq-nlist", type=int, default=512,
                    help="cells of our RaBitQ index (its centroids count against its RAM)")
    ap.add_argument("--ex-bits", default="2,4",
                    help="comma-separated ex_bits of extra RaBitQ rows (extended codes on disk); empty for none")
    ap.add_argument("--code-bytes", type=int, default=32, help="PQ code bytes a vector, every configuration")
    ap.add_argument("--wide-m4", type=int, default=0, help="also run our 4-bit index with this many sub-spaces")
    ap.add_argument("--threads", type=int, default=0, help="build threads (0: every core)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma-separated substrings of config labels to leave out")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time queries by this thread's CPU time, not the wall clock (a loaded machine)")
    ap.add_argument("--quick", action="store_true", help="20k x 128, 200 queries, nlist 128 (RaBitQ: 64)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.dim, args.queries, args.nlist, args.rabitq_nlist = 20_000, 128, 200, 128, 64
    import os
    threads = args.threads or os.cpu_count()
    k = 10
    spec = datasets.ClipLikeSpec(n=args.n, dim=args.dim, n_queries=args.queries)
    base, queries = datasets.clip_like(spec)
    gt = np.ascontiguousarray(datasets.ground_truth(spec, base, queries, 100)[0][:, :k])
    if args.quick:
        args.code_bytes = 16
    m4, m8 = 2 * args.code_bytes, args.code_bytes  # both code_bytes of code

    # label -> (build, sweep points, knob name)
    configs = {
        "lookalike ivf-rabitq": (lambda tmp: build_ours_rabitq(base, k, threads, args.rabitq_nlist, tmp),
                                 BOUND_SWEEP, "bound_sigmas"),
        "faiss IVFRaBitQFastScan + refine": (
            lambda tmp: build_faiss_rabitq(base, k, threads, args.nlist, True), RABITQ_SWEEP, "k_factor"),
        "faiss IVFRaBitQ + refine": (
            lambda tmp: build_faiss_rabitq(base, k, threads, args.nlist, False), RABITQ_SWEEP, "k_factor"),
        f"lookalike ivfpq4 m={m4}": lambda tmp: build_ours_pq(base, k, threads, args.nlist, m4, 4, tmp),
        f"lookalike ivfpq8 m={m8}": lambda tmp: build_ours_pq(base, k, threads, args.nlist, m8, 8, tmp),
        f"faiss IVFPQFastScan m={m4} + refine": lambda tmp: build_faiss_pq(base, k, threads, args.nlist, m4, 4, True),
        f"faiss IVFPQ m={m8} + refine": lambda tmp: build_faiss_pq(base, k, threads, args.nlist, m8, 8, False),
        f"faiss IVFPQ m={m4} + refine": lambda tmp: build_faiss_pq(base, k, threads, args.nlist, m4, 8, False),
        f"scann AH {args.code_bytes}B + reorder": lambda tmp: build_scann(base, k, threads, args.nlist, args.code_bytes),
    }
    for ex_bits in (int(b) for b in args.ex_bits.split(",") if b):
        configs[f"lookalike ivf-rabitq ex_bits={ex_bits}"] = (
            lambda tmp, ex_bits=ex_bits: build_ours_rabitq(base, k, threads, args.rabitq_nlist, tmp, ex_bits),
            BOUND_SWEEP, "bound_sigmas")
    if args.wide_m4:
        wide = args.wide_m4
        configs[f"lookalike ivfpq4 m={wide} ({wide // 2} B)"] = (
            lambda tmp: build_ours_pq(base, k, threads, args.nlist, wide, 4, tmp))
    configs = {label: c if isinstance(c, tuple) else (c, SWEEP, "rerank_k") for label, c in configs.items()}
    notes = []
    if (why := scann_missing()) is not None:
        configs = {label: b for label, b in configs.items() if not label.startswith("scann")}
        notes.append(why)
        log(why)
    rows = []
    for label, (build, points_to_sweep, knob) in configs.items():
        if any(part and part in label for part in args.skip.split(",")):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            log(f"{label}: train + add {args.n:,} x {args.dim}")
            train_s, add_s, ram, searcher, idx, rows_read = build(tmp)
            log(f"{label}: train {train_s:.1f}s + add {add_s:.1f}s, {ram / args.n:.0f} RAM B/vec")
            memory = idx.memory_usage() if rows_read.index is not None else None
            if memory is not None:
                log(f"{label}: RAM B/vec by structure: " + ", ".join(
                    f"{name} {value / args.n:.2f}" for name, value in memory.items() if name.endswith("_bytes")))
            points = sweep(searcher, queries, gt, points_to_sweep, args.repeats, label, knob,
                           time.thread_time if args.cpu_time else time.perf_counter, rows_read)
            best = {str(t): best_point(points, t) for t in TARGETS}
            rows.append({"label": label, "train_s": train_s, "add_s": add_s, "ram_per_vec": ram / args.n,
                         "memory_usage": memory, "sweep": points,
                         "qps_at": {t: p and p["qps"] for t, p in best.items()},
                         "rows_read_at": {t: p and p["rows_read"] for t, p in best.items()},
                         "ex_rows_read_at": {t: p and p["ex_rows_read"] for t, p in best.items()},
                         "disk_bytes_read_at": {t: p and p["disk_bytes_read"] for t, p in best.items()}})
            del idx

    result = {"machine": machine_info(), "n": args.n, "dim": args.dim, "nlist": args.nlist,
              "rabitq_nlist": args.rabitq_nlist, "clock": "thread CPU time" if args.cpu_time else "wall",
              "code_bytes": args.code_bytes, "ram_method": RAM_METHOD, "rows_method": ROWS_METHOD, "notes": notes,
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compressed_{args.n}x{args.dim}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("| config | train s | add s | RAM B/vec | QPS@.90 | QPS@.95 | QPS@.99 | rows/q@.95 | rows/q@.99 "
          "| ex rows/q@.95 | ex rows/q@.99 | disk KB/q@.95 | disk KB/q@.99 | max recall |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        q, reads, ex_reads, disk = r["qps_at"], r["rows_read_at"], r["ex_rows_read_at"], r["disk_bytes_read_at"]
        f = lambda x: "n/a" if x is None else f"{x:,.0f}"  # noqa: E731
        kb = lambda x: "n/a" if x is None else f"{x / 1024:,.1f}"  # noqa: E731
        print(f"| {r['label']} | {r['train_s']:.1f} | {r['add_s']:.1f} | {r['ram_per_vec']:.1f} | {f(q['0.9'])} | "
              f"{f(q['0.95'])} | {f(q['0.99'])} | {f(reads['0.95'])} | {f(reads['0.99'])} | "
              f"{f(ex_reads['0.95'])} | {f(ex_reads['0.99'])} | {kb(disk['0.95'])} | {kb(disk['0.99'])} | "
              f"{max(p['recall'] for p in r['sweep']):.3f} |")
    print("\n".join(["", RAM_METHOD, ROWS_METHOD, *notes, f"wrote {path}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
