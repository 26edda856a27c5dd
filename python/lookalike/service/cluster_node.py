"""What a server runs in cluster mode besides gRPC: the NATS connection and,
for a shard replica, its store, apply loop and heartbeat; for a router, the
log it publishes to and the membership it reads from."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path

import prometheus_client as prom

from lookalike.cluster.log import CollectionLog, LogUnavailable
from lookalike.cluster.membership import Heartbeat, Member, Membership
from lookalike.cluster.nats_link import NatsLink
from lookalike.cluster.replica import ShardReplica
from lookalike.cluster.replica_store import ReplicaStore
from lookalike.cluster.snapshot_store import SnapshotStore
from lookalike.index.collection import Collection
from lookalike.service.cluster_shards import LiveShards
from lookalike.service.config import ServiceConfig
from lookalike.service.observability import Metrics
from lookalike.store.catalog import Catalog

log = logging.getLogger("lookalike.cluster")


class ReplicaNode:
    def __init__(self, config: ServiceConfig, shard: int, address: str, model_id: str,
                 new_collection: Callable[[], Collection]) -> None:
        """Opens the replica's state in data_dir, connects, checks the stream
        still holds what it lacks, then applies the log and heartbeats."""
        cluster = config.cluster
        if not 0 <= shard < cluster.shards:
            raise ValueError(f"--shard {shard}: the cluster has shards 0..{cluster.shards - 1}")
        data = Path(config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        self.address = cluster.advertise or _dialable(address)
        self.replica_id = cluster.replica_id or self.address.replace(":", "_").replace(".", "-")
        self._model_id = model_id
        self.shard = shard
        self._data = data
        self._publish_every = cluster.snapshot_publish_s
        self._published_at = 0.0
        self.link = NatsLink(cluster, f"replica-{shard}-{socket.gethostname()}")
        try:
            self.snapshot_store = SnapshotStore(self.link)
            catalog = data / "catalog.sqlite3"
            if not catalog.exists() and not (data / "snapshots").exists():  # an empty replica
                self.snapshot_store.restore_newest(shard, data, data / "snapshots", catalog)
            self.catalog = Catalog(catalog)
            durability = config.durability
            self.store = ReplicaStore(data, self.catalog, new_collection, durability.snapshot_every_records,
                                      durability.snapshot_every_seconds, durability.keep_snapshots)
            self.heartbeat = Heartbeat(self.link, self.member)
            self.replica = ShardReplica(self.link, shard, self.store, self.replica_id, on_progress=self.heartbeat.poke,
                                        on_snapshot=self._publish_snapshot)
            self.replica.start()
            self.heartbeat.start()
        except BaseException:
            self.link.close()
            raise

    def member(self) -> Member:
        return Member(self.replica_id, self.address, self.shard, self._model_id, self.store.applied_seq,
                      self.replica.caught_up_seq, self.store.last_snapshot_seq, self.store.last_snapshot_unix,
                      self.replica.skipped, self.replica.lag, time.time())

    def observe(self, metrics: Metrics) -> None:
        """The replica's progress as Prometheus gauges beside the service's."""
        for name, what, value in (
                ("lookalike_replica_lag_records", "Stream records this replica may still have to apply",
                 lambda: self.replica.lag),
                ("lookalike_replica_applied_seq", "Stream sequence of the last record applied",
                 lambda: self.store.applied_seq),
                ("lookalike_replica_skipped_records", "Records passed over: they did not decode or apply",
                 lambda: self.replica.skipped)):
            prom.Gauge(name, what, registry=metrics.registry).set_function(value)

    def _publish_snapshot(self, seq: int) -> None:
        """Publishes the snapshot just taken, at most every snapshot_publish_s
        (on the apply thread, so the catalog copy matches the snapshot)."""
        if not self._publish_every or time.monotonic() - self._published_at < self._publish_every:
            return
        copy = self._data / "catalog-copy.sqlite3"
        try:
            copy.unlink(missing_ok=True)
            self.catalog.backup(copy)
            name = self.snapshot_store.publish(self.shard, seq, self.store.snapshot_path(seq), copy)
            self._published_at = time.monotonic()
            log.info("shard %d: snapshot at seq %d published as %s", self.shard, seq, name)
        except LogUnavailable as e:  # JetStream busy or electing: expected now and then, no traceback
            log.warning("shard %d: publishing the snapshot at seq %d failed, the next snapshot tries again: %s",
                        self.shard, seq, e)
        except Exception:  # the next snapshot tries again; the stream still holds everything
            log.exception("shard %d: publishing the snapshot at seq %d failed", self.shard, seq)
        finally:
            copy.unlink(missing_ok=True)

    def close(self) -> None:
        """Leaves the membership, stops applying (a last snapshot), disconnects."""
        self.heartbeat.stop()
        self.replica.stop()
        self.link.close()
        self.catalog.close()


class RouterNode:
    def __init__(self, config: ServiceConfig) -> None:
        cluster = config.cluster
        self.link = NatsLink(cluster, f"router-{socket.gethostname()}")
        try:
            self.log = CollectionLog(self.link)
            self.log.ensure()
            self.membership = Membership(self.link)
            self.membership.start()
        except BaseException:
            self.link.close()
            raise
        self.shards = LiveShards(self.membership, cluster.shards, config.router, config.limits.max_message_bytes)

    def close(self) -> None:
        self.membership.stop()
        self.shards.close()
        self.log.close()
        self.link.close()


def _dialable(address: str) -> str:
    """The listening address as others can dial it: a wildcard host (0.0.0.0,
    [::]) becomes this machine's fully qualified name (a StatefulSet pod's
    stable DNS name under its headless Service)."""
    host, port = address.rsplit(":", 1)
    return f"{socket.getfqdn()}:{port}" if host in ("0.0.0.0", "[::]", "::", "") else address
