"""The SearchService of a shard replica (`lookalike serve --shard I`): the reads
of one server over the replica's collection; writes come only from the log, so
a write sent here is refused with FAILED_PRECONDITION (send it to a cluster
router, which publishes it)."""

from __future__ import annotations

from collections.abc import Iterable

import grpc

from lookalike.service.calls import InFlight
from lookalike.service.config import Limits
from lookalike.service.observability import Metrics
from lookalike.service.servicer import SearchServicer
from lookalike.v1 import search_pb2


class ReplicaServicer(SearchServicer):
    def __init__(self, shard: int, limits: Limits, metrics: Metrics | None = None,
                 in_flight: InFlight | None = None) -> None:
        super().__init__(limits, metrics, in_flight=in_flight)
        self.shard = shard

    def Upsert(self, requests: Iterable[search_pb2.UpsertRequest],
               context: grpc.ServicerContext) -> search_pb2.UpsertResponse:
        self._refuse(context)

    def Delete(self, request: search_pb2.DeleteRequest, context: grpc.ServicerContext) -> search_pb2.DeleteResponse:
        self._refuse(context)

    def _caught_up(self, min_seq: int, context: grpc.ServicerContext) -> None:
        """A read's min_seq here is the cluster log's sequence: the router sent it
        to a replica that applied it already."""

    def _refuse(self, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                      f"this server is a replica of shard {self.shard}: it applies the collection's log, "
                      "write through a cluster router")
