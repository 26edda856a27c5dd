"""Distance kernels against numpy references, at every SIMD level this CPU has."""

import os
import subprocess
import sys

import numpy as np
import pytest

from lookalike import _core

LEVELS = _core.simd_levels()
ALL_LEVELS = ["scalar", "avx2", "avx512"]
DTYPES = [np.float32, np.float16, np.int8]
KERNELS = ["dot", "l2sq", "cosine"]
# Around the SIMD widths (8, 16, 32 components) and their unrolled multiples.
DIMS = [1, 3, 17, 100, 511, 512, 768, 1025]
# float32 accumulation error, relative to the sum of the magnitudes of the terms.
RTOL = 1e-5


@pytest.fixture(params=LEVELS)
def level(request):
    with _core.simd_level(request.param):
        yield request.param


def random_vectors(dtype, n, dim, seed):
    rng = np.random.default_rng(seed)
    if dtype == np.int8:
        return rng.integers(-128, 128, size=(n, dim), dtype=np.int8)
    return rng.standard_normal((n, dim)).astype(dtype)


def reference(kernel, a, b):
    """The exact kernel value (int64 math for int8, float64 otherwise) and the
    magnitude float32 rounding errors are proportional to."""
    wide = np.int64 if a.dtype == np.int8 else np.float64
    a, b = a.astype(wide), b.astype(wide)
    if kernel == "dot":
        return a @ b, np.abs(a) @ np.abs(b)
    if kernel == "l2sq":
        d = a - b
        return d @ d, d @ d
    norms = np.sqrt(float(a @ a)) * np.sqrt(float(b @ b))
    if norms == 0:
        return 0.0, 0.0
    return (a @ b) / norms, (np.abs(a) @ np.abs(b)) / norms


def assert_matches(got, kernel, a, b):
    expected, scale = reference(kernel, a, b)
    if a.dtype == np.int8 and kernel != "cosine":
        # int32 accumulation is exact; only the final float32 rounding remains.
        assert got == np.float32(expected)
    elif a.dtype == np.int8:
        assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)
    else:
        # The cosine's own float32 rounding adds up to an ulp of a value <= 1.
        slack = 1e-7 if kernel == "cosine" else 0.0
        assert abs(got - expected) <= RTOL * scale + slack, (got, expected)


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_reference(level, dtype, kernel, dim):
    vectors = random_vectors(dtype, 6, dim, seed=dim)
    query, base = vectors[0], vectors[1:]
    many = _core.distance_many(query, base, kernel)
    assert many.dtype == np.float32 and many.shape == (len(base),)
    for row, from_many in zip(base, many):
        one = _core.distance(query, row, kernel)
        assert_matches(one, kernel, query, row)
        # The index mixes both entry points: they must agree exactly.
        assert from_many == np.float32(one)


@pytest.mark.parametrize("dim", [1, 8, 16, 17, 32, 33])
def test_int8_extremes_are_exact(level, dim):
    lo = np.full(dim, -128, dtype=np.int8)
    hi = np.full(dim, 127, dtype=np.int8)
    assert _core.distance(lo, lo, "dot") == np.float32(dim * 128 * 128)
    assert _core.distance(lo, hi, "dot") == np.float32(-dim * 128 * 127)
    assert _core.distance(lo, hi, "l2sq") == np.float32(dim * 255 * 255)
    assert _core.distance(lo, lo, "cosine") == pytest.approx(1.0, rel=1e-6)


def test_every_float16_value_converts_exactly(level):
    bits = np.arange(1 << 16, dtype=np.uint16)
    values = bits.view(np.float16)
    # dim 1: every value, infinities and NaNs included, through the tail path.
    out = _core.distance_many(np.ones(1, np.float16), values.reshape(-1, 1), "dot")
    np.testing.assert_array_equal(out, values.astype(np.float32))
    # dim 16: the finite values through the full-width path, one column at a time.
    finite = values[np.isfinite(values)].reshape(-1, 16)
    for j in range(16):
        column = np.zeros(16, np.float16)
        column[j] = 1
        out = _core.distance_many(column, finite, "dot")
        np.testing.assert_array_equal(out, finite[:, j].astype(np.float32))


@pytest.mark.parametrize("kernel", KERNELS)
def test_float16_extremes(level, kernel):
    smallest_subnormal = np.uint16(0x0001).view(np.float16)
    largest_subnormal = np.uint16(0x03FF).view(np.float16)
    smallest_normal = np.uint16(0x0400).view(np.float16)
    extremes = [65504, -65504, smallest_subnormal, -largest_subnormal, smallest_normal, 0, 1]
    a = np.resize(np.array(extremes, np.float16), 17)  # a full 16-wide step and a tail
    b = a[::-1].copy()
    for x, y in [(a, a), (a, b)]:
        assert_matches(_core.distance(x, y, kernel), kernel, x, y)
    tiny = np.full(3, smallest_subnormal, np.float16)
    assert _core.distance(tiny, tiny, "dot") == np.float32(3 * 2.0**-48)
    assert _core.distance(tiny, tiny, "cosine") == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_cosine_of_zero_vector_is_zero(level, dtype):
    zero = np.zeros(100, dtype)
    other = random_vectors(dtype, 1, 100, seed=1)[0]
    assert _core.distance(zero, other, "cosine") == 0.0
    assert _core.distance(other, zero, "cosine") == 0.0
    assert _core.distance(zero, zero, "cosine") == 0.0
    np.testing.assert_array_equal(_core.distance_many(other, np.stack([zero, zero]), "cosine"), [0, 0])


# Shapes around the tile (3 or 12 points), the panel (32 vectors) and the SIMD widths.
@pytest.mark.parametrize("n, m, dim", [(1, 1, 1), (13, 33, 7), (25, 65, 40), (100, 70, 256)])
def test_dot_matrix_matches_numpy(level, n, m, dim):
    a = random_vectors(np.float32, n, dim, seed=n)
    b = random_vectors(np.float32, m, dim, seed=m + 1)
    got = _core.dot_matrix(a, b)
    assert got.shape == (n, m) and got.dtype == np.float32
    wide_a, wide_b = a.astype(np.float64), b.astype(np.float64)
    assert np.all(np.abs(got - wide_a @ wide_b.T) <= RTOL * (np.abs(wide_a) @ np.abs(wide_b).T))


def test_dot_matrix_refuses_other_dtypes_and_mismatched_dims():
    with pytest.raises(TypeError, match="float32"):
        _core.dot_matrix(np.ones((2, 4), np.float16), np.ones((3, 4), np.float16))
    with pytest.raises(ValueError, match="dimension mismatch"):
        _core.dot_matrix(np.ones((2, 4), np.float32), np.ones((3, 5), np.float32))


def test_non_contiguous_inputs_are_accepted():
    vectors = random_vectors(np.float32, 8, 64, seed=2)
    query, base = vectors[0], vectors[1:]
    expected = _core.distance_many(query, base, "l2sq")
    strided_query = np.repeat(query, 2)[::2]
    fortran_base = np.asfortranarray(base)
    np.testing.assert_array_equal(_core.distance_many(strided_query, fortran_base, "l2sq"), expected)
    assert _core.distance(strided_query, base[2], "l2sq") == expected[2]


def test_empty_base_gives_empty_result():
    out = _core.distance_many(np.ones(4, np.float32), np.ones((0, 4), np.float32), "dot")
    assert out.dtype == np.float32 and out.shape == (0,)


ONE = np.ones(4, np.float32)
BAD_CALLS = {
    "mixed-dtypes": (lambda: _core.distance(ONE, ONE.astype(np.float16), "dot"), TypeError, "dtype mismatch"),
    "float64": (lambda: _core.distance(ONE.astype(np.float64), ONE.astype(np.float64), "dot"), TypeError, "float64"),
    "int16": (lambda: _core.distance(ONE.astype(np.int16), ONE.astype(np.int16), "dot"), TypeError, "int16"),
    "lengths": (lambda: _core.distance(ONE, ONE[:3], "dot"), ValueError, "length mismatch"),
    "empty": (lambda: _core.distance(ONE[:0], ONE[:0], "dot"), ValueError, "empty"),
    "2d-vector": (lambda: _core.distance(ONE.reshape(2, 2), ONE.reshape(2, 2), "dot"), ValueError, "1-D"),
    "kernel": (lambda: _core.distance(ONE, ONE, "manhattan"), ValueError, "unknown kernel"),
    "many-mixed-dtypes": (lambda: _core.distance_many(ONE, np.ones((2, 4), np.int8), "dot"), TypeError, "dtype mismatch"),
    "many-dims": (lambda: _core.distance_many(ONE, np.ones((2, 5), np.float32), "dot"), ValueError, "dimension mismatch"),
    "many-1d-base": (lambda: _core.distance_many(ONE, ONE, "dot"), ValueError, "2-D"),
    "many-empty": (lambda: _core.distance_many(ONE[:0], np.ones((2, 0), np.float32), "dot"), ValueError, "empty"),
    "many-kernel": (lambda: _core.distance_many(ONE, np.ones((2, 4), np.float32), "L2"), ValueError, "unknown kernel"),
    "simd-level": (lambda: _core.simd_level("sse9"), ValueError, "unknown SIMD level"),
}


@pytest.mark.parametrize("call, error, message", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_errors(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.skipif(LEVELS == ALL_LEVELS, reason="this CPU supports every level")
def test_unsupported_level_is_refused():
    missing = next(name for name in ALL_LEVELS if name not in LEVELS)
    with pytest.raises(ValueError, match="not supported"):
        _core.simd_level(missing)


def test_simd_level_scopes_nest_and_restore():
    assert LEVELS[0] == "scalar"
    before = _core.hardware_acceleration()
    with pytest.raises(RuntimeError):
        with _core.simd_level("scalar"):
            assert _core.hardware_acceleration() == "scalar"
            with _core.simd_level(LEVELS[-1]):
                assert _core.hardware_acceleration() == LEVELS[-1]
            assert _core.hardware_acceleration() == "scalar"
            raise RuntimeError("leaves the block early")
    assert _core.hardware_acceleration() == before


def run_with_simd_env(value):
    script = "from lookalike import _core; print(_core.hardware_acceleration())"
    env = dict(os.environ, LOOKALIKE_SIMD=value)
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), [line for line in result.stderr.splitlines() if "LOOKALIKE_SIMD" in line]


@pytest.mark.parametrize("name", LEVELS)
def test_env_selects_a_supported_level(name):
    assert run_with_simd_env(name) == (name, [])


@pytest.mark.parametrize("value", ["garbage", "AVX2", "sse4"])
def test_env_with_unknown_value_warns_and_keeps_best(value):
    active, warnings = run_with_simd_env(value)
    assert active == LEVELS[-1]
    assert len(warnings) == 1 and value in warnings[0]


@pytest.mark.skipif(LEVELS == ALL_LEVELS, reason="this CPU supports every level")
def test_env_with_unsupported_level_warns_and_falls_back():
    active, warnings = run_with_simd_env("avx512")
    assert active == LEVELS[-1]
    assert len(warnings) == 1
