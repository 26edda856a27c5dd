"""The PQ building blocks against numpy references: k-means, encode/decode, lookup
tables and ADC, and the SIMD scans at every level against the scalar one."""

import numpy as np
import pytest

from conftest import clustered
from lookalike import _core


@pytest.fixture(scope="module")
def data():
    return clustered(3000, 32, seed=5)


@pytest.fixture(scope="module")
def pq8(data):
    pq = _core.ProductQuantizer(32, 8, 8)
    pq.train(data, 1, 0, 10)
    return pq


def test_kmeans_is_seeded_and_fills_every_cluster(data):
    a = _core.kmeans(data, 64, 8, 256, 7, 0)
    b = _core.kmeans(data, 64, 8, 256, 7, 1)
    np.testing.assert_array_equal(a, b)  # same seed, any thread count: same centroids
    assert not np.array_equal(a, _core.kmeans(data, 64, 8, 256, 8, 0))
    assign = np.argmin(((data[:, None, :] - a[None]) ** 2).sum(-1), axis=1)
    assert len(np.unique(assign)) == 64  # no empty cluster survives
    # Lloyd rounds lower the quantisation error below a random choice of centres.
    rand = data[np.random.default_rng(0).choice(len(data), 64, replace=False)]
    err = lambda c: ((data[:, None, :] - c[None]) ** 2).sum(-1).min(1).mean()  # noqa: E731
    assert err(a) < 0.8 * err(rand)


def test_kmeans_with_many_clusters_seeds_from_the_data_and_improves_on_it(data):
    # Above 1024 clusters the seeds are random distinct points, not k-means++.
    k = 1100
    a = _core.kmeans(data, k, 4, 256, 3, 0)
    np.testing.assert_array_equal(a, _core.kmeans(data, k, 4, 256, 3, 1))
    nearest = ((data[:, None, :] - a[None]) ** 2).sum(-1)
    assert len(np.unique(nearest.argmin(1))) == k
    seeds = _core.kmeans(data, k, 0, 256, 3, 0)
    assert {tuple(r) for r in seeds} <= {tuple(r) for r in data}  # seeds are data points
    err = lambda c: ((data[:, None, :] - c[None]) ** 2).sum(-1).min(1).mean()  # noqa: E731
    assert err(a) < 0.9 * err(seeds)


def test_kmeans_splits_clusters_on_duplicate_points():
    x = np.repeat(np.eye(4, dtype=np.float32), 50, axis=0)  # 4 distinct points, 8 clusters
    c = _core.kmeans(x, 8, 5, 256, 0, 1)
    assert np.isfinite(c).all() and len({tuple(r) for r in np.round(c, 6)}) == 8


def test_kmeans_rejects_bad_k(data):
    with pytest.raises(ValueError, match="k-means needs"):
        _core.kmeans(data[:10], 11, 5, 256, 0, 1)


def test_encode_decode_match_numpy(data, pq8):
    books = pq8.centroids  # (m, 256, dsub)
    sub = data.reshape(len(data), 8, 4)
    ref = np.stack([np.argmin(((sub[:, s, None, :] - books[s][None]) ** 2).sum(-1), axis=1) for s in range(8)], 1)
    codes = pq8.encode(data)
    assert (codes == ref).mean() > 0.999  # float ties aside, the same nearest centroids
    decoded = pq8.decode(codes)
    np.testing.assert_array_equal(decoded.reshape(-1, 8, 4), books[np.arange(8), codes])
    rel = ((decoded - data) ** 2).sum() / (data**2).sum()
    assert rel < 0.1  # 8 bytes for 32 floats still keep 90% of the energy


def test_adc_equals_decoded_distances(data, pq8):
    codes = pq8.encode(data[:500])
    decoded = pq8.decode(codes)
    q = data[2999]
    for kind, ref in (("l2", ((decoded - q) ** 2).sum(1)), ("ip", -(decoded @ q))):
        lut = pq8.compute_lut(q, kind)
        np.testing.assert_allclose(_core.pq_scan8(lut, codes), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("nbits", [4, 8])
def test_uneven_sub_spaces_match_numpy(data, nbits):
    # m = 12 does not divide 32: sub-space s covers [32 s // 12, 32 (s + 1) // 12).
    pq = _core.ProductQuantizer(32, 12, nbits)
    pq.train(data, 1, 0, 10)
    bounds = [32 * s // 12 for s in range(13)]
    books = pq.centroids
    assert [b.shape for b in books] == [(2**nbits, bounds[s + 1] - bounds[s]) for s in range(12)]
    codes = pq.encode(data)
    ref = np.stack([np.argmin(((data[:, None, bounds[s]:bounds[s + 1]] - books[s][None]) ** 2).sum(-1), axis=1)
                    for s in range(12)], 1)
    assert (codes == ref).mean() > 0.999
    decoded = pq.decode(codes)
    np.testing.assert_array_equal(decoded, np.hstack([books[s][codes[:, s]] for s in range(12)]))
    q = data[2999]
    for kind, want in (("l2", ((decoded - q) ** 2).sum(1)), ("ip", -(decoded @ q))):
        lut = pq.compute_lut(q, kind)
        got = np.array([lut[np.arange(12), c].sum() for c in codes])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_pq_rejects_bad_shapes():
    with pytest.raises(ValueError, match="between 1 and dim"):
        _core.ProductQuantizer(30, 31, 8)
    with pytest.raises(ValueError, match="nbits"):
        _core.ProductQuantizer(32, 8, 6)
    pq = _core.ProductQuantizer(32, 8, 8)
    with pytest.raises(RuntimeError, match="not trained"):
        pq.encode(np.zeros((1, 32), np.float32))
    with pytest.raises(ValueError, match="at least 256"):
        pq.train(np.zeros((100, 32), np.float32), 0, 1, 5)


@pytest.mark.parametrize("m", [1, 3, 8, 16, 17, 64, 256])
def test_every_simd_level_matches_scalar_exactly(m):
    rng = np.random.default_rng(m)
    lut = rng.standard_normal((m, 256)).astype(np.float32)
    codes = rng.integers(0, 256, (77, m), dtype=np.uint8)
    qlut = rng.integers(0, 256, (m, 16), dtype=np.uint8)
    codes4 = rng.integers(0, 16, (77, m), dtype=np.uint8)
    out = {}
    for level in _core.simd_levels():
        with _core.simd_level(level):
            out[level] = (_core.pq_scan8(lut, codes), _core.pq_fastscan4(qlut, codes4))
    np.testing.assert_allclose(out["scalar"][0], lut[np.arange(m), codes].sum(1), rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(out["scalar"][1], qlut[np.arange(m), codes4].astype(np.int64).sum(1))
    for level, (scan8, scan4) in out.items():
        np.testing.assert_array_equal(scan8, out["scalar"][0], err_msg=level)
        np.testing.assert_array_equal(scan4, out["scalar"][1], err_msg=level)


def test_quantized_lut_approximates_float_sums():
    rng = np.random.default_rng(1)
    lut = rng.standard_normal((32, 16)).astype(np.float32)
    qlut, bias, scale = _core.pq_quantize_lut(lut)
    codes = rng.integers(0, 16, (200, 32), dtype=np.uint8)
    exact = lut[np.arange(32), codes].sum(1)
    approx = bias + scale * _core.pq_fastscan4(qlut, codes).astype(np.float64)
    assert np.abs(approx - exact).max() <= 32 * scale / 2 + 1e-4  # half a step a sub-space at most


def test_pq_training_does_not_depend_on_threads(data):
    # Each sub-space trains on one thread with a seed of its own, so the thread
    # count only changes which sub-space runs where.
    one, two = (_core.ProductQuantizer(32, 8, 8) for _ in range(2))
    one.train(data, 3, 1, 10)
    two.train(data, 3, 2, 10)
    np.testing.assert_array_equal(one.centroids, two.centroids)
    assert np.isfinite(one.centroids).all()
