"""The harness against a deliberately slow server: one handler thread, 20 ms a
search, so at most ~50 searches/s. Offered more than that in open loop, the
measured latency must include the growing queue; a closed loop of one caller
sees only the service time; the ramp finds the capacity."""

import time
from concurrent import futures

import grpc
import pytest

from lookalike.loadtest.ramp import Slo, ramp
from lookalike.loadtest.runner import Arrivals, RunConfig, check_address, run
from lookalike.loadtest.workload import ServerShape, WorkloadSpec
from lookalike.v1 import search_pb2, search_pb2_grpc

SERVICE_SECONDS = 0.02


class SlowSearch(search_pb2_grpc.SearchServiceServicer):
    def Search(self, request, context):
        time.sleep(SERVICE_SECONDS)
        return search_pb2.SearchResponse(timings=search_pb2.StageTimings(search_us=int(SERVICE_SECONDS * 1e6),
                                                                          total_us=int(SERVICE_SECONDS * 1e6)))

    def Stats(self, request, context):
        return search_pb2.StatsResponse(spaces=[search_pb2.SpaceStats(name="v", dim=8)], default_space="v")


@pytest.fixture(scope="module")
def slow_address():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    search_pb2_grpc.add_SearchServiceServicer_to_server(SlowSearch(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def config(address, **kwargs):
    spec = WorkloadSpec(shape=ServerShape(dims={"v": 8}, default_space="v", text_space="", image_space=False,
                                          schema={}), products=0)
    return RunConfig(address=address, workload=spec, processes=2, timeout=20, timeline_step=0.5, **kwargs)


def test_open_loop_latency_includes_the_queue_a_closed_loop_hides(slow_address):
    # 100/s offered for 2 s to a server that does 50/s: the last calls wait ~2 s.
    opened = run(config(slow_address, mode="open", arrivals=Arrivals(rate=100), duration=2.0))
    assert opened.sent == 200 and opened.ok == 200 and opened.errors == {}
    assert opened.achieved_rate < 60
    p50, p99 = opened.overall().percentile(50) / 1e6, opened.overall().percentile(99) / 1e6
    assert p99 > 1.0, (p50, p99)  # ~2 s, 50x the service time: the queue of ~100 calls
    first, last = min(opened.timeline), max(opened.timeline)
    assert opened.timeline[last].percentile(50) > 5 * opened.timeline[first].percentile(50)  # the queue grew
    # The server's own timings stay at the service time: the wait is all "outside".
    stages = opened.stages["vector"]
    assert stages["total"].percentile(99) == pytest.approx(SERVICE_SECONDS * 1e6, rel=0.02)
    assert stages["outside"].percentile(99) > 0.9e6

    closed = run(config(slow_address, mode="closed", concurrency=1, duration=1.0))
    assert closed.ok >= 10 and closed.errors == {}
    assert closed.overall().percentile(50) / 1e6 < 3 * SERVICE_SECONDS


def test_the_ramp_stops_near_the_capacity(slow_address):
    base = config(slow_address, mode="open", arrivals=Arrivals(rate=1))
    outcome = ramp(base, Slo(p99_ms=200), start_rate=15, max_rate=200, factor=2, refine=1, step_seconds=1.0)
    verdicts = [(rate, verdict) for rate, _, verdict in outcome.steps]
    assert [rate for rate, _ in verdicts] == [15, 30, 60, 45], verdicts
    assert verdicts[2][1], "60/s is beyond the capacity of 50/s"
    assert outcome.best_rate in (30, 45)


def test_only_loopback_unless_told():
    check_address("127.0.0.1:1", allow_remote=False)
    check_address("[::1]:1", allow_remote=False)
    check_address("localhost:1", allow_remote=False)
    with pytest.raises(ValueError, match="not a loopback address"):
        check_address("10.1.2.3:50051", allow_remote=False)
    check_address("10.1.2.3:50051", allow_remote=True)
