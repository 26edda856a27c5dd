"""Seeded chaos rounds against a throw-away cluster on loopback (local.py):
replicas and one NATS node killed (SIGKILL) at random moments while a writer
upserts through a cluster router; after each round every acknowledged product
must be there and the replicas of each shard must hold the same products with
bit-identical vectors. bench/cluster_chaos.py runs them at length,
tests/test_cluster_chaos.py ten short ones. Not for production.

The cluster: a 3-node JetStream cluster (the stream with 3 copies), ``shards``
x ``replicas`` replica processes and ``routers`` cluster router processes. A
round (its own seed): a writer sends ``batches`` messages of 10 new products
through the first router; 1-2 replicas are killed when the writer has sent a
random number of messages and started again after a random pause, and with
``kill_nats`` one NATS node too. Then every process that is down is started
again, every replica must catch up with the round's last acknowledged write,
and the checks read through the last router.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lookalike.client import Client, Product, packed
from lookalike.cluster.config import ClusterConfig
from lookalike.cluster.local import (AckedWriter, NatsServers, Node, ReplicaProcess, RouterProcess, ServerProcess,
                                    holdings_digest)
from lookalike.cluster.membership import Membership
from lookalike.cluster.nats_link import NatsLink
from lookalike.index.sharding import shard_of

DIM = 16
PRODUCTS_A_MESSAGE = 10
MAX_ID = 5000  # Get's ids a call (a server's max_ids)


def _cluster_toml(urls, shards: int) -> str:
    listed = ", ".join(f'"{u}"' for u in urls)
    return (f"[cluster]\nurls = [{listed}]\nshards = {shards}\nstream_replicas = 3\nheartbeat_s = 0.3\n"
            "live_after_s = 1.5\npublish_timeout_s = 8\n")


def replica_toml(name: str, urls, shards: int) -> str:
    return (f'[[spaces]]\nname = "v"\ndim = {DIM}\nstorage = "float32"\nrerank = ""\n'
            "[durability]\nsnapshot_every_records = 20\n"
            + _cluster_toml(urls, shards) + f'replica_id = "{name}"\nsnapshot_publish_s = 2\n')


def router_toml(urls, shards: int) -> str:
    return "workers = 4\n" + _cluster_toml(urls, shards)


@dataclass
class ChaosCluster:
    nats: NatsServers
    replicas: list[ReplicaProcess]
    routers: list[RouterProcess]
    membership: Membership
    link: NatsLink
    shards: int
    acknowledged: list[int] = field(default_factory=list)  # every product acknowledged so far

    @classmethod
    def start(cls, root: Path, shards: int = 2, replicas: int = 2, routers: int = 1) -> ChaosCluster:
        """Starts it all under ``root`` and waits until every replica is live; stop() ends it."""
        root = Path(root)
        nats = NatsServers.start(root / "nats", 3)
        started = []
        try:
            replica_processes = [ReplicaProcess(s, f"s{s}r{r}", root) for s in range(shards) for r in range(replicas)]
            router_processes = [RouterProcess(f"router-{i}", root) for i in range(routers)]
            for replica in replica_processes:
                started.append(replica)
                replica.start(replica_toml(replica.name, nats.urls, shards))
            for router in router_processes:
                started.append(router)
                router.start(router_toml(nats.urls, shards))
            for process in started:
                process.wait_serving()
            link = NatsLink(ClusterConfig(urls=nats.urls, shards=shards, stream_replicas=3, heartbeat_s=0.3,
                                          live_after_s=1.5), "chaos")
            membership = Membership(link)
            membership.start()
        except BaseException:
            for process in started:
                process.kill()
            nats.stop()
            raise
        cluster = cls(nats, replica_processes, router_processes, membership, link, shards)
        cluster.wait_caught_up(0, 60)
        return cluster

    def stop(self) -> None:
        self.membership.stop()
        self.link.close()
        for process in self.routers + self.replicas:
            process.kill()
        self.nats.stop()

    def wait_caught_up(self, seq: int, timeout: float) -> bool:
        """Whether every replica process is live and applied every record up to ``seq`` within ``timeout``."""
        def ready() -> bool:
            live = {m.replica: m for m in self.membership.live()}
            return all(r.name in live and live[r.name].caught_up_seq >= seq for r in self.replicas)

        return self.membership.wait(ready, timeout)

    def restart_the_dead(self) -> None:
        """Starts again every NATS node and server process that is down, and
        waits until each server serves (learning the address of those started
        again meanwhile)."""
        for node in self.nats.nodes:
            if node.process.poll() is not None:
                node.start()
        for process in self.replicas + self.routers:
            if process.process.poll() is not None:
                process.start(self.config_of(process))
        for process in self.replicas + self.routers:
            process.wait_serving()

    def config_of(self, process: ServerProcess) -> str:
        if isinstance(process, ReplicaProcess):
            return replica_toml(process.name, self.nats.urls, self.shards)
        return router_toml(self.nats.urls, self.shards)


@dataclass
class RoundOutcome:
    round: int
    seconds: float
    events: list[str]
    acknowledged: int              # products acknowledged in this round
    failed: int                    # products or messages refused in this round
    caught_up: bool                # every replica caught up with the round's writes in time
    lost: int                      # acknowledged products (of every round so far) not found through a router
    diverged: list[dict[str, str]]  # per shard whose replicas differ: replica -> "<count>:<SHA-256>"

    def as_dict(self) -> dict:
        return asdict(self)


def batch_maker(round_: int):
    """Message ``b`` of round ``round_``: 10 new products, ids unique across rounds."""
    def make(b: int) -> list[Product]:
        rng = np.random.default_rng(round_ * 100_000 + b)
        first = (round_ * 10_000 + b) * PRODUCTS_A_MESSAGE
        return [Product(id=first + i, title=f"r{round_} p{first + i}",
                        vectors={"v": packed(rng.standard_normal(DIM).astype(np.float32))})
                for i in range(PRODUCTS_A_MESSAGE)]
    return make


def run_round(cluster: ChaosCluster, round_: int, seed: int, batches: int, kill_nats: bool,
              catch_up_timeout: float = 120) -> RoundOutcome:
    started = time.monotonic()
    rng = np.random.default_rng(seed * 1000 + round_)
    events: list[str] = []
    writer = AckedWriter(cluster.routers[0].address, batches, batch_maker(round_))
    writer.start()
    restarts = _chaos(rng, writer, cluster, kill_nats, events)
    writer.join(180)
    for restart in restarts:
        restart.join()
    cluster.restart_the_dead()
    cluster.acknowledged += writer.acknowledged
    caught_up = cluster.wait_caught_up(writer.max_seq, catch_up_timeout)
    acknowledged = cluster.acknowledged
    with Client(cluster.routers[-1].address, timeout=60) as client:
        found = {p.id for start in range(0, len(acknowledged), MAX_ID)
                 for p in client.get(acknowledged[start:start + MAX_ID]).products}
    return RoundOutcome(round_, round(time.monotonic() - started, 1), events, len(writer.acknowledged),
                        len(writer.failures), caught_up, len(set(acknowledged) - found),
                        diverged_shards(cluster, acknowledged))


def diverged_shards(cluster: ChaosCluster, ids: list[int]) -> list[dict[str, str]]:
    """The shards whose replicas do not all hold every one of their ``ids`` with
    the same vectors and titles: each as replica name -> its holdings digest."""
    owners = shard_of(np.asarray(ids, dtype=np.int64), cluster.shards).tolist()
    diverged = []
    for shard in range(cluster.shards):
        own = [i for i, s in zip(ids, owners) if s == shard]
        digests = {r.name: holdings_digest(r.address, own, ("v",)) for r in cluster.replicas if r.shard == shard}
        if len(set(digests.values())) != 1 or not next(iter(digests.values())).startswith(f"{len(own)}:"):
            diverged.append(digests)
    return diverged


def _chaos(rng: np.random.Generator, writer: AckedWriter, cluster: ChaosCluster, kill_nats: bool,
           events: list[str]) -> list[threading.Timer]:
    """Kills 1-2 replicas (and with ``kill_nats`` one NATS node), each once
    the writer has answered a random number of messages (in the first two
    thirds of them), and starts each again after a random pause; returns the
    restart timers."""
    victims = [("replica", int(v)) for v in rng.choice(len(cluster.replicas), size=int(rng.integers(1, 3)),
                                                       replace=False)]
    if kill_nats:
        victims.append(("nats", int(rng.integers(len(cluster.nats.nodes)))))
    moments = sorted(int(m) for m in rng.integers(1, max(2, writer.batches * 2 // 3), size=len(victims)))
    restarts = []
    for (kind, which), moment in zip(victims, moments):
        writer.wait_for(moment, timeout=60)
        process = cluster.replicas[which] if kind == "replica" else cluster.nats.nodes[which]
        process.kill()
        when = "while writing" if writer.is_alive() else "after the writes"
        events.append(f"killed {kind} {process.name} {when}, {writer.done_batches} messages answered")
        restart = threading.Timer(float(rng.uniform(0.3, 2.0)), _restart, (cluster, process))
        restart.start()
        restarts.append(restart)
    return restarts


def _restart(cluster: ChaosCluster, process: ServerProcess | Node) -> None:
    if isinstance(process, ServerProcess):
        process.start(cluster.config_of(process))
    else:
        process.start()
