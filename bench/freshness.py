"""Freshness: time from an Upsert's acknowledgement to the first search that
finds the product, while other clients keep the server busy with searches.

A server process (vectors only, loopback, fsync "always" unless --fsync says
otherwise) is filled with --base products; --load threads search without pause;
then --probes times over: upsert one new product with a fresh random vector,
and from the moment the acknowledgement arrives, search for that vector until
the product is the top hit (bounded by --timeout). Reports p50/p99/max of that
delay and of the acknowledgement itself, as JSON in bench/results/freshness.json.

    python bench/freshness.py --quick     # 2k products, 50 probes, well under a minute
    python bench/freshness.py             # 20k products, 300 probes
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann import log, machine_info  # noqa: E402  (bench/ann.py)

from lookalike.client import Client, Product, packed  # noqa: E402

DIM = 64
CONFIG = """
[[spaces]]
name = "clip"
dim = {dim}
[durability]
fsync = "{fsync}"
"""


def start_server(directory: Path, fsync: str) -> tuple[subprocess.Popen, str]:
    config = directory / "lookalike.toml"
    config.write_text(CONFIG.format(dim=DIM, fsync=fsync))
    process = subprocess.Popen([sys.executable, "-m", "lookalike.cli", "serve", "--config", str(config),
                                "--address", "127.0.0.1:0", "--http", "off", "--data-dir", str(directory / "data")],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    for line in process.stderr:
        match = re.search(r"serving on (127\.0\.0\.1:\d+)", line)
        if match:
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
            return process, match.group(1)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("the server did not start")


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def search_load(address: str, stop: threading.Event, rng_seed: int, counts: list[int]) -> None:
    rng = np.random.default_rng(rng_seed)
    with Client(address) as client:
        while not stop.is_set():
            client.search(vector=unit(rng, 1)[0], k=10)
            counts.append(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--base", type=int, default=20_000)
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--load", type=int, default=4, help="threads searching without pause")
    parser.add_argument("--fsync", default="always", choices=("always", "interval", "never"))
    parser.add_argument("--timeout", type=float, default=10.0, help="give up on one probe after this long")
    args = parser.parse_args()
    if args.quick:
        args.base, args.probes = 2_000, 50
    rng = np.random.default_rng(11)
    with tempfile.TemporaryDirectory(prefix="lookalike-freshness-") as tmp:
        process, address = start_server(Path(tmp), args.fsync)
        try:
            with Client(address, timeout=60) as client:
                log(f"loading {args.base} products")
                base = unit(rng, args.base)
                client.upsert((Product(id=i, vectors={"clip": packed(v)}) for i, v in enumerate(base)), batch=256)
                stop, counts = threading.Event(), []
                load = [threading.Thread(target=search_load, args=(address, stop, 100 + t, counts), daemon=True)
                        for t in range(args.load)]
                for t in load:
                    t.start()
                ack_ms, visible_ms, missed = [], [], 0
                started = time.perf_counter()
                for probe in range(args.probes):
                    id_, vector = args.base + probe, unit(rng, 1)[0]
                    sent = time.perf_counter()
                    client.upsert([Product(id=id_, vectors={"clip": packed(vector)})])
                    acked = time.perf_counter()
                    ack_ms.append((acked - sent) * 1e3)
                    while time.perf_counter() - acked < args.timeout:
                        hits = client.search(vector=vector, k=1).hits
                        if hits and hits[0].id == id_:
                            visible_ms.append((time.perf_counter() - acked) * 1e3)
                            break
                    else:
                        missed += 1
                    if (probe + 1) % max(1, args.probes // 10) == 0:
                        log(f"{probe + 1}/{args.probes} probes")
                elapsed = time.perf_counter() - started
                stop.set()
                for t in load:
                    t.join(timeout=30)
        finally:
            process.terminate()
            process.wait(timeout=60)

    def pct(values: list[float]) -> dict[str, float]:
        if not values:
            return {}
        return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
                "max": float(np.max(values))}

    result = {"base": args.base, "probes": args.probes, "load_threads": args.load, "fsync": args.fsync,
              "searches_per_s_under_load": len(counts) / elapsed, "ack_ms": pct(ack_ms),
              "ack_to_first_hit_ms": pct(visible_ms), "never_found": missed, "machine": machine_info()}
    out = Path(__file__).resolve().parent / "results" / "freshness.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
