"""Writes tests/data/hnsw_v1.lkl, the index file test_hnsw_golden.py loads.

Run it only when the file format's version changes, and then keep the old file
too: files written by older versions must go on loading.
"""

from pathlib import Path

import numpy as np

from lookalike.index import HnswIndex


def golden_vectors() -> np.ndarray:
    rng = np.random.default_rng(2026)
    return rng.standard_normal((40, 8)).astype(np.float32)


def main() -> None:
    index = HnswIndex(8, "cosine", M=4, ef_construction=20, storage="float16", seed=1)
    index.add(np.arange(40) * 3, golden_vectors(), threads=1)
    index.delete([0, 3])
    index.save(Path(__file__).parent / "data" / "hnsw_v1.lkl")


if __name__ == "__main__":
    main()
