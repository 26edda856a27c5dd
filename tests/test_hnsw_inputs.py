"""Bad input to an index gets an exception that names the problem, and changes nothing."""

import numpy as np
import pytest

from lookalike.index import DuplicateIdError, HnswIndex, IdFilter


@pytest.fixture
def index():
    ix = HnswIndex(8, "cosine")
    ix.add([1, 2, 3], np.eye(8, dtype=np.float32)[:3])
    return ix


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric": "hamming"}, "metric must be 'cosine', 'ip' or 'l2', got 'hamming'"),
        ({"storage": "float64"}, "storage must be 'float32', 'float16' or 'int8'"),
        ({"M": 1}, r"M must be in \[2, 256\], got 1"),
        ({"M": 0}, "M must be a positive integer"),
        ({"ef_search": 0}, "ef_search must be a positive integer"),
        ({"rerank": "int8"}, "rerank must be False, True, 'float32' or 'float16', got 'int8'"),
        ({"rerank": "bfloat16"}, "rerank must be"),
    ],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HnswIndex(8, **kwargs)


def test_bad_dimension():
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        HnswIndex(0)


@pytest.mark.parametrize(
    "vectors, error, message",
    [
        (np.ones((1, 7)), ValueError, "vectors have dimension 7, the index has dimension 8"),
        (np.ones((1, 2, 8)), ValueError, "must be one vector or a 2-D array"),
        (np.array([["a"] * 8]), TypeError, "vectors must be real numbers, got dtype <U1"),
        (np.ones((1, 8), dtype=complex), TypeError, "got dtype complex128"),
        (np.full((1, 8), np.nan), ValueError, r"vector 0 has a non-finite value \(nan\) at component 0"),
        (np.array([[1, 2, 3, 4, 5, 6, 7, np.inf]]), ValueError, "non-finite value .* at component 7"),
        (np.zeros((1, 8)), ValueError, "vector 0 is all zeros"),
    ],
)
def test_bad_vectors_add_nothing(index, vectors, error, message):
    with pytest.raises(error, match=message):
        index.add([10], vectors)
    assert len(index) == 3 and 10 not in index


def test_a_bad_vector_late_in_a_batch_adds_nothing(index):
    vectors = np.ones((5, 8), dtype=np.float32)
    vectors[4, 2] = np.inf
    with pytest.raises(ValueError, match="vector 4"):
        index.add([10, 11, 12, 13, 14], vectors)
    assert len(index) == 3


@pytest.mark.parametrize(
    "ids, error, message",
    [
        ([-5], ValueError, "ids must be >= 0, got -5"),
        ([1.5], TypeError, "ids must be integers, got dtype float64"),
        ([[4]], ValueError, "ids must be a 1-D sequence"),
        ([4, 5], ValueError, "got 2 ids for 1 vectors"),
    ],
)
def test_bad_ids(index, ids, error, message):
    with pytest.raises(error, match=message):
        index.add(ids, np.ones((1, 8)))
    assert len(index) == 3


def test_duplicate_ids(index):
    with pytest.raises(DuplicateIdError, match="id 2 is already in the index"):
        index.add([9, 2], np.ones((2, 8)))
    with pytest.raises(DuplicateIdError, match="id 9 appears twice in the batch"):
        index.upsert([9, 9], np.ones((2, 8)))
    assert len(index) == 3 and 9 not in index


def test_unknown_id_in_get(index):
    with pytest.raises(KeyError, match="id 42 is not in the index"):
        index.get([1, 42])


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(index, k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(np.ones(8), k)


def test_bad_queries(index):
    with pytest.raises(ValueError, match="queries have dimension 3"):
        index.search(np.ones(3), 1)
    with pytest.raises(ValueError, match="non-finite"):
        index.search(np.full(8, np.nan), 1)
    with pytest.raises(ValueError, match="all zeros"):
        index.search(np.zeros(8), 1)
    with pytest.raises(ValueError, match="ef must be a positive integer"):
        index.search(np.ones(8), 1, ef=0)
    with pytest.raises(TypeError, match="filter must be a lookalike filter"):
        index.search(np.ones(8), 1, filter=lambda i: True)


def test_float64_and_integer_inputs_are_converted(index):
    index.add(np.array([7], dtype=np.uint16), np.arange(8, dtype=np.int32) + 1)
    assert 7 in index
    assert index.search(np.arange(8, dtype=np.float64) + 1, 1).ids[0] == 7


def test_id_filter_rejects_non_integer_ids():
    with pytest.raises(TypeError, match="ids must be integers"):
        IdFilter([1.0, 2.0])
