"""Writes tests/data/hnsw_v<N>.lkl for the current kind version N of the HNSW file,
the files test_hnsw_golden.py loads.

Run it only when the file format's version changes, and keep the files of older
versions: they must go on loading. (hnsw_v1.lkl was written by version 1 with the
same vectors, float16 storage and no re-ranking copies; hnsw_v2.lkl by version 2
with what main() writes, less the sketches.)
"""

from pathlib import Path

import numpy as np

from lookalike.index import HnswIndex

CURRENT_VERSION = 3


def golden_vectors() -> np.ndarray:
    rng = np.random.default_rng(2026)
    return rng.standard_normal((40, 8)).astype(np.float32)


def main() -> None:
    # Version 2 added float16 re-ranking copies: the file holds them beside int8
    # codes. Version 3 added the sketches (on by default): the same index, with them.
    index = HnswIndex(8, "cosine", M=4, ef_construction=20, storage="int8", rerank="float16", seed=1)
    index.add(np.arange(40) * 3, golden_vectors(), threads=1)
    index.delete([0, 3])
    index.save(Path(__file__).parent / "data" / f"hnsw_v{CURRENT_VERSION}.lkl")


if __name__ == "__main__":
    main()
