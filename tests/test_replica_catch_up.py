"""A shard replica far behind its shard, in process against one real NATS node
(JetStream): fetching in small batches, each next batch is fetched while the
one before is applied. Checked: every record of the shard is applied once, in
stream order, none of the other shard's; and when the replica's consumer is
deleted on the server in the middle of the catch-up (a fetch started ahead is
then pending on it), the replica consumes again from its last applied record
and still applies each record once, in order."""

from __future__ import annotations

import logging
import time

import nats.js.errors
import numpy as np
import pytest

from lookalike.cluster import log_records
from lookalike.cluster.config import ClusterConfig
from lookalike.cluster.local import NatsServers
from lookalike.cluster.log import CollectionLog
from lookalike.cluster.nats_link import NatsLink
from lookalike.cluster.replica import ShardReplica, consumer_name
from lookalike.cluster.replica_store import ReplicaStore
from lookalike.index.collection import Collection, SpaceConfig
from lookalike.store.catalog import Catalog
from lookalike.store.records import UpsertBatch

DIM = 8


class RecordingStore(ReplicaStore):
    """A ReplicaStore that notes the stream sequences it applies, and can be
    slowed so that a test acts while a catch-up is under way."""

    def __init__(self, *args, pause_s: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seqs: list[int] = []
        self._pause_s = pause_s

    def apply(self, seq, record) -> None:
        super().apply(seq, record)
        self.seqs.append(seq)
        time.sleep(self._pause_s)

    def apply_run(self, run) -> None:
        super().apply_run(run)
        self.seqs.extend(seq for seq, _ in run)
        time.sleep(self._pause_s)


@pytest.fixture()
def log(tmp_path):
    nats_servers = NatsServers.start(tmp_path / "nats", 1)
    link = NatsLink(ClusterConfig(urls=nats_servers.urls, shards=2, stream_replicas=1), "test-catch-up")
    try:
        collection_log = CollectionLog(link)
        collection_log.ensure()
        yield collection_log
    finally:
        link.close()
        nats_servers.stop()


def record(product_id: int) -> bytes:
    vectors = np.random.default_rng(product_id).standard_normal((1, DIM)).astype(np.float32)
    return log_records.encode(UpsertBatch(ids=np.array([product_id], dtype=np.int64), vectors={"v": vectors},
                                          attributes={}, titles=[f"p{product_id}"], image_uris=[""]))


def publish(log: CollectionLog, products: int) -> list[int]:
    """Records of one product each, alternating between the two shards;
    returns the stream sequences of shard 0's."""
    shard0 = []
    for product_id in range(products):
        seq = log.publish(product_id % 2, record(product_id), f"catch-up:{product_id}")
        if product_id % 2 == 0:
            shard0.append(seq)
    return shard0


def store(tmp_path, pause_s: float = 0.0) -> RecordingStore:
    return RecordingStore(tmp_path / "replica", Catalog(":memory:"), lambda: Collection([SpaceConfig("v", DIM)]),
                          snapshot_every_records=10**6, snapshot_every_seconds=3600.0, keep_snapshots=2,
                          pause_s=pause_s)


def caught_up(replica: ShardReplica, seq: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while replica.caught_up_seq < seq and time.monotonic() < deadline:
        time.sleep(0.02)
    assert replica.caught_up_seq >= seq, f"applied up to {replica.caught_up_seq}, not {seq}"


def test_a_replica_far_behind_applies_every_record_of_its_shard_once_in_order(log, tmp_path):
    shard0 = publish(log, 120)
    replica_store = store(tmp_path)
    replica = ShardReplica(log.link, 0, replica_store, "far-behind", batch=4)
    replica.start()
    try:
        caught_up(replica, shard0[-1])
    finally:
        replica.stop()
    assert replica_store.seqs == shard0
    assert sorted(replica_store.collection.ids(None).tolist()) == list(range(0, 120, 2))
    assert replica.skipped == 0


def test_a_consumer_deleted_mid_catch_up_is_replaced_and_no_record_is_applied_twice(log, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lookalike.cluster")
    shard0 = publish(log, 200)
    replica_store = store(tmp_path, pause_s=0.01)
    replica = ShardReplica(log.link, 0, replica_store, "loses-consumer", batch=4)
    replica.start()
    try:
        while len(replica_store.seqs) < 20:
            time.sleep(0.01)
        durable = consumer_name(log.config.collection, 0, "loses-consumer")
        try:
            log.link.run(log.link.js.delete_consumer(log.config.stream, durable), timeout=5)
        except nats.js.errors.NotFoundError:  # being created anew just now: the loop replaces it anyway
            pass
        assert len(replica_store.seqs) < len(shard0), "the catch-up ended before the consumer was deleted"
        caught_up(replica, shard0[-1])
    finally:
        replica.stop()
    consumers = [r.getMessage() for r in caplog.records if "consuming the stream from seq" in r.getMessage()]
    assert len(consumers) >= 2, consumers  # the deleted consumer was replaced
    assert replica_store.seqs == shard0
    assert sorted(replica_store.collection.ids(None).tolist()) == list(range(0, 200, 2))
