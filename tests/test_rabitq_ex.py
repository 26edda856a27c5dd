"""Extended RaBitQ codes (cpp/pq/rabitq_ex.h): the code search, the unbiased
multi-bit estimator and its error bound, its shrinking error, and the kernel
at every SIMD level."""

import math

import numpy as np
import pytest

from lookalike import _core
from test_rabitq import METRICS, bound_test_data, estimates, gaussian_tail

WEIGHTS = {"l2": (1.0, 2.0), "cosine": (0.5, 1.0), "ip": (0.0, 1.0)}


def decode(rows, padded, ex_bits):
    """(norm, 1 / cosine, 1 / |y|) and the grid vectors y of rows."""
    factors = rows[:, :12].copy().view(np.float32)
    planes = rows[:, 12:].reshape(len(rows), ex_bits + 1, -1)
    bits = np.unpackbits(planes, axis=2, bitorder="little")[:, :, :padded].astype(np.int64)
    codes = (bits << np.arange(ex_bits + 1)[None, :, None]).sum(1)
    return factors, codes - (2 ** (ex_bits + 1) - 1) / 2


def ex_estimates(residuals, v, metric, sigmas, seed, ex_bits):
    """Multi-bit estimated and exact distances (offset 0) of rotated residuals under v."""
    rotated = _core.rabitq_rotate(np.vstack([residuals, v[None]]).astype(np.float32), seed)
    r, rv = np.ascontiguousarray(rotated[:-1]), np.ascontiguousarray(rotated[-1])
    est, err = _core.rabitq_ex_estimates(_core.rabitq_ex_encode(r, ex_bits), rv, ex_bits, metric, 0.0, sigmas)
    square, linear = WEIGHTS[metric]
    exact = square * (residuals.astype(np.float64) ** 2).sum(1) - linear * residuals.astype(np.float64) @ v
    return est, err, exact


@pytest.mark.parametrize("ex_bits", [1, 2, 4, 7])
def test_the_code_is_the_best_grid_point_and_keeps_the_sign_bit(ex_bits):
    rng = np.random.default_rng(ex_bits)
    residuals = rng.standard_normal((50, 64)).astype(np.float32) * 3
    rows = _core.rabitq_ex_encode(residuals, ex_bits)
    assert rows.shape == (50, 12 + (ex_bits + 1) * 8)
    (norm, inv_cosine, inv_y), y = (lambda f, y: (f.T, y))(*decode(rows, 64, ex_bits))
    o = residuals / np.linalg.norm(residuals, axis=1, keepdims=True)
    np.testing.assert_allclose(norm, np.linalg.norm(residuals, axis=1), rtol=1e-6)
    # The top bit is the 1-bit code's (o_i > 0); |y_i| = u_i + 1/2 on the grid.
    np.testing.assert_array_equal(y > 0, residuals > 0)
    assert (np.abs(y) <= 2**ex_bits - 0.5).all()
    cosine = (y * o).sum(1) / np.linalg.norm(y, axis=1)
    np.testing.assert_allclose(1 / inv_cosine, cosine, rtol=1e-6)
    np.testing.assert_allclose(1 / inv_y, np.linalg.norm(y, axis=1), rtol=1e-6)
    # No rescaling factor on a fine grid does better (every code the search
    # could pick is some floor(t |o|), clipped).
    top = 2**ex_bits - 1
    a = np.abs(o)
    for t in np.linspace(0.01, (top + 10) / a.max(1).min(), 4000):
        grid = np.minimum(np.floor(t * a), top) + 0.5
        assert ((grid * a).sum(1) / np.linalg.norm(grid, axis=1) <= cosine + 1e-6).all()
    # More bits, a code nearer its residual: ~0.8 at one bit (the sign code).
    assert cosine.mean() > {1: 0.93, 2: 0.97, 4: 0.99, 7: 0.999}[ex_bits]


@pytest.mark.parametrize("metric", METRICS)
def test_estimator_is_unbiased_over_rotations(metric):
    rng = np.random.default_rng(1)
    residuals = rng.standard_normal((64, 128)).astype(np.float32) * 0.1
    v = rng.standard_normal(128).astype(np.float32) * 0.1
    runs = [ex_estimates(residuals, v, metric, 2.0, seed, 2) for seed in range(200)]
    errors = np.array([est - exact for est, _, exact in runs])  # (rotations, vectors)
    spread = errors.std()
    assert spread > 0
    # The mean error of each vector over 200 rotations: ~N(0, spread / sqrt(200)).
    assert np.abs(errors.mean(0)).max() < 5 * spread / math.sqrt(200)
    assert abs(errors.mean()) < 5 * spread / math.sqrt(errors.size)


@pytest.mark.parametrize("data", ["random", "clustered"])
@pytest.mark.parametrize("ex_bits", [1, 2, 4])
def test_the_bound_fails_at_the_rate_the_theory_allows(data, ex_bits):
    residuals, queries = bound_test_data(data, 6)
    outside = {(metric, sigmas): 0 for metric in METRICS for sigmas in (1.0, 2.0, 3.0)}
    for i, v in enumerate(queries):
        rotated = _core.rabitq_rotate(np.vstack([residuals, v[None]]).astype(np.float32), i)
        rows = _core.rabitq_ex_encode(np.ascontiguousarray(rotated[:-1]), ex_bits)
        for metric, sigmas in outside:
            square, linear = WEIGHTS[metric]
            exact = square * (residuals.astype(np.float64) ** 2).sum(1) - linear * residuals.astype(np.float64) @ v
            est, err = _core.rabitq_ex_estimates(rows, np.ascontiguousarray(rotated[-1]), ex_bits, metric, 0.0, sigmas)
            assert (err > 0).all()
            outside[metric, sigmas] += int((np.abs(est - exact) > err).sum())
            # Not a vacuous bound: about `sigmas` standard deviations of the error wide.
            assert np.median(err) < 2 * sigmas * np.std(est - exact)
    # The multi-bit code's error is normal with the bound's standard deviation
    # itself (the code's part orthogonal to the residual points anywhere): the
    # share outside is the normal tail, up to the sampling noise of 12,000
    # estimates (under the tail on clustered data, within 25% of it on random).
    for (metric, sigmas), count in outside.items():
        assert count / (len(queries) * len(residuals)) < 1.25 * gaussian_tail(sigmas), (metric, sigmas)


def test_error_and_bound_shrink_as_bits_are_added():
    rng = np.random.default_rng(5)
    residuals = rng.standard_normal((500, 256)).astype(np.float32)
    v = rng.standard_normal(256).astype(np.float32)
    est, err, exact = estimates(residuals, v, "l2", 2.0, seed=0)
    spreads, widths = [np.std(est - exact)], [np.median(err)]
    for ex_bits in range(1, 8):
        est, err, exact = ex_estimates(residuals, v, "l2", 2.0, 0, ex_bits)
        spreads.append(np.std(est - exact))
        widths.append(np.median(err))
    # Each extra bit about halves the error (the grid's step), from the 1-bit code on.
    assert all(b < 0.75 * a for a, b in zip(spreads, spreads[1:])), spreads
    assert all(b < 0.75 * a for a, b in zip(widths, widths[1:])), widths
    assert spreads[-1] < spreads[0] / 50


def test_a_zero_residual_is_estimated_exactly():
    rows = _core.rabitq_ex_encode(np.zeros((3, 64), np.float32), 3)
    est, err = _core.rabitq_ex_estimates(rows, np.ones(64, np.float32), 3, "l2", 1.5, 2.0)
    np.testing.assert_allclose(est, 1.5)
    np.testing.assert_array_equal(err, 0)
    # An axis-aligned residual's code points along it exactly: a finite bound
    # (the dot product's rounding) even at infinite sigmas, never NaN.
    aligned = np.full((1, 64), 0.5, np.float32)
    v = np.random.default_rng(6).standard_normal(64).astype(np.float32)
    est, err = _core.rabitq_ex_estimates(_core.rabitq_ex_encode(aligned, 3), v, 3, "l2", 0.0, np.inf)
    exact = (aligned[0].astype(np.float64) ** 2).sum() - 2 * aligned[0] @ v
    assert np.isfinite(err).all() and abs(est[0] - exact) <= err[0]


@pytest.mark.parametrize("dim", [4, 8, 64, 512, 1024])
@pytest.mark.parametrize("nplanes", [1, 3, 8])
def test_every_simd_level_computes_the_same_dot(dim, nplanes):
    rng = np.random.default_rng(dim + nplanes)
    v = rng.standard_normal(dim).astype(np.float32)
    planes = rng.integers(0, 256, (nplanes, (dim + 7) // 8), dtype=np.uint8)
    centre = (2**nplanes - 1) / 2
    bits = np.unpackbits(planes, axis=1, bitorder="little")[:, :dim].astype(np.int64)
    codes = (bits << np.arange(nplanes)[:, None]).sum(0)
    expected = float(v.astype(np.float64) @ (codes - centre))
    out = {}
    for level in _core.simd_levels():
        with _core.simd_level(level):
            out[level] = _core.rabitq_ex_dot(v, planes, centre)
    assert out["scalar"] == pytest.approx(expected, rel=1e-5, abs=1e-4)
    for level, dot in out.items():
        assert dot == out["scalar"], level


def test_every_simd_level_estimates_the_same():
    rng = np.random.default_rng(8)
    rows = _core.rabitq_ex_encode(rng.standard_normal((77, 512)).astype(np.float32), 4)
    v = rng.standard_normal(512).astype(np.float32)
    out = {}
    for level in _core.simd_levels():
        with _core.simd_level(level):
            out[level] = _core.rabitq_ex_estimates(rows, v, 4, "cosine", 0.5, 2.0)
    for level, (est, err) in out.items():
        np.testing.assert_array_equal(est, out["scalar"][0], err_msg=level)
        np.testing.assert_array_equal(err, out["scalar"][1], err_msg=level)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="ex_bits"):
        _core.rabitq_ex_encode(np.ones((1, 64), np.float32), 8)
    with pytest.raises(ValueError, match="power of two"):
        _core.rabitq_ex_encode(np.ones((1, 60), np.float32), 2)
