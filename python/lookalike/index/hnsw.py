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
- ``sketches``: keep a 1-bit sketch of every vector (72 bytes at 512-d, a
  rotation per insert) that a filtered scan of many matches estimates first,
  reading few full vectors (on by default; ``False`` saves the memory).

Group graphs (``link_group``): a graph over the nodes sharing a value a filter
can require (``"category=women/dresses"``). A search whose filter requires it
(a ``Match`` of that one value, at its root or under ``Must``) may walk that
graph instead of the whole one, when the planner finds it cheaper: where a
category's members lie away from the query, the whole graph's walk crosses many
non-members first. A member costs 8M + 20 bytes (148 at M 16: up to 2M links,
its slot, a lookup entry); the caller links every node that holds the value
(``Collection`` does).

Every method may be called from several threads at once; the native calls run
without the GIL. ``compact()`` pauses searches and writes while it runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from lookalike import _core
from lookalike.index.arrays import as_ids, as_vectors
from lookalike.index.filter import Filter
from lookalike.index.filters import IdFilter
from lookalike.index.native import NativeIndex, SearchResult, check_filter, check_positive, thread_count


class SearchResultWithStats(NamedTuple):
    """A search result with how the search went (``return_stats=True``): one
    SearchStats for one query, a list of them for several. ``stats.plan`` is
    ``graph`` (no filter), ``filtered_graph``, ``two_hop_graph``,
    ``group_graph`` (the filtered walk of a group graph of ``group_size``
    members) or ``exact_scan``;
    ``estimate`` the ids the filter was expected to allow; ``matches`` how many it
    allows, counted (None when its match set was not built); ``driver`` the ids
    its cheapest clause lists; ``ef`` the walk's width; ``distances`` the distance
    computations (full vectors read); ``estimates`` the distances estimated on
    the vectors' sketches; ``tested`` the filter tests of the walk; ``expansions``
    the nodes the walk expanded (read the links of); ``fell_back``
    whether a scan had to follow a walk that found fewer than k."""

    ids: np.ndarray
    distances: np.ndarray
    stats: _core.SearchStats | list[_core.SearchStats]


class HnswIndex(NativeIndex):
    _core_type = _core.HnswIndex

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
        sketches: bool = True,
    ) -> None:
        for name, value in (("dim", dim), ("M", M), ("ef_construction", ef_construction), ("ef_search", ef_search)):
            check_positive(name, value)
        self._core = _core.HnswIndex(
            int(dim), metric, storage, int(M), int(ef_construction), int(ef_search), _rerank_copies(rerank), int(seed),
            bool(sketches)
        )
        self._dim = int(dim)

    def compact(self) -> None:
        """Reclaims the space of deleted vectors, relinking their neighbours.
        Searches and writes wait while it runs."""
        self._core.compact()

    def link_group(self, key: str, ids: npt.ArrayLike, *, threads: int = 0) -> None:
        """Links ``ids`` into the group graph ``key`` (``"attribute=value"``),
        created if new; ids already in it are skipped. Every id must be in the
        index (else UnknownIdError, and nothing changes). A filtered search
        that requires the value walks the group's members only, so every node
        holding it must be linked: new and replaced ones too (a replaced id is
        a new node)."""
        if not isinstance(key, str) or not key:
            raise ValueError(f"a group key is a non-empty string such as 'category=shoes', got {key!r}")
        self._core.link_group(key, as_ids(ids), thread_count(threads))

    def drop_group(self, key: str) -> bool:
        """Forgets the group graph ``key``; False if there was none."""
        return self._core.drop_group(key)

    @property
    def groups(self) -> dict[str, int]:
        """Each group graph's key and members (deleted nodes count until compact())."""
        return dict(self._core.groups())

    def unreachable_count(self) -> int:
        """Live nodes that no search can reach (no walk of the bottom level from
        the entry point gets to them). A build (any add that grows the index by an
        eighth or more since the last repair) and a compaction end with a repair
        that links each such node, so this is 0 after either."""
        return self._core.unreachable_count()

    def compacted_copy(self, scratch: str | os.PathLike[str]) -> HnswIndex:
        """A compacted copy of this index, made through the file ``scratch``
        (removed after): unlike compact(), searches of this index go on while it
        runs, at the price of twice its memory meanwhile. Writes to this index
        while it runs are not in the copy: the caller holds them back."""
        scratch = Path(scratch)
        scratch.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.save(scratch)
            copy = HnswIndex.load(scratch)
        finally:
            scratch.unlink(missing_ok=True)
        copy.compact()
        return copy

    # --- reads ----------------------------------------------------------------

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
        stop: _core.StopToken | None = None,
        plan: str | None = None,
        bound_sigmas: float = 0.0,
    ) -> SearchResult | SearchResultWithStats:
        """The k nearest ids of each query. One query (shape (dim,)) gives arrays
        of shape (k,); n queries give (n, k), searched on ``threads`` threads.

        ``filter`` restricts the ids returned: an IdFilter, or an attribute filter
        compiled by ``AttributeStore.compile``. With a filter a planner picks, per
        query, an exact scan of the matching ids (when few match) or a graph walk
        that admits only matching ids; k results come back whenever k ids match.
        ``rerank`` re-ranks candidates on the re-ranking copies when the index keeps
        them; ``exact`` scans every vector instead of walking the graph (ground
        truth, or tiny indexes). ``return_stats`` adds the plan and its cost.
        ``plan`` forces a filtered search's plan (``exact_scan``, ``filtered_graph``
        or ``two_hop_graph``) instead of the planner's choice: for comparing plans.
        ``stop`` (a StopToken) ends the search early: it raises DeadlineExceeded
        once the token's deadline passes, SearchCancelled once it is cancelled.
        ``bound_sigmas`` widens or narrows the error bound of the sketch
        estimates a filtered search reads full vectors by (0: the index's
        default; ``math.inf`` reads every candidate's full vector)."""
        check_positive("k", k)
        if ef is not None:
            check_positive("ef", ef)
        if isinstance(filter, Filter):
            raise TypeError("filter is a filter clause: compile it against the attribute store first "
                            "(store.compile(filter))")
        check_filter(filter)
        queries = as_vectors(queries, self._dim, "queries", allow_1d=True)
        found = self._core.search(queries, k, ef or 0, filter, rerank, exact, thread_count(threads), bool(return_stats),
                                  stop, plan or "", float(bound_sigmas))
        return SearchResultWithStats(*found) if return_stats else SearchResult(*found)

    # --- parameters -----------------------------------------------------------

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
    def sketches(self) -> bool:
        """Whether the index keeps a 1-bit sketch of every vector for filtered searches."""
        return self._core.sketches

    @property
    def rerank(self) -> str | None:
        """Storage of the re-ranking copies (``"float32"``, ``"float16"``), or None."""
        return self._core.rerank_copies

    def __repr__(self) -> str:
        return (
            f"HnswIndex(dim={self.dim}, metric={self.metric!r}, storage={self.storage!r}, M={self.M}, "
            f"ef_construction={self.ef_construction}, ef_search={self.ef_search}, size={len(self)})"
        )


def _rerank_copies(rerank: bool | str | None) -> str:
    """The core's name for the re-ranking copies; "" for none."""
    if rerank is None or rerank is False:
        return ""
    if rerank is True:
        return "float32"
    if rerank in ("float32", "float16"):
        return rerank
    raise ValueError(f"rerank must be False, True, 'float32' or 'float16', got {rerank!r}")
