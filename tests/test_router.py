"""A router over three shard servers (shard-0 with two replicas) on loopback,
checked against one server holding the same products: exact searches, pages,
filters and "more like this" give the same hits; writes land on the owning
shard; deletes by filter reach every shard; a dead or slow shard gives a
flagged partial result or UNAVAILABLE by policy; a dead replica is failed over.

Every server runs in this process and is stopped by the fixture, killed or not."""

import contextlib
import io
import time
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import numpy as np
import pytest
from PIL import Image

from conftest import clustered
from lookalike.client import Client, Filter, Product, packed
from lookalike.index.collection import SpaceConfig
from lookalike.index.sharding import shard_of
from lookalike.service.config import DurabilityConfig, Limits, ServiceConfig
from lookalike.service.server import Server
from lookalike.service.shardmap import RouterConfig, Shard
from lookalike.service.shards import Shards
from lookalike.v1 import filter_pb2, search_pb2, search_pb2_grpc

N = 240
SPACES = (SpaceConfig("v", 16, storage="float32", rerank=""), SpaceConfig("w", 8, "l2", storage="float32", rerank=""))
SCHEMA = {"category": "keyword", "price": "numeric"}
LIMITS = Limits(max_k=50, max_results=100)
SHARD_LIMITS = Limits(max_k=100, max_results=100)  # a router asks each shard for offset + k hits
CATEGORIES = ["dresses", "shoes", "bags"]
EXACT = search_pb2.SearchParams(exact=True)


def node_config(path, **changes):
    """A shard's (or the single server's) config: vectors only, no model."""
    return ServiceConfig(**{"address": "127.0.0.1:0", "data_dir": str(path), "workers": 4, "spaces": SPACES,
                            "schema": SCHEMA, "limits": LIMITS, "durability": DurabilityConfig(fsync="never"),
                            **changes})


@dataclass
class Cluster:
    tmp_path: object
    shards: list[list[Server]]           # shard -> its replicas
    running: list[Server] = field(default_factory=list)

    def start(self, config, router=False):
        server = Server(config, router=router)
        server.start()
        self.running.append(server)
        return server

    def kill(self, server):
        self.running.remove(server)
        server.stop(grace=0)

    def router(self, name="router", model="", **options):
        shard_map = tuple(Shard(f"shard-{i}", tuple(s.address for s in replicas))
                          for i, replicas in enumerate(self.shards))
        return self.start(ServiceConfig(address="127.0.0.1:0", data_dir=str(self.tmp_path / name), workers=4,
                                        model=model, limits=LIMITS, router=RouterConfig(shards=shard_map, **options)),
                          router=True)


@contextlib.contextmanager
def cluster(tmp_path, replicas=(2, 1, 1), **node_changes):
    c = Cluster(tmp_path, [])
    try:
        for i, n in enumerate(replicas):
            c.shards.append([c.start(node_config(tmp_path / f"shard-{i}-{r}", limits=SHARD_LIMITS, **node_changes))
                             for r in range(n)])
        yield c
    finally:
        for server in reversed(c.running):
            server.stop(grace=0)


def products(n=N, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.choice(10**12, n, replace=False)  # sparse ids: the hash, not their order, spreads them
    v, w = clustered(n, 16, seed=seed), rng.standard_normal((n, 8)).astype(np.float32)
    return [Product(id=int(ids[i]), title=f"product {i}", image_uri=f"https://img.example/{i}.jpg",
                    vectors={"v": packed(v[i]), "w": packed(w[i])},
                    attributes={"category": search_pb2.AttributeValue(
                                    keywords=search_pb2.Keywords(values=[CATEGORIES[i % 3]])),
                                "price": search_pb2.AttributeValue(number=float(i % 100))})
            for i in range(n)]


def price_below(limit):
    return Filter(must=[filter_pb2.Condition(range=filter_pb2.Range(attribute="price", lt=limit))])


def category(name):
    return Filter(must=[filter_pb2.Condition(match=filter_pb2.Match(attribute="category", value=name))])


def hits(reply):
    return [(h.id, round(h.score, 5)) for h in reply.hits]


@pytest.fixture
def loaded(tmp_path):
    """Three shards and a router holding PRODUCTS, written through the router, and one
    server holding the same, written directly."""
    catalog = products()
    with cluster(tmp_path) as c:
        router = c.router()
        reference = c.start(node_config(tmp_path / "single"))
        with Client(router.address) as via_router, Client(reference.address) as single:
            for client in (via_router, single):
                assert [r.status_code for r in client.upsert(catalog, batch=64).results] == [0] * N
            yield c, router, via_router, single, catalog


def test_results_equal_one_server(loaded):
    _, _, via_router, single, catalog = loaded
    queries = clustered(8, 16, seed=7)
    for q in queries:
        for kwargs in ({}, {"filter": price_below(30)}, {"with_metadata": True}):
            a = via_router.search(vector=q, k=10, params=EXACT, **kwargs)
            b = single.search(vector=q, k=10, params=EXACT, **kwargs)
            assert hits(a) == hits(b) and len(a.hits) == 10
            assert [h.metadata for h in a.hits] == [h.metadata for h in b.hits]
            assert not a.unanswered_shards
    w = np.random.default_rng(3).standard_normal(8)
    assert hits(via_router.search(vector=w, using="w", k=12, params=EXACT)) == \
        hits(single.search(vector=w, using="w", k=12, params=EXACT))
    for product in catalog[:5]:  # more like this: the product's vector from its owner, itself left out
        a = via_router.search(product_id=product.id, k=10, params=EXACT)
        assert hits(a) == hits(single.search(product_id=product.id, k=10, params=EXACT))
        assert product.id not in [h.id for h in a.hits] and len(a.hits) == 10


def test_pages_equal_one_server(loaded):
    _, _, via_router, single, _ = loaded
    q = clustered(1, 16, seed=11)[0]
    for filter in (None, price_below(20)):
        pages = {}
        for name, client in (("router", via_router), ("single", single)):
            token, seen, tokens = "", [], []
            for _ in range(20):  # 100 results at most, 7 a page: 15 pages
                reply = client.search(vector=q, k=7, page_token=token, filter=filter, params=EXACT)
                seen += hits(reply)
                tokens.append(reply.next_page_token)
                token = reply.next_page_token
                if not token:
                    break
            pages[name] = (seen, tokens)
        assert pages["router"] == pages["single"]
        assert len(pages["router"][0]) == (LIMITS.max_results if filter is None else 60)  # prices 0-19: 60 products


def test_writes_land_on_the_owning_shard_and_results_keep_their_order(loaded):
    c, _, via_router, _, catalog = loaded
    ids = [p.id for p in catalog]
    owners = shard_of(ids, 3)
    for s, replicas in enumerate(c.shards):
        mine = [i for i, o in zip(ids, owners) if o == s]
        assert 0 < len(mine) < N
        for server in replicas:  # both replicas of shard-0 hold its products, and nobody else's
            with Client(server.address) as direct:
                assert direct.stats().products == len(mine)
                assert not direct.get(mine).missing_ids
    bad = Product(id=5, vectors={"v": packed(np.ones(15)), "w": packed(np.ones(8))})  # wrong dimension
    fresh = products(4, seed=9)
    reply = via_router.upsert([fresh[0], fresh[1], bad, fresh[2], fresh[3]])
    assert [r.id for r in reply.results] == [fresh[0].id, fresh[1].id, 5, fresh[2].id, fresh[3].id]
    assert [r.status_code for r in reply.results] == [0, 0, grpc.StatusCode.INVALID_ARGUMENT.value[0], 0, 0]
    assert "dim is 15" in reply.results[2].error


def test_get_and_stats_through_the_router(loaded):
    c, _, via_router, _, catalog = loaded
    ids = [catalog[3].id, 77, catalog[0].id, catalog[200].id]
    reply = via_router.get(ids, with_vectors=["w"])
    assert [p.id for p in reply.products] == [catalog[3].id, catalog[0].id, catalog[200].id]
    assert list(reply.missing_ids) == [77]
    assert reply.products[1].vectors["w"].data == catalog[0].vectors["w"].data
    assert reply.products[2].metadata.title == "product 200"
    stats = via_router.stats()
    assert stats.products == N and [s.name for s in stats.spaces] == ["v", "w"]
    assert (stats.default_space, stats.image_query_space, stats.text_query_space) == ("v", "", "")  # no encoder
    assert [s.name for s in stats.shards] == ["shard-0", "shard-1", "shard-2"]
    assert sum(s.products for s in stats.shards) == N and all(s.answered_by for s in stats.shards)
    replicas = {via_router.stats().shards[0].answered_by for _ in range(2)}  # round-robin over shard-0's two
    assert replicas == {server.address for server in c.shards[0]}


def test_deletes_by_filter_reach_every_shard(loaded):
    c, _, via_router, single, catalog = loaded
    a, b = via_router.delete(filter=category("bags")), single.delete(filter=category("bags"))
    assert a.deleted == b.deleted == N // 3
    for replicas in c.shards:
        for server in replicas:
            with Client(server.address) as direct:
                assert not direct.search(vector=np.ones(16), k=10, filter=category("bags"), params=EXACT).hits
    gone = via_router.delete(ids=[catalog[0].id, 12345, catalog[1].id])
    assert gone.deleted == 2 and list(gone.unknown_ids) == [12345]
    assert len(via_router.get([catalog[0].id, catalog[1].id]).products) == 0
    assert via_router.stats().products == N - N // 3 - 2


def test_a_dead_shard_gives_a_flagged_partial_result_or_an_error_by_policy(loaded):
    c, _, via_router, single, catalog = loaded
    strict = c.router("strict", on_shard_failure="error")
    c.kill(c.shards[2][0])
    on_dead = {p.id for p, o in zip(catalog, shard_of([p.id for p in catalog], 3)) if o == 2}
    q = clustered(1, 16, seed=5)[0]
    partial = via_router.search(vector=q, k=10, params=EXACT)
    assert list(partial.unanswered_shards) == ["shard-2"]
    expected = [h for h in hits(single.search(vector=q, k=50, params=EXACT)) if h[0] not in on_dead][:10]
    assert hits(partial) == expected
    with Client(strict.address) as client, pytest.raises(grpc.RpcError) as error:
        client.search(vector=q, k=10)
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE and "shard-2" in error.value.details()
    stats = via_router.stats()
    assert stats.shards[2].error and not stats.shards[2].answered_by


def test_a_dead_replica_is_failed_over_and_marked_stale_by_the_next_write(loaded):
    c, _, via_router, single, catalog = loaded
    c.kill(c.shards[0][1])
    q = clustered(1, 16, seed=6)[0]
    expected = hits(single.search(vector=q, k=10, params=EXACT))
    for _ in range(4):  # round-robin would pick the dead replica every other time
        reply = via_router.search(vector=q, k=10, params=EXACT)
        assert hits(reply) == expected and not reply.unanswered_shards
    assert len(via_router.get([p.id for p in catalog]).products) == N
    fresh = products(12, seed=4)
    owners = shard_of([p.id for p in fresh], 3).tolist()
    reply = via_router.upsert(fresh)  # write_ack = all: shard-0 cannot acknowledge with one replica down
    for result, owner in zip(reply.results, owners):
        assert (result.status_code == grpc.StatusCode.UNAVAILABLE.value[0]) == (owner == 0), result
    assert 0 in owners and any(o != 0 for o in owners)
    assert list(via_router.stats().shards[0].stale_replicas) == [c.shards[0][1].address]


class SlowShard(search_pb2_grpc.SearchServiceServicer):
    """Answers searches only after the router's per-shard deadline."""

    def Search(self, request, context):
        time.sleep(1.0)
        return search_pb2.SearchResponse()


def test_a_slow_shard_is_cut_off_at_the_shard_deadline(tmp_path):
    slow = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    search_pb2_grpc.add_SearchServiceServicer_to_server(SlowShard(), slow)
    port = slow.add_insecure_port("127.0.0.1:0")
    slow.start()
    try:
        with cluster(tmp_path, replicas=(1, 1)) as c:
            shard_map = (*(Shard(f"shard-{i}", (s[0].address,)) for i, s in enumerate(c.shards)),
                         Shard("slow", (f"127.0.0.1:{port}",)))
            router = c.start(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "router"), limits=LIMITS,
                                           router=RouterConfig(shards=shard_map, shard_deadline_ms=200)), router=True)
            few = products(5)
            with Client(c.shards[0][0].address) as direct:
                assert [r.status_code for r in direct.upsert(few).results] == [0] * 5
            with Client(router.address) as client:  # waited for, the slow shard would answer (with no hits)
                reply = client.search(vector=np.ones(16), k=5)
                assert list(reply.unanswered_shards) == ["slow"]
                assert sorted(h.id for h in reply.hits) == sorted(p.id for p in few)
    finally:
        slow.stop(0)


def test_an_attempt_at_a_shard_never_outlives_the_callers_deadline():
    slow = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    search_pb2_grpc.add_SearchServiceServicer_to_server(SlowShard(), slow)
    port = slow.add_insecure_port("127.0.0.1:0")
    slow.start()
    shards = Shards(RouterConfig(shards=(Shard("slow", (f"127.0.0.1:{port}",)),), shard_deadline_ms=5000), 1 << 20)
    try:  # the shard would answer after 1 s, within its 5 s: only the caller's 0.3 s cuts it off
        answer = shards.read("Search", {0: search_pb2.SearchRequest()}, deadline=time.monotonic() + 0.3)[0]
        assert answer.code == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        shards.close()
        slow.stop(0)


def test_the_shard_map_comes_from_the_config_file(tmp_path):
    path = tmp_path / "router.toml"
    path.write_text("""
[router]
shard_deadline_ms = 300
on_shard_failure = "error"
write_ack = "majority"
[[router.shards]]
name = "a"
replicas = ["10.0.0.1:50051", "10.0.0.2:50051"]
[[router.shards]]
name = "b"
replicas = ["10.0.0.3:50051"]
""")
    config = ServiceConfig.load(path).router
    assert config.shards == (Shard("a", ("10.0.0.1:50051", "10.0.0.2:50051")), Shard("b", ("10.0.0.3:50051",)))
    assert (config.shard_deadline_ms, config.on_shard_failure, config.write_ack) == (300, "error", "majority")
    path.write_text('[router]\non_shard_failure = "maybe"\n')
    with pytest.raises(ValueError, match="on_shard_failure"):
        ServiceConfig.load(path)
    path.write_text('[router]\n[[router.shards]]\nname = "a"\nreplicas = "10.0.0.1:50051"\n')
    with pytest.raises(ValueError, match="replicas"):
        ServiceConfig.load(path)
    with pytest.raises(ValueError, match="shard map"):
        Server(ServiceConfig(address="127.0.0.1:0"), router=True)


def picture(i):
    rng = np.random.default_rng(i)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8).repeat(2, axis=0)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_the_router_encodes_photos_and_texts_once_for_its_shards(tiny_clip_bundle, tmp_path):
    from lookalike.encoders.bundle import load_bundle

    dim = load_bundle(tiny_clip_bundle).manifest.spaces["joint"].dim
    catalog = [Product(id=i, image=picture(i), title=f"red dress {i}") for i in range(30)]
    with cluster(tmp_path, replicas=(1, 1, 1), spaces=(SpaceConfig("joint", dim),)) as c:
        for replicas in c.shards:  # vector-only shards: they never see a photo
            assert replicas[0].encoder is None
        router = c.router(model=str(tiny_clip_bundle))
        single = c.start(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / "single"),
                                       model=str(tiny_clip_bundle), limits=LIMITS))
        # A cold encoder's first run can take most of the default 10 s deadline on a loaded
        # machine, and the router's shard writes are capped by what is left of it.
        with Client(router.address, timeout=60) as via_router, Client(single.address, timeout=60) as direct:
            runs = router.encoder._images.batches
            for client in (via_router, direct):
                assert [r.status_code for r in client.upsert(catalog).results] == [0] * 30
            assert router.encoder._images.batches - runs <= 4  # one message's 30 photos share the encoder's runs
            for i in (0, 7, 19):
                a = via_router.search(image=picture(i), k=5, params=EXACT)
                assert a.hits[0].id == i and a.timings.encode_us > 0
                assert [h.id for h in a.hits] == [h.id for h in direct.search(image=picture(i), k=5, params=EXACT).hits]
            a = via_router.search(text="red dress 4", k=5, params=EXACT)
            assert [h.id for h in a.hits] == [h.id for h in direct.search(text="red dress 4", k=5, params=EXACT).hits]
            stats = via_router.stats()
            assert stats.spaces[0].has_image_encoder
            assert (stats.image_query_space, stats.text_query_space) == ("joint", "joint")
