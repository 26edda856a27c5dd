"""The `[cluster]` table of the service's TOML config: where the NATS servers
are and how the collection's log is laid out. Without `urls` the service runs
as one server (its own write-ahead log, no NATS).

    [cluster]
    urls = ["nats://nats-0:4222", "nats://nats-1:4222", "nats://nats-2:4222"]
    collection = "products"        # stream LK_products, subjects products.<shard>
    shards = 2                     # shard i holds the products with shard_of(id, shards) == i: never change it
    stream_replicas = 3            # JetStream copies of the log (Raft); 1 for a one-node test
    max_age_s = 0                  # retention: records older than this go (0: kept; see docs/operations.md, "Cluster")
    max_bytes = -1                 # retention: the stream's size bound (-1: none)
    user = ""                      # credentials: user + password, or token, or a .creds file
    password = ""
    token = ""
    creds_file = ""
    tls_ca = ""                    # TLS to NATS: the CA (and a client cert + key for mutual TLS)
    tls_cert = ""
    tls_key = ""
    replica_id = ""                # a replica's name in the membership ("" = its advertised address)
    advertise = ""                 # host:port routers dial for this replica ("" = the listening address,
                                   #   a wildcard host replaced by the machine's fully qualified name)
    heartbeat_s = 1.0              # a replica's heartbeat period
    live_after_s = 5.0             # a replica not heard from for this long is not read from
    publish_timeout_s = 10.0       # a write's publish retries (same message id) for at most this long
    snapshot_publish_s = 300.0     # a replica publishes a local snapshot to the object store at most this
                                   #   often (0: never); empty replicas start from the newest one
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from typing import Any

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class ClusterConfig:
    urls: tuple[str, ...] = ()
    collection: str = "products"
    shards: int = 1
    stream_replicas: int = 1
    max_age_s: float = 0.0
    max_bytes: int = -1
    user: str = ""
    password: str = ""
    token: str = ""
    creds_file: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    replica_id: str = ""
    advertise: str = ""
    heartbeat_s: float = 1.0
    live_after_s: float = 5.0
    publish_timeout_s: float = 10.0
    snapshot_publish_s: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.urls, str):
            raise ValueError("cluster.urls must be a list of nats:// URLs, not one string")
        object.__setattr__(self, "urls", tuple(self.urls))
        if not _NAME.match(self.collection):
            raise ValueError(f"cluster.collection must be letters, digits, '-' or '_', got {self.collection!r}")
        if self.shards < 1:
            raise ValueError(f"cluster.shards must be >= 1, got {self.shards}")
        if not 1 <= self.stream_replicas <= 5:
            raise ValueError(f"cluster.stream_replicas must be 1..5 (JetStream's limit), got {self.stream_replicas}")
        if self.heartbeat_s <= 0 or self.live_after_s <= self.heartbeat_s:
            raise ValueError("cluster: heartbeat_s must be > 0 and live_after_s > heartbeat_s")
        if self.publish_timeout_s <= 0 or self.max_age_s < 0 or self.snapshot_publish_s < 0:
            raise ValueError("cluster: publish_timeout_s must be > 0, max_age_s and snapshot_publish_s >= 0")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("cluster: set both tls_cert and tls_key, or neither")

    @property
    def enabled(self) -> bool:
        return bool(self.urls)

    @property
    def stream(self) -> str:
        return f"LK_{self.collection}"

    def subject(self, shard: int) -> str:
        return f"{self.collection}.{shard}"

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments of nats.connect: servers, credentials, TLS."""
        options: dict[str, Any] = {"servers": list(self.urls)}
        if self.user:
            options.update(user=self.user, password=self.password)
        if self.token:
            options["token"] = self.token
        if self.creds_file:
            options["user_credentials"] = self.creds_file
        if self.tls_ca or self.tls_cert:
            context = ssl.create_default_context(cafile=self.tls_ca or None)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            options["tls"] = context
        return options
