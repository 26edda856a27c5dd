"""Filters cannot wedge the server, over real gRPC: a filter nested or sized
past its bound is INVALID_ARGUMENT naming the bound; a deeply nested filter
plans at once; an expensive filtered search stops at its deadline on the
server too, and writes, Stats and health answer meanwhile."""

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import clustered
from lookalike.client import Client, Product, packed
from lookalike.v1 import filter_pb2, search_pb2

N, TAGS_EACH, DIM = 2000, 30, 8
CONFIG = """
[schema]
category = "keyword"
price = "numeric"
tags = "keyword"

[[spaces]]
name = "clip"
dim = 8
storage = "float32"
rerank = ""

[durability]
fsync = "never"
"""


def start_server(tmp_path):
    """The server, logging to a file (its per-call log lines say how long each
    call ran on the server and with what status)."""
    config = tmp_path / "lookalike.toml"
    config.write_text(CONFIG)
    log_path = tmp_path / "server.log"
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", "--config", str(config), "--address", "127.0.0.1:0", "--http", "off",
         "--data-dir", str(tmp_path / "data")],
        stderr=log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        match = re.search(r"serving on (127\.0\.0\.1:\d+)", log_path.read_text())
        if match:
            return process, match.group(1), log_path
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start:\n" + log_path.read_text()[-3000:])


def calls(log_path, method):
    """(status, milliseconds on the server) of each logged call of `method`."""
    found = []
    for line in log_path.read_text().splitlines():
        start = line.find("{")
        if start >= 0 and '"method"' in line:
            entry = json.loads(line[start:])
            if entry["method"] == method:
                found.append((entry["code"], entry["ms"]))
    return found


def tags_of(i):
    return [f"tag-{i}-{j}" for j in range(TAGS_EACH)]


def product(i, vector):
    return Product(id=i, title=f"product {i}", vectors={"clip": packed(vector)}, attributes={
        "category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=["abc"[i % 3]])),
        "price": search_pb2.AttributeValue(number=float(i)),
        "tags": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=tags_of(i)))})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("filter_limits")
    process, address, log_path = start_server(tmp)
    vectors = clustered(N, DIM, seed=11)
    try:
        with Client(address, timeout=60) as client:
            reply = client.upsert((product(i, vectors[i]) for i in range(N)), batch=250)
            assert [r.status_code for r in reply.results] == [0] * N
            yield client, address, vectors, log_path
    finally:
        process.terminate()
        process.wait(timeout=30)


def match(attribute, value):
    return filter_pb2.Condition(match=filter_pb2.Match(attribute=attribute, value=value))


def below(price):
    return filter_pb2.Condition(range=filter_pb2.Range(attribute="price", lt=price))


def nested(depth):
    """A Filter `depth` Filters deep, each level a must of the level below, a
    match and a range: the wedge of the report was 24 such levels."""
    f = filter_pb2.Filter(must=[match("category", "a"), below(1500)])
    for _ in range(depth - 1):
        f = filter_pb2.Filter(must=[filter_pb2.Condition(nested=f), match("category", "a"), below(1500)])
    return f


def search(client, vector, f, timeout=10.0, **fields):
    request = search_pb2.SearchRequest(query=search_pb2.Query(vector=packed(vector)), k=10, filter=f, **fields)
    return client.stub.Search(request, timeout=timeout)


def refused(call):
    with pytest.raises(grpc.RpcError) as e:
        call()
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return e.value.details()


def test_a_filter_nested_past_its_bound_is_invalid_argument(served):
    client, _, vectors, _ = served
    assert search(client, vectors[0], nested(32)).hits  # the bound itself is fine
    message = refused(lambda: search(client, vectors[0], nested(40)))
    assert message == "filter: nested 40 levels deep, at most 32 (limits.max_filter_depth)"
    message = refused(lambda: client.delete(filter=nested(33)))
    assert "nested 33 levels deep" in message and "limits.max_filter_depth" in message


def test_a_filter_with_too_many_conditions_is_invalid_argument(served):
    client, _, vectors, _ = served
    wide = filter_pb2.Filter(should=[below(i) for i in range(1025)])
    message = refused(lambda: search(client, vectors[0], wide))
    assert message == "filter: 1025 conditions or more, at most 1024 (limits.max_filter_clauses)"
    # Counted at every depth: 600 here and 600 a level down.
    split = filter_pb2.Filter(must=[below(i) for i in range(599)] + [filter_pb2.Condition(
        nested=filter_pb2.Filter(should=[below(i) for i in range(600)]))])
    assert "limits.max_filter_clauses" in refused(lambda: search(client, vectors[0], split))
    assert search(client, vectors[0], filter_pb2.Filter(should=[below(i) for i in range(1024)])).hits


def test_the_reported_wedge_answers_and_leaves_writes_free(served):
    client, address, vectors, _ = served
    # 24 nested levels with a short deadline, sixteen at once: each plans at once now.
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda _: search(client, vectors[1], nested(24), timeout=2.0), range(16)))
    assert all(r.hits and all(h.id % 3 == 0 and h.id < 1500 for h in r.hits) for r in replies)
    answered_in_time(client, address, vectors)


def answered_in_time(client, address, vectors, timeout=5.0):
    """An upsert, a delete, Stats and health each answer within `timeout`."""
    reply = client.stub.Upsert(iter([search_pb2.UpsertRequest(products=[product(N + 1, vectors[1])])]),
                               timeout=timeout)
    assert reply.results[0].status_code == 0
    assert client.stub.Delete(search_pb2.DeleteRequest(ids=[N + 1]), timeout=timeout).deleted == 1
    assert client.stub.Stats(search_pb2.StatsRequest(), timeout=timeout).products == N
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def costly_filter():
    """Allowed by the bounds, yet long: one must_not over every tag of the store.
    Nothing can be listed, so the planner walks the graph; nothing passes, so
    the walk goes through every product, each checked against 60,000 tags, and
    a scan of every product follows."""
    every_tag = [t for i in range(N) for t in tags_of(i)]
    return filter_pb2.Filter(must_not=[filter_pb2.Condition(
        match=filter_pb2.Match(attribute="tags", any_of=filter_pb2.KeywordList(values=every_tag)))])


def test_an_expensive_search_stops_at_its_deadline_on_the_server(served):
    client, address, vectors, log_path = served
    costly = costly_filter()

    started = time.perf_counter()
    with ThreadPoolExecutor(1) as pool:
        unbounded = pool.submit(search, client, vectors[2], costly, 120.0)
        time.sleep(0.1)  # the search is under way: writes must not wait for it
        answered_in_time(client, address, vectors, timeout=60)
        assert not unbounded.done()  # the writes did not wait for it
        assert not unbounded.result().hits
    full = time.perf_counter() - started

    deadline = full / 10
    with pytest.raises(grpc.RpcError) as e:
        search(client, vectors[2], costly, timeout=deadline)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server stopped too: its log line for the call says DEADLINE_EXCEEDED
    # after about the deadline, not after the whole search (nor INTERNAL).
    time.sleep(0.5)
    code, ms = calls(log_path, "Search")[-1]
    assert code == "DEADLINE_EXCEEDED"
    assert ms / 1000 < full / 2, (ms, full)
    assert "Traceback" not in log_path.read_text()
    answered_in_time(client, address, vectors)


def test_an_expensive_delete_by_filter_stops_at_its_deadline_on_the_server(served):
    """The scan that finds what a delete by filter names stops at the call's
    deadline too, instead of holding the writes' gate past it."""
    client, address, vectors, log_path = served
    delete = search_pb2.DeleteRequest(filter=costly_filter())  # matches nothing: deletes nothing
    started = time.perf_counter()
    assert client.stub.Delete(delete, timeout=120).deleted == 0
    full = time.perf_counter() - started

    with pytest.raises(grpc.RpcError) as e:
        client.stub.Delete(delete, timeout=full / 10)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.5)
    code, ms = calls(log_path, "Delete")[-1]
    assert code == "DEADLINE_EXCEEDED"
    assert ms / 1000 < full / 2, (ms, full)
    answered_in_time(client, address, vectors)
