"""Files written by an earlier version of the format must keep loading."""

from pathlib import Path

import numpy as np

from lookalike.index import HnswIndex
from make_golden_index import golden_vectors

GOLDEN = Path(__file__).parent / "data" / "hnsw_v1.lkl"


def test_a_version_1_file_loads_with_its_contents():
    index = HnswIndex.load(GOLDEN)
    assert (index.dim, index.metric, index.storage, index.M, index.ef_construction) == (8, "cosine", "float16", 4, 20)
    assert len(index) == 38 and index.deleted_count == 2
    assert 0 not in index and 3 not in index and 6 in index
    vectors = golden_vectors()
    expected = vectors[2] / np.linalg.norm(vectors[2])
    np.testing.assert_allclose(index.get([6])[0], expected, atol=1e-3)  # float16 storage
    ids = index.search(vectors, 1, exact=True).ids[:, 0]
    live = np.arange(2, 40)
    np.testing.assert_array_equal(ids[live], live * 3)
