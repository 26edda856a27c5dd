"""Per-stage latency of each query kind, with one caller and under load, against
the seed's budget (preprocess 5 ms, encode 20 ms, ANN 5 ms, end to end < 200 ms).

    python bench/latency.py --address 127.0.0.1:50051
    python bench/latency.py --kinds vector,text --callers 1,16 --seconds 5

Writes a Markdown table to stdout and bench/results/latency.{json,png} (a
stacked bar per kind and load). Closed loop: the load is `callers` concurrent
callers, so the numbers show contention, not queueing (bench/load.py does that).
"""

import argparse
import dataclasses
import sys
from pathlib import Path

from lookalike.client import Client
from lookalike.loadtest import report
from lookalike.loadtest.breakdown import BUDGET_MS, format_table, measure, plot
from lookalike.loadtest.runner import RunConfig, check_address
from lookalike.loadtest.workload import KINDS, ServerShape, WorkloadSpec, seed_products


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--allow-remote", action="store_true")
    parser.add_argument("--kinds", default=",".join(KINDS), help="query kinds (those the server cannot serve are skipped)")
    parser.add_argument("--callers", default="1,8", help="numbers of concurrent callers")
    parser.add_argument("--seconds", type=float, default=5.0, help="per kind and number of callers")
    parser.add_argument("--products", type=int, default=200, help="the harness's products, for more-like-this")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()

    check_address(args.address, args.allow_remote)
    with Client(args.address) as client:
        shape = ServerShape.from_stats(client.stats())
        spec = WorkloadSpec(shape=shape, products=args.products)
        seed_products(client, spec)
    kinds = []
    for kind in args.kinds.split(","):
        try:
            shape.check_mix({kind: 1.0})
            kinds.append(kind)
        except ValueError as e:
            print(f"skipping {kind}: {e}", file=sys.stderr)
    callers = tuple(int(c) for c in args.callers.split(","))
    base = RunConfig(address=args.address, workload=spec, mode="closed", duration=args.seconds,
                     processes=2, allow_remote=args.allow_remote)
    rows = measure(base, kinds, callers, args.seconds)
    print(format_table(rows))
    out = Path(args.out)
    report.write_json({"budget_ms": BUDGET_MS, "rows": [dataclasses.asdict(r) for r in rows]}, out / "latency.json")
    plot(rows, out / "latency.png")
    print(f"results in {out}/latency.json and latency.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
