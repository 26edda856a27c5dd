"""IVF-PQ files written by every version of the format must keep loading."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from lookalike.index import IvfPqIndex
from make_golden_ivf_pq import golden_vectors

DATA = Path(__file__).parent / "data"


def copied(tmp_path, name):
    # A copy: a loaded index appends its later writes to the vectors file.
    for suffix in ("", ".vectors", ".excodes"):
        if (DATA / f"{name}{suffix}").exists():
            shutil.copy(DATA / f"{name}{suffix}", tmp_path / f"ivf.lkl{suffix}")
    return IvfPqIndex.load(tmp_path / "ivf.lkl")


def assert_golden_contents(index, **search):
    assert len(index) == 298 and 0 not in index and 2 not in index and 4 in index
    vectors = golden_vectors()
    # Every cell probed and every candidate re-ranked: the search is exact.
    found = index.search(vectors, 1, nprobe=8, rerank_k=300, **search).ids[:, 0]
    live = np.arange(2, 300)
    np.testing.assert_array_equal(found[live], live * 2)
    np.testing.assert_allclose(index.get([4]), vectors[[2]] / np.linalg.norm(vectors[2]), rtol=1e-6)


@pytest.mark.parametrize("version, coarse_graph", [(1, False), (2, True), (3, True), (4, True), (5, True)])
def test_a_file_of_each_version_loads_and_searches(tmp_path, version, coarse_graph):
    index = copied(tmp_path, f"ivf_pq_v{version}.lkl")
    assert (index.dim, index.metric, index.nlist, index.m, index.nbits) == (16, "cosine", 8, 4, 4)
    assert index.has_coarse_graph == coarse_graph
    assert_golden_contents(index)


@pytest.mark.parametrize("version", [3, 4, 5])  # 3: 16-bit cosine factors, rounded to 8 bits on load
def test_a_rabitq_file_of_each_version_loads_and_searches(tmp_path, version):
    index = copied(tmp_path, f"ivf_rabitq_v{version}.lkl")
    assert (index.code, index.dim, index.nlist, index.has_coarse_graph) == ("rabitq", 16, 8, True)
    assert_golden_contents(index, bound_sigmas=float("inf"))


def test_an_extended_rabitq_file_loads_and_searches(tmp_path):
    index = copied(tmp_path, "ivf_rabitq_ex_v5.lkl")
    assert (index.code, index.ex_bits, index.dim, index.nlist) == ("rabitq", 2, 16, 8)
    index.verify()
    assert_golden_contents(index, bound_sigmas=float("inf"))
    assert_golden_contents(index, bound_sigmas=8.0)  # through the multi-bit stage
    assert index.ex_rows_read > 0
