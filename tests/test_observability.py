"""The service's metrics take a call's observations in batches
(service/observability.py): queued by the call, folded in by the request log's
writer thread, and always before the registry is read."""

import time

import grpc
import prometheus_client as prom

from lookalike.service import observability
from lookalike.service.observability import Metrics
from lookalike.service.request_log import RequestLog
from lookalike.v1 import search_pb2


def sample(metrics, name, labels):
    return metrics.registry.get_sample_value(name, labels)


def test_a_read_of_the_registry_sees_every_call_that_ended_before_it():
    metrics = Metrics()
    search = metrics.method("Search")
    search.ended(grpc.StatusCode.OK, 0.002)
    search.ended(grpc.StatusCode.OK, 0.2)
    search.ended(grpc.StatusCode.INVALID_ARGUMENT, 0.0005)
    metrics.observe_stages(search_pb2.StageTimings(search_us=150, total_us=400))
    assert sample(metrics, "lookalike_requests_total", {"method": "Search", "code": "OK"}) == 2
    assert sample(metrics, "lookalike_requests_total", {"method": "Search", "code": "INVALID_ARGUMENT"}) == 1
    assert sample(metrics, "lookalike_request_seconds_count", {"method": "Search"}) == 3
    assert sample(metrics, "lookalike_request_seconds_bucket", {"method": "Search", "le": "0.0025"}) == 2
    assert abs(sample(metrics, "lookalike_request_seconds_sum", {"method": "Search"}) - 0.2025) < 1e-9
    assert sample(metrics, "lookalike_stage_seconds_count", {"stage": "search"}) == 1
    assert sample(metrics, "lookalike_stage_seconds_bucket", {"stage": "total", "le": "0.0005"}) == 1
    assert sample(metrics, "lookalike_stage_seconds_count", {"stage": "encode"}) == 0  # zero: not a stage it ran


def test_a_scrape_of_some_names_sees_every_call_that_ended_before_it():
    # /metrics?name[]=... reads through restricted_registry, not collect().
    metrics = Metrics()
    metrics.method("Search").ended(grpc.StatusCode.OK, 0.002)
    text = prom.generate_latest(metrics.registry.restricted_registry(["lookalike_requests_total"])).decode()
    assert 'lookalike_requests_total{code="OK",method="Search"} 1.0' in text


def unfolded(metrics, name, labels):
    """A sample as the registry holds it, without the fold a read does first."""
    for metric in prom.CollectorRegistry.collect(metrics.registry):
        for s in metric.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def test_the_request_log_thread_folds_the_metrics_in():
    metrics = Metrics()
    metrics.method("Search").ended(grpc.StatusCode.OK, 0.001)
    ok = {"method": "Search", "code": "OK"}
    assert unfolded(metrics, "lookalike_requests_total", ok) == 0  # queued, not yet folded
    log = RequestLog(metrics.fold)
    try:
        deadline = time.monotonic() + 5
        while unfolded(metrics, "lookalike_requests_total", ok) != 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        log.close()
    assert unfolded(metrics, "lookalike_requests_total", ok) == 1


def test_observations_nobody_folds_stay_bounded(monkeypatch):
    monkeypatch.setattr(observability, "MAX_PENDING", 10)
    metrics = Metrics()
    for _ in range(100):
        metrics.method("Get").ended(grpc.StatusCode.OK, 0.001)
    # The calls folded all but the last few themselves.
    assert unfolded(metrics, "lookalike_requests_total", {"method": "Get", "code": "OK"}) >= 90
    assert sample(metrics, "lookalike_requests_total", {"method": "Get", "code": "OK"}) == 100
