"""Writes tests/data/ivf_pq_v<N>.lkl, ivf_rabitq_v<N>.lkl and ivf_rabitq_ex_v<N>.lkl
(and their .vectors and .excodes files) for the current kind version N of the IVF
file, with PQ, RaBitQ and extended RaBitQ codes: the files test_ivf_pq_golden.py
loads.

Run it only when the file format's version changes, and keep the files of older
versions: they must go on loading. (ivf_pq_v1.lkl was written by version 1, which
had no coarse graph, from the same vectors and parameters; version 2 saves the
HNSW over the centroids, built here though nlist is small. RaBitQ codes came
with version 3, extended RaBitQ codes with version 5.)
"""

from pathlib import Path

import numpy as np

from lookalike.index import IvfPqIndex

CURRENT_VERSION = 5


def golden_vectors() -> np.ndarray:
    rng = np.random.default_rng(2027)
    return rng.standard_normal((300, 16)).astype(np.float32)


def golden_index(code: str, ex_bits: int = 0) -> IvfPqIndex:
    index = IvfPqIndex(16, "cosine", nlist=8, m=4, nbits=4, nprobe=8, rerank_k=50, seed=3,
                       coarse_graph_min_nlist=8, code=code, ex_bits=ex_bits)
    vectors = golden_vectors()
    index.train(vectors, threads=1)
    index.add(np.arange(300) * 2, vectors, threads=1)
    index.delete([0, 2])
    return index


def main() -> None:
    data = Path(__file__).parent / "data"
    golden_index("pq").save(data / f"ivf_pq_v{CURRENT_VERSION}.lkl")
    golden_index("rabitq").save(data / f"ivf_rabitq_v{CURRENT_VERSION}.lkl")
    golden_index("rabitq", ex_bits=2).save(data / f"ivf_rabitq_ex_v{CURRENT_VERSION}.lkl")


if __name__ == "__main__":
    main()
