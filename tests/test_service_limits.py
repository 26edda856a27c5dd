"""No single request can wedge the server or hold its memory, and a client's
mistake is never INTERNAL: bounds on texts, titles, keywords, images, ef and
nprobe (each named in its INVALID_ARGUMENT); messages that protobuf cannot decode;
all-zero query vectors; overload refused at once while health checks answer;
freed memory given back. Real servers in this process on loopback ports, with
the tiny random CLIP of tests/tiny_clip.py where texts and photos are encoded."""

import ctypes
import ctypes.util
import io
import logging
import os
import statistics
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from test_service import start_server, stop_server
from lookalike.client import Client, Product, packed
from lookalike.index.collection import SpaceConfig
from lookalike.service.config import Limits, ServiceConfig
from lookalike.service.memory import MemoryTrimmer, resident_bytes
from lookalike.service.server import Server
from lookalike.v1 import admin_pb2, duplicates_pb2, feedback_pb2, filter_pb2, search_pb2

N = 16
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def photo(i: int) -> bytes:
    rng = np.random.default_rng(i)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def sliver(width: int, height: int) -> bytes:
    """Few bytes, one pixel thin: what a resize to the model's input would stretch into gigabytes."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def served(tiny_clip_bundle, tmp_path_factory):
    config = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path_factory.mktemp("limits")),
                           model=str(tiny_clip_bundle), schema={"category": "keyword"})
    server = Server(config)
    server.start()
    with Client(server.address) as client:
        reply = client.upsert([Product(id=i, image=photo(i), title=f"red dress {i}") for i in range(N)])
        assert [r.error for r in reply.results] == [""] * N
        yield server, client
    server.stop(grace=1)


def joint_dim(client: Client) -> int:
    return next(s.dim for s in client.stats().spaces if s.name == "joint")


def refused(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


# --- bounded work per request -----------------------------------------------------------


def test_a_long_text_is_refused_before_it_reaches_the_text_encoder(served):
    server, client = served
    runs = server.encoder._texts.batches
    long_text = "red dress " * 700_000  # 7 MB
    for call, where in ((lambda: client.search(text=long_text, k=1), "query.text"),
                        (lambda: client.search(text=long_text, image=photo(1), k=1), "query.hybrid.text")):
        error = refused(call)
        assert error.code() == INVALID
        assert error.details() == f"{where}: {len(long_text)} characters, at most 4096 (limits.max_text_chars)"
    assert server.encoder._texts.batches == runs  # never tokenised: the text encoder's thread did not see it
    assert client.search(text="red dress", k=1).hits  # a text within the bound is served


def test_product_sizes_are_bounded_at_upsert(served):
    _, client = served
    keywords = search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[f"k{i}" for i in range(300)]))
    long_keyword = search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=["x" * 300]))
    cases = [
        (Product(id=900, title="t" * 5000), "products[0].title: 5000 characters, at most 4096 (limits.max_text_chars)"),
        (Product(id=901, title="ok", image_uri="u" * 5000), "products[0].image_uri: 5000 characters, at most 4096"),
        (Product(id=902, title="ok", attributes={"category": keywords}),
         "products[0]: 300 keyword values, at most 256 (limits.max_keywords)"),
        (Product(id=903, title="ok", attributes={"category": long_keyword}),
         "products[0]: a keyword of attribute 'category': 300 characters, at most 256 (limits.max_keyword_chars)"),
    ]
    for product, message in cases:
        result = client.upsert([product]).results[0]
        assert result.status_code == INVALID.value[0] and message in result.error
        assert product.id not in [p.id for p in client.get([product.id]).products]


def test_search_width_is_bounded(served):
    _, client = served
    v = np.ones(joint_dim(client), dtype=np.float32)
    for params, message in ((search_pb2.SearchParams(ef=2**32 - 1), "params.ef is 4294967295, at most 4096 (limits.max_ef)"),
                            (search_pb2.SearchParams(nprobe=100_000), "params.nprobe is 100000, at most 4096")):
        error = refused(lambda: client.search(vector=v, k=1, params=params))
        assert error.code() == INVALID and message in error.details()
    assert client.search(vector=v, k=1, params=search_pb2.SearchParams(ef=4096)).hits


@pytest.mark.parametrize("size", [(1, 4000), (4000, 1), (1, 200_000)])
def test_a_sliver_of_an_image_is_refused_from_its_header(served, size):
    _, client = served
    error = refused(lambda: client.search(image=sliver(*size), k=1))
    assert error.code() == INVALID
    assert f"query.image: image is {size[0]}x{size[1]}: its long side is" in error.details()
    assert "the limit is 20" in error.details()
    result = client.upsert([Product(id=904, image=sliver(*size))]).results[0]
    assert result.status_code == INVALID.value[0] and "products[0].image" in result.error


# --- client mistakes are not INTERNAL ------------------------------------------------------


def test_an_all_zero_query_vector_in_a_cosine_space_is_invalid(served):
    _, client = served
    error = refused(lambda: client.search(vector=np.zeros(joint_dim(client), dtype=np.float32), k=1))
    assert error.code() == INVALID
    assert "query.vector: an all-zero vector has no direction" in error.details()


def with_bad_utf8(message) -> bytes:
    """The message's bytes with its string 'XXXX' made invalid UTF-8."""
    data = message.SerializeToString()
    assert data.count(b"XXXX") == 1
    return data.replace(b"XXXX", b"\xff\xfe\xff\xfe")


def length_delimited(number: int, payload: bytes) -> bytes:
    size, out = len(payload), bytearray([number << 3 | 2])
    while size >= 0x80:
        out.append(size & 0x7F | 0x80)
        size >>= 7
    out.append(size)
    return bytes(out) + payload


def deep_filter(depth: int) -> bytes:
    """A SearchRequest.filter nested `depth` times (Filter.must[0].nested), as bytes:
    deeper than protobuf's recursion limit lets it parse."""
    filter_ = filter_pb2.Filter(must=[filter_pb2.Condition(has_id=filter_pb2.HasId(ids=[1]))]).SerializeToString()
    for _ in range(depth):
        filter_ = length_delimited(1, length_delimited(5, filter_))  # Filter.must -> Condition.nested
    return length_delimited(3, filter_)  # SearchRequest.filter


def raw_call(address: str, method: str, data: bytes, streaming: bool = False) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel:
        if streaming:
            call = channel.stream_unary(method)
            return refused(lambda: call(iter([data]), timeout=10))
        return refused(lambda: channel.unary_unary(method)(data, timeout=10))


UNDECODABLE = [
    ("/lookalike.v1.SearchService/Search", with_bad_utf8(search_pb2.SearchRequest(query=search_pb2.Query(text="XXXX")))),
    ("/lookalike.v1.SearchService/SearchBatch", with_bad_utf8(search_pb2.SearchBatchRequest(
        requests=[search_pb2.SearchRequest(using="XXXX")]))),
    ("/lookalike.v1.SearchService/Get", b"\x0a\xff"),  # truncated
    ("/lookalike.v1.FeedbackService/Feedback", with_bad_utf8(feedback_pb2.FeedbackRequest(
        events=[feedback_pb2.FeedbackEvent(search_id="XXXX")]))),
    ("/lookalike.v1.DuplicatesService/GetScanStatus", with_bad_utf8(duplicates_pb2.ScanStatusRequest(scan_id="XXXX"))),
    ("/lookalike.v1.AdminService/ReindexStatus", with_bad_utf8(admin_pb2.ReindexStatusRequest(job_id="XXXX"))),
]


@pytest.mark.parametrize(("method", "data"), UNDECODABLE, ids=[m.rsplit("/", 2)[1] + "/" + m.rsplit("/", 1)[1]
                                                               for m, _ in UNDECODABLE])
def test_a_message_that_does_not_decode_is_invalid_in_every_service(served, caplog, method, data):
    server, _ = served
    with caplog.at_level(logging.INFO):
        error = raw_call(server.address, method, data)
    assert error.code() == INVALID and error.details().startswith("the request is not a valid message: ")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_invalid_utf8_and_deep_nesting_say_what_is_wrong(served):
    server, client = served
    vector_query = search_pb2.SearchRequest(query=search_pb2.Query(vector=packed(np.ones(joint_dim(client)))), k=1)
    error = raw_call(server.address, "/lookalike.v1.SearchService/Search",
                     with_bad_utf8(search_pb2.SearchRequest(query=search_pb2.Query(text="XXXX"))))
    assert "bad UTF-8" in error.details()
    deep = vector_query.SerializeToString() + deep_filter(200)
    error = raw_call(server.address, "/lookalike.v1.SearchService/Search", deep)
    assert error.code() == INVALID and "the request is not a valid message" in error.details()
    upsert = with_bad_utf8(search_pb2.UpsertRequest(products=[search_pb2.Product(id=1, title="XXXX")]))
    error = raw_call(server.address, "/lookalike.v1.SearchService/Upsert", upsert, streaming=True)
    assert error.code() == INVALID and error.details().startswith("message 0 of the stream: the request is not")


def test_a_router_answers_client_mistakes_as_invalid(tmp_path):
    shard = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "shard"), workers=4,
                                 spaces=(SpaceConfig("v", 8),)))
    shard.start()
    try:
        from lookalike.service.shardmap import RouterConfig, Shard

        router = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "router"), workers=4,
                                      router=RouterConfig(shards=(Shard("shard-0", (shard.address,)),))), router=True)
        router.start()
        try:
            error = raw_call(router.address, "/lookalike.v1.SearchService/Search",
                             with_bad_utf8(search_pb2.SearchRequest(using="XXXX")))
            assert error.code() == INVALID and "bad UTF-8" in error.details()
            with Client(router.address) as client:
                error = refused(lambda: client.search(vector=np.zeros(8), k=1))
                assert error.code() == INVALID and "all-zero vector" in error.details()
                error = refused(lambda: client.search(vector=np.ones(8), k=1, params=search_pb2.SearchParams(ef=5000)))
                assert error.code() == INVALID and "(limits.max_ef)" in error.details()
                result = client.upsert([Product(id=1, title="t" * 5000, vectors={"v": packed(np.ones(8))})]).results[0]
                assert result.status_code == INVALID.value[0] and "(limits.max_text_chars)" in result.error
        finally:
            router.stop(grace=0)
    finally:
        shard.stop(grace=0)


# --- overload -----------------------------------------------------------------------------


def vectors_server(tmp_path, **config):
    server = Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "data"),
                                  spaces=(SpaceConfig("clip", 8),), **config))
    server.start()
    return server


def held_upserts(client: Client, n: int, release: threading.Event) -> list:
    """n Upsert streams that each hold a handler thread (and an in-flight slot) until released."""
    def stream(i):
        yield search_pb2.UpsertRequest(products=[Product(id=i, vectors={"clip": packed(np.eye(8)[i % 8])})])
        release.wait(60)  # past any test's own deadline: the call never ends before the test releases it
    return [client.stub.Upsert.future(stream(i), timeout=90) for i in range(n)]


def wait_until_refused(client: Client) -> grpc.RpcError:
    """The first refused Stats call, once the held calls have taken their slots."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            client.stats()
        except grpc.RpcError as e:
            return e
        time.sleep(0.02)
    raise AssertionError("the server never refused a call")


def test_default_limits_shed_load_at_once_and_keep_health_answering(tmp_path):
    server = vectors_server(tmp_path)  # default workers and limits
    busy = server.config.in_flight_limit()
    assert busy == server.config.workers - server.config.limits.handler_reserve
    release = threading.Event()
    with Client(server.address) as client, grpc.insecure_channel(server.address) as channel:
        pending = held_upserts(client, busy, release)
        try:
            error = wait_until_refused(client)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert ("retry-after-ms", "200") in tuple(error.trailing_metadata())
            health = health_pb2_grpc.HealthStub(channel)
            started = time.monotonic()
            for _ in range(20):  # every thread that may work is busy: the reserve still answers
                assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
                assert refused(lambda: client.stats()).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() - started < 20  # answered, not queued behind the held calls (generous)
        finally:
            release.set()
        assert all(p.result().results[0].status_code == 0 for p in pending)
        assert client.stats().products == busy
    server.stop(grace=1)


def test_grpc_refuses_calls_beyond_the_threads_and_the_queue(tmp_path):
    server = vectors_server(tmp_path, workers=3, limits=Limits(handler_reserve=1, max_queued=0))
    release = threading.Event()

    def one_question():  # a reflection stream (outside the in-flight limit) that holds its thread once answered
        yield reflection_pb2.ServerReflectionRequest(list_services="")
        release.wait(60)

    with Client(server.address) as client, grpc.insecure_channel(server.address) as channel:
        pending = held_upserts(client, 2, release)
        try:
            wait_until_refused(client)  # the two upserts hold both slots
            # Started once no other call runs (gRPC would refuse it too, past its bound), and
            # answered: from now on the three calls hold the three threads.
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(one_question(),
                                                                                                 timeout=90)
            assert next(reflection).list_services_response.service
            error = refused(lambda: client.stub.Stats(search_pb2.StatsRequest(), timeout=3))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # at once, not queued until the deadline
            assert "Concurrent RPC limit exceeded" in error.details()  # gRPC's refusal, not the in-flight one
        finally:
            release.set()
        assert all(p.result().results[0].status_code == 0 for p in pending)
        list(reflection)
    server.stop(grace=1)


def test_in_flight_is_bounded_by_the_handler_threads(caplog):
    with caplog.at_level(logging.WARNING, logger="lookalike.service"):
        assert ServiceConfig(workers=8, limits=Limits(max_in_flight=64)).in_flight_limit() == 6
    assert "limits.max_in_flight 64 is above workers (8) - limits.handler_reserve (2): using 6" in caplog.text
    assert ServiceConfig(workers=8, limits=Limits(max_in_flight=3)).in_flight_limit() == 3
    with pytest.raises(ValueError, match="handler_reserve is 4: it must be >= 1 and below workers"):
        ServiceConfig(workers=4, limits=Limits(handler_reserve=4))


# --- memory -------------------------------------------------------------------------------


def test_freed_memory_is_returned_to_the_system():
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    big = 64 << 10  # below malloc's mmap threshold: from the thread's arena
    bigs, kept = [], []

    def allocate():  # big blocks between small ones that stay: once freed, holes that malloc keeps
        for _ in range(1000):
            bigs.append(libc.malloc(big))
            libc.memset(bigs[-1], 1, big)
            kept.append(libc.malloc(1024))

    trimmer = MemoryTrimmer(threshold=32 << 20, period=0.05)
    trimmer.start()
    try:
        threads = [threading.Thread(target=allocate) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        peak = resident_bytes()
        for block in bigs:
            libc.free(block)
        deadline = time.monotonic() + 10
        while (trimmer.trims == 0 or peak - resident_bytes() < (128 << 20)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert trimmer.trims >= 1
        assert peak - resident_bytes() > (128 << 20)  # most of the 250 MB freed left the process
    finally:
        trimmer.stop()
        for block in kept:
            libc.free(block)


def server_resident_bytes(process) -> int:
    with open(f"/proc/{process.pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_storm_of_bad_requests_leaves_the_server_serving_and_its_memory_bounded(tiny_clip_bundle, tmp_path):
    """Each bad case three times; after each, a normal search and an upsert. The
    server runs in a process of its own, so that its resident size is its own."""
    process, address = start_server(tmp_path, config_text=f'model = "{tiny_clip_bundle}"\n'
                                                          '[schema]\ncategory = "keyword"\n')
    try:
        with Client(address) as client:
            dim = joint_dim(client)
            normal = np.ones(dim, dtype=np.float32)
            next_id = iter(range(10_000, 20_000))

            def normal_calls() -> float:
                started = time.monotonic()
                product = Product(id=next(next_id), vectors={"joint": packed(normal)})
                assert client.upsert([product]).results[0].status_code == 0
                assert client.search(vector=normal, k=3).hits
                return time.monotonic() - started

            usual = statistics.median(normal_calls() for _ in range(5))
            baseline = server_resident_bytes(process)
            long_text = "x" * (7 << 20)
            vector_query = search_pb2.SearchRequest(query=search_pb2.Query(vector=packed(normal)), k=1)
            in_category = filter_pb2.Condition(match=filter_pb2.Match(attribute="category", value="a"))
            too_deep = filter_pb2.Filter(must=[in_category])
            for _ in range(40):  # past limits.max_filter_depth, within protobuf's decoding limit
                too_deep = filter_pb2.Filter(must=[filter_pb2.Condition(nested=too_deep), in_category])
            too_wide = filter_pb2.Filter(should=[in_category] * 1025)  # past limits.max_filter_clauses
            bad = [
                lambda: client.search(text=long_text, k=1),
                lambda: client.search(text="red", image=sliver(1, 4000), k=1),
                lambda: client.search(image=sliver(1, 200_000), k=1),
                lambda: client.search(image=sliver(4000, 1), k=1),
                lambda: client.search(vector=np.zeros(dim, dtype=np.float32), k=1),
                lambda: client.search(vector=normal, k=1, params=search_pb2.SearchParams(ef=2**32 - 1)),
                lambda: client.search(vector=normal, k=1, filter=too_deep),
                lambda: client.search(vector=normal, k=1, filter=too_wide),
                lambda: raw_call(address, "/lookalike.v1.SearchService/Search",
                                 vector_query.SerializeToString() + deep_filter(200)),
                lambda: raw_call(address, "/lookalike.v1.SearchService/Search",
                                 with_bad_utf8(search_pb2.SearchRequest(query=search_pb2.Query(text="XXXX")))),
                lambda: client.upsert([Product(id=1, title=long_text)]),
                lambda: client.upsert([Product(id=1, image=sliver(1, 4000))]),
            ]
            slowest, peak = 0.0, baseline
            for _ in range(3):
                for send in bad:
                    try:
                        reply = send()
                    except grpc.RpcError as e:
                        reply = e
                    if isinstance(reply, grpc.RpcError):  # raised, or returned by raw_call
                        assert reply.code() == INVALID, reply.details()
                    else:  # an upsert: its product refused
                        assert reply.results[0].status_code == INVALID.value[0], reply.results[0].error
                    slowest = max(slowest, normal_calls())
                    peak = max(peak, server_resident_bytes(process))
            assert slowest < max(5.0, 50 * usual)  # generous: the machine is shared
            deadline = time.monotonic() + 10  # the trimmer looks every second
            while server_resident_bytes(process) - baseline > (100 << 20) and time.monotonic() < deadline:
                time.sleep(0.2)
            grown = server_resident_bytes(process) - baseline
            assert grown < (100 << 20), (f"the server's resident size grew by {grown >> 20} MB over the storm "
                                         f"(from {baseline >> 20} MB, peak {peak >> 20} MB)")
    finally:
        stop_server(process)
    log = process.stderr.read()
    assert "Traceback" not in log and " ERROR " not in log
    assert '"code": "INVALID_ARGUMENT"' in log and "limits.max_text_chars" in log  # logged, at INFO
