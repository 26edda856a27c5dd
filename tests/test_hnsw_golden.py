"""Files written by every version of the format must keep loading."""

from pathlib import Path

import numpy as np
import pytest

from lookalike.index import HnswIndex
from make_golden_index import golden_vectors

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    "version, storage, rerank, atol",
    [
        (1, "float16", None, 1e-3),  # float16 codes
        (2, "int8", "float16", 1e-3),  # int8 codes, float16 re-ranking copies (what get() returns)
        (3, "int8", "float16", 1e-3),  # the same, with sketches
    ],
)
def test_a_file_of_each_version_loads_with_its_contents(version, storage, rerank, atol):
    index = HnswIndex.load(DATA / f"hnsw_v{version}.lkl")
    assert (index.dim, index.metric, index.storage, index.M, index.ef_construction) == (8, "cosine", storage, 4, 20)
    assert index.rerank == rerank
    assert len(index) == 38 and index.deleted_count == 2
    assert 0 not in index and 3 not in index and 6 in index
    vectors = golden_vectors()
    expected = vectors[2] / np.linalg.norm(vectors[2])
    np.testing.assert_allclose(index.get([6])[0], expected, atol=atol)
    ids = index.search(vectors, 1, exact=True).ids[:, 0]
    live = np.arange(2, 40)
    np.testing.assert_array_equal(ids[live], live * 3)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_version_searches_on_sketches(version):
    # Versions 1 and 2 kept none: they are computed at load.
    index = HnswIndex.load(DATA / f"hnsw_v{version}.lkl")
    assert index.sketches and index.memory_usage()["sketch_bytes"] > 0
    live = np.arange(2, 40) * 3
    query = golden_vectors()[5]
    est, _ = index._core.sketch_estimates(query, live)
    stored = index.get(live)
    exact = 1 - stored @ (query / np.linalg.norm(query))
    assert np.corrcoef(est, exact)[0, 1] > 0.8
