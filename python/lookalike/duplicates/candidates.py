"""Range search on a top-k index: every product whose similarity to a query
reaches a threshold.

The HNSW index answers "the k nearest"; this asks for k, and while all k hits
pass the threshold (so more may lie beyond), asks again for 4k, up to a cap.
The hits come back best first, so the first one under the threshold ends the
range. A search of k costs about ef = max(k, ef_search) graph steps, so the
growth keeps the common case (a handful of near-copies) at one small search.
"""

from __future__ import annotations

import numpy as np

from lookalike.index.collection import Collection, Hits

FIRST_K = 16
GROWTH = 4


def neighbours_above(collection: Collection, space: str, query: np.ndarray, threshold: float,
                     max_results: int, exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) of the products of ``space`` scoring >= ``threshold``
    against ``query``, best first, at most ``max_results`` of them; ``exclude``
    leaves one id out (the query's own product)."""
    if max_results <= 0:
        raise ValueError(f"max_results must be > 0, got {max_results}")
    available = len(collection) - (exclude is not None and exclude in collection)
    k = min(FIRST_K, max_results)
    while True:
        hits: Hits = collection.search(space, query, k, ef=max(k, collection.space(space).ef_search),
                                       exclude=exclude)
        keep = hits.scores >= threshold
        if not keep.all() or k >= max_results or k >= available:
            return hits.ids[keep], hits.scores[keep]
        k = min(k * GROWTH, max_results)


def all_ids(collection: Collection) -> np.ndarray:
    """Every product id of the collection, ascending: an exact scan of the default
    space asked for all of them (the collection keeps no list of its own)."""
    n = len(collection)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    space = collection.default_space
    probe = np.zeros(collection.space(space).dim, dtype=np.float32)
    probe[0] = 1.0
    return np.sort(collection.search(space, probe, n, exact=True).ids)
