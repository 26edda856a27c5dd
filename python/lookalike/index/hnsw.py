"""HnswIndex: an approximate nearest-neighbour graph index over the native core.

Parameters (and what they trade):

- ``metric``: ``"cosine"`` (vectors are normalised on the way in; distance is
  1 - cosine similarity), ``"ip"`` (negative inner product) or ``"l2"`` (squared
  Euclidean distance). Smaller distances are closer for every metric.
- ``M``: links per node (2M on the bottom level). Higher: better recall at a
  given ``ef``, slower builds, 8 more bytes per node per unit of M.
- ``ef_construction``: search width while linking new nodes; build time vs
  graph quality.
- ``ef_search``: default search width; the QPS-for-recall knob. A search can
  override it with ``ef=``; it is raised to ``k`` when smaller.
- ``storage``: ``"float32"`` (exact), ``"float16"`` (half the memory, no
  measurable recall loss on normalised embeddings) or ``"int8"`` (a quarter;
  loses a little recall unless candidates are re-ranked).
- ``rerank``: keep copies of the vectors beside compressed storage and re-rank
  the ef candidates on them: ``"float32"`` (or ``True``; exact) or
  ``"float16"`` (half the bytes, the same order on normalised embeddings).
  ``storage="int8", rerank="float16"`` walks the graph on a quarter of the bytes
  of float32, ranks like float32, and holds 1.5 KB a 512-d vector instead of 2.

Every method may be called from several threads at once; the native calls run
without the GIL. ``compact()`` pauses searches and writes while it runs.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from lookalike import _core
from lookalike.index.arrays import as_ids, as_vectors
from lookalike.index.filter import Filter
from lookalike.index.filters import IdFilter


class SearchResult(NamedTuple):
    """Ids and distances, nearest first. Rows are padded with id -1 and
    distance +inf when fewer than k ids match."""

    ids: np.ndarray
    distances: np.ndarray


class SearchResultWithStats(NamedTuple):
    """A search result with how the search went (``return_stats=True``): one
    SearchStats for one query, a list of them for several. ``stats.plan`` is
    ``graph`` (no filter), ``filtered_graph`` or ``exact_scan``; ``estimate`` the
    ids the filter was expected to allow; ``ef`` the walk's width; ``distances``
    the distance computations; ``fell_back`` whether a scan had to follow a walk
    that found fewer than k."""

    ids: np.ndarray
    distances: np.ndarray
    stats: _core.SearchStats | list[_core.SearchStats]


class HnswIndex:
    def __init__(
        self,
        dim: int,
        metric: str = "cosine",
        *,
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        storage: str = "float32",
        rerank: bool | str | None = None,
        seed: int = 0,
    ) -> None:
        for name, value in (("dim", dim), ("M", M), ("ef_construction", ef_construction), ("ef_search", ef_search)):
            _check_positive(name, value)
        self._core = _core.HnswIndex(
            int(dim), metric, storage, int(M), int(ef_construction), int(ef_search), _rerank_copies(rerank), int(seed)
        )
        self._dim = int(dim)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> HnswIndex:
        """Loads a saved index. A truncated, damaged or foreign file raises
        IndexFileError naming what is wrong."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no index file at {path}")
        index = cls.__new__(cls)
        index._core = _core.HnswIndex.load(path)
        index._dim = index._core.dim
        return index

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the index atomically: a crash leaves the old file or the new one.
        Writers wait while it runs; searches do not."""
        self._core.save(os.fspath(path))

    # --- writes ---------------------------------------------------------------

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        """Adds vectors under new ids (int64 >= 0). An id already present, or
        listed twice, raises DuplicateIdError; a NaN/inf or (for cosine) an all-zero
        vector raises ValueError. Nothing is added when anything is wrong.
        ``threads=0`` uses every core."""
        self._write(ids, vectors, replace=False, threads=threads)

    def upsert(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        """Adds vectors, replacing those of ids already present."""
        self._write(ids, vectors, replace=True, threads=threads)

    def _write(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, replace: bool, threads: int) -> None:
        self._core.add(as_ids(ids), as_vectors(vectors, self._dim), replace, _threads(threads))

    def delete(self, ids: npt.ArrayLike) -> None:
        """Deletes ids at once; they are never returned again. An unknown id raises
        UnknownIdError (a KeyError) and nothing is deleted."""
        self._core.remove(as_ids(ids))

    def compact(self) -> None:
        """Reclaims the space of deleted vectors, relinking their neighbours."""
        self._core.compact()

    # --- reads ----------------------------------------------------------------

    def get(self, ids: npt.ArrayLike) -> np.ndarray:
        """The stored vectors of ids, shape (n, dim) (normalised under cosine)."""
        return self._core.get(as_ids(ids))

    def search(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        *,
        ef: int | None = None,
        filter: IdFilter | _core.Filter | None = None,
        rerank: bool = True,
        exact: bool = False,
        threads: int = 0,
        return_stats: bool = False,
    ) -> SearchResult | SearchResultWithStats:
        """The k nearest ids of each query. One query (shape (dim,)) gives arrays
        of shape (k,); n queries give (n, k), searched on ``threads`` threads.

        ``filter`` restricts the ids returned: an IdFilter, or an attribute filter
        compiled by ``AttributeStore.compile``. With a filter a planner picks, per
        query, an exact scan of the matching ids (when few match) or a graph walk
        that admits only matching ids; k results come back whenever k ids match.
        ``rerank`` re-ranks candidates on the re-ranking copies when the index keeps
        them; ``exact`` scans every vector instead of walking the graph (ground
        truth, or tiny indexes). ``return_stats`` adds the plan and its cost."""
        _check_positive("k", k)
        if ef is not None:
            _check_positive("ef", ef)
        if isinstance(filter, Filter):
            raise TypeError("filter is a filter clause: compile it against the attribute store first "
                            "(store.compile(filter))")
        if filter is not None and not isinstance(filter, _core.Filter):
            raise TypeError(f"filter must be a lookalike filter such as IdFilter, got {type(filter).__name__}")
        queries = as_vectors(queries, self._dim, "queries", allow_1d=True)
        found = self._core.search(queries, k, ef or 0, filter, rerank, exact, _threads(threads), bool(return_stats))
        return SearchResultWithStats(*found) if return_stats else SearchResult(*found)

    def __len__(self) -> int:
        return len(self._core)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, (int, np.integer)) and self._core.contains(int(id))

    def memory_usage(self) -> dict[str, int]:
        """Bytes held, by part (nodes, upper links, exact copies, id map, scratch)
        and in all (``total_bytes``), with live / deleted / capacity counts."""
        return self._core.memory_usage()

    # --- parameters -----------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._core.metric

    @property
    def storage(self) -> str:
        return self._core.storage

    @property
    def M(self) -> int:
        return self._core.M

    @property
    def ef_construction(self) -> int:
        return self._core.ef_construction

    @property
    def ef_search(self) -> int:
        return self._core.ef_search

    @ef_search.setter
    def ef_search(self, ef: int) -> None:
        self._core.ef_search = int(ef)

    @property
    def rerank(self) -> str | None:
        """Storage of the re-ranking copies (``"float32"``, ``"float16"``), or None."""
        return self._core.rerank_copies

    @property
    def deleted_count(self) -> int:
        """Deleted vectors still holding space (until compact())."""
        return self._core.deleted_count

    def __repr__(self) -> str:
        return (
            f"HnswIndex(dim={self.dim}, metric={self.metric!r}, storage={self.storage!r}, M={self.M}, "
            f"ef_construction={self.ef_construction}, ef_search={self.ef_search}, size={len(self)})"
        )


def _check_positive(name: str, value: object) -> None:
    if type(value) is bool or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _rerank_copies(rerank: bool | str | None) -> str:
    """The core's name for the re-ranking copies; "" for none."""
    if rerank is None or rerank is False:
        return ""
    if rerank is True:
        return "float32"
    if rerank in ("float32", "float16"):
        return rerank
    raise ValueError(f"rerank must be False, True, 'float32' or 'float16', got {rerank!r}")


def _threads(threads: int) -> int:
    if type(threads) is bool or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"threads must be >= 0 (0: every core), got {threads!r}")
    return int(threads)
