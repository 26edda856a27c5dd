"""HNSW index: recall, metrics, storage kinds, deletes, replace, compaction."""

import numpy as np
import pytest

from conftest import clustered, exact_knn, recall
from lookalike.index import DuplicateIdError, HnswIndex, UnknownIdError

IDS = np.arange(4000, dtype=np.int64) * 7 + 3  # external ids unlike row numbers


def build(base, **kw):
    index = HnswIndex(base.shape[1], **kw)
    index.add(IDS[: len(base)], base)
    return index


@pytest.mark.parametrize(
    "storage, rerank",
    [("float32", None), ("float16", None), ("int8", None), ("int8", "float32"), ("int8", "float16")],
)
def test_recall_at_10_meets_095(data_64d, storage, rerank):
    base, queries = data_64d
    index = build(base, storage=storage, rerank=rerank)
    found = index.search(queries, 10, ef=64).ids
    truth = IDS[exact_knn(base, queries, 10)]
    assert recall(found, truth) >= 0.95


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_every_metric_finds_the_exact_neighbours(metric):
    vectors = clustered(2100, 32, seed=5)
    rng = np.random.default_rng(0)
    vectors = vectors * rng.uniform(0.5, 2.0, (len(vectors), 1)).astype(np.float32)  # norms matter for l2/ip
    base, queries = vectors[:2000], vectors[2000:]
    index = HnswIndex(32, metric)
    index.add(np.arange(2000), base)
    truth = exact_knn(base, queries, 10, metric)
    assert recall(index.search(queries, 10, ef=100).ids, truth) >= 0.95
    assert recall(index.search(queries, 10, exact=True).ids, truth) == 1.0


def test_distances_follow_the_metric():
    a = np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    q = np.array([3.0, 0.0], dtype=np.float32)
    cases = {"l2": [4.0, 13.0], "ip": [-3.0, 0.0], "cosine": [0.0, 1.0]}
    for metric, expected in cases.items():
        index = HnswIndex(2, metric)
        index.add([10, 20], a)
        ids, dists = index.search(q, 2)
        assert ids.tolist() == [10, 20]
        np.testing.assert_allclose(dists, expected, atol=1e-6)


def test_float16_and_int8_memory_is_a_half_and_a_quarter(data_64d):
    base, _ = data_64d
    sizes = {s: build(base, storage=s).memory_usage()["node_bytes"] for s in ("float32", "float16", "int8")}
    links = 16 + 2 * 16 * 4  # header + 2M links, per node
    per_node = {s: sizes[s] // 4096 for s in sizes}  # one segment of 4096 nodes, plus its table
    assert per_node["float32"] == links + 64 * 4
    assert per_node["float16"] == links + 64 * 2
    assert per_node["int8"] == links + 64


@pytest.mark.parametrize("rerank, bytes_per_vector", [("float32", 64 * 4), ("float16", 64 * 2)])
def test_rerank_copies_take_their_storage_size(data_64d, rerank, bytes_per_vector):
    base, _ = data_64d
    usage = build(base, storage="int8", rerank=rerank).memory_usage()
    assert usage["rerank_vector_bytes"] // 4096 == bytes_per_vector  # one segment of 4096 copies


def test_rerank_copies_no_more_precise_than_the_codes_are_not_kept():
    assert HnswIndex(8, storage="float16", rerank="float16").rerank is None
    assert HnswIndex(8, storage="float32", rerank=True).rerank is None
    assert HnswIndex(8, storage="float16", rerank=True).rerank == "float32"


def test_fewer_matches_than_k_are_padded():
    index = HnswIndex(4, "l2")
    index.add([1, 2], np.eye(4, dtype=np.float32)[:2])
    ids, dists = index.search(np.ones(4, dtype=np.float32), 5)
    assert ids.tolist() == [1, 2, -1, -1, -1] or ids.tolist() == [2, 1, -1, -1, -1]
    assert np.isinf(dists[2:]).all()


def test_empty_index_returns_only_padding():
    ids, dists = HnswIndex(8).search(np.ones(8, dtype=np.float32), 3)
    assert ids.tolist() == [-1, -1, -1] and np.isinf(dists).all()


def test_get_returns_the_stored_normalised_vector(data_64d):
    base, _ = data_64d
    index = build(base[:100])
    np.testing.assert_allclose(index.get(IDS[[5, 7]]), base[[5, 7]], rtol=1e-6)
    index = HnswIndex(64, storage="float16")
    index.add(IDS[:100], base[:100] * 3.0)  # stored normalised under cosine
    np.testing.assert_allclose(index.get(IDS[[5]]), base[[5]], atol=2e-3)


def test_deleted_ids_never_come_back(data_64d):
    base, queries = data_64d
    index = build(base)
    gone = IDS[::3]
    index.delete(gone)
    assert len(index) == len(base) - len(gone)
    assert index.deleted_count == len(gone)
    assert gone[0] not in index and IDS[1] in index
    for exact in (False, True):
        found = index.search(queries, 10, ef=64, exact=exact).ids
        assert not np.isin(found, gone).any()
    keep = np.setdiff1d(np.arange(len(base)), np.arange(0, len(base), 3))
    truth = IDS[keep][exact_knn(base[keep], queries, 10)]
    assert recall(index.search(queries, 10, ef=64).ids, truth) >= 0.95


def test_delete_of_an_unknown_id_changes_nothing(data_64d):
    base, _ = data_64d
    index = build(base[:100])
    with pytest.raises(UnknownIdError, match="id 1 is not in the index"):
        index.delete([IDS[0], 1])
    assert IDS[0] in index and len(index) == 100


def test_upsert_replaces_the_vector_of_an_id(data_64d):
    base, _ = data_64d
    index = build(base[:500])
    target = IDS[10]
    new_vector = -base[10]
    index.upsert([target], new_vector)
    assert len(index) == 500
    np.testing.assert_allclose(index.get([target])[0], new_vector, rtol=1e-6)
    ids, _ = index.search(new_vector, 1)
    assert ids[0] == target
    ids, _ = index.search(base[10], 10)
    assert target not in ids  # the old vector is gone
    with pytest.raises(DuplicateIdError, match="already in the index"):
        index.add([target], base[0])


def test_compaction_reclaims_deleted_slots_and_keeps_recall():
    ids = np.arange(12000, dtype=np.int64)
    index = HnswIndex(64)
    vectors = clustered(12200, 64, seed=1)
    base, queries = vectors[:12000], vectors[12000:]
    index.add(ids, base)
    before = index.memory_usage()
    gone = ids[ids % 3 != 0]  # two thirds deleted
    index.delete(gone)
    index.compact()
    after = index.memory_usage()
    assert index.deleted_count == 0 and len(index) == 4000
    assert after["capacity"] < before["capacity"] and after["node_bytes"] < before["node_bytes"]
    keep = ids[ids % 3 == 0]
    truth = keep[exact_knn(base[keep], queries, 10)]
    assert recall(index.search(queries, 10, ef=64).ids, truth) >= 0.95
    np.testing.assert_allclose(index.get(keep[:3]), base[keep[:3]], rtol=1e-6)
    index.add(gone[:10], base[gone[:10]])  # slots and ids are reusable afterwards
    assert index.search(base[gone[0]], 1).ids[0] == gone[0]


def test_compaction_moves_the_entry_point_when_it_was_deleted():
    base = clustered(3000, 16, seed=3)
    index = HnswIndex(16)
    index.add(np.arange(3000), base)
    index.delete(np.arange(2990))  # the entry point is almost surely among them
    index.compact()
    ids = index.search(base, 10, ef=50).ids
    assert set(ids[0][ids[0] >= 0]) == set(range(2990, 3000))


def test_delete_everything_then_search():
    base = clustered(100, 8)
    index = HnswIndex(8)
    index.add(np.arange(100), base)
    index.delete(np.arange(100))
    assert (index.search(base[0], 5).ids == -1).all()
    index.compact()
    assert len(index) == 0 and (index.search(base[0], 5).ids == -1).all()
    index.add([7], base[0])
    assert index.search(base[0], 1).ids[0] == 7


def test_builds_are_deterministic_single_threaded(data_64d):
    base, queries = data_64d
    a = HnswIndex(64, seed=9)
    b = HnswIndex(64, seed=9)
    a.add(IDS, base, threads=1)
    b.add(IDS, base, threads=1)
    np.testing.assert_array_equal(a.search(queries, 10).ids, b.search(queries, 10).ids)


def test_batch_search_equals_one_by_one(data_64d):
    base, queries = data_64d
    index = build(base)
    batch = index.search(queries[:20], 10, threads=2)
    for q, ids, dists in zip(queries[:20], batch.ids, batch.distances):
        one = index.search(q, 10)
        np.testing.assert_array_equal(one.ids, ids)
        np.testing.assert_allclose(one.distances, dists)
