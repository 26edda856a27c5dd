"""What the Search path does with feedback: a search id per search and a
bounded memory of recent queries, Rocchio relevance feedback, and an optional
boost of products clicked earlier for the same query text.

The servicer calls these small functions at fixed points of a search, so the
search code itself changes little:

    remembered = feedback.remembered(request)          # a previous search's query, or None
    query, clause, applied = feedback.adjust(...)      # Rocchio; liked/disliked left out by the filter
    ids, scores = feedback.boost(space, text, ids, scores)  # earlier clicks for the same words (optional)
    response.search_id = feedback.remember(space, query, text, exclude)

Rocchio moves the query q to alpha * q + beta * mean(liked) - gamma * mean(disliked),
using the products' stored vectors of the searched space, and normalises it again
under cosine (the index compares directions). A liked or disliked id not in the
collection is reported in the response and ignored, never an error: a product
may have been deleted since the shopper saw it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lookalike.index import UnknownIdError
from lookalike.index import filter as flt
from lookalike.index.collection import Collection
from lookalike.service.errors import invalid, not_found
from lookalike.store.feedback import BoostClick
from lookalike.v1 import search_pb2


@dataclass(frozen=True)
class FeedbackConfig:
    """Config [feedback]: relevance feedback, remembered searches, stored events."""

    alpha: float = 1.0                   # Rocchio: weight of the query itself
    beta: float = 0.75                   # weight of the mean of the liked products
    gamma: float = 0.15                  # weight of the mean of the disliked products
    remember_searches: int = 10_000      # searches whose query is kept for search_id (oldest forgotten first)
    remember_seconds: float = 3600.0     # ...and for at most this long
    max_rated: int = 100                 # liked + disliked ids in one request
    retention_days: float = 90.0         # feedback events older than this are removed
    max_events: int = 10_000_000         # and beyond this many, the oldest
    # Boost products clicked before for the same query text (off by default). Kept in
    # memory, rebuilt at start from the clicks the feedback store keeps: at most boost_queries
    # query texts (least recently clicked forgotten first), at most boost_products products
    # each (least clicked dropped).
    boost_clicks: bool = False
    boost_weight: float = 0.02           # score += boost_weight * log2(1 + clicks)
    boost_queries: int = 10_000
    boost_products: int = 50

    def __post_init__(self) -> None:
        if min(self.alpha, self.beta, self.gamma, self.boost_weight) < 0:
            raise ValueError("feedback: alpha, beta, gamma and boost_weight must be >= 0")
        if min(self.remember_searches, self.max_rated, self.max_events, self.boost_queries, self.boost_products) < 1:
            raise ValueError("feedback: remember_searches, max_rated, max_events, boost_queries and "
                             "boost_products must be >= 1")
        if self.remember_seconds <= 0 or self.retention_days <= 0:
            raise ValueError("feedback: remember_seconds and retention_days must be > 0")


class RememberedSearch(NamedTuple):  # made on every search: a tuple costs a fraction of a frozen dataclass
    space: str
    vector: np.ndarray   # the query as searched (after any relevance feedback)
    text: str            # the query's words ("" for none): the key of click boosts
    at: float            # time.monotonic() when searched
    exclude: int | None = None  # the product a "more like this" search leaves out, left out again


def rocchio(query: np.ndarray, liked: np.ndarray, disliked: np.ndarray, alpha: float, beta: float,
            gamma: float, normalise: bool) -> np.ndarray:
    """alpha * query + beta * mean(liked) - gamma * mean(disliked); an empty
    group adds nothing. Normalised to unit length when ``normalise``."""
    moved = alpha * np.asarray(query, dtype=np.float32)
    if len(liked):
        moved = moved + beta * liked.mean(axis=0)
    if len(disliked):
        moved = moved - gamma * disliked.mean(axis=0)
    if normalise:
        norm = float(np.linalg.norm(moved))
        if norm == 0.0 or not np.isfinite(norm):
            raise invalid("relevance: the weighted query, liked and disliked vectors cancel out")
        moved = moved / norm
    return moved.astype(np.float32)


class RecentSearches:
    """search id -> the query, for at most `capacity` searches and `ttl` seconds."""

    def __init__(self, capacity: int, ttl: float) -> None:
        self._capacity, self._ttl = capacity, ttl
        self._items: OrderedDict[str, RememberedSearch] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, search: RememberedSearch) -> str:
        search_id = os.urandom(16).hex()  # as unique as a uuid4, without building one
        with self._lock:
            self._items[search_id] = search
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return search_id

    def get(self, search_id: str) -> RememberedSearch | None:
        with self._lock:
            found = self._items.get(search_id)
            if found is not None and time.monotonic() - found.at > self._ttl:
                del self._items[search_id]
                return None
            return found


class ClickBoost:
    """Clicks per product per (space, query text), bounded (see FeedbackConfig)."""

    def __init__(self, queries: int, products: int) -> None:
        self._queries, self._products = queries, products
        self._clicks: OrderedDict[tuple[str, str], Counter[int]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(space: str, text: str) -> tuple[str, str]:
        return space, " ".join(text.lower().split())

    def click(self, space: str, text: str, product_id: int) -> None:
        key = self.key(space, text)
        with self._lock:
            counts = self._clicks.setdefault(key, Counter())
            self._clicks.move_to_end(key)
            counts[product_id] += 1
            if len(counts) > self._products:
                del counts[min(counts, key=counts.__getitem__)]
            while len(self._clicks) > self._queries:
                self._clicks.popitem(last=False)

    def clicks(self, space: str, text: str) -> dict[int, int]:
        with self._lock:
            return dict(self._clicks.get(self.key(space, text), {}))


class SearchFeedback:
    """The feedback hooks of the Search path (module docstring), shared by the
    SearchService (searches) and the FeedbackService (clicks for the boost)."""

    def __init__(self, config: FeedbackConfig | None = None) -> None:
        self.config = config or FeedbackConfig()
        self.recent = RecentSearches(self.config.remember_searches, self.config.remember_seconds)
        self.clicks = ClickBoost(self.config.boost_queries, self.config.boost_products) if self.config.boost_clicks \
            else None

    def remembered(self, request: search_pb2.SearchRequest) -> RememberedSearch | None:
        """The previous search a request builds on (relevance.search_id), or None."""
        search_id = request.relevance.search_id
        if not search_id:
            return None
        if request.HasField("query") or request.using:
            raise invalid("relevance.search_id replaces the query and its space: leave query and using unset")
        found = self.recent.get(search_id)
        if found is None:
            raise not_found(f"relevance.search_id: no remembered search {search_id!r} (searches are kept for "
                            f"{self.config.remember_seconds:g} s and at most {self.config.remember_searches})")
        return found

    def adjust(self, request: search_pb2.SearchRequest, collection: Collection, space: str, query: np.ndarray,
               clause: flt.Filter | None) -> tuple[np.ndarray, flt.Filter | None, search_pb2.RelevanceApplied | None]:
        """The query moved by the request's liked and disliked products, the filter
        that leaves them out of the hits, and what was applied (None: no feedback)."""
        if not request.HasField("relevance"):
            return query, clause, None
        rf, c = request.relevance, self.config
        if len(rf.liked_ids) + len(rf.disliked_ids) > c.max_rated:
            raise invalid(f"relevance: {len(rf.liked_ids) + len(rf.disliked_ids)} liked and disliked ids, "
                          f"at most {c.max_rated}")
        both = set(rf.liked_ids) & set(rf.disliked_ids)
        if both:
            raise invalid(f"relevance: ids both liked and disliked: {sorted(both)}")
        missing: list[int] = []
        liked, liked_vectors = _stored(collection, space, rf.liked_ids, missing)
        disliked, disliked_vectors = _stored(collection, space, rf.disliked_ids, missing)
        moved = rocchio(query, liked_vectors, disliked_vectors, c.alpha, c.beta, c.gamma,
                        normalise=collection.space(space).metric == "cosine")
        rated = [*liked, *disliked]
        exclude = bool(rated) and not rf.include_rated
        if exclude:
            left_out = flt.MustNot(flt.HasId(rated))
            clause = left_out if clause is None else flt.Must(clause, left_out)
        applied = search_pb2.RelevanceApplied(alpha=c.alpha, beta=c.beta, gamma=c.gamma, liked_used=len(liked),
                                              disliked_used=len(disliked), not_found_ids=missing,
                                              from_search_id=rf.search_id, rated_excluded=exclude)
        return moved, clause, applied

    def boost(self, space: str, text: str, ids: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The hits re-ordered with earlier clicks for the same text added to their
        scores (unchanged when the boost is off or nothing was clicked)."""
        if self.clicks is None or not text:
            return ids, scores
        clicks = self.clicks.clicks(space, text)
        if not clicks:
            return ids, scores
        bonus = np.array([np.log2(1 + clicks.get(i, 0)) for i in ids.tolist()], dtype=np.float32)
        boosted = scores + self.config.boost_weight * bonus
        order = np.argsort(-boosted, kind="stable")
        return ids[order], boosted[order]

    def remember(self, space: str, query: np.ndarray, text: str, exclude: int | None = None) -> str:
        """A new search id for this search, remembered for later feedback."""
        return self.recent.add(RememberedSearch(space, _kept(query), text, time.monotonic(), exclude))

    def boost_clicks(self, search_id: str, product_ids: Sequence[int]) -> list[BoostClick]:
        """What clicks on the hits of a search add to the boost: nothing when the
        boost is off or the search (with words) is no longer remembered."""
        if self.clicks is None:
            return []
        search = self.recent.get(search_id)
        if search is None or not search.text:
            return []
        return [BoostClick(search.space, ClickBoost.key(search.space, search.text)[1], int(p)) for p in product_ids]

    def count(self, clicks: Sequence[BoostClick]) -> None:
        """Adds ``clicks`` (from boost_clicks, or the feedback store at start) to the boost."""
        if self.clicks is not None:
            for click in clicks:
                self.clicks.click(click.space, click.text, click.product_id)


_FLOAT32 = np.dtype(np.float32)


def _kept(query: np.ndarray) -> np.ndarray:
    """The query vector as remembered. A float32 vector read from bytes of its own size (a
    request's packed vector) can neither change nor hold more memory alive: kept as it is.
    Any other is copied, so that a later write to its buffer is not remembered, nor a larger
    buffer it views (a batch of encoder outputs) kept alive."""
    base = query.base
    if type(base) is bytes and query.dtype == _FLOAT32 and len(base) == query.nbytes:
        return query
    return np.array(query, dtype=np.float32)


def _stored(collection: Collection, space: str, ids: Sequence[int], missing: list[int]) -> tuple[list[int], np.ndarray]:
    """The ids (first occurrences) that have a vector in `space`, and their
    vectors; the others are appended to `missing`. One id at a time, so a product
    deleted meanwhile is reported rather than failing the search."""
    found, rows = [], []
    for id_ in dict.fromkeys(ids):
        try:
            rows.append(collection.vectors(space, [id_])[0])
            found.append(id_)
        except UnknownIdError:
            missing.append(id_)
    dim = collection.space(space).dim
    return found, (np.stack(rows) if rows else np.empty((0, dim), np.float32))


def query_text(query: search_pb2.Query) -> str:
    """The words of a query ("" when it has none)."""
    kind = query.WhichOneof("kind")
    return query.text if kind == "text" else query.hybrid.text if kind == "hybrid" else ""

