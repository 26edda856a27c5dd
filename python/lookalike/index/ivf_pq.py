"""IvfPqIndex: a compressed inverted-file index with exact re-rank from disk.

Built for catalogs whose float vectors do not fit in RAM (100M x 512 floats are
~200 GB): RAM holds ~32-64 bytes of product-quantised code a vector, plus ids;
the float vectors live in a memory-mapped file beside the index and are read
only to re-rank a few candidates a query.

Parameters (and what they trade):

- ``metric``: ``"cosine"`` (normalised on the way in; distance 1 - cosine),
  ``"ip"`` (negative inner product) or ``"l2"`` (squared). Smaller is closer.
- ``nlist``: cells of the coarse k-means. ~4-16 x sqrt(n): more cells scan
  fewer codes at a given ``nprobe`` but train slower. Needs ``nlist`` training
  vectors at least (in practice 30-60 per cell).
- ``m``, ``nbits``: the product-quantiser code, ``m * nbits / 8`` bytes a
  vector; ``dim`` must be a multiple of ``m``. ``nbits=4`` scans with lookup
  tables held in SIMD registers (fast-scan), several times faster than
  ``nbits=8`` at the same bytes; the re-rank repairs its coarser order.
- ``nprobe``: cells searched per query (override per search): recall vs time.
- ``rerank_k``: candidates re-ranked by exact distance (override per search).
  Each costs one ``dim * 4``-byte read from the vectors file.
- ``vectors_path``: where the float vectors go; ``None`` keeps them in an
  anonymous temporary file (``save`` then copies them next to the index).

Lifecycle: ``train(sample)`` once on an empty index, then ``add`` / ``upsert``
/ ``delete`` at will. ``save(path)`` writes ``path`` and ``path + ".vectors"``;
``load(path)`` maps both back, and later writes append to that vectors file.
Searches run in parallel; writes take the index exclusively.
"""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from lookalike import _core
from lookalike.index.arrays import as_ids, as_vectors
from lookalike.index.filters import IdFilter
from lookalike.index.hnsw import SearchResult, _check_positive, _threads


class IvfPqIndex:
    def __init__(
        self,
        dim: int,
        metric: str = "cosine",
        *,
        nlist: int = 1024,
        m: int = 64,
        nbits: int = 4,
        nprobe: int = 16,
        rerank_k: int = 100,
        seed: int = 0,
        vectors_path: str | os.PathLike[str] | None = None,
    ) -> None:
        for name, value in (("dim", dim), ("nlist", nlist), ("m", m), ("nprobe", nprobe), ("rerank_k", rerank_k)):
            _check_positive(name, value)
        path = "" if vectors_path is None else os.fspath(vectors_path)
        self._core = _core.IvfPqIndex(
            int(dim), metric, int(nlist), int(m), int(nbits), int(nprobe), int(rerank_k), int(seed), path
        )
        self._dim = int(dim)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> IvfPqIndex:
        """Loads ``path`` and maps ``path + ".vectors"``. A truncated, damaged or
        foreign file (either of them) raises IndexFileError."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no index file at {path}")
        index = cls.__new__(cls)
        index._core = _core.IvfPqIndex.load(path)
        index._dim = index._core.dim
        return index

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes ``path`` and ``path + ".vectors"`` atomically. Writers wait."""
        self._core.save(os.fspath(path))

    # --- writes ---------------------------------------------------------------

    def train(self, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        """Learns the coarse centroids and the codebooks from a sample (at least
        ``nlist`` and ``2**nbits`` vectors, finite). Only on an empty index."""
        self._core.train(as_vectors(vectors, self._dim), _threads(threads))

    @property
    def trained(self) -> bool:
        return self._core.trained

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        """Adds vectors under new ids (int64 >= 0); same rules as HnswIndex.add.
        RuntimeError if the index is not trained."""
        self._write(ids, vectors, replace=False, threads=threads)

    def upsert(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        """Adds vectors, replacing those of ids already present."""
        self._write(ids, vectors, replace=True, threads=threads)

    def _write(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, replace: bool, threads: int) -> None:
        self._core.add(as_ids(ids), as_vectors(vectors, self._dim), replace, _threads(threads))

    def delete(self, ids: npt.ArrayLike) -> None:
        """Deletes ids at once. An unknown id raises UnknownIdError and nothing is deleted."""
        self._core.remove(as_ids(ids))

    def compact(self) -> None:
        """Drops deleted entries from the inverted lists, returning their RAM."""
        self._core.compact()

    # --- reads ----------------------------------------------------------------

    def search(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        *,
        nprobe: int | None = None,
        rerank_k: int | None = None,
        filter: IdFilter | _core.Filter | None = None,
        rerank: bool = True,
        threads: int = 0,
    ) -> SearchResult:
        """The k nearest ids of each query, shaped like HnswIndex.search. With
        ``rerank=False`` the distances are the (approximate) PQ estimates and
        the vectors file is not read."""
        _check_positive("k", k)
        for name, value in (("nprobe", nprobe), ("rerank_k", rerank_k)):
            if value is not None:
                _check_positive(name, value)
        if filter is not None and not isinstance(filter, _core.Filter):
            raise TypeError(f"filter must be a lookalike filter such as IdFilter, got {type(filter).__name__}")
        queries = as_vectors(queries, self._dim, "queries", allow_1d=True)
        return SearchResult(
            *self._core.search(queries, k, nprobe or 0, rerank_k or 0, filter, bool(rerank), _threads(threads))
        )

    def __len__(self) -> int:
        return len(self._core)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, (int, np.integer)) and self._core.contains(int(id))

    def memory_usage(self) -> dict[str, int]:
        """Bytes of RAM held, by part (codes, list slots, ids, id map, tombstones,
        centroids) and in all (``total_bytes``); ``vector_file_bytes`` is the
        on-disk vectors file, outside the total."""
        return self._core.memory_usage()

    # --- parameters -----------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._core.metric

    @property
    def nlist(self) -> int:
        return self._core.nlist

    @property
    def m(self) -> int:
        return self._core.m

    @property
    def nbits(self) -> int:
        return self._core.nbits

    @property
    def nprobe(self) -> int:
        return self._core.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        _check_positive("nprobe", value)
        self._core.nprobe = int(value)

    @property
    def rerank_k(self) -> int:
        return self._core.rerank_k

    @rerank_k.setter
    def rerank_k(self, value: int) -> None:
        _check_positive("rerank_k", value)
        self._core.rerank_k = int(value)

    @property
    def deleted_count(self) -> int:
        """Deleted entries still in the lists (until compact())."""
        return self._core.deleted_count

    def __repr__(self) -> str:
        return (
            f"IvfPqIndex(dim={self.dim}, metric={self.metric!r}, nlist={self.nlist}, m={self.m}, "
            f"nbits={self.nbits}, nprobe={self.nprobe}, rerank_k={self.rerank_k}, size={len(self)})"
        )
