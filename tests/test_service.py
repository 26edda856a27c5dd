"""The gRPC service end to end: a real server process on a loopback port, driven
through the real client. Vector and more-like-this queries with filters,
pagination, writes, reads, health, reflection and bad input."""

import json
import os
import re
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from conftest import clustered
from lookalike.client import Client, Filter, Product, packed
from lookalike.v1 import filter_pb2, search_pb2

N = 400
CONFIG = """
[schema]
category = "keyword"
price = "numeric"
in_stock = "bool"

[[spaces]]
name = "clip"
dim = 32

[[spaces]]
name = "visual"
dim = 16
metric = "l2"
storage = "float32"
rerank = ""

[limits]
max_k = 50
max_results = 100
max_batch = 64
"""
CATEGORIES = ["dresses", "shoes", "bags", "hats"]


def start_server(tmp_path, *extra, config_text=CONFIG):
    config = tmp_path / "lookalike.toml"
    config.write_text(config_text)
    process = subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", "serve", "--config", str(config), "--address", "127.0.0.1:0", "--http", "off",
         "--data-dir", str(tmp_path / "data"), *extra],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    seen = []
    for line in process.stderr:
        seen.append(line)
        match = re.search(r"serving on (127\.0\.0\.1:\d+)", line)
        if match:
            return process, match.group(1)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("the server did not start:\n" + "".join(seen[-20:]))


def stop_server(process):
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


def products(clip, visual):
    rng = np.random.default_rng(3)
    for i in range(N):
        attributes = {
            "category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[CATEGORIES[i % 4]])),
            "price": search_pb2.AttributeValue(number=float(10 + i)),
            "in_stock": search_pb2.AttributeValue(flag=bool(rng.random() < 0.8)),
        }
        yield Product(id=i, title=f"product {i}", image_uri=f"https://img.example/{i}.jpg", attributes=attributes,
                      vectors={"clip": packed(clip[i]), "visual": packed(visual[i])})


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("service")
    process, address = start_server(tmp)
    clip = clustered(N + 20, 32, seed=7)
    visual = clustered(N, 16, seed=8)
    try:
        with Client(address) as client:
            reply = client.upsert(products(clip, visual), batch=50)
            assert [r.status_code for r in reply.results] == [0] * N
            yield client, address, clip, visual
    finally:  # a failed setup must not leave the server running
        stop_server(process)


def match(attribute, value):
    return filter_pb2.Condition(match=filter_pb2.Match(attribute=attribute, value=value))


def price_below(limit):
    return filter_pb2.Condition(range=filter_pb2.Range(attribute="price", lt=limit))


def test_health_reports_serving_and_reflection_lists_the_service(served):
    _, address, _, _ = served
    with grpc.insecure_channel(address) as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request])))
        names = {s.name for s in reply.list_services_response.service}
        assert "lookalike.v1.SearchService" in names and "grpc.health.v1.Health" in names


def test_vector_search_finds_the_exact_neighbours_with_metadata(served):
    client, _, clip, _ = served
    query = clip[N]
    reply = client.search(vector=query, k=5, with_metadata=True)
    truth = np.argsort(-(clip[:N] @ query))[:5]
    assert [h.id for h in reply.hits] == truth.tolist()
    np.testing.assert_allclose([h.score for h in reply.hits], np.sort(clip[:N] @ query)[::-1][:5], atol=1e-2)
    first = reply.hits[0]
    assert first.metadata.title == f"product {first.id}"
    assert first.metadata.image_uri.endswith(f"/{first.id}.jpg")
    assert list(first.metadata.attributes["category"].keywords.values) == [CATEGORIES[first.id % 4]]
    assert reply.plan.plan == "graph" and reply.timings.total_us > 0


def test_a_second_space_is_chosen_by_using(served):
    client, _, _, visual = served
    reply = client.search(vector=visual[12], k=1, using="visual")
    assert reply.hits[0].id == 12 and reply.hits[0].score == pytest.approx(0.0, abs=1e-5)  # l2: minus the distance


def test_filters_hold_in_every_hit(served):
    client, _, clip, _ = served
    f = Filter(must=[match("category", "shoes"), price_below(200)])
    reply = client.search(vector=clip[N + 1], k=20, filter=f)
    ids = [h.id for h in reply.hits]
    allowed = np.array([i for i in range(N) if i % 4 == 1 and 10 + i < 200])
    assert set(ids) <= set(allowed.tolist()) and len(ids) == 20
    exact = allowed[np.argsort(-(clip[allowed] @ clip[N + 1]))[:20]]
    assert len(set(ids) & set(exact.tolist())) >= 18
    # The plan shows the planner's choice, its estimate and the true count of matches.
    assert reply.plan.plan in ("exact_scan", "filtered_graph", "two_hop_graph")
    assert reply.plan.HasField("matches") and reply.plan.matches == len(allowed)
    assert reply.plan.estimated_matches == len(allowed)  # counted, so the estimate is the count
    # The driver is the narrower clause: shoes (a quarter) over price < 200 (190 products).
    shoes, cheap = sum(1 for i in range(N) if i % 4 == 1), sum(1 for i in range(N) if 10 + i < 200)
    assert reply.plan.driver_size == min(shoes, cheap)
    assert not client.search(vector=clip[N + 1], k=5).plan.HasField("matches")  # unfiltered: nothing counted


def test_more_like_this_leaves_out_the_product_itself(served):
    client, _, clip, _ = served
    reply = client.search(product_id=5, k=3)
    ids = [h.id for h in reply.hits]
    assert 5 not in ids
    assert ids == np.argsort(-(clip[:N] @ clip[5]))[1:4].tolist()


def test_pages_follow_each_other_without_overlap(served):
    client, _, clip, _ = served
    first = client.search(vector=clip[N + 2], k=10)
    second = client.search(vector=clip[N + 2], k=10, page_token=first.next_page_token)
    both = [h.id for h in first.hits] + [h.id for h in second.hits]
    assert len(set(both)) == 20
    assert both == np.argsort(-(clip[:N] @ clip[N + 2]))[:20].tolist()


def test_get_returns_metadata_and_vectors_and_names_missing_ids(served):
    client, _, clip, _ = served
    reply = client.get([3, 99999], with_vectors=["clip"])
    assert [p.id for p in reply.products] == [3] and list(reply.missing_ids) == [99999]
    stored = np.frombuffer(reply.products[0].vectors["clip"].data, dtype="<f4")
    np.testing.assert_allclose(stored, clip[3], atol=2e-2)  # int8 codes, float16 copies


def test_upsert_reports_each_product_and_applies_the_good_ones(served):
    client, _, clip, visual = served
    good = Product(id=1000, title="new", vectors={"clip": packed(clip[N + 3]), "visual": packed(visual[0])})
    wrong_dim = Product(id=1001, vectors={"clip": packed(clip[0][:8]), "visual": packed(visual[0])})
    nan = Product(id=1002, vectors={"clip": packed(np.full(32, np.nan)), "visual": packed(visual[0])})
    no_vector = Product(id=1003, vectors={"clip": packed(clip[0])})
    bad_attribute = Product(id=1004, vectors={"clip": packed(clip[0]), "visual": packed(visual[0])},
                            attributes={"colour": search_pb2.AttributeValue(number=1.0)})
    wrong_kind = Product(id=1005, vectors={"clip": packed(clip[0]), "visual": packed(visual[0])},
                         attributes={"price": search_pb2.AttributeValue(flag=True)})
    reply = client.upsert([good, wrong_dim, nan, no_vector, bad_attribute, wrong_kind])
    codes = [grpc.StatusCode.OK if r.status_code == 0 else r.status_code for r in reply.results]
    assert codes[0] == grpc.StatusCode.OK
    assert all(c == grpc.StatusCode.INVALID_ARGUMENT.value[0] for c in codes[1:])
    errors = [r.error for r in reply.results[1:]]
    assert "dim is 8, the space has dimension 32" in errors[0]
    assert "NaN" in errors[1]
    assert "no vector for space 'visual'" in errors[2]
    assert "unknown attribute 'colour'" in errors[3]
    assert "'price' is numeric" in errors[4]
    assert client.search(vector=clip[N + 3], k=1).hits[0].id == 1000
    assert [p.id for p in client.get([1001, 1002, 1003]).products] == []


def test_delete_hides_products_at_once(served):
    client, _, clip, _ = served
    victim = client.search(vector=clip[N + 4], k=1).hits[0].id
    reply = client.delete([victim, 123456])
    assert reply.deleted == 1 and list(reply.unknown_ids) == [123456]
    assert victim not in [h.id for h in client.search(vector=clip[N + 4], k=10).hits]


def test_delete_by_filter_removes_exactly_the_matches(served):
    client, _, clip, _ = served
    hats_cheap = Filter(must=[match("category", "hats"), price_below(60)])
    expected = {i for i in range(N) if i % 4 == 3 and 10 + i < 60}
    reply = client.delete(filter=hats_cheap)
    assert reply.deleted == len(expected)
    assert not client.search(vector=clip[N + 5], k=10, filter=hats_cheap).hits


def test_stats_describe_the_collection(served):
    client, _, _, _ = served
    stats = client.stats()
    assert stats.default_space == "clip" and [s.name for s in stats.spaces] == ["clip", "visual"]
    assert stats.spaces[0].dim == 32 and stats.spaces[0].index_kind.startswith("hnsw int8 + float16")
    assert dict(stats.attribute_schema) == {"category": "keyword", "price": "numeric", "in_stock": "bool"}
    assert 0 < stats.products <= N + 1
    assert stats.applied_seq >= 8 and stats.last_snapshot_seq <= stats.applied_seq  # 400 products in 8 messages


@pytest.mark.parametrize(
    "request_kwargs, code, message",
    [
        ({"vector": np.ones(31)}, grpc.StatusCode.INVALID_ARGUMENT, "dim is 31, the space has dimension 32"),
        ({"vector": np.full(32, np.inf)}, grpc.StatusCode.INVALID_ARGUMENT, "infinite"),
        ({"vector": np.ones(32), "k": 51}, grpc.StatusCode.INVALID_ARGUMENT, "k is 51, at most 50"),
        ({"vector": np.ones(32), "using": "audio"}, grpc.StatusCode.NOT_FOUND, "unknown vector space 'audio'"),
        ({"product_id": 424242}, grpc.StatusCode.NOT_FOUND, "no product 424242"),
        ({"text": "red dress"}, grpc.StatusCode.FAILED_PRECONDITION, "has no text encoder"),
        ({"vector": np.ones(32), "page_token": "zz"}, grpc.StatusCode.INVALID_ARGUMENT, "page_token"),
        ({"vector": np.ones(32), "filter": Filter(must=[match("colour", "red")])},
         grpc.StatusCode.INVALID_ARGUMENT, "unknown attribute 'colour'"),
        ({"vector": np.ones(32), "filter": Filter(must=[filter_pb2.Condition(
            range=filter_pb2.Range(attribute="category", lt=3))])}, grpc.StatusCode.INVALID_ARGUMENT, "category"),
        ({"vector": np.ones(32), "filter": Filter(must=[filter_pb2.Condition()])},
         grpc.StatusCode.INVALID_ARGUMENT, "filter.must[0]: no condition set"),
    ],
)
def test_bad_input_gets_a_status_that_names_the_problem(served, request_kwargs, code, message):
    client, _, _, _ = served
    with pytest.raises(grpc.RpcError) as caught:
        client.search(**request_kwargs)
    assert caught.value.code() == code
    assert message in caught.value.details()


def test_an_oversized_upsert_message_fails_its_products_only(served):
    client, _, clip, visual = served
    many = [Product(id=2000 + i, vectors={"clip": packed(clip[i]), "visual": packed(visual[i])}) for i in range(65)]
    reply = client.upsert(many, batch=65)
    assert {r.status_code for r in reply.results} == {grpc.StatusCode.INVALID_ARGUMENT.value[0]}
    assert "65 products in one message, at most 64" in reply.results[0].error
    assert [p.id for p in client.get([2000]).products] == []


def test_a_batch_answers_each_request_on_its_own(served):
    client, _, clip, _ = served
    good = search_pb2.SearchRequest(query=search_pb2.Query(vector=packed(clip[N + 6])), k=3)
    bad = search_pb2.SearchRequest(query=search_pb2.Query(vector=packed(np.ones(5))), k=3)
    reply = client.stub.SearchBatch(search_pb2.SearchBatchRequest(requests=[good, bad]), timeout=10)
    assert reply.results[0].status_code == 0 and len(reply.results[0].response.hits) == 3
    assert reply.results[1].status_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "requests[1]" in reply.results[1].error


def test_the_collection_survives_a_graceful_restart(tmp_path):
    process, address = start_server(tmp_path)
    vectors = clustered(30, 32, seed=9)
    try:
        with Client(address) as client:
            client.upsert(Product(id=i, title=f"t{i}", vectors={"clip": packed(vectors[i]),
                                                               "visual": packed(np.ones(16))}) for i in range(30))
            client.delete([4])
    finally:
        stop_server(process)  # SIGTERM: drain, save
    process, address = start_server(tmp_path)
    try:
        with Client(address) as client:
            stats = client.stats()
            assert stats.products == 29
            assert stats.last_snapshot_seq == stats.applied_seq > 0  # the stop took a last snapshot
            reply = client.search(vector=vectors[7], k=1, with_metadata=True)
            assert reply.hits[0].id == 7 and reply.hits[0].metadata.title == "t7"
            assert [p.id for p in client.get([4]).products] == []
    finally:
        stop_server(process)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *args], capture_output=True, text=True, timeout=120)


def test_ingest_a_manifest_and_search_from_the_command_line(served, tmp_path):
    _, address, clip, visual = served
    rows = [{"id": 5000 + i, "title": f"cli product {i}", "attributes": {"category": "hats", "price": 1.5 + i},
             "vectors": {"clip": clip[i].tolist(), "visual": visual[i].tolist()}} for i in range(3)]
    rows.append({"id": 5003, "attributes": {"price": "cheap"}, "vectors": {}})
    manifest = tmp_path / "catalog.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows[:3]) + "\n")
    done = run_cli("ingest", str(manifest), "--address", address)
    assert done.returncode == 0, done.stderr
    assert "3 products stored, 0 failed" in done.stderr

    found = run_cli("search", "--product-id", "5000", "--address", address, "-k", "3",
                    "--filter", '{"must": [{"match": {"attribute": "category", "value": "hats"}}]}')
    assert found.returncode == 0, found.stderr
    lines = found.stdout.splitlines()
    assert lines[0].split() == ["rank", "id", "score", "title"]
    assert {int(line.split()[1]) for line in lines[1:]} <= {5001, 5002} | set(range(3, N, 4))

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[3]) + "\n")
    refused = run_cli("ingest", str(bad), "--address", address)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "bad.jsonl:1: attribute 'price' is numeric: give a number" in refused.stderr
