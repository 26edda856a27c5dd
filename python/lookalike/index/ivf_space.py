"""IvfPqSpace: a Collection's vector space held in an IVF-PQ index.

IVF-PQ must be trained on a sample before it takes vectors, but a collection
that starts empty has no sample. So the space starts as a buffer, an exact
float32 index (HnswIndex searched with ``exact=True``: recall 1.0, and fast at
the buffer's size), and trains itself on the buffered vectors as soon as it
holds ``train_size`` of them: the buffer's products move into the trained
IVF-PQ index and the buffer is dropped. That write waits for the training
(seconds for the default 32 x nlist vectors); searches meanwhile use the
buffer. A batch build skips the buffer: ``train(sample)`` first, then adds.

Either state supports everything a space must: upsert, delete, get, filtered
search, save and load. A search with ``exact=True`` on the trained index scans
every cell and re-ranks every candidate exactly.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from lookalike.index.arrays import as_ids
from lookalike.index.choose import default_pq_m
from lookalike.index.hnsw import HnswIndex, SearchResultWithStats
from lookalike.index.ivf_pq import IvfPqIndex

TRAIN_VECTORS_PER_CELL = 32  # the default train_size is this x nlist (the README asks 30-60 a cell)


class IvfSearchStats(NamedTuple):
    """How an IVF-PQ search went, shaped like the HNSW SearchStats the service reports."""

    plan: str          # "ivf_pq", or "exact_scan" for exact=True
    estimate: int | None = None
    ef: int = 0
    distances: int = 0
    nprobe: int = 0
    matches: int | None = None  # the HNSW planner's numbers, which IVF-PQ does not count
    driver: int | None = None
    tested: int = 0
    fell_back: bool = False
    group_size: int = 0         # IVF-PQ keeps no group graphs


class IvfPqSpace:
    def __init__(self, config: Any) -> None:
        """``config`` is the space's SpaceConfig (index="ivf_pq")."""
        self.config = config
        self._buffer: HnswIndex | None = HnswIndex(config.dim, config.metric, storage="float32")
        self._ivf: IvfPqIndex | None = None

    @property
    def train_size(self) -> int:
        return self.config.train_size or TRAIN_VECTORS_PER_CELL * self.config.nlist

    @property
    def trained(self) -> bool:
        return self._ivf is not None

    def _current(self) -> HnswIndex | IvfPqIndex:
        # The buffer is read first: training sets _ivf before it clears _buffer,
        # so a search racing it sees one whole index or the other.
        buffer = self._buffer
        ivf = self._ivf
        return ivf if ivf is not None else buffer

    # --- writes -----------------------------------------------------------------

    def train(self, sample: npt.ArrayLike, *, threads: int = 0) -> None:
        """Trains the IVF-PQ index on ``sample`` and moves any buffered products into it."""
        if self._ivf is not None:
            raise ValueError(f"space '{self.config.name}' is trained already")
        c = self.config
        ivf = IvfPqIndex(c.dim, c.metric, nlist=c.nlist, m=c.pq_m or default_pq_m(c.dim), nbits=c.nbits,
                         nprobe=c.nprobe, rerank_k=c.rerank_k, code=c.code, bound_sigmas=c.bound_sigmas,
                         ex_bits=c.ex_bits)
        ivf.train(sample, threads=threads)
        buffered = _all_ids(self._buffer)
        if len(buffered):
            ivf.add(buffered, self._buffer.get(buffered), threads=threads)
        self._ivf, self._buffer = ivf, None

    def upsert(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        ivf = self._ivf
        if ivf is not None:
            ivf.upsert(ids, vectors, threads=threads)
            return
        self._buffer.upsert(ids, vectors, threads=threads)
        if len(self._buffer) >= self.train_size:
            sample_ids = _all_ids(self._buffer)
            self.train(self._buffer.get(sample_ids), threads=threads)

    def delete(self, ids: npt.ArrayLike) -> None:
        self._current().delete(ids)

    def compact(self, scratch: str | os.PathLike[str]) -> None:
        """Reclaims the memory of deleted vectors and stays what it is: trained
        or a buffer. Trained, the inverted lists are rewritten in place without
        the deleted codes: one linear pass over the codes (no graph to relink)
        that holds searches for that pass, where a copy would have to duplicate
        the float vectors file, which is append-only and keeps the deleted rows
        on disk. Untrained, the buffer is replaced by a compacted copy made
        through the file ``scratch``, as an HNSW space is."""
        ivf = self._ivf
        if ivf is not None:
            ivf.compact()
        else:
            self._buffer = self._buffer.compacted_copy(scratch)

    # --- reads ------------------------------------------------------------------

    def search(self, queries: npt.ArrayLike, k: int, *, ef: int | None = None, nprobe: int | None = None,
               filter: Any = None, rerank: bool = True, exact: bool = False,
               return_stats: bool = True, stop: Any = None) -> SearchResultWithStats:
        """The k nearest, with stats, as HnswIndex.search(return_stats=True)
        gives them; ``ef`` only matters while the space is a buffer (unused
        there too: the buffer is always scanned exactly)."""
        index = self._current()
        if isinstance(index, HnswIndex):
            return index.search(queries, k, filter=filter, exact=True, return_stats=True, stop=stop)
        bound_sigmas = None
        if exact:  # every cell, every candidate re-ranked (RaBitQ: an unbounded bound): the exact answer
            nprobe, rerank_k, rerank, bound_sigmas = index.nlist, max(k, len(index), 1), True, float("inf")
        else:
            rerank_k = None
        ids, distances = index.search(queries, k, nprobe=nprobe, rerank_k=rerank_k, filter=filter, rerank=rerank,
                                      stop=stop, bound_sigmas=bound_sigmas)
        stats = IvfSearchStats("exact_scan" if exact else "ivf_pq", nprobe=nprobe or index.nprobe)
        return SearchResultWithStats(ids, distances, stats)

    def get(self, ids: npt.ArrayLike) -> np.ndarray:
        return self._current().get(ids)

    def __len__(self) -> int:
        return len(self._current())

    def __contains__(self, id: object) -> bool:
        return id in self._current()

    def memory_usage(self) -> dict[str, int]:
        return self._current().memory_usage()

    @property
    def deleted_count(self) -> int:
        return self._current().deleted_count

    def describe(self) -> str:
        """The index kind in words (the service's Stats)."""
        index = self._current()
        if isinstance(index, HnswIndex):
            return f"ivf_pq, untrained: exact scan of {len(index)} buffered of {self.train_size} to train on"
        if index.code == "rabitq":
            ex_codes = f", {1 + index.ex_bits}-bit codes on disk" if index.ex_bits else ""
            return (f"ivf_pq nlist={index.nlist}, rabitq 1 bit a dimension{ex_codes}, bound {index.bound_sigmas:g} "
                    f"sigmas, nprobe={index.nprobe}, rerank_k={index.rerank_k}")
        return (f"ivf_pq nlist={index.nlist}, m={index.m} x {index.nbits} bits, nprobe={index.nprobe}, "
                f"rerank_k={index.rerank_k}")

    # --- persistence ------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes ``path`` (and, trained, ``path`` + ".vectors" and, with
        ex_bits, ``path`` + ".excodes")."""
        self._current().save(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], config: Any, trained: bool) -> IvfPqSpace:
        space = cls.__new__(cls)
        space.config = config
        space._ivf = IvfPqIndex.load(path) if trained else None
        space._buffer = None if trained else HnswIndex.load(path)
        return space


def _all_ids(index: HnswIndex) -> np.ndarray:
    """Every id in an index, by an exact scan asked for all of them (order does not matter)."""
    n = len(index)
    if n == 0:
        return as_ids([])
    probe = np.zeros(index.dim, dtype=np.float32)
    probe[0] = 1.0
    return index.search(probe, n, exact=True).ids
