"""Cluster mode with real processes: a 3-node NATS JetStream cluster (the log
stream with 3 copies), 2 shards x 2 replicas as `lookalike serve --shard I`
processes, and 2 cluster routers as `lookalike serve --router` processes; one
single server with the same catalog is the reference.

Checked: results and pages equal the single server's; a write through one
router is read through the other with min_seq; a publish retried with the same
message id is stored (and applied) once; a malformed record is skipped and
counted; a replica killed (-9) in the middle of a write stream comes back and
catches up, and the replicas of a shard hold the same products and
bit-identical vectors; a NATS node killed (-9) during writes loses nothing
acknowledged; a Delete answers its seq (and no counts), and a Get through the
other router with that min_seq reads it; a router tagging photos (zero_shot)
refuses them when the replicas' schema lacks the tags. Every process listens on loopback and is killed at the end."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from lookalike.client import Client
from lookalike.cluster import log_records
from lookalike.cluster.config import ClusterConfig
from lookalike.cluster.local import (AckedWriter, NatsServers, ReplicaProcess, RouterProcess, free_port,
                                    holdings_digest)
from lookalike.cluster.log import CollectionLog
from lookalike.cluster.membership import Membership
from lookalike.cluster.nats_link import NatsLink
from lookalike.cluster.snapshot_store import SnapshotStore
from lookalike.encoders.zero_shot import ZeroShotConfig
from lookalike.index.sharding import shard_of
from lookalike.service.config import ServiceConfig
from lookalike.service.server import Server
from lookalike.store.records import UpsertBatch
from lookalike.v1 import search_pb2
from test_router import LIMITS, EXACT, hits, node_config, picture, price_below, products


SHARDS, REPLICAS = 2, 2
SPACES_TOML = """
[[spaces]]
name = "v"
dim = 16
storage = "float32"
rerank = ""
[[spaces]]
name = "w"
dim = 8
metric = "l2"
storage = "float32"
rerank = ""
[schema]
category = "keyword"
price = "numeric"
[limits]
max_k = 100
max_results = 100
[durability]
snapshot_every_records = 25
"""


def cluster_config(urls) -> ClusterConfig:
    return ClusterConfig(urls=tuple(urls), shards=SHARDS, stream_replicas=3, heartbeat_s=0.3, live_after_s=1.5,
                         publish_timeout_s=8)


def cluster_toml(urls) -> str:
    listed = ", ".join(f'"{u}"' for u in urls)
    return (f"[cluster]\nurls = [{listed}]\nshards = {SHARDS}\nstream_replicas = 3\nheartbeat_s = 0.3\n"
            "live_after_s = 1.5\npublish_timeout_s = 8\n")


def replica_toml(name: str, urls, metrics_port: int = 0) -> str:
    """A replica's config: the shards' spaces and schema, this cluster, its own id."""
    metrics = f'metrics_address = "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    return metrics + SPACES_TOML + cluster_toml(urls) + f'replica_id = "{name}"\nsnapshot_publish_s = 0.5\n'


def router_toml(urls) -> str:
    """A router's config: LIMITS and this cluster (the spaces it learns from the replicas)."""
    return (f"workers = 4\n[limits]\nmax_k = {LIMITS.max_k}\nmax_results = {LIMITS.max_results}\n"
            + cluster_toml(urls))


@dataclass
class Cluster:
    nats: NatsServers
    replicas: list[ReplicaProcess]
    routers: list[RouterProcess]
    reference: Server
    link: NatsLink
    log: CollectionLog
    membership: Membership
    metrics_port: int
    written: set[int] = field(default_factory=set)   # every product id the tests wrote

    def caught_up(self, seq: int, timeout: float = 30) -> None:
        """Waits until every replica process is live and applied every record up to ``seq``."""
        def ready():
            live = {m.replica: m for m in self.membership.live()}
            return all(r.name in live and live[r.name].caught_up_seq >= seq for r in self.replicas)

        assert self.membership.wait(ready, timeout), (
            f"replicas not caught up with seq {seq}: {[(m.replica, m.caught_up_seq) for m in self.membership.live()]}"
            + "".join(f"\n--- {r.name}:\n" + "\n".join(r.log_text().splitlines()[-15:]) for r in self.replicas))

    def member(self, name: str):
        return next(m for m in self.membership.live() if m.replica == name)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    nats = NatsServers.start(root / "nats", 3)
    replicas = [ReplicaProcess(s, f"s{s}r{r}", root) for s in range(SHARDS) for r in range(REPLICAS)]
    metrics_port = free_port()  # the last replica's /metrics
    routers = [RouterProcess(f"router-{i}", root) for i in range(2)]
    reference = link = None
    try:
        for replica in replicas:
            replica.start(replica_toml(replica.name, nats.urls, metrics_port if replica is replicas[-1] else 0))
        for router in routers:
            router.start(router_toml(nats.urls))
        reference = Server(node_config(root / "single"))
        reference.start()
        for process in replicas + routers:
            process.wait_serving()
        link = NatsLink(cluster_config(nats.urls), "test")
        log = CollectionLog(link)
        log.ensure()
        membership = Membership(link)
        membership.start()
        c = Cluster(nats, replicas, routers, reference, link, log, membership, metrics_port)
        c.caught_up(0, timeout=60)
        yield c
    finally:
        if reference is not None:
            reference.stop(grace=0)
        for process in routers + replicas:
            process.kill()
        if link is not None:
            link.close()
        nats.stop()


def upsert_all(client: Client, catalog) -> int:
    reply = client.upsert(catalog, batch=32)
    assert [r.status_code for r in reply.results] == [0] * len(catalog), reply.results
    assert reply.seq == max(r.seq for r in reply.results) > 0
    return reply.seq


def search(client: Client, query: np.ndarray, min_seq: int = 0, **fields):
    from lookalike.client import packed

    request = search_pb2.SearchRequest(query=search_pb2.Query(vector=packed(query)), params=EXACT,
                                       min_seq=min_seq, **fields)
    return client.stub.Search(request, timeout=10)


def assert_converged(cluster: Cluster, ids: list[int]) -> None:
    """Every replica of a shard holds the same products (of ``ids``) with the same vectors."""
    owners = shard_of(np.asarray(ids, dtype=np.int64), SHARDS)
    for shard in range(SHARDS):
        own = [i for i, s in zip(ids, owners.tolist()) if s == shard]
        sums = {r.name: holdings_digest(r.address, own, ("v", "w")) for r in cluster.replicas if r.shard == shard}
        assert len(set(sums.values())) == 1, sums
        assert next(iter(sums.values())).startswith(f"{len(own)}:"), sums


def test_results_equal_one_server_and_min_seq_reads_across_routers(cluster):
    catalog = products(160, seed=1)
    a, b = cluster.routers
    with Client(a.address) as via_a, Client(b.address) as via_b, Client(cluster.reference.address) as single:
        seq = upsert_all(via_a, catalog)
        cluster.written |= {p.id for p in catalog}
        assert [r.status_code for r in single.upsert(catalog, batch=32).results] == [0] * len(catalog)
        rng = np.random.default_rng(5)
        for query in rng.standard_normal((4, 16)).astype(np.float32):
            # Written through router A, read at once through router B: min_seq makes it see the writes.
            first = search(via_b, query, min_seq=seq, k=10, filter=price_below(60))
            assert hits(first) == hits(search(single, query, k=10, filter=price_below(60)))
            second = search(via_b, query, min_seq=seq, k=10, page_token=first.next_page_token, filter=price_below(60))
            assert hits(second) == hits(search(single, query, k=10, page_token=first.next_page_token,
                                                  filter=price_below(60)))
            assert len(first.hits) == 10 and not set(hits(first)) & set(hits(second))

        doomed = [p.id for p in catalog[:5]]
        deleted = via_a.delete(doomed)
        single.delete(doomed)
        gone = via_a.delete(filter=price_below(3))
        single.delete(filter=price_below(3))
        assert gone.seq > deleted.seq > seq
        query = rng.standard_normal(16).astype(np.float32)
        assert hits(search(via_b, query, min_seq=gone.seq, k=50)) == hits(search(single, query, k=50))
        cluster.caught_up(gone.seq)  # Stats reads are eventual: any live replica answers
        stats = via_b.stats()
        assert stats.products == single.stats().products == len(catalog) - len(
            {p.id for p in catalog[:5]} | {p.id for i, p in enumerate(catalog) if i % 100 < 3})

    with Client(cluster.replicas[0].address) as replica:  # writes go through the log only
        with pytest.raises(grpc.RpcError) as refused:
            replica.upsert(catalog[:1])
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_a_delete_answers_its_seq_and_a_get_with_it_reads_the_delete_through_the_other_router(cluster):
    fresh = products(6, seed=21)
    cluster.written |= {p.id for p in fresh}
    a, b = cluster.routers
    with Client(a.address) as via_a, Client(b.address) as via_b:
        seq = upsert_all(via_a, fresh)
        doomed = [p.id for p in fresh[:3]]
        reply = via_a.delete(doomed + [10**14])  # the last id was never written
        # Acknowledged once the log stored it, before a replica applied it: no counts (search.proto).
        assert reply.seq > seq and reply.deleted == 0 and list(reply.unknown_ids) == []
        got = via_b.get([p.id for p in fresh], min_seq=reply.seq)
        assert [p.id for p in got.products] == [p.id for p in fresh[3:]]
        assert list(got.missing_ids) == doomed


def one_product_record(product_id: int, seed: int) -> bytes:
    vectors = np.random.default_rng(seed).standard_normal((1, 24)).astype(np.float32)
    return log_records.encode(UpsertBatch(ids=np.array([product_id], dtype=np.int64),
                                          vectors={"v": vectors[:, :16], "w": vectors[:, 16:]},
                                          attributes={}, titles=[f"record {product_id}"], image_uris=[""]))


def test_a_retried_publish_is_stored_and_applied_once(cluster):
    product_id = 10**13 + 1
    shard = int(shard_of(np.array([product_id]), SHARDS)[0])
    record = one_product_record(product_id, seed=2)
    cluster.written.add(product_id)
    first = cluster.log.publish(shard, record, "retry-test:1")
    again = cluster.log.publish(shard, record, "retry-test:1")  # as after a lost acknowledgement
    assert again == first and cluster.log.last_seq() == first
    cluster.caught_up(first)
    with Client(cluster.routers[1].address) as client:
        assert [p.id for p in client.get([product_id]).products] == [product_id]


def test_a_malformed_record_is_skipped_and_counted(cluster):
    product_id = 10**13 + 2
    shard = int(shard_of(np.array([product_id]), SHARDS)[0])
    before = {r.name: cluster.member(r.name).skipped for r in cluster.replicas if r.shard == shard}
    cluster.written.add(product_id)
    bad = cluster.log.publish(shard, b"LKR\x01\x01 this is no write batch", "malformed:1")
    good = cluster.log.publish(shard, one_product_record(product_id, seed=3), "after-malformed:1")
    cluster.caught_up(good)
    for replica in cluster.replicas:
        if replica.shard == shard:
            assert cluster.member(replica.name).skipped == before[replica.name] + 1
            assert f"record at stream seq {bad} skipped" in replica.log_text()
            assert replica.process.poll() is None
    with Client(cluster.routers[0].address) as client:
        assert [p.id for p in client.get([product_id]).products] == [product_id]


def test_a_replica_killed_mid_stream_catches_up_and_converges(cluster):
    victim = next(r for r in cluster.replicas if r.name == "s0r1")
    writer = AckedWriter(cluster.routers[0].address, batches=30, make_batch=lambda b: products(10, seed=7000 + b))
    writer.start()
    writer.wait_for(8)
    victim.kill()
    writer.wait_for(18)
    victim.start(replica_toml(victim.name, cluster.nats.urls))
    writer.join(60)
    cluster.written |= set(writer.acknowledged)
    assert not writer.is_alive() and not writer.failures, writer.failures
    victim.wait_serving()
    assert "consuming the stream from seq" in victim.log_text()
    cluster.caught_up(writer.max_seq)
    assert_converged(cluster, writer.acknowledged)
    assert len(writer.acknowledged) == 300


def test_a_nats_node_killed_during_writes_loses_nothing_acknowledged(cluster):
    node = cluster.nats.nodes[1]
    writer = AckedWriter(cluster.routers[1].address, batches=30, make_batch=lambda b: products(10, seed=8000 + b))
    writer.start()
    writer.wait_for(8)
    node.kill()
    writer.join(90)
    cluster.written |= set(writer.acknowledged)
    assert not writer.is_alive()
    node.start()
    assert len(writer.acknowledged) >= 200, writer.failures   # writes went on without the node
    cluster.caught_up(writer.max_seq, timeout=45)
    with Client(cluster.routers[0].address) as client:
        found = {p.id for p in client.get(writer.acknowledged).products}
    missing = set(writer.acknowledged) - found
    assert not missing, f"{len(missing)} acknowledged products missing; of them, each replica holds " + str(
        {r.name: holdings_digest(r.address, sorted(missing), ("v",)).split(":")[0] for r in cluster.replicas})
    assert_converged(cluster, writer.acknowledged)


def test_a_new_replica_with_an_empty_data_directory_joins_and_converges(cluster):
    fresh = products(20, seed=9)
    cluster.written |= {p.id for p in fresh}
    with Client(cluster.routers[0].address) as client:
        seq = client.upsert(fresh, batch=20).seq
    newcomer = ReplicaProcess(1, "s1r2", cluster.replicas[0].root)
    newcomer.start(replica_toml(newcomer.name, cluster.nats.urls))
    try:
        newcomer.wait_serving()
        cluster.replicas.append(newcomer)
        cluster.caught_up(seq)
        with Client(cluster.routers[1].address) as client:
            everything = [p.id for p in client.get(sorted(cluster.written)).products]  # what was not deleted
        assert len(everything) > 300
        assert_converged(cluster, everything)
    finally:
        newcomer.kill()
        cluster.replicas.remove(newcomer)


def test_status_command_and_replica_metrics(cluster):
    config = cluster.replicas[0].root / f"{cluster.replicas[0].name}.toml"
    shown = subprocess.run([sys.executable, "-m", "lookalike.cli", "cluster", "status", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    last = cluster.log.last_seq()
    assert f"stream LK_products: records 1..{last}" in shown.stdout
    for replica in cluster.replicas:
        line = rf"{replica.name}\s+{re.escape(replica.address)}\s+caught up to \d+"
        assert re.search(line, shown.stdout), shown.stdout
    assert shown.stdout.count("replica(s)") == SHARDS

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{cluster.metrics_port}/metrics",
                                     timeout=10).read().decode()
    lag = re.search(r"^lookalike_replica_lag_records (\S+)$", metrics, re.M)
    applied = re.search(r"^lookalike_replica_applied_seq (\S+)$", metrics, re.M)
    assert lag and applied and float(applied.group(1)) > 0 and float(lag.group(1)) >= 0


def test_a_photo_goes_to_the_object_store_and_its_digest_to_the_replicas(cluster, tiny_clip_bundle, tmp_path):
    """A router holding a model encodes the photo (into the model's spaces; the
    product brings the shards' vectors) and keeps it by its SHA-256."""
    photo = picture(3)
    product = products(1, seed=13)[0]
    product.image = photo
    cluster.written.add(product.id)
    router = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "router"), workers=4,
                                  model=str(tiny_clip_bundle), limits=LIMITS,
                                  cluster=cluster_config(cluster.nats.urls)), router=True)
    router.start()
    try:
        with Client(router.address) as client:
            reply = client.upsert([product])
            assert reply.results[0].status_code == 0, reply.results[0].error
            cluster.caught_up(reply.seq)
            stored = client.get([product.id]).products[0].metadata
    finally:
        router.stop(grace=0)
    digest = hashlib.sha256(photo).hexdigest()
    assert stored.image_sha256 == digest and stored.title == product.title
    assert cluster.log.get_image(digest) == photo
    assert cluster.log.put_image(photo) == digest  # already there: kept once


def test_a_router_tagging_photos_refuses_them_when_the_replicas_lack_the_tags_attributes(cluster, tiny_clip_bundle,
                                                                                          tmp_path):
    """The replicas would skip such a record after it was acknowledged."""
    product = products(1, seed=14)[0]
    product.image = picture(4)
    router = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "router"), limits=LIMITS,
                                  model=str(tiny_clip_bundle), cluster=cluster_config(cluster.nats.urls),
                                  zero_shot=ZeroShotConfig(enabled=True, vocabularies={"colour": ["red", "blue"]})),
                    router=True)
    router.start()
    try:
        with Client(router.address) as client:
            result = client.upsert([product]).results[0]
    finally:
        router.stop(grace=0)
    assert result.status_code == grpc.StatusCode.FAILED_PRECONDITION.value[0] and result.seq == 0
    assert "zero_shot: the replicas' schema lacks {'colour': 'keyword', 'colour_confidence': 'numeric'}" in result.error


def test_an_empty_replica_starts_from_the_newest_published_snapshot(cluster):
    """Last in this module: it purges the stream's records before that snapshot."""
    fresh = products(40, seed=12)
    cluster.written |= {p.id for p in fresh}
    with Client(cluster.routers[0].address) as client:
        for i in range(0, len(fresh), 2):
            assert client.upsert(fresh[i:i + 2]).results[0].status_code == 0
    # Every replica applies them first: the purge below takes the records of both shards, and a
    # replica still behind it (busy publishing a snapshot on a loaded machine) could never catch up.
    cluster.caught_up(cluster.log.last_seq())
    store = SnapshotStore(cluster.link)
    deadline = time.monotonic() + 20
    while not store.names(1) and time.monotonic() < deadline:
        time.sleep(0.2)
    newest = int(Path(store.names(1)[0]).stem)
    cluster.link.run(cluster.link.js.purge_stream(cluster.log.config.stream, seq=newest + 1), timeout=10)
    assert cluster.link.run(cluster.link.js.stream_info(cluster.log.config.stream), timeout=10).state.first_seq > 1

    newcomer = ReplicaProcess(1, "s1r3", cluster.replicas[0].root)
    newcomer.start(replica_toml(newcomer.name, cluster.nats.urls))
    try:
        newcomer.wait_serving()
        assert "bootstrapped from the published snapshot" in newcomer.log_text()
        cluster.replicas.append(newcomer)
        cluster.caught_up(cluster.log.last_seq())
        with Client(cluster.routers[1].address) as client:
            everything = [p.id for p in client.get(sorted(cluster.written)).products]
        assert_converged(cluster, everything)
    finally:
        newcomer.kill()
        cluster.replicas.remove(newcomer)
