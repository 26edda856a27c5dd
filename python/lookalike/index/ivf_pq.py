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
  vector; ``1 <= m <= dim`` (when ``m`` does not divide ``dim`` the
  sub-spaces differ in width by one). ``nbits=4`` scans with lookup
  tables held in SIMD registers (fast-scan), several times faster than
  ``nbits=8`` at the same bytes; the re-rank repairs its coarser order.
- ``nprobe``: cells searched per query (override per search): recall vs time.
- ``rerank_k``: candidates re-ranked by exact distance (override per search).
  Each costs one ``dim * 4``-byte read from the vectors file.
- ``coarse_graph_min_nlist``: from this many cells on (default 4096),
  ``train`` builds an HNSW over the centroids, which then finds a query's
  cells (and an added vector's cell) in about a thousand distances instead of
  ``nlist``; below it the centroids are scanned exactly. The graph's cells are
  approximate, rarely other than the exact ones. A loaded index keeps the
  coarse search it was saved with.
- ``code``: ``"pq"`` (the product quantiser above) or ``"rabitq"`` (RaBitQ,
  Gao & Long 2024: a random rotation, one bit a dimension of each residual's
  direction and 3 bytes of factors, ``dim / 8 + 3`` bytes a vector with
  ``dim`` padded to a power of two; ``m`` and ``nbits`` do not apply; up to
  1024 dimensions). RaBitQ's distance estimates come with an error bound,
  and the re-rank reads a candidate only while its lower bound can still
  beat the current k-th exact distance (``rerank_k`` then only caps the
  reads).
- ``bound_sigmas``: RaBitQ's bound in standard deviations of the estimate's
  error (override per search): wider reads more candidates and misses fewer
  (about ``erfc(s / sqrt(2))`` of the estimates fall outside it); ``inf``
  re-ranks every candidate of the probed cells (exact within them).
- ``ex_bits``: RaBitQ only, 0 (default) to 7: extended RaBitQ (Gao et al.
  2025), a second code of ``1 + ex_bits`` bits a dimension, kept on disk in
  ``vectors_path + ".excodes"`` (``padded_dim * (1 + ex_bits) / 8 + 12``
  bytes a vector, memory-mapped, not in RAM). The candidates the 1-bit bound
  leaves read it for an estimate with a bound several times narrower, and
  only those that can still beat the k-th exact distance are then read as
  floats: fewer, smaller reads from disk for the same recall. A search with
  ``rerank=False`` answers from these estimates.
- ``vectors_path``: where the float vectors go; ``None`` keeps them in an
  anonymous temporary file (``save`` then copies them next to the index).

Lifecycle: ``train(sample)`` once on an empty index, then ``add`` / ``upsert``
/ ``delete`` at will. ``save(path)`` writes ``path`` and ``path + ".vectors"``
(and ``path + ".excodes"`` with ``ex_bits``); ``load(path)`` maps them back,
and later writes append to those files.
``load`` checks the vectors file's size but does not read it (its cost does
not grow with the file: checksumming 200 GB takes minutes); ``verify()`` reads
it all (and the ex-codes file) and raises ``IndexFileError`` when it is not
what the index wrote.
Searches run in parallel; writes take the index exclusively.
"""

from __future__ import annotations

import os

import numpy.typing as npt

from lookalike import _core
from lookalike.index.arrays import as_vectors
from lookalike.index.filters import IdFilter
from lookalike.index.native import NativeIndex, SearchResult, check_filter, check_positive, thread_count


class IvfPqIndex(NativeIndex):
    _core_type = _core.IvfPqIndex

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
        coarse_graph_min_nlist: int = 4096,
        vectors_path: str | os.PathLike[str] | None = None,
        code: str = "pq",
        bound_sigmas: float = 2.0,
        ex_bits: int = 0,
    ) -> None:
        for name, value in (("dim", dim), ("nlist", nlist), ("m", m), ("nprobe", nprobe), ("rerank_k", rerank_k),
                            ("coarse_graph_min_nlist", coarse_graph_min_nlist)):
            check_positive(name, value)
        if not 0 <= ex_bits <= 7:
            raise ValueError(f"ex_bits must be 0 to 7, got {ex_bits}")
        path = "" if vectors_path is None else os.fspath(vectors_path)
        self._core = _core.IvfPqIndex(
            int(dim), metric, int(nlist), int(m), int(nbits), int(nprobe), int(rerank_k), int(seed),
            int(coarse_graph_min_nlist), path, code, float(bound_sigmas), int(ex_bits)
        )
        self._dim = int(dim)

    # --- writes ---------------------------------------------------------------

    def train(self, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        """Learns the coarse centroids and the codebooks from a sample (at least
        ``nlist`` and ``2**nbits`` vectors, finite). Only on an empty index."""
        self._core.train(as_vectors(vectors, self._dim), thread_count(threads))

    @property
    def trained(self) -> bool:
        return self._core.trained

    def verify(self) -> None:
        """Reads the whole vectors file and raises ``IndexFileError`` when its
        rows do not match the checksum the index keeps for them (damage on
        disk, a foreign file). ``load`` leaves this out so that it stays fast;
        run it after copying an index, before promoting it, or on a schedule.
        Searches go on meanwhile."""
        self._core.verify()

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
        stop: _core.StopToken | None = None,
        bound_sigmas: float | None = None,
    ) -> SearchResult:
        """The k nearest ids of each query, shaped like HnswIndex.search (``stop``
        too). With ``rerank=False`` the distances are the (approximate) PQ or
        RaBitQ estimates and the vectors file is not read. ``bound_sigmas``
        (RaBitQ only) overrides the index's bound width for this search."""
        check_positive("k", k)
        for name, value in (("nprobe", nprobe), ("rerank_k", rerank_k)):
            if value is not None:
                check_positive(name, value)
        check_filter(filter)
        if bound_sigmas is not None and not bound_sigmas > 0:
            raise ValueError(f"bound_sigmas must be > 0, got {bound_sigmas}")
        queries = as_vectors(queries, self._dim, "queries", allow_1d=True)
        return SearchResult(
            *self._core.search(queries, k, nprobe or 0, rerank_k or 0, filter, bool(rerank), thread_count(threads),
                               stop, float(bound_sigmas or 0))
        )

    def probes(self, query: npt.ArrayLike, nprobe: int | None = None) -> npt.NDArray:
        """The cells (uint32, nearest first) a search of ``query`` visits with
        ``nprobe`` (default: the index's)."""
        nprobe = self.nprobe if nprobe is None else nprobe
        check_positive("nprobe", nprobe)
        return self._core.probes(as_vectors(query, self._dim, "query", allow_1d=True), int(nprobe))

    @property
    def has_coarse_graph(self) -> bool:
        """Whether cells are found by an HNSW over the centroids (else a scan)."""
        return self._core.has_coarse_graph

    # --- parameters -----------------------------------------------------------

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
    def code(self) -> str:
        """``"pq"`` or ``"rabitq"``."""
        return self._core.code

    @property
    def bound_sigmas(self) -> float:
        return self._core.bound_sigmas

    @property
    def ex_bits(self) -> int:
        """Extended RaBitQ's extra bits a dimension (0: the 1-bit index alone)."""
        return self._core.ex_bits

    @property
    def ex_rows_read(self) -> int:
        """Rows read from the ex-codes file by searches since the index was made
        or loaded (``padded_dim * (1 + ex_bits) / 8 + 12`` bytes each)."""
        return self._core.ex_rows_read

    @property
    def rows_read(self) -> int:
        """Rows read from the vectors file by searches since the index was made
        or loaded: the re-rank's cost, a random read each when the file is not
        in the page cache. (RaBitQ's bound decides how many a query reads.)"""
        return self._core.rows_read

    @property
    def nprobe(self) -> int:
        return self._core.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        check_positive("nprobe", value)
        self._core.nprobe = int(value)

    @property
    def rerank_k(self) -> int:
        return self._core.rerank_k

    @rerank_k.setter
    def rerank_k(self, value: int) -> None:
        check_positive("rerank_k", value)
        self._core.rerank_k = int(value)

    def __repr__(self) -> str:
        return (
            f"IvfPqIndex(dim={self.dim}, metric={self.metric!r}, nlist={self.nlist}, m={self.m}, "
            f"nbits={self.nbits}, code={self.code!r}, nprobe={self.nprobe}, rerank_k={self.rerank_k}, size={len(self)})"
        )
