"""What the service tells its operators: Prometheus metrics on a separate HTTP
port, and one structured (JSON) log line per call.

Metrics:
  lookalike_requests_total{method, code}         calls by method and final status
  lookalike_request_seconds{method}              call latency
  lookalike_stage_seconds{stage}                 Search stages (encode, search, hydrate, ...)
  lookalike_in_flight                            calls being served
  lookalike_encoder_queue{tower}                 inputs waiting for the image / text encoder
  lookalike_products                             products in the collection
  lookalike_unindexed_products                   products acknowledged when logged, not yet in the index

The histograms and the call counter are fed in batches: a call only queues
its observations (a deque append), and they are folded into the Prometheus
metrics by the request log's writer thread every 50 ms (FLUSH_S) and before
every read of the registry, so a scrape always sees every call that ended
before it. prometheus_client's observe() takes two locks and walks the buckets
in Python: a vector Search's metrics, observed on its thread, were 8-16 us of
its server time outside the index on the loaded 2-core VM
(bench/search_hot_path.py, with and without them in alternating blocks).

A call's id is the client's `x-request-id` metadata when it sends one, else a
fresh one; it is in the log line and sent back as `x-request-id` trailing metadata.
A failed call's line carries its status message: that is where a client's
mistake is logged (INFO, no traceback); a fault of the server is also logged
with its traceback as an ERROR (calls.rpc).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

import grpc
import prometheus_client as prom

from lookalike.service.request_log import RequestLog
from lookalike.service.wrapped_handlers import WrappedHandlers


# Observations queued beyond this are folded in by the call that queues one more (a
# safety bound for a Metrics that no writer thread folds: a servicer without a server).
MAX_PENDING = 65_536


class _FoldingRegistry(prom.CollectorRegistry):
    """A registry that folds the queued observations in before every read."""

    def __init__(self, fold: Callable[[], None]) -> None:
        super().__init__()
        self._fold = fold

    def collect(self) -> Iterable[prom.Metric]:
        self._fold()
        return super().collect()

    def restricted_registry(self, names: Iterable[str]) -> prom.registry.RestrictedRegistry:
        # A scrape of some names (/metrics?name[]=...) reads the collectors through
        # this, not collect(): fold here, just before it reads them.
        self._fold()
        return super().restricted_registry(names)


class Metrics:
    """The service's metrics in a registry of their own (so that tests can make many)."""

    def __init__(self) -> None:
        # (observe or inc of a metric's child, value), queued by the calls; append and popleft are atomic.
        self._pending: deque[tuple[Callable[[float], None], float]] = deque()
        self._folding = threading.Lock()
        self.registry = _FoldingRegistry(self.fold)
        self.requests = prom.Counter("lookalike_requests", "Calls by method and final status",
                                     ["method", "code"], registry=self.registry)
        self.latency = prom.Histogram("lookalike_request_seconds", "Call latency", ["method"],
                                      buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10),
                                      registry=self.registry)
        self.stages = prom.Histogram("lookalike_stage_seconds", "Time per Search stage", ["stage"],
                                     buckets=(.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25),
                                     registry=self.registry)
        self.in_flight = prom.Gauge("lookalike_in_flight", "Calls being served", registry=self.registry)
        self.products = prom.Gauge("lookalike_products", "Products in the collection", registry=self.registry)
        self.unindexed = prom.Gauge("lookalike_unindexed_products",
                                    "Products acknowledged once logged (ACKNOWLEDGE_LOGGED), not yet in the index",
                                    registry=self.registry)
        self.encoder_queue = prom.Gauge("lookalike_encoder_queue", "Inputs waiting for an encoder run", ["tower"],
                                        registry=self.registry)
        self.compaction_failures = prom.Counter(
            "lookalike_compaction_failures", "Compactions of a space that failed and were skipped", ["space"],
            registry=self.registry)
        self.background_failures = prom.Counter(
            "lookalike_background_failures", "Snapshots and blob sweeps that failed (tried again at the next wake)",
            ["task"], registry=self.registry)
        self._stage_children = {field: self.stages.labels(field[:-3]) for field in
                                ("decode_us", "preprocess_us", "encode_us", "search_us", "hydrate_us", "total_us")}
        self._methods: dict[str, MethodMetrics] = {}

    def observe_stages(self, timings: object) -> None:
        """Feeds a SearchResponse's StageTimings (microseconds) into the stage histogram."""
        for field, histogram in self._stage_children.items():
            value = getattr(timings, field)
            if value:
                self.later(histogram.observe, value / 1e6)

    def later(self, observe: Callable[[float], None], value: float) -> None:
        """Queues ``observe(value)`` (a child's observe or inc) for the next fold."""
        self._pending.append((observe, value))
        if len(self._pending) > MAX_PENDING:
            self.fold()

    def fold(self) -> None:
        """Applies the queued observations (one fold at a time: a read that
        folds waits for a fold under way, so it sees all that was queued)."""
        pending = self._pending
        with self._folding:
            while pending:
                observe, value = pending.popleft()
                observe(value)

    def method(self, name: str) -> MethodMetrics:
        """The children of a method's labels, made once: labels() takes a lock and
        hashes its values, a cost every call would pay again."""
        found = self._methods.get(name)
        if found is None:
            found = self._methods.setdefault(name, MethodMetrics(self, name))
        return found

    def serve(self, address: str) -> tuple[object, int]:
        """Starts the /metrics HTTP endpoint at host:port; returns (server, port)."""
        host, port = address.rsplit(":", 1)
        server, thread = prom.start_http_server(int(port), addr=host, registry=self.registry)
        return server, server.server_port


class MethodMetrics:
    """One method's latency histogram and, per final status, its call counter."""

    def __init__(self, metrics: Metrics, method: str) -> None:
        self._latency = metrics.latency.labels(method)
        self._metrics, self._method = metrics, method
        self._by_code: dict[grpc.StatusCode, object] = {}

    def ended(self, code: grpc.StatusCode, seconds: float) -> None:
        """Counts a call that ended with ``code`` after ``seconds`` (queued: see the module's docstring)."""
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code.setdefault(code, self._metrics.requests.labels(self._method, code.name))
        later = self._metrics.later
        later(counter.inc, 1)
        later(self._latency.observe, seconds)


class ObservingInterceptor(grpc.ServerInterceptor):
    """Counts, times and logs every call of the search service."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.requests = RequestLog(metrics.fold)  # closed by the server when it stops
        self._observed = WrappedHandlers(self._observing)

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = continuation(details)
        if handler is None or not details.method.startswith("/lookalike.v1."):
            return handler
        return self._observed.get(details.method, handler)

    def _observing(self, full_method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        method = full_method.rsplit("/", 1)[1]
        metrics, counted, requests = self._metrics, self._metrics.method(method), self.requests

        def observed(behaviour: Callable) -> Callable:
            def run(request: object, context: grpc.ServicerContext) -> object:
                sent_id = next((value for key, value in context.invocation_metadata() or () if key == "x-request-id"), "")
                request_id = sent_id[:64] or os.urandom(16).hex()
                start = time.perf_counter()
                metrics.in_flight.inc()
                code = grpc.StatusCode.OK
                try:
                    return behaviour(request, context)
                except Exception:
                    code = context.code() or grpc.StatusCode.UNKNOWN
                    raise
                finally:
                    seconds = time.perf_counter() - start
                    metrics.in_flight.dec()
                    counted.ended(code, seconds)
                    context.set_trailing_metadata(_merged(context, ("x-request-id", request_id)))
                    if requests.enabled():
                        requests.add(request_id, method, code.name, seconds, context.peer(),
                                     _text(context.details()) if code != grpc.StatusCode.OK else None)
            return run

        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(
                observed(handler.stream_unary), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(
            observed(handler.unary_unary), request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


def _text(details: bytes | str | None) -> str:
    return details.decode(errors="replace") if isinstance(details, bytes) else details or ""


def _merged(context: grpc.ServicerContext, item: tuple[str, str]) -> tuple:
    """Trailing metadata already set by the servicer (retry-after-ms), plus item."""
    return (*tuple(context.trailing_metadata() or ()), item)
