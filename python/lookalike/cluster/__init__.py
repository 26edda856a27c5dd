"""Cluster mode: shard replicas that follow a replicated log in NATS JetStream.

The log is the truth; a replica is a cache of it that can always be rebuilt.

    writer (cluster router) -> record (log_records.py) -> stream LK_<collection>,
        subject <collection>.<shard> (log.py); acknowledged once JetStream stored it
    replica -> durable consumer of its shard's subject, applied in stream order
        (replica.py) to a local Collection + Catalog with snapshots (replica_store.py)
    membership -> a heartbeat key per replica in JetStream KV (membership.py),
        watched by the routers
    images -> JetStream object store, keyed by SHA-256 (log.py)

This package knows nothing of gRPC: service/ serves what it builds.
"""
