"""Group graphs in the service, over real gRPC: configured in [groups], built
at start for a collection saved without them, kept whole by upserts, and
reported in the QueryPlan of a filtered search that walks one."""

import numpy as np
import pytest

from conftest import clustered
from lookalike.client import Client, Filter, Product, packed
from lookalike.index.groups import GroupConfig
from lookalike.service.config import ServiceConfig
from lookalike.v1 import filter_pb2, search_pb2
from test_service import start_server, stop_server

N, DIM = 3000, 16  # a group of 750: enough members that its walk beats a scan of them
CONFIG = f"""
[schema]
category = "keyword"
price = "numeric"

[[spaces]]
name = "clip"
dim = {DIM}
storage = "float32"
rerank = ""
M = 8
ef_construction = 64

[durability]
fsync = "never"
"""
GROUPS = """
[groups]
attributes = ["category"]
min_members = 150
"""


def product(i, vector):
    return Product(id=i, title=f"product {i}", vectors={"clip": packed(vector)}, attributes={
        "category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[f"c{i % 4}"])),
        "price": search_pb2.AttributeValue(number=float(i))})


def in_c1(client, query):
    return client.search(vector=query, k=10, filter=Filter(must=[
        filter_pb2.Condition(match=filter_pb2.Match(attribute="category", value="c1"))]))


def test_a_filtered_search_walks_the_group_built_at_start_and_kept_by_upserts(tmp_path):
    vectors = clustered(N + 40, DIM, seed=4)
    process, address = start_server(tmp_path, config_text=CONFIG)
    try:
        with Client(address) as client:
            reply = client.upsert((product(i, vectors[i]) for i in range(N)), batch=100)
            assert [r.status_code for r in reply.results] == [0] * N
            assert in_c1(client, vectors[N]).plan.plan != "group_graph"  # no groups configured
    finally:
        stop_server(process)  # saves a snapshot without groups
    process, address = start_server(tmp_path, config_text=CONFIG + GROUPS)
    try:
        with Client(address) as client:
            reply = in_c1(client, vectors[N])
            assert reply.plan.plan == "group_graph" and reply.plan.group_size == N // 4
            members = np.arange(1, N, 4)
            exact = members[np.argsort(-(vectors[members] @ vectors[N]))[:10]]
            assert len({h.id for h in reply.hits} & set(exact.tolist())) >= 9
            # New products of c1 join its group: the nearest of them are found through it.
            added = [N + 4 * j + 1 for j in range(10)]
            client.upsert(product(i, vectors[N + 4 * j]) for j, i in enumerate(added))
            reply = in_c1(client, vectors[N])
            assert reply.plan.plan == "group_graph" and reply.plan.group_size == N // 4 + 10
            assert reply.hits[0].id == added[0] and reply.hits[0].score > 0.999
    finally:
        stop_server(process)


def test_the_config_names_grouped_keyword_attributes(tmp_path):
    path = tmp_path / "lookalike.toml"
    path.write_text(CONFIG + GROUPS)
    assert ServiceConfig.load(path, env={}).groups == GroupConfig(("category",), 150)
    assert ServiceConfig.load(None, env={}).groups.attributes == ()  # opt-in
    for groups, message in (('attributes = ["brand"]', "groups: unknown attribute 'brand'"),
                            ('attributes = ["price"]', "groups: attribute 'price' is numeric"),
                            ('attributes = ["category"]\nmin_members = 0', "min_members must be a positive integer"),
                            ('attributes = ["category"]\nminimum = 5', "minimum")):
        path.write_text(CONFIG + "[groups]\n" + groups + "\n")
        with pytest.raises(ValueError, match=message):
            ServiceConfig.load(path, env={})
