"""A cluster router's shards: the replicas come from the membership in
JetStream KV (cluster/membership.py), not from a static shard map.

Reads go as in shards.py (failover replica by replica, a failed replica tried
last for replica_retry_ms), over the live replicas of each shard, the least
behind first: those within EVEN_LAG records of the best one take turns, the
rest follow, most caught up first. A view ``at_least(seq)`` keeps only the
replicas that applied every record up to ``seq`` (SearchRequest.min_seq).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

from lookalike.client import Client
from lookalike.cluster.membership import Member, Membership
from lookalike.service.shardmap import RouterConfig, Shard
from lookalike.service.shards import Replica, Shards

EVEN_LAG = 64  # records: replicas this close to the least-behind one share the reads


@dataclass
class _Connections:
    """The gRPC clients of the replicas seen so far, by address (shared by every view)."""

    max_message_bytes: int
    api_key: str | None
    by_address: dict[str, Replica] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def replica(self, address: str) -> Replica:
        with self.lock:
            if address not in self.by_address:
                self.by_address[address] = Replica(address, Client(address, api_key=self.api_key,
                                                                   max_message_bytes=self.max_message_bytes))
            return self.by_address[address]

    def close(self) -> None:
        with self.lock:
            for replica in self.by_address.values():
                replica.client.close()
            self.by_address.clear()


@dataclass
class _LiveGroup:
    shard: Shard
    index: int
    membership: Membership
    connections: _Connections
    min_seq: int
    _turn: itertools.count

    def read_order(self) -> list[Replica]:
        members = [m for m in self.membership.live(self.index) if m.caught_up_seq >= self.min_seq]
        if not members:
            return []
        best = members[0].caught_up_seq
        even = [m for m in members if m.caught_up_seq >= best - EVEN_LAG]
        start = next(self._turn) % len(even)
        ordered: list[Member] = even[start:] + even[:start] + members[len(even):]
        replicas = [self.connections.replica(m.address) for m in ordered]
        now = time.monotonic()
        return sorted(replicas, key=lambda r: r.retry_at > now)  # stable: failed ones last


class LiveShards(Shards):
    def __init__(self, membership: Membership, n_shards: int, settings: RouterConfig, max_message_bytes: int,
                 min_seq: int = 0, connections: _Connections | None = None,
                 turns: list[itertools.count] | None = None) -> None:
        """``settings``: the [router] deadlines and retry period (its shard list is unused)."""
        self.config = settings
        self.membership = membership
        self._connections = connections or _Connections(max_message_bytes, settings.shard_api_key or None)
        self._turns = turns or [itertools.count() for _ in range(n_shards)]
        self.min_seq = min_seq
        self.groups = [_LiveGroup(Shard(f"shard-{i}", ()), i, membership, self._connections, min_seq, self._turns[i])
                       for i in range(n_shards)]

    def at_least(self, seq: int) -> LiveShards:
        """The same shards, read only from replicas that applied every record up to ``seq``."""
        return LiveShards(self.membership, len(self.groups), self.config, 0, seq, self._connections, self._turns)

    def ready_at(self, seq: int) -> bool:
        """Every shard has a live replica that applied every record up to ``seq``."""
        return all(any(m.caught_up_seq >= seq for m in self.membership.live(i)) for i in range(len(self.groups)))

    def stale_replicas(self, shard: int) -> list[str]:
        return []  # a replica behind the log catches up by itself; min_seq reads skip it meanwhile

    def close(self) -> None:
        self._connections.close()
