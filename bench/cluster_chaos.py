"""Seeded chaos rounds against cluster mode: replicas and one NATS node killed
(SIGKILL) at random moments while a writer upserts through a cluster router;
after each round, every acknowledged product must be there and the replicas of
each shard must hold the same products with bit-identical vectors.

A 3-node JetStream cluster (the stream with 3 copies), 2 shards x 2 replica
processes, one router in this process. Each round (its own seed): a writer
sends --batches messages of 10 new products; meanwhile 1-2 replicas are killed
at random moments and started again after a random pause, and in every other
round one NATS node too. Then the round waits for every replica to catch up and
checks: acknowledged products missing (through the router), replicas whose
holdings differ from their peers' (a SHA-256 of ids, vectors and titles).

    python bench/cluster_chaos.py --rounds 10 --seed 1

Results as JSON in bench/results/cluster_chaos.json, with the machine.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ann import log, machine_info  # noqa: E402  (bench/ann.py)

from lookalike.client import Client, Product, packed  # noqa: E402
from lookalike.cluster.config import ClusterConfig  # noqa: E402
from lookalike.cluster.local import AckedWriter, NatsServers, ReplicaProcess, holdings_digest  # noqa: E402
from lookalike.cluster.membership import Membership  # noqa: E402
from lookalike.cluster.nats_link import NatsLink  # noqa: E402
from lookalike.index.sharding import shard_of  # noqa: E402
from lookalike.service.config import ServiceConfig  # noqa: E402
from lookalike.service.server import Server  # noqa: E402

DIM, SHARDS = 16, 2


def replica_toml(name: str, urls) -> str:
    listed = ", ".join(f'"{u}"' for u in urls)
    return (f'[[spaces]]\nname = "v"\ndim = {DIM}\nstorage = "float32"\nrerank = ""\n'
            "[durability]\nsnapshot_every_records = 20\n"
            f"[cluster]\nurls = [{listed}]\nshards = {SHARDS}\nstream_replicas = 3\nheartbeat_s = 0.3\n"
            f'live_after_s = 1.5\nreplica_id = "{name}"\nsnapshot_publish_s = 2\n')


def batch_maker(round_: int):
    def make(b: int) -> list[Product]:
        rng = np.random.default_rng(round_ * 100_000 + b)
        first = (round_ * 10_000 + b) * 10
        return [Product(id=first + i, title=f"r{round_} p{first + i}",
                        vectors={"v": packed(rng.standard_normal(DIM).astype(np.float32))}) for i in range(10)]
    return make


def chaos(rng: np.random.Generator, writer: AckedWriter, replicas: list[ReplicaProcess], nats: NatsServers,
          urls, kill_nats: bool, events: list[str]) -> None:
    """Kills and restarts at random moments while the writer runs."""
    victims = list(rng.choice(len(replicas), size=int(rng.integers(1, 3)), replace=False))
    plan = [("replica", int(v)) for v in victims]
    if kill_nats:
        plan.append(("nats", int(rng.integers(len(nats.nodes)))))
    for kind, which in plan:
        time.sleep(float(rng.uniform(0.2, 1.5)))
        if not writer.is_alive():
            break
        if kind == "replica":
            replicas[which].kill()
            events.append(f"killed replica {replicas[which].name} after {writer.done_batches} messages")
        else:
            nats.nodes[which].kill()
            events.append(f"killed NATS node {nats.nodes[which].name} after {writer.done_batches} messages")
        pause = float(rng.uniform(0.3, 2.0))
        threading.Timer(pause, _restart, (kind, which, replicas, nats, urls)).start()


def _restart(kind: str, which: int, replicas: list[ReplicaProcess], nats: NatsServers, urls) -> None:
    if kind == "replica":
        replicas[which].start(replica_toml(replicas[which].name, urls))
    else:
        nats.nodes[which].start()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batches", type=int, default=200, help="messages of 10 products a round")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "cluster_chaos.json"))
    args = parser.parse_args()
    results: dict = {"machine": machine_info(), "args": vars(args), "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nats = NatsServers.start(root / "nats", 3)
        replicas = [ReplicaProcess(s, f"s{s}r{r}", root) for s in range(SHARDS) for r in range(2)]
        router = link = None
        try:
            for replica in replicas:
                replica.start(replica_toml(replica.name, nats.urls))
            for replica in replicas:
                replica.wait_serving()
            cluster = ClusterConfig(urls=nats.urls, shards=SHARDS, stream_replicas=3, heartbeat_s=0.3,
                                    live_after_s=1.5, publish_timeout_s=8)
            router = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(root / "router"), cluster=cluster),
                            router=True)
            router.start()
            link = NatsLink(cluster, "chaos")
            membership = Membership(link)
            membership.start()
            acknowledged: list[int] = []
            for round_ in range(args.rounds):
                rng = np.random.default_rng(args.seed * 1000 + round_)
                started = time.monotonic()
                events: list[str] = []
                writer = AckedWriter(router.address, args.batches, batch_maker(round_))
                writer.start()
                chaos(rng, writer, replicas, nats, nats.urls, kill_nats=round_ % 2 == 1, events=events)
                writer.join(180)
                time.sleep(2.5)  # every restart timer has fired
                for node in nats.nodes:
                    if node.process.poll() is not None:
                        node.start()
                for replica in replicas:
                    if replica.process.poll() is not None:
                        replica.start(replica_toml(replica.name, nats.urls))
                for replica in replicas:
                    replica.wait_serving()
                acknowledged += writer.acknowledged
                target = writer.max_seq
                caught_up = membership.wait(lambda: all(
                    any(m.replica == r.name and m.caught_up_seq >= target for m in membership.live())
                    for r in replicas), 120)
                with Client(router.address, timeout=60) as client:
                    found = {p.id for start in range(0, len(acknowledged), 5000)
                             for p in client.get(acknowledged[start:start + 5000]).products}
                owners = shard_of(np.asarray(acknowledged, dtype=np.int64), SHARDS)
                diverged = []
                for shard in range(SHARDS):
                    own = [i for i, s in zip(acknowledged, owners.tolist()) if s == shard]
                    digests = {r.name: holdings_digest(r.address, own, ("v",)) for r in replicas if r.shard == shard}
                    if len(set(digests.values())) != 1 or not next(iter(digests.values())).startswith(f"{len(own)}:"):
                        diverged.append(digests)
                outcome = {"round": round_, "seconds": round(time.monotonic() - started, 1), "events": events,
                           "acknowledged": len(writer.acknowledged), "failed": len(writer.failures),
                           "caught_up": caught_up, "lost": len(set(acknowledged) - found), "diverged": diverged}
                results["rounds"].append(outcome)
                log(json.dumps(outcome))
        finally:
            if router is not None:
                router.stop(grace=0)
            if link is not None:
                link.close()
            for replica in replicas:
                replica.kill()
            nats.stop()
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
