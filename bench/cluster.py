"""Cluster mode: write throughput through a cluster router against one server,
a replica's visibility lag, and a stopped replica's catch-up rate.

A 3-node NATS JetStream cluster (the stream with 3 copies) on loopback, --shards
shards (2 by default; the seed's 100M products need about ten, docs/scaling.md)
x 2 replicas and a cluster router, all in this process (vectors only), and one
single server for comparison:

- throughput: --products products upserted in messages of 32, through the
  router and through the single server (fsync "always"), products/s; and at
  the end through the router again with every replica stopped (a write waits
  for JetStream only): in one process the replicas' applying takes the cores
  the router would have, which replicas on their own machines do not;
- lag: --probes single-product upserts at --rate a second through the router;
  for each, the time from its acknowledgement until every replica of its shard
  returns it (Get on each replica, polled every millisecond): p50/p99/max;
- catch-up: one replica stopped, --behind records of --behind-batch products
  each written (single-product records by default; 60000 products in records
  of 32 are a 60 s outage at 1,000 writes/s sent as `lookalike ingest` sends),
  the replica started again: the time until it has applied them all (with the
  1-minute load average before and after: other jobs slow a catch-up), and
  products/s. Twice: every record on the stopped replica's shard (one shard
  takes all the writes, the worst case), then spread over the shards as the
  products' ids hash (the replica misses its shard's share of the collection's
  writes).

    python bench/cluster.py --quick     # ~1 minute
    python bench/cluster.py

Results as JSON in bench/results/cluster.json, with the machine.
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
from ann import log, machine_info  # noqa: E402  (bench/ann.py)

from lookalike.client import Client, Product, packed  # noqa: E402
from lookalike.cluster.config import ClusterConfig  # noqa: E402
from lookalike.cluster.local import NatsServers  # noqa: E402
from lookalike.index.collection import SpaceConfig  # noqa: E402
from lookalike.index.sharding import shard_of  # noqa: E402
from lookalike.service.config import ServiceConfig  # noqa: E402
from lookalike.service.server import Server  # noqa: E402

DIM = int(os.environ.get("LOOKALIKE_BENCH_DIM", "64"))  # 512 for CLIP-sized vectors


def product(rng: np.random.Generator, id_: int) -> Product:
    return Product(id=id_, title=f"p{id_}", vectors={"v": packed(rng.standard_normal(DIM).astype(np.float32))})


def config(root: Path, name: str, cluster: ClusterConfig | None) -> ServiceConfig:
    return ServiceConfig(address="127.0.0.1:0", data_dir=str(root / name), workers=8,
                         spaces=(SpaceConfig("v", DIM),), **({"cluster": cluster} if cluster else {}))


def percentiles(values: list[float]) -> dict:
    a = np.asarray(values) * 1e3
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "max_ms": round(float(a.max()), 2), "n": len(values)}


def throughput(address: str, n: int, first_id: int) -> float:
    rng = np.random.default_rng(first_id)
    batch = [product(rng, first_id + i) for i in range(n)]
    with Client(address, timeout=120) as client:
        started = time.perf_counter()
        reply = client.upsert(batch, batch=32)
        elapsed = time.perf_counter() - started
    assert all(r.status_code == 0 for r in reply.results)
    return n / elapsed


def lag(router: str, replicas: dict[int, list[Server]], probes: int, rate: float, first_id: int) -> list[float]:
    rng = np.random.default_rng(first_id)
    delays = []
    clients = {s: [Client(r.address) for r in group] for s, group in replicas.items()}
    with Client(router) as writer:
        for i in range(probes):
            started = time.monotonic()
            id_ = first_id + i
            assert writer.upsert([product(rng, id_)]).results[0].status_code == 0
            acked = time.monotonic()
            shard = int(shard_of(np.array([id_]), len(replicas))[0])
            waiting = list(clients[shard])
            while waiting and time.monotonic() - acked < 10:
                waiting = [c for c in waiting if not c.get([id_]).products]
                if waiting:
                    time.sleep(0.001)
            delays.append(time.monotonic() - acked)
            time.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))
    for group in clients.values():
        for client in group:
            client.close()
    return delays


def catch_up(router: str, stopped: Server, restart_config: ServiceConfig, servers: list[Server],
             args: argparse.Namespace, spread: bool) -> tuple[Server, dict]:
    """Stops the replica, writes --behind records of --behind-batch products through
    the router, starts the replica again and times it until it has applied them.
    Not spread, every record goes to the stopped replica's shard (one shard takes
    all the writes); spread, the records' products go to every shard as their ids
    hash (the replica misses its shard's share, as when the write rate is the
    collection's)."""
    what = "over every shard" if spread else "all on its shard"
    log(f"catch-up: one replica of shard 0 stopped while {args.behind} records of {args.behind_batch} products "
        f"are written, {what}")
    stopped.stop(grace=0)
    servers.remove(stopped)
    rng = np.random.default_rng(4 if spread else 3)
    wanted = args.behind * args.behind_batch
    ids = (4 if spread else 3) * 10**9 + np.arange(2 * wanted * args.shards)  # enough on shard 0 alone
    written = ids[:wanted] if spread else ids[shard_of(ids, args.shards) == 0][:wanted]
    missed = int((shard_of(written, args.shards) == 0).sum())
    with Client(router, timeout=120) as client:
        for start in range(0, wanted, args.behind_batch):
            client.upsert([product(rng, int(i)) for i in written[start:start + args.behind_batch]])
    last_missed = int(written[shard_of(written, args.shards) == 0][-1])  # applied last, records apply in order
    again = Server(restart_config, shard=0)
    load_before = os.getloadavg()[0]  # other jobs on the machine: a catch-up is CPU-bound
    started = time.perf_counter()
    again.start()
    servers.append(again)
    with Client(again.address) as client:
        while not client.get([last_missed]).products and time.perf_counter() - started < 300:
            time.sleep(0.01)
    took = time.perf_counter() - started
    result = {"records": args.behind, "products_written": wanted, "products_missed": missed,
              "seconds_from_start": round(took, 2), "products_per_s": round(missed / took),
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    log(str(result))
    return again, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--shards", type=int, default=2, help="shards of 2 replicas each")
    parser.add_argument("--products", type=int, default=20_000)
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0, help="lag probes a second")
    parser.add_argument("--behind", type=int, default=5_000, help="records a stopped replica misses")
    parser.add_argument("--behind-batch", type=int, default=1, help="products in each of those records")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "cluster.json"))
    args = parser.parse_args()
    if args.quick:
        args.products, args.probes, args.behind = 3_000, 100, 1_000
    results: dict = {"machine": machine_info(), "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nats = NatsServers.start(root / "nats", 3)
        servers: list[Server] = []
        try:
            cluster = ClusterConfig(urls=nats.urls, shards=args.shards, stream_replicas=3, heartbeat_s=0.5,
                                    live_after_s=3)
            replicas = {s: [Server(config(root, f"s{s}r{r}", cluster), shard=s) for r in range(2)]
                        for s in range(args.shards)}
            for group in replicas.values():
                for server in group:
                    server.start()
                    servers.append(server)
            router = Server(config(root, "router", cluster), router=True)
            single = Server(config(root, "single", None))
            for server in (router, single):
                server.start()
                servers.append(server)
            time.sleep(2)  # the router hears the first heartbeats

            log(f"throughput: {args.products} products in messages of 32")
            results["throughput_products_per_s"] = {
                "cluster_router": round(throughput(router.address, args.products, 10**9)),
                "single_server": round(throughput(single.address, args.products, 10**9))}
            log(str(results["throughput_products_per_s"]))

            log(f"lag: {args.probes} probes at {args.rate}/s")
            results["visible_on_every_replica_after_ack"] = percentiles(
                lag(router.address, replicas, args.probes, args.rate, 2 * 10**9))
            log(str(results["visible_on_every_replica_after_ack"]))

            stopped = replicas[0][1]
            for spread in (False, True):
                stopped, results["catch_up_spread" if spread else "catch_up"] = catch_up(
                    router.address, stopped, config(root, "s0r1", cluster), servers, args, spread)

            # The replicas share this machine's cores with the router; stopped, what a
            # router and the log take alone (a write needs JetStream, not the replicas).
            log(f"throughput with every replica stopped: {args.products} products in messages of 32")
            for server in [s for s in servers if s not in (router, single)]:
                server.stop(grace=0)
                servers.remove(server)
            results["throughput_products_per_s"]["cluster_router_replicas_stopped"] = round(
                throughput(router.address, args.products, 5 * 10**9))
            log(str(results["throughput_products_per_s"]))
        finally:
            for server in reversed(servers):
                server.stop(grace=0)
            nats.stop()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
