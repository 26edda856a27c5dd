"""RaBitQ codes (cpp/pq/rabitq.h): the rotation, the unbiased estimator and its
error bound, and the scan at every SIMD level."""

import math

import numpy as np
import pytest

from conftest import clustered
from lookalike import _core

METRICS = ("l2", "cosine", "ip")


def gaussian_tail(sigmas: float) -> float:
    """The share of a normal variable beyond +-sigmas standard deviations: the
    rate the estimator's (asymptotically normal) error exceeds the bound at."""
    return math.erfc(sigmas / math.sqrt(2))


def estimates(residuals, v, metric, sigmas, seed):
    """Estimated and exact distances (offset 0) of rotated residuals under v."""
    rotated = _core.rabitq_rotate(np.vstack([residuals, v[None]]).astype(np.float32), seed)
    r, rv = np.ascontiguousarray(rotated[:-1]), np.ascontiguousarray(rotated[-1])
    est, err = _core.rabitq_estimates(r, rv, metric, 0.0, sigmas)
    square, linear = {"l2": (1.0, 2.0), "cosine": (0.5, 1.0), "ip": (0.0, 1.0)}[metric]
    exact = square * (residuals.astype(np.float64) ** 2).sum(1) - linear * residuals.astype(np.float64) @ v
    return est, err, exact


def test_rotation_is_orthogonal_and_pads_to_a_power_of_two():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 100)).astype(np.float32)
    y = _core.rabitq_rotate(x, 7)
    assert y.shape == (20, 128)
    np.testing.assert_allclose(y @ y.T, x @ x.T, rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(_core.rabitq_rotate(x, 7), y)  # a function of the seed
    assert not np.allclose(_core.rabitq_rotate(x, 8), y)
    # It mixes: a basis vector's mass spreads over the dimensions (a random
    # orthogonal matrix's largest of 128 entries is ~2.6 / sqrt(128) = 0.23).
    e = np.zeros((1, 128), np.float32)
    e[0, 3] = 1
    spread = np.abs(_core.rabitq_rotate(e, 7))
    assert spread.max() < 0.4 and (spread > 0).mean() > 0.9


@pytest.mark.parametrize("metric", METRICS)
def test_estimator_is_unbiased_over_rotations(metric):
    rng = np.random.default_rng(1)
    residuals = rng.standard_normal((64, 128)).astype(np.float32) * 0.1
    v = rng.standard_normal(128).astype(np.float32) * 0.1
    runs = [estimates(residuals, v, metric, 2.0, seed) for seed in range(200)]
    errors = np.array([est - exact for est, _, exact in runs])  # (rotations, vectors)
    spread = errors.std()
    assert spread > 0
    # The mean error of each vector over 200 rotations: ~N(0, spread / sqrt(200)).
    per_vector = errors.mean(0)
    assert np.abs(per_vector).max() < 5 * spread / math.sqrt(200)
    assert abs(errors.mean()) < 5 * spread / math.sqrt(errors.size)


def clustered_residuals(n, dim, seed):
    x = clustered(n, dim, seed=seed, clusters=4)
    return x - x.mean(0), x[:8] - x.mean(0) + 0.01


def bound_test_data(data: str, queries: int):
    """2000 residuals and `queries` query-side vectors (256-d) of the bound
    tests: standard normal ("random") or around 4 clusters ("clustered")."""
    if data == "random":
        rng = np.random.default_rng(2)
        return (rng.standard_normal((2000, 256)).astype(np.float32),
                rng.standard_normal((queries, 256)).astype(np.float32))
    residuals, vectors = clustered_residuals(2000, 256, seed=3)
    return residuals, vectors[:queries]


@pytest.mark.parametrize("data", ["random", "clustered"])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("sigmas", [1.0, 1.5, 2.0, 3.0])
def test_the_bound_fails_less_often_than_the_theory_allows(data, metric, sigmas):
    residuals, queries = bound_test_data(data, 8)
    outside = total = 0
    for i, v in enumerate(queries):
        est, err, exact = estimates(residuals, v, metric, sigmas, seed=i)
        assert (err > 0).all()
        outside += int((np.abs(est - exact) > err).sum())
        total += len(est)
        # Not a vacuous bound: about `sigmas` standard deviations of the error wide.
        assert np.median(err) < 2 * sigmas * np.std(est - exact)
    assert outside / total < gaussian_tail(sigmas)


def test_a_zero_residual_is_estimated_exactly():
    residuals = np.zeros((3, 64), np.float32)
    est, err = _core.rabitq_estimates(residuals, np.ones(64, np.float32), "l2", 1.5, 2.0)
    np.testing.assert_allclose(est, 1.5)
    np.testing.assert_allclose(err, 0, atol=1e-6)
    # An infinite bound: infinite where the code is uncertain, never NaN (a zero
    # norm, or a residual its code points along exactly, is certain).
    rng = np.random.default_rng(4)
    residuals = np.vstack([np.zeros(64), np.full(64, 0.5), rng.standard_normal(64)]).astype(np.float32)
    est, err = _core.rabitq_estimates(residuals, rng.standard_normal(64).astype(np.float32), "l2", 0.0, np.inf)
    assert np.isfinite(est).all() and np.isfinite(err[:2]).all() and err[2] == np.inf


def test_a_norm_past_float16_is_refused():
    with pytest.raises(ValueError, match="float16"):
        _core.rabitq_estimates(np.full((1, 64), 1e4, np.float32), np.ones(64, np.float32), "l2", 0.0, 2.0)


@pytest.mark.parametrize("padded", [4, 64, 512, 1024])
def test_every_simd_level_scans_the_same(padded):
    rng = np.random.default_rng(padded)
    residuals = rng.standard_normal((77, padded)).astype(np.float32)
    v = rng.standard_normal(padded).astype(np.float32)
    out = {}
    for level in _core.simd_levels():
        with _core.simd_level(level):
            out[level] = _core.rabitq_estimates(residuals, v, "l2", 0.5, 2.0)
    for level, (est, err) in out.items():
        np.testing.assert_array_equal(est, out["scalar"][0], err_msg=level)
        np.testing.assert_array_equal(err, out["scalar"][1], err_msg=level)


@pytest.mark.parametrize("groups", [1, 3, 128, 256])
def test_tables_are_the_subset_sums_at_every_simd_level(groups):
    rng = np.random.default_rng(groups)
    v = rng.standard_normal(4 * groups).astype(np.float32)
    subsets = np.array([[(b >> j) & 1 for j in range(4)] for b in range(16)], np.float32)  # (16, 4)
    sums = v.reshape(groups, 4) @ subsets.T  # (groups, 16)
    out = {}
    for level in _core.simd_levels():
        with _core.simd_level(level):
            out[level] = _core.rabitq_tables(v)
    qlut, bias, scale = out["scalar"]
    # Within half a step of each entry once shifted by its group's minimum.
    shifted = sums - sums.min(1, keepdims=True)
    assert np.abs(qlut * scale - shifted).max() <= 0.5 * scale * (1 + 1e-5)
    assert bias == pytest.approx(sums.min(1).sum(), rel=1e-5, abs=1e-5)
    for level, (q, b, s) in out.items():
        np.testing.assert_array_equal(q, qlut, err_msg=level)
        assert (b, s) == (bias, scale)
