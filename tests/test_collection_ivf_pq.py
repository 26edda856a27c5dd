"""A Collection space held in IVF-PQ: it scans exactly until it has buffered
train_size vectors, then trains itself and moves them in; or a batch build
trains it on a sample first. Filters, deletes, get, save / load, the service
config's [[spaces]] and a server (with a restart from its snapshot) work in
both states."""

import numpy as np
import pytest

from conftest import clustered, exact_knn, recall
from lookalike.client import Client, Product, packed
from lookalike.index import Must, Range, UnknownIdError
from lookalike.index.collection import Collection, SpaceConfig
from lookalike.index.ivf_space import IvfPqSpace
from lookalike.service.config import ServiceConfig
from lookalike.service.server import Server
from lookalike.v1 import search_pb2

DIM = 32
IVF = SpaceConfig("visual", DIM, index="ivf_pq", nlist=16, pq_m=8, nbits=4, nprobe=16, rerank_k=200, train_size=400)


def collection():
    return Collection([IVF, SpaceConfig("joint", 8, storage="float32", rerank="")], {"price": "numeric"})


def upsert(c, ids, vectors):
    ids = np.asarray(ids, dtype=np.int64)
    joint = np.tile(np.eye(8, dtype=np.float32)[0], (len(ids), 1)) + 0.01 * ids[:, None].astype(np.float32)
    c.upsert(ids, {"visual": vectors, "joint": joint}, {"price": [float(i) for i in ids]})


def test_an_empty_space_scans_exactly_then_trains_itself_at_train_size():
    data = clustered(600, DIM, seed=3)
    c = collection()
    space = c.index("visual")
    upsert(c, range(300), data[:300])
    assert isinstance(space, IvfPqSpace) and not space.trained
    hits = c.search("visual", data[5], k=3)
    assert hits.stats.plan == "exact_scan" and hits.ids[0] == 5
    assert "untrained" in c.describe_index("visual")

    upsert(c, range(300, 400), data[300:400])  # reaches train_size: trains, moves the 400 in
    assert space.trained and len(c) == 400 and c.describe_index("visual").startswith("ivf_pq nlist=16")
    np.testing.assert_allclose(c.vectors("visual", [7, 399]), data[[7, 399]], atol=1e-6)
    upsert(c, range(400, 600), data[400:])
    queries = clustered(620, DIM, seed=3)[600:]
    found = np.array([c.search("visual", q, k=10).ids for q in queries])
    assert recall(found, exact_knn(data, queries, 10)) >= 0.95
    assert c.search("visual", queries[0], k=10).stats.plan == "ivf_pq"
    exact = np.array([c.search("visual", q, k=10, exact=True).ids for q in queries])
    assert (exact == exact_knn(data, queries, 10)).mean() >= 0.99  # ties aside, the exact answer


def test_filters_deletes_and_replacements_after_training():
    data = clustered(500, DIM, seed=4)
    c = collection()
    upsert(c, range(500), data)
    assert c.index("visual").trained
    cheap = c.search("visual", data[0], k=500, filter=Must(Range("price", lt=100)), nprobe=16)
    assert len(cheap.ids) == 100 and set(cheap.ids.tolist()) == set(range(100))
    assert c.delete([0, 1, 9999]) == [9999]
    assert 0 not in c and 0 not in c.search("visual", data[0], k=10).ids
    upsert(c, [2], data[[300]])  # product 2 now looks like 300
    np.testing.assert_allclose(c.vectors("visual", [2])[0], data[300], atol=1e-6)
    with pytest.raises(UnknownIdError, match="id 0 is not in the index"):
        c.vectors("visual", [3, 0])
    assert set(c.search("visual", data[300], k=2).ids.tolist()) == {2, 300}


def test_a_batch_build_trains_on_a_sample_first():
    data = clustered(500, DIM, seed=5)
    c = collection()
    c.train("visual", data[::2])
    assert c.index("visual").trained and len(c) == 0
    upsert(c, range(50), data[:50])  # well below train_size, straight into IVF-PQ
    assert c.search("visual", data[3], k=1).ids[0] == 3
    with pytest.raises(ValueError, match="trained already"):
        c.train("visual", data)
    with pytest.raises(ValueError, match="only ivf_pq spaces"):
        c.train("joint", data[:, :8])


@pytest.mark.parametrize("trained", [False, True])
def test_save_and_load_keep_the_state(tmp_path, trained):
    data = clustered(500, DIM, seed=6)
    c = collection()
    upsert(c, range(500 if trained else 200), data[:500 if trained else 200])
    c.delete([10])
    c.save(tmp_path / "c")
    back = Collection.load(tmp_path / "c")
    space = back.index("visual")
    assert isinstance(space, IvfPqSpace) and space.trained == trained and len(back) == len(c)
    assert 10 not in back
    for q in data[:5]:
        a, b = c.search("visual", q, k=5), back.search("visual", q, k=5)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    if not trained:  # the loaded buffer still trains itself when it fills up
        upsert(back, range(200, 400), data[200:400])
        assert not space.trained and len(back) == 399  # one short: 10 was deleted
        upsert(back, [400], data[[400]])
        assert space.trained and len(back) == 400


def test_bad_ivf_pq_configs_are_refused_naming_the_problem():
    with pytest.raises(ValueError, match="index must be one of hnsw, ivf_pq"):
        SpaceConfig("v", 32, index="annoy")
    with pytest.raises(ValueError, match="pq_m dividing dim"):
        SpaceConfig("v", 32, index="ivf_pq", pq_m=5)
    with pytest.raises(ValueError, match="train_size 10 is below"):
        SpaceConfig("v", 32, index="ivf_pq", nlist=64, train_size=10)


def test_for_size_follows_choose_index():
    assert SpaceConfig.for_size("v", 512, 5_000).index == "hnsw"
    big = SpaceConfig.for_size("v", 512, 50_000_000)
    assert big.index == "ivf_pq" and big.code == "rabitq" and big.nlist >= 16_384
    lean = SpaceConfig.for_size("v", 512, 50_000_000, memory_budget=60 * 50_000_000)
    assert lean.index == "ivf_pq" and lean.code == "pq" and lean.pq_m == 64


def test_the_service_config_can_ask_for_an_ivf_pq_space(tmp_path):
    path = tmp_path / "lookalike.toml"
    path.write_text('[[spaces]]\nname = "visual"\ndim = 32\nindex = "ivf_pq"\nnlist = 16\npq_m = 8\n'
                    'train_size = 400\n')
    (space,) = ServiceConfig.load(path, env={}).spaces
    assert space.index == "ivf_pq" and space.nlist == 16 and space.train_size == 400
    assert isinstance(space.new_index(), IvfPqSpace)



def test_a_server_serves_an_ivf_pq_space_across_training_and_a_restart(tmp_path):
    data = clustered(500, DIM, seed=7)
    config = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path), spaces=(IVF,))
    for start in (0, 1):
        server = Server(config)
        server.start()
        try:
            with Client(server.address) as client:
                if start == 0:
                    client.upsert([Product(id=i, vectors={"visual": packed(data[i])}) for i in range(300)])
                    assert client.search(vector=data[4], k=1).plan.plan == "exact_scan"
                    assert "untrained" in client.stats().spaces[0].index_kind
                    client.upsert([Product(id=i, vectors={"visual": packed(data[i])}) for i in range(300, 500)])
                # trained by the first start; loaded from its last snapshot by the second
                assert client.stats().spaces[0].index_kind.startswith("ivf_pq nlist=16")
                reply = client.search(vector=data[123], k=3, params=search_pb2.SearchParams(nprobe=4))
                assert reply.plan.plan == "ivf_pq" and reply.hits[0].id == 123
                assert client.stats().products == 500
        finally:
            server.stop(grace=1)
