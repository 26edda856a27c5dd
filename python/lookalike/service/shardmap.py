"""The shard map of a router (`lookalike serve --router`): the `[router]` table
of the service's TOML config.

    [router]
    shard_deadline_ms = 500        # one attempt at one replica of a shard (capped by the caller's deadline)
    write_deadline_ms = 10000      # one write to the replicas of a shard (capped likewise)
    on_shard_failure = "partial"   # partial: hits of the shards that answered, the others named in
                                   #   SearchResponse.unanswered_shards; error: UNAVAILABLE naming the shard
    write_ack = "all"              # all | majority: replicas that must store a write before it is acknowledged
    replica_retry_ms = 5000        # a replica that failed is tried last for this long
    shard_api_key = ""             # sent to the shards as `authorization: Bearer` ("" = none)

    [[router.shards]]              # shard i owns the products with shard_of(id, number of shards) == i,
    name = "shard-0"               # so the order of this list is part of the data's layout: never reorder it
    replicas = ["lookalike-shard-0-0.lookalike-shard-0:50051", "lookalike-shard-0-1.lookalike-shard-0:50051"]
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

SHARD_FAILURE_POLICIES = ("partial", "error")
WRITE_ACK_POLICIES = ("all", "majority")


@dataclass(frozen=True)
class Shard:
    name: str                       # shown in errors, Stats and unanswered_shards
    replicas: tuple[str, ...]       # host:port of each replica; they hold the same products


@dataclass(frozen=True)
class RouterConfig:
    shards: tuple[Shard, ...] = ()  # empty: not a router
    shard_deadline_ms: int = 500
    write_deadline_ms: int = 10_000
    on_shard_failure: str = "partial"
    write_ack: str = "all"
    replica_retry_ms: int = 5_000
    shard_api_key: str = ""

    def __post_init__(self) -> None:
        if self.on_shard_failure not in SHARD_FAILURE_POLICIES:
            raise ValueError(f"router.on_shard_failure must be one of {', '.join(SHARD_FAILURE_POLICIES)}, "
                             f"got {self.on_shard_failure!r}")
        if self.write_ack not in WRITE_ACK_POLICIES:
            raise ValueError(f"router.write_ack must be one of {', '.join(WRITE_ACK_POLICIES)}, got {self.write_ack!r}")
        if self.shard_deadline_ms <= 0 or self.write_deadline_ms <= 0 or self.replica_retry_ms < 0:
            raise ValueError("router: shard_deadline_ms and write_deadline_ms must be > 0, replica_retry_ms >= 0")
        names = [s.name for s in self.shards]
        if len(set(names)) != len(names):
            raise ValueError(f"router.shards: names must be unique, got {names}")
        for shard in self.shards:
            if not shard.replicas:
                raise ValueError(f"router.shards: shard '{shard.name}' has no replicas")

    @classmethod
    def from_toml(cls, table: dict[str, Any]) -> RouterConfig:
        """The `[router]` table as parsed by tomllib (TypeError/ValueError name a bad key)."""
        known = {f.name for f in fields(cls)}
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"router: unknown keys {sorted(unknown)} (known: {', '.join(sorted(known))})")
        shards = []
        for i, shard in enumerate(table.get("shards", ())):
            if set(shard) != {"name", "replicas"} or isinstance(shard["replicas"], str):
                raise ValueError(f"router.shards[{i}]: needs exactly `name` and `replicas` (a list of host:port)")
            shards.append(Shard(str(shard["name"]), tuple(str(r) for r in shard["replicas"])))
        return cls(**{**table, "shards": tuple(shards)})
