"""A cluster router serves what a collection's server does beside plain search,
or refuses it naming why: zero-shot attributes of upserted photos (tagged by
the router, which holds the model, into the records) and ignore_colour (the
query's colour directions removed by the router) give what one server with the
same config gives; relevance feedback is refused; a router configured for
what it cannot do (flag duplicates at upsert; tag photos it does not send on)
does not start. Real processes: one NATS node with
JetStream, one replica process of a one-shard cluster, whose model is the tiny
CLIP bundle (tests/tiny_clip.py)."""

from __future__ import annotations

import grpc
import pytest

from lookalike.client import Client, Product
from lookalike.cluster.config import ClusterConfig
from lookalike.cluster.local import NatsServers, ReplicaProcess
from lookalike.duplicates.finder import DuplicatesConfig
from lookalike.duplicates.synthetic import make_catalog
from lookalike.encoders.zero_shot import ZeroShotConfig
from lookalike.ingest import attribute_value
from lookalike.service.config import ServiceConfig
from lookalike.service.server import Server
from lookalike.service.shardmap import RouterConfig, Shard
from lookalike.v1 import search_pb2

SCHEMA = {"price": "numeric", "brand": "keyword", "category": "keyword"}
ZERO_SHOT = ZeroShotConfig(enabled=True, vocabularies={"colour": ["red", "blue", "green"]}, min_confidence=0.0)
EXACT = search_pb2.SearchParams(exact=True)


def replica_toml(bundle, urls) -> str:
    listed = ", ".join(f'"{u}"' for u in urls)
    schema = "".join(f'{name} = "{kind}"\n' for name, kind in SCHEMA.items())
    return (f'model = "{bundle}"\n[schema]\n{schema}'
            '[zero_shot]\nenabled = true\nmin_confidence = 0.0\nvocabularies = { colour = ["red", "blue", "green"] }\n'
            f'[cluster]\nurls = [{listed}]\nshards = 1\nstream_replicas = 1\nheartbeat_s = 0.3\nlive_after_s = 1.5\n'
            'replica_id = "only"\n')


@pytest.fixture(scope="module")
def served(tiny_clip_bundle, tmp_path_factory):
    """(router, single server) holding the same catalog of photos."""
    root = tmp_path_factory.mktemp("cluster-extras")
    nats = NatsServers.start(root / "nats", 1)
    replica = ReplicaProcess(0, "s0r0", root)
    servers = []
    try:
        replica.start(replica_toml(tiny_clip_bundle, nats.urls))
        common = dict(address="127.0.0.1:0", model=str(tiny_clip_bundle), zero_shot=ZERO_SHOT)
        router = Server(ServiceConfig(data_dir=str(root / "router"), **common,
                                      cluster=ClusterConfig(urls=nats.urls, shards=1, stream_replicas=1,
                                                            heartbeat_s=0.3, live_after_s=1.5)), router=True)
        servers.append(router)
        single = Server(ServiceConfig(data_dir=str(root / "single"), schema=SCHEMA, **common))
        servers.append(single)
        single.start()
        replica.wait_serving()
        router.start()
        photos, _ = make_catalog(12, seed=5, size=96)
        catalog = [Product(id=i, image=p.image, title=p.title,
                           attributes={k: attribute_value(k, v, SCHEMA) for k, v in p.attributes.items()})
                   for i, p in enumerate(photos)]
        with Client(router.address) as via_router, Client(single.address) as alone:
            written = via_router.upsert(catalog)
            assert [r.error for r in written.results] == [""] * len(catalog)
            assert [r.error for r in alone.upsert(catalog).results] == [""] * len(catalog)
            yield via_router, alone, written.seq, catalog
    finally:
        for server in servers:
            server.stop(grace=0)
        replica.kill()
        nats.stop()


def test_zero_shot_attributes_are_tagged_by_the_router_as_one_server_tags_them(served):
    via_router, alone, seq, catalog = served
    ids = [p.id for p in catalog]
    through_router = via_router.get(ids, min_seq=seq).products
    on_one_server = alone.get(ids).products
    assert len(through_router) == len(catalog)
    for routed, single in zip(through_router, on_one_server):
        tagged = routed.metadata.attributes
        assert tagged["colour"].keywords.values == single.metadata.attributes["colour"].keywords.values
        assert tagged["colour"].keywords.values[0] in ("red", "blue", "green")
        assert tagged["colour_confidence"].number == pytest.approx(
            single.metadata.attributes["colour_confidence"].number, abs=1e-5)


def test_ignore_colour_through_the_router_equals_one_server(served):
    via_router, alone, seq, catalog = served
    for photo in (catalog[0].image, catalog[5].image):
        request = search_pb2.SearchRequest(query=search_pb2.Query(image=photo), k=6, params=EXACT, ignore_colour=True,
                                           min_seq=seq)
        routed = via_router.stub.Search(request, timeout=30)
        request.min_seq = 0
        single = alone.stub.Search(request, timeout=30)
        assert [h.id for h in routed.hits] == [h.id for h in single.hits]
        assert [h.score for h in routed.hits] == pytest.approx([h.score for h in single.hits], abs=1e-4)
        plain = via_router.search(image=photo, k=6, params=EXACT)
        assert [h.score for h in plain.hits] != pytest.approx([h.score for h in routed.hits], abs=1e-4)


def test_relevance_feedback_through_a_router_is_refused_naming_why(served):
    via_router, _, _, catalog = served
    request = search_pb2.SearchRequest(query=search_pb2.Query(image=catalog[0].image), k=5,
                                       relevance=search_pb2.RelevanceFeedback(liked_ids=[1]))
    with pytest.raises(grpc.RpcError) as refused:
        via_router.stub.Search(request, timeout=30)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "router does not serve relevance feedback" in refused.value.details()


def test_a_router_configured_for_what_it_cannot_do_does_not_start(tmp_path):
    cluster = ClusterConfig(urls=("nats://127.0.0.1:4222",), shards=1)
    with pytest.raises(ValueError, match="flag_on_upsert: a router does not flag duplicates"):
        Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path), cluster=cluster,
                             duplicates=DuplicatesConfig(flag_on_upsert=True)), router=True)
    # A router over a static shard map sends its shards vectors, not photos: nobody could tag them.
    shard_map = RouterConfig(shards=(Shard("shard-0", ("127.0.0.1:1",)),))
    with pytest.raises(ValueError, match="zero_shot: a router over a static shard map does not tag photos"):
        Server(ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path), router=shard_map, zero_shot=ZERO_SHOT),
               router=True)
