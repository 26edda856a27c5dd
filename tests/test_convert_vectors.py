"""A packed query vector's checks (service/convert.py): the one-dot-product
shortcut gives the same answer as the element-wise checks for every kind of
vector, the hard cases included (NaN, infinities, finite values whose squares
overflow float32, zeros, values whose squares underflow)."""

import warnings

import numpy as np
import pytest

from lookalike.service import convert
from lookalike.service.errors import ServiceError
from lookalike.v1 import search_pb2

DIM = 16


def with_element(value, at=3, rest=0.5):
    v = np.full(DIM, rest, dtype=np.float32)
    v[at] = value
    return v


VECTORS = {
    "ordinary": np.linspace(-1, 1, DIM, dtype=np.float32),
    "nan": with_element(np.nan),
    "inf": with_element(np.inf),
    "minus_inf": with_element(-np.inf),
    "inf_and_minus_inf": np.array([np.inf, -np.inf] + [0.0] * (DIM - 2), dtype=np.float32),
    "squares_overflow": np.full(DIM, 1e30, dtype=np.float32),
    "largest_float32": np.full(DIM, np.finfo(np.float32).max, dtype=np.float32),
    "zeros": np.zeros(DIM, dtype=np.float32),
    "negative_zeros": np.full(DIM, -0.0, dtype=np.float32),
    "squares_underflow": np.full(DIM, 1e-30, dtype=np.float32),
    "one_tiny_value": with_element(1e-40, rest=0.0),  # a subnormal
    "nan_among_zeros": with_element(np.nan, rest=0.0),
}


def element_wise(arr, metric, where):
    """The checks one element at a time, as they were before the shortcut."""
    if not np.isfinite(arr).all():
        raise ServiceError(None, f"{where}: has a NaN or infinite value at element {int(np.argmin(np.isfinite(arr)))}")
    if metric == "cosine" and not arr.any():
        raise ServiceError(None, f"{where}: an all-zero vector has no direction (the space's metric is cosine)")
    return arr


def outcome(check):
    try:
        return check().tolist()
    except ServiceError as e:
        return e.message


@pytest.mark.parametrize("name", VECTORS)
@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("dtype, proto_dtype", [("<f4", search_pb2.DTYPE_FLOAT32), ("<f2", search_pb2.DTYPE_FLOAT16)])
def test_the_shortcut_agrees_with_the_element_wise_checks(name, metric, dtype, proto_dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float16 cannot hold some of these values: they become inf or 0
        sent = VECTORS[name].astype(dtype)
    message = search_pb2.Vector(data=sent.tobytes(), dtype=proto_dtype, dim=DIM)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow of the squares is no warning for the caller
        got = outcome(lambda: convert.vector_from_proto(message, DIM, "query.vector", metric))
    expected = outcome(lambda: element_wise(sent.astype(np.float32), metric, "query.vector"))
    assert got == expected


def test_without_a_metric_only_the_values_are_checked():
    zeros = search_pb2.Vector(data=np.zeros(DIM, "<f4").tobytes(), dtype=search_pb2.DTYPE_FLOAT32, dim=DIM)
    assert not convert.vector_from_proto(zeros, DIM, "v").any()
    nan = search_pb2.Vector(data=VECTORS["nan"].tobytes(), dtype=search_pb2.DTYPE_FLOAT32, dim=DIM)
    with pytest.raises(ServiceError, match="v: has a NaN or infinite value at element 3"):
        convert.vector_from_proto(nan, DIM, "v")
