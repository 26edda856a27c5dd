"""A router's connections to its shards: which replica a read goes to, failing
over to the next one, and writes sent to every replica of a shard.

Reads go to one replica of each shard, round-robin over the replicas that are
not stale; one that fails with UNAVAILABLE or DEADLINE_EXCEEDED is tried last
for `replica_retry_ms`, and the read moves on to the next replica at once.
Writes go to every replica (they share nothing but this stream of writes). A
replica that misses a write its peers stored is marked stale and no longer read
from: its data is behind, and only a rebuild from a peer's snapshot and a
router restart bring it back (neither is automated here; see README "Router").
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from lookalike.client import Client
from lookalike.index.sharding import shard_of
from lookalike.service.shardmap import RouterConfig, Shard

log = logging.getLogger("lookalike.router")

# The failures that say "this replica, not the request": try the next replica.
FAILOVER_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass
class Replica:
    address: str
    client: Client
    stale: bool = False             # missed a write its peers stored
    retry_at: float = 0.0           # monotonic time before which it is tried last


@dataclass
class Answer:
    """One replica's answer to one call: a response or the error."""

    replica: str
    response: Any = None
    error: grpc.RpcError | None = None

    @property
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK if self.error is None else self.error.code()

    @property
    def message(self) -> str:
        return "" if self.error is None else (self.error.details() or str(self.code))


@dataclass
class ShardGroup:
    shard: Shard
    replicas: list[Replica]
    _turn: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read_order(self) -> list[Replica]:
        """The replicas to try for a read, best first: round-robin over the fresh
        ones, those that failed lately at the end; stale ones never."""
        with self._lock:
            start = next(self._turn)
        fresh = [r for r in self.replicas if not r.stale]
        if not fresh:
            return []
        rotated = fresh[start % len(fresh):] + fresh[:start % len(fresh)]
        now = time.monotonic()
        return sorted(rotated, key=lambda r: r.retry_at > now)  # stable: keeps the rotation within each group


def _invoke(replica: Replica, method: str, request: Any, timeout: float) -> grpc.Future:
    stub = replica.client.stub
    if method == "Upsert":  # the only client-streaming call: one message
        return stub.Upsert.future(iter([request]), timeout=timeout)
    return getattr(stub, method).future(request, timeout=timeout)


class Shards:
    def __init__(self, config: RouterConfig, max_message_bytes: int) -> None:
        self.config = config
        self.groups = [ShardGroup(s, [Replica(a, Client(a, api_key=config.shard_api_key or None,
                                                        max_message_bytes=max_message_bytes))
                                      for a in s.replicas])
                       for s in config.shards]

    def __len__(self) -> int:
        return len(self.groups)

    def name(self, shard: int) -> str:
        return self.groups[shard].shard.name

    def owners(self, ids: npt.ArrayLike) -> np.ndarray:
        """The shard of each product id."""
        return np.asarray(shard_of(np.asarray(ids, dtype=np.int64).reshape(-1), len(self.groups)))

    def read(self, method: str, requests: dict[int, Any], deadline: float | None) -> dict[int, Answer]:
        """Calls `method` on one replica of each shard in `requests` (shard -> request)
        at once, failing over replica by replica. `deadline` (monotonic seconds, None:
        none) caps every attempt, each of which also gets shard_deadline_ms. The
        answer of a shard is its first non-failover answer, else the last failure;
        a shard without a fresh replica answers UNAVAILABLE."""
        orders = {s: self.groups[s].read_order() for s in requests}
        answers: dict[int, Answer] = {s: _no_replica(self.name(s)) for s, order in orders.items() if not order}
        pending = {s for s, order in orders.items() if order}
        attempt = 0
        while pending:
            timeout = self._timeout(self.config.shard_deadline_ms, deadline)
            if timeout <= 0:
                for s in pending:
                    answers.setdefault(s, _expired(self.name(s)))
                break
            calls = {s: (orders[s][attempt], _invoke(orders[s][attempt], method, requests[s], timeout))
                     for s in pending}
            for s, (replica, future) in calls.items():
                answer = _wait(replica, future)
                answers[s] = answer
                if answer.code in FAILOVER_CODES:
                    replica.retry_at = time.monotonic() + self.config.replica_retry_ms / 1e3
                    log.warning("shard %s: replica %s failed (%s), failing over", self.name(s), replica.address,
                                answer.code.name)
                else:
                    pending.discard(s)
            attempt += 1
            pending = {s for s in pending if attempt < len(orders[s])}
        return answers

    def write(self, method: str, requests: dict[int, Any], deadline: float | None) -> dict[int, list[Answer]]:
        """Calls `method` on every fresh replica of each shard in `requests` at
        once; each shard's answers, one per replica called."""
        timeout = self._timeout(self.config.write_deadline_ms, deadline)
        calls = {s: [(r, _invoke(r, method, request, timeout)) for r in self.groups[s].replicas if not r.stale]
                 for s, request in requests.items()}
        return {s: [_wait(r, f) for r, f in pairs] or [_no_replica(self.name(s))] for s, pairs in calls.items()}

    def needed_acks(self, shard: int) -> int:
        """Replicas that must store a write before it is acknowledged."""
        n = len(self.groups[shard].replicas)
        return n if self.config.write_ack == "all" else n // 2 + 1

    def mark_stale(self, shard: int, address: str, why: str) -> None:
        for replica in self.groups[shard].replicas:
            if replica.address == address and not replica.stale:
                replica.stale = True
                log.error("shard %s: replica %s is stale (%s): rebuild it from a peer's snapshot, then restart "
                          "the router", self.name(shard), address, why)

    def stale_replicas(self, shard: int) -> list[str]:
        return [r.address for r in self.groups[shard].replicas if r.stale]

    def close(self) -> None:
        for group in self.groups:
            for replica in group.replicas:
                replica.client.close()

    @staticmethod
    def _timeout(budget_ms: int, deadline: float | None) -> float:
        timeout = budget_ms / 1e3
        return timeout if deadline is None else min(timeout, deadline - time.monotonic())


def _wait(replica: Replica, future: grpc.Future) -> Answer:
    try:
        return Answer(replica.address, response=future.result())
    except grpc.RpcError as e:
        return Answer(replica.address, error=e)


class _Failure(grpc.RpcError):
    """An error the router makes up for a shard it could not call at all."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def _no_replica(shard: str) -> Answer:
    return Answer("", error=_Failure(grpc.StatusCode.UNAVAILABLE, f"shard {shard} has no fresh replica"))


def _expired(shard: str) -> Answer:
    return Answer("", error=_Failure(grpc.StatusCode.DEADLINE_EXCEEDED, f"no time left to call shard {shard}"))

