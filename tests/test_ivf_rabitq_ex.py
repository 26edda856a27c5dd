"""IvfPqIndex with extended RaBitQ codes (ex_bits): the multi-bit middle stage
of the re-rank keeps results exact where the bounds allow it and reads fewer
floats; its file round-trips, is checked, and follows every write."""

import os

import numpy as np
import pytest

from conftest import exact_knn, recall
from lookalike import _core
from lookalike.index import IndexFileError, IvfPqIndex
from test_ivf_rabitq import DIM, build, data  # noqa: F401  (data: the module's fixture)

WIDE = 8.0  # sigmas: a bound that fails for ~1e-15 of estimates


@pytest.fixture(scope="module")
def pair(data):  # noqa: F811
    base = data[0]
    return build(base), build(base, ex_bits=3)


def test_the_ex_codes_file_is_on_disk_not_in_ram(pair):
    one_bit, multi = pair
    assert multi.ex_bits == 3 and one_bit.ex_bits == 0
    u, u1 = multi.memory_usage(), one_bit.memory_usage()
    assert u["total_bytes"] == u1["total_bytes"]
    # 128 padded dimensions, 4 bits each, and 12 bytes of factors a row.
    assert u["ex_code_file_bytes"] == (128 * 4 // 8 + 12) * u["slots"] and u1["ex_code_file_bytes"] == 0


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_a_wide_bound_is_exact_search_through_the_middle_stage(data, metric):  # noqa: F811
    base, queries = data
    if metric != "cosine":
        base, queries = base * np.linspace(0.5, 2, len(base), dtype=np.float32)[:, None], queries * 3
    index = build(base, metric, ex_bits=2)
    before = index.ex_rows_read
    found = index.search(queries, 10, nprobe=32, bound_sigmas=WIDE)
    assert index.ex_rows_read > before  # the stage ran
    np.testing.assert_array_equal(found.ids, exact_knn(base, queries, 10, metric))
    # And an infinite bound leaves the stage out, reading every candidate.
    before = index.ex_rows_read
    np.testing.assert_array_equal(index.search(queries, 10, nprobe=32, bound_sigmas=float("inf")).ids, found.ids)
    assert index.ex_rows_read == before


def test_same_recall_with_fewer_float_reads(pair, data):  # noqa: F811
    one_bit, multi = pair
    queries = data[1]
    truth = exact_knn(data[0], queries, 10)
    r1 = one_bit.rows_read
    found1 = one_bit.search(queries, 10)
    floats1 = one_bit.rows_read - r1
    r, e = multi.rows_read, multi.ex_rows_read
    found = multi.search(queries, 10)
    floats, ex_rows = multi.rows_read - r, multi.ex_rows_read - e
    assert recall(found.ids, truth) >= recall(found1.ids, truth) - 0.01
    assert floats < floats1 / 2, (floats, floats1)
    # The middle stage reads about the rows the 1-bit index reads as floats (its
    # bar, the k-th multi-bit upper bound, is a little above the k-th exact
    # distance), each a fifth of a float row here: 4 bits of 128 dimensions + 12 bytes, against 400.
    assert floats1 / 2 < ex_rows < 2 * floats1
    # Without re-rank the answers come from the multi-bit estimates: far nearer.
    no_floats, no_floats1 = multi.search(queries, 10, rerank=False), one_bit.search(queries, 10, rerank=False)
    assert recall(no_floats.ids, truth) > recall(no_floats1.ids, truth) + 0.1


def test_every_simd_level_finds_the_same(pair, data):  # noqa: F811
    multi = pair[1]
    results = {}
    for level in _core.simd_levels():
        with _core.simd_level(level):
            results[level] = (multi.search(data[1], 10, rerank=False), multi.search(data[1], 10))
    for level, (estimated, reranked) in results.items():
        np.testing.assert_array_equal(estimated.ids, results["scalar"][0].ids, err_msg=level)
        np.testing.assert_array_equal(estimated.distances, results["scalar"][0].distances, err_msg=level)
        # (The exact distances come from the distance kernels, which round per level.)
        np.testing.assert_array_equal(reranked.ids, results["scalar"][1].ids, err_msg=level)


def test_writes_keep_the_ex_codes_in_step(data):  # noqa: F811
    base, queries = data
    index = build(base[:3000], ex_bits=2)
    stored = dict(enumerate(base[:3000]))
    top = np.unique(index.search(queries[:20], 1).ids[:, 0])
    index.delete(top)
    for i in top:
        del stored[i]
    index.upsert(np.arange(100, 400), base[3000:3300])  # new rows for old ids
    index.add(np.arange(5000, 5500), base[3300:3800])
    stored.update(zip(range(100, 400), base[3000:3300]))
    stored.update(zip(range(5000, 5500), base[3300:3800]))
    index.compact()
    ids = np.array(sorted(stored))
    vectors = np.stack([stored[i] for i in ids])
    truth = ids[exact_knn(vectors, queries, 10)]
    np.testing.assert_array_equal(index.search(queries, 10, nprobe=32, bound_sigmas=WIDE).ids, truth)
    # The estimates without re-rank are the multi-bit ones of the right rows:
    # near the exact distances of the ids they come with.
    est = index.search(queries, 10, nprobe=32, rerank=False)
    position = {i: n for n, i in enumerate(ids)}
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = 1 - np.einsum("qkd,qd->qk", unit[[[position[i] for i in row] for row in est.ids]],
                          queries / np.linalg.norm(queries, axis=1, keepdims=True))
    # (~0.003 on average, distances ~0.085: a row of another vector would be off by ~0.1.)
    assert np.abs(est.distances - exact).mean() < 0.006 and np.abs(est.distances - exact).max() < 0.04
    assert recall(est.ids, truth) > 0.8
    u = index.memory_usage()
    assert u["ex_code_file_bytes"] == (128 * 3 // 8 + 12) * u["slots"]


def test_round_trip_and_damaged_ex_codes(tmp_path, data):  # noqa: F811
    base, queries = data
    index = build(base[:3000], "l2", ex_bits=4)
    index.delete([5, 6])
    path = str(tmp_path / "rq.lkl")
    index.save(path)
    assert os.path.getsize(path + ".excodes") == (128 * 5 // 8 + 12) * 3000
    loaded = IvfPqIndex.load(path)
    assert (loaded.ex_bits, len(loaded)) == (4, 2998)
    for a, b in zip(index.search(queries, 10), loaded.search(queries, 10)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(index.search(queries, 10, rerank=False), loaded.search(queries, 10, rerank=False)):
        np.testing.assert_array_equal(a, b)
    loaded.verify()
    loaded.add(np.arange(9000, 9010), base[3000:3010])  # appends to the loaded ex-codes file
    loaded.verify()
    del loaded

    raw = open(path + ".excodes", "rb").read()
    for name, blob, when in (("truncated", raw[: len(raw) // 2], "load"),
                             ("flipped", raw[:1000] + bytes([raw[1000] ^ 1]) + raw[1001:], "verify")):
        bad = str(tmp_path / f"{name}.lkl")
        os.link(path, bad)
        os.link(path + ".vectors", bad + ".vectors")
        open(bad + ".excodes", "wb").write(blob)
        with pytest.raises(IndexFileError, match="ex-codes"):
            IvfPqIndex.load(bad).verify() if when == "verify" else IvfPqIndex.load(bad)
    missing = str(tmp_path / "missing.lkl")
    os.link(path, missing)
    os.link(path + ".vectors", missing + ".vectors")
    with pytest.raises(IndexFileError, match="ex-codes file is missing"):
        IvfPqIndex.load(missing)


def test_bad_ex_bits(data):  # noqa: F811
    with pytest.raises(ValueError, match="ex_bits"):
        IvfPqIndex(DIM, code="rabitq", ex_bits=8)
    with pytest.raises(ValueError, match="ex_bits"):
        IvfPqIndex(DIM, code="rabitq", ex_bits=-1)
    with pytest.raises(ValueError, match="RaBitQ"):
        IvfPqIndex(DIM, code="pq", ex_bits=2)


def test_a_collection_space_with_extended_codes(tmp_path):
    from conftest import clustered
    from lookalike.index.collection import Collection, SpaceConfig

    data = clustered(720, 48, seed=5)
    space = SpaceConfig("visual", 48, index="ivf_pq", code="rabitq", ex_bits=3, nlist=8, nprobe=8, rerank_k=700,
                        train_size=400)
    c = Collection([space])
    c.upsert(np.arange(700), {"visual": data[:700]})
    assert c.index("visual").trained and "4-bit codes on disk" in c.describe_index("visual")
    queries = data[700:]
    truth = exact_knn(data[:700], queries, 10)
    assert recall(np.array([c.search("visual", q, k=10).ids for q in queries]), truth) >= 0.9
    c.save(tmp_path / "col")
    again = Collection.load(tmp_path / "col")
    assert "4-bit codes on disk" in again.describe_index("visual")
    np.testing.assert_array_equal(again.search("visual", queries[0], k=10).ids, c.search("visual", queries[0], k=10).ids)
    with pytest.raises(ValueError, match="ex_bits"):
        SpaceConfig("visual", 48, index="ivf_pq", code="pq", ex_bits=2)
