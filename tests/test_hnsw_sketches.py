"""The per-node sketches of an HNSW index (cpp/hnsw/node_sketches.h): their
estimates are unbiased and their bounds hold at the rate RaBitQ promises, every
SIMD level estimates the same, a filtered scan on them returns the exact
filtered top-k, and they stay right through save / load, updates, deletes and
compaction."""

import math

import numpy as np
import pytest

from conftest import clustered
from lookalike import _core
from lookalike.index import HnswIndex, IdFilter

METRICS = ("cosine", "l2", "ip")


def gaussian_tail(sigmas: float) -> float:
    return math.erfc(sigmas / math.sqrt(2))


def codec_distances(index: HnswIndex, query: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The distances the graph ranks by: on the stored vectors (float32 here)."""
    stored = index.get(ids).astype(np.float64)
    q = query.astype(np.float64)
    if index.metric == "cosine":
        return 1 - stored @ (q / np.linalg.norm(q))
    if index.metric == "ip":
        return -(stored @ q)
    return ((stored - q) ** 2).sum(1)


def built(metric: str, n: int = 3000, dim: int = 128, seed: int = 0, **options) -> tuple[HnswIndex, np.ndarray]:
    vectors = clustered(n + 20, dim, seed=seed)
    if metric != "cosine":
        vectors = vectors * np.random.default_rng(seed).uniform(0.5, 2.0, (len(vectors), 1)).astype(np.float32)
    index = HnswIndex(dim, metric, M=8, ef_construction=40, seed=1, **options)
    index.add(np.arange(n), vectors[:n])
    return index, vectors[n:]


@pytest.mark.parametrize("metric", METRICS)
def test_estimates_are_unbiased_and_their_bound_holds_at_the_promised_rate(metric):
    index, queries = built(metric)
    ids = np.arange(3000)
    errors, outside, widths = [], {}, []
    for q in queries[:10]:
        exact = codec_distances(index, q, ids)
        est, err = index._core.sketch_estimates(q, ids, 2.0)
        errors.append(est - exact)
        widths.append(np.median(err))
        for sigmas in (1.0, 2.0, 3.0):
            _, e = index._core.sketch_estimates(q, ids, sigmas)
            outside[sigmas] = outside.get(sigmas, 0) + int((np.abs(est - exact) > e).sum())
    errors = np.concatenate(errors)
    spread = errors.std()
    assert spread > 0
    # Unbiased over rotations (test_rabitq.py draws many); here one rotation
    # (a fixed seed) serves every pair, so their errors are correlated: no
    # systematic bias, where an estimate without the 1 / cosine correction
    # would be off by ~20% of the inner product, several spreads.
    assert abs(errors.mean()) < 0.1 * spread
    # As wide as its sigmas say (the query's rounding adds next to nothing: see
    # the next test), the bound fails at about the Gaussian rate; one rotation
    # serves every pair, so the share carries their correlated noise: a 10% margin.
    for sigmas, count in outside.items():
        assert count / errors.size < 1.1 * gaussian_tail(sigmas), sigmas
    # Not a vacuous bound: about 2 standard deviations of the error wide.
    assert np.median(widths) < 4 * spread


@pytest.mark.parametrize("dim", [128, 512])
def test_the_query_rounding_adds_next_to_nothing_to_the_bound(dim):
    # With no width left to the estimator (sigmas near 0), what remains is the
    # query's rounding to int16 levels and the factors' own rounding: under 0.5%
    # of the 2-sigma width (8-bit levels in bit planes left 9-18% there, slack
    # a scan paid for in full vectors read).
    index, queries = built("cosine", n=500, dim=dim)
    ids = np.arange(500)
    for q in queries[:3]:
        _, rounding = index._core.sketch_estimates(q, ids, 1e-6)
        _, width = index._core.sketch_estimates(q, ids, 2.0)
        assert np.median(rounding / width) < 0.05


def test_centring_on_the_first_batch_narrows_the_bound():
    # Vectors sharing a strong common direction, as CLIP embeddings do: the
    # residuals around their mean are shorter than the vectors themselves.
    rng = np.random.default_rng(3)
    common = rng.standard_normal(64)
    x = (common / np.linalg.norm(common) + 0.4 * rng.standard_normal((500, 64)) / 8).astype(np.float32)
    centred = HnswIndex(64, "ip", M=8, ef_construction=40)
    centred.add(np.arange(500), x)
    around_zero = HnswIndex(64, "ip", M=8, ef_construction=40)
    around_zero.add([10_000], np.zeros((1, 64), np.float32))  # the first batch's mean is the centre: zero
    around_zero.add(np.arange(500), x)
    q = x[0] + 0.01
    _, narrow = centred._core.sketch_estimates(q, np.arange(500))
    _, wide = around_zero._core.sketch_estimates(q, np.arange(500))
    assert np.median(narrow) < 0.5 * np.median(wide)


@pytest.mark.parametrize("dim", [3, 64, 100, 512])
def test_every_simd_level_estimates_the_same(dim):
    vectors = clustered(300, dim, seed=dim)
    index = HnswIndex(dim, "cosine", M=8, ef_construction=20)
    index.add(np.arange(300), vectors)
    out = {}
    for level in _core.simd_levels():
        with _core.simd_level(level):
            out[level] = index._core.sketch_estimates(vectors[7], np.arange(300), 2.0)
    for level, (est, err) in out.items():
        np.testing.assert_array_equal(est, out["scalar"][0], err_msg=level)
        np.testing.assert_array_equal(err, out["scalar"][1], err_msg=level)


def exact_filtered(index: HnswIndex, queries: np.ndarray, allowed: np.ndarray, k: int):
    return index.search(queries, k, filter=IdFilter(allowed), exact=True)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("storage", ["float32", "float16", "int8"])
def test_a_scan_on_sketches_returns_the_exact_filtered_top_k(metric, storage):
    index, queries = built(metric, storage=storage)
    allowed = np.arange(0, 3000, 3)  # 1,000 matches: the scan estimates them on their sketches
    expected = exact_filtered(index, queries, allowed, 10)
    every = index.search(queries, 10, filter=IdFilter(allowed), plan="exact_scan", bound_sigmas=math.inf,
                         return_stats=True)
    # The same k distances (int8 codes tie often: which of two tied ids comes
    # back is the scan's order).
    np.testing.assert_array_equal(every.distances, expected.distances)
    assert np.isin(every.ids, allowed).all()
    bounded = index.search(queries, 10, filter=IdFilter(allowed), plan="exact_scan", return_stats=True)
    # The default bound fails for a share of estimates; a miss shows only when
    # it hides one of the k nearest, rarely: nearly every query is exact.
    same = np.mean([np.array_equal(a, b) for a, b in zip(bounded.distances, expected.distances)])
    assert same >= 0.9
    assert all(s.estimates == 1000 for s in bounded.stats)
    assert all(s.distances < 500 for s in bounded.stats)  # most matches were never read whole
    assert all(s.distances == 1000 for s in every.stats)


@pytest.mark.parametrize("k", [1, 10, 30])
def test_a_scan_drops_no_true_neighbour_while_the_bounds_hold(k):
    # At 6 sigmas every bound here holds (checked first); then a match the scan
    # drops (its lower bound above the k-th smallest upper bound as it stood
    # when the match was estimated) or never reads whole (its lower bound above
    # the k-th exact distance) is never one of the k nearest.
    index, queries = built("cosine")
    allowed = np.arange(0, 3000, 3)  # 1,000 matches: 32 a kept result up to k 31
    for q in queries:
        est, err = index._core.sketch_estimates(q, allowed, 6.0)
        assert (np.abs(est - codec_distances(index, q, allowed)) <= err).all()
    expected = exact_filtered(index, queries, allowed, k)
    found = index.search(queries, k, filter=IdFilter(allowed), plan="exact_scan", bound_sigmas=6.0,
                         return_stats=True)
    np.testing.assert_array_equal(found.distances, expected.distances)
    assert all(s.estimates == 1000 and s.distances < 1000 for s in found.stats)


def test_a_scan_keeps_ef_candidates_for_the_re_ranking_copies():
    index, queries = built("cosine", storage="int8", rerank="float32")
    allowed = np.arange(0, 3000, 2)  # 1,500 matches: past 32 per kept candidate at ef 40
    expected = exact_filtered(index, queries, allowed, 10)
    found = index.search(queries, 10, ef=40, filter=IdFilter(allowed), plan="exact_scan", bound_sigmas=math.inf)
    np.testing.assert_array_equal(found.ids, expected.ids)


def test_a_few_matches_are_scanned_whole():
    index, queries = built("cosine")
    few = np.arange(0, 3000, 30)  # 100: under 32 a kept result
    found = index.search(queries[0], 10, filter=IdFilter(few), plan="exact_scan", return_stats=True)
    assert found.stats.estimates == 0 and found.stats.distances == 100


def test_sketches_follow_updates_deletes_and_compaction():
    index, queries = built("l2", n=2000)
    rng = np.random.default_rng(5)
    moved = np.arange(0, 2000, 7)
    index.upsert(moved, rng.standard_normal((len(moved), 128)).astype(np.float32))
    index.delete(np.arange(1, 2000, 5))
    live = np.array([i for i in range(2000) if i in index])

    def consistent():
        for q in queries[:3]:
            est, err = index._core.sketch_estimates(q, live, math.inf)
            exact = codec_distances(index, q, live)
            # Each sketch is of its id's current vector: the estimates track the
            # exact distances closely (a stale sketch of a replaced vector would not).
            assert np.corrcoef(est, exact)[0, 1] > 0.9
        allowed = live[::2]
        expected = exact_filtered(index, queries, allowed, 10)
        found = index.search(queries, 10, filter=IdFilter(allowed), plan="exact_scan", bound_sigmas=math.inf)
        np.testing.assert_array_equal(found.ids, expected.ids)

    consistent()
    before = [index._core.sketch_estimates(q, live) for q in queries[:2]]
    index.compact()
    assert index.deleted_count == 0
    consistent()
    for q, (est, err) in zip(queries[:2], before):  # copied with their nodes, not recomputed
        e, b = index._core.sketch_estimates(q, live)
        np.testing.assert_array_equal(e, est)
        np.testing.assert_array_equal(b, err)


def test_save_and_load_keep_the_sketches(tmp_path):
    index, queries = built("cosine", storage="float16")
    index.delete([5, 6])
    ids = np.arange(7, 3000)
    index.save(tmp_path / "a.lkl")
    loaded = HnswIndex.load(tmp_path / "a.lkl")
    assert loaded.sketches and loaded.memory_usage()["sketch_bytes"] > 0
    for q in queries[:3]:
        for a, b in zip(index._core.sketch_estimates(q, ids), loaded._core.sketch_estimates(q, ids)):
            np.testing.assert_array_equal(a, b)


def test_an_index_can_keep_none_and_says_what_they_cost(tmp_path):
    with_sketches, queries = built("cosine", storage="float16")
    without, _ = built("cosine", storage="float16", sketches=False)
    assert not without.sketches and without.memory_usage()["sketch_bytes"] == 0
    # 128-d: 16 bytes of bits and 8 of factors a vector.
    assert 24 * 3000 <= with_sketches.memory_usage()["sketch_bytes"] < 24 * 3000 * 2
    with pytest.raises(RuntimeError, match="no sketches"):
        without._core.sketch_estimates(queries[0], np.arange(3))
    allowed = np.arange(0, 3000, 3)
    found = without.search(queries, 10, filter=IdFilter(allowed), plan="exact_scan", return_stats=True)
    np.testing.assert_array_equal(found.ids, exact_filtered(without, queries, allowed, 10).ids)
    assert all(s.estimates == 0 for s in found.stats)
    without.save(tmp_path / "none.lkl")
    assert not HnswIndex.load(tmp_path / "none.lkl").sketches


def test_an_unknown_id_is_named():
    index, queries = built("cosine", n=500)
    with pytest.raises(KeyError, match="99999"):
        index._core.sketch_estimates(queries[0], np.array([1, 99999]))
