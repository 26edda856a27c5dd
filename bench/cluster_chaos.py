"""Seeded chaos rounds against cluster mode (lookalike.cluster.chaos, which
tests/test_cluster_chaos.py runs too): replicas and one NATS node killed
(SIGKILL) at random moments while a writer upserts through a cluster router;
after each round, every acknowledged product must be there and the replicas of
each shard must hold the same products with bit-identical vectors.

A 3-node JetStream cluster (the stream with 3 copies), 2 shards x 2 replica
processes, 2 router processes (writes through one, checks through the other).
Each round (its own seed): --batches messages of 10 new products; 1-2 replicas
killed and started again after a random pause, and in every other round one
NATS node too.

    python bench/cluster_chaos.py --rounds 10 --seed 1

Results as JSON in bench/results/cluster_chaos.json, with the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann import log, machine_info  # noqa: E402  (bench/ann.py)

from lookalike.cluster.chaos import ChaosCluster, run_round  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batches", type=int, default=200, help="messages of 10 products a round")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "cluster_chaos.json"))
    args = parser.parse_args()
    results: dict = {"machine": machine_info(), "args": vars(args), "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        cluster = ChaosCluster.start(Path(tmp), routers=2)
        try:
            for round_ in range(args.rounds):
                outcome = run_round(cluster, round_, args.seed, args.batches, kill_nats=round_ % 2 == 1).as_dict()
                results["rounds"].append(outcome)
                log(json.dumps(outcome))
        finally:
            cluster.stop()
    rounds = results["rounds"]
    results["summary"] = {"rounds": len(rounds), "acknowledged": sum(r["acknowledged"] for r in rounds),
                          "lost": max((r["lost"] for r in rounds), default=0),
                          "rounds_diverged": sum(bool(r["diverged"]) for r in rounds),
                          "rounds_not_caught_up": sum(not r["caught_up"] for r in rounds)}
    log(json.dumps(results["summary"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    log(f"wrote {out}")
    return 0 if not results["summary"]["lost"] and not results["summary"]["rounds_diverged"] else 1


if __name__ == "__main__":
    sys.exit(main())
