"""What a real CLIP costs per query on this machine, served end to end: a
ViT-B/32-shaped CLIP with random weights (`lookalike model export-clip --random
vit-b-32`, the real model's graph and sizes, built offline) behind `lookalike
serve` on loopback.

1. Closed loop: photo, text and hybrid (photo + text) queries under 1, 4 and 16
   concurrent callers, with per-stage times (decode, preprocess, encode,
   search, ...). Encoder runs are micro-batched across calls (--max-batch,
   --max-wait-ms); a hybrid query's two towers run at once.
2. Open loop: the highest rate of photo queries whose p99 stays under --slo-ms
   (lookalike.loadtest.ramp), once per onnxruntime threading setting of
   --encoder-threads (threads per operator; 0 = every core; graph optimisation
   is onnxruntime's ORT_ENABLE_ALL in every case).

    python bench/clip_service.py                     # exports the bundle first if missing (~1 min)
    python bench/clip_service.py --encoder-threads 0,1 --seconds 8

Writes a table to stdout and bench/results/clip_service.{json,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann import log, machine_info  # noqa: E402  (bench/ann.py)
from peer_systems import serve_lookalike  # noqa: E402

from lookalike.client import Client  # noqa: E402
from lookalike.loadtest.breakdown import format_table, measure, plot  # noqa: E402
from lookalike.loadtest.ramp import Slo, ramp  # noqa: E402
from lookalike.loadtest.runner import Arrivals, RunConfig  # noqa: E402
from lookalike.loadtest.workload import ServerShape, WorkloadSpec, seed_products  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# Handler threads past the most callers: 16 callers must be served, not shed
# (the in-flight limit is workers - limits.handler_reserve).
CONFIG = """
model = "{bundle}"
workers = 24
encoder_threads = {threads}
[batching]
max_batch = {max_batch}
max_wait_ms = {max_wait_ms}
"""


def ensure_bundle(path: Path) -> None:
    if (path / "manifest.json").is_file():
        return
    from lookalike.encoders.random_clip import clip_config, export_random_clip

    log(f"exporting a random-weight ViT-B/32 CLIP into {path} (about a minute)")
    export_random_clip(clip_config("vit-b-32"), path, "random-clip-vit-b-32")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=RESULTS / "random-clip-vit-b-32")
    parser.add_argument("--callers", default="1,4,16")
    parser.add_argument("--kinds", default="image,text,hybrid")
    parser.add_argument("--seconds", type=float, default=6.0, help="per closed-loop run and per ramp step")
    parser.add_argument("--products", type=int, default=200, help="products in the catalog searched")
    parser.add_argument("--encoder-threads", default="0,1", help="onnxruntime threads per operator, one ramp each")
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--slo-ms", type=float, default=200.0)
    parser.add_argument("--start-rate", type=float, default=1.0, help="photos/s of the ramp's first step (x1.5 a step)")
    parser.add_argument("--processes", type=int, default=2, help="load client processes")
    args = parser.parse_args()
    ensure_bundle(args.bundle)

    callers = tuple(int(c) for c in args.callers.split(","))
    result = {"machine": {**machine_info(), "load_average_1min_at_start": os.getloadavg()[0]},
              "bundle": str(args.bundle.name), "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms,
              "slo_ms": args.slo_ms, "by_encoder_threads": {}}
    tables = []
    for threads in (int(t) for t in args.encoder_threads.split(",")):
        with tempfile.TemporaryDirectory(prefix="lookalike-clip-") as tmp:
            config = CONFIG.format(bundle=args.bundle.resolve(), threads=threads, max_batch=args.max_batch,
                                   max_wait_ms=args.max_wait_ms)
            process, address = serve_lookalike(Path(tmp), config)
            try:
                with Client(address, timeout=120) as client:
                    spec = WorkloadSpec(shape=ServerShape.from_stats(client.stats()), products=args.products)
                    log(f"encoder threads {threads}: seeding {args.products} products")
                    seed_products(client, spec)
                base = RunConfig(address=address, workload=spec, mode="closed", duration=args.seconds,
                                 processes=args.processes, timeout=30.0)
                log(f"encoder threads {threads}: closed loop, {args.kinds} x callers {args.callers}")
                rows = measure(base, args.kinds.split(","), callers, args.seconds)
                table = format_table(rows)
                print(f"\nencoder threads {threads} (0 = every core):\n{table}")
                tables.append((threads, rows))
                photo = dataclasses.replace(base, mode="open", arrivals=Arrivals(rate=1.0),
                                            workload=dataclasses.replace(spec, mix={"image": 1.0}))

                def step(rate, run, verdict):
                    log(f"  photos at {rate:6.1f}/s: p99 {run.overall().percentile(99) / 1e3:7.1f} ms, "
                        f"{run.achieved_rate:6.1f}/s done {verdict or '(meets the SLO)'}")

                log(f"encoder threads {threads}: highest photo rate at p99 < {args.slo_ms:g} ms")
                found = ramp(photo, Slo(p99_ms=args.slo_ms), start_rate=args.start_rate, max_rate=500.0,
                             step_seconds=args.seconds, on_step=step)
                best = found.best_rate
                best_run = next((run for rate, run, verdict in found.steps if rate == best and not verdict), None)
                result["by_encoder_threads"][str(threads)] = {
                    "closed_loop": [dataclasses.asdict(r) for r in rows],
                    "photo_rate_at_slo": best,
                    "photo_p99_ms_at_that_rate": best_run.overall().percentile(99) / 1e3 if best_run else None,
                    "ramp": [{"rate": rate, "p99_ms": run.overall().percentile(99) / 1e3,
                              "achieved": run.achieved_rate, "verdict": verdict} for rate, run, verdict in found.steps]}
                log(f"encoder threads {threads}: {best or 0:.1f} photos/s at p99 < {args.slo_ms:g} ms")
            finally:
                process.terminate()
                process.wait(timeout=60)
    result["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "clip_service.json").write_text(json.dumps(result, indent=2) + "\n")
    best_threads, best_rows = max(tables, key=lambda t: result["by_encoder_threads"][str(t[0])]["photo_rate_at_slo"] or 0)
    plot(best_rows, RESULTS / "clip_service.png")
    for threads, entry in result["by_encoder_threads"].items():
        print(f"encoder threads {threads}: highest photo rate at p99 < {args.slo_ms:g} ms: "
              f"{entry['photo_rate_at_slo'] or 0:.1f}/s (p99 {entry['photo_p99_ms_at_that_rate'] or float('nan'):.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
