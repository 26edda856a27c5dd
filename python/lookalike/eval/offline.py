"""Offline evaluation: a labelled query set (eval/queries.py) run against a
search service, with the ranking metrics of eval/metrics.py per query kind.

Each query is searched twice: through the index as configured, and with an exact
scan (SearchParams.exact). The metrics of both, and the index's recall against
the exact answer (ANN recall@K), tell a model problem (exact results already
poor) from an index problem (exact fine, index missing what exact finds).

    from lookalike.client import Client
    with Client("127.0.0.1:50051") as client:
        report = evaluate(load_queries("queries.jsonl"), ClientSearcher(client), ks=(1, 5, 10))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from lookalike.eval.metrics import mean_metrics, query_metrics
from lookalike.eval.queries import KINDS, LabelledQuery


class EvalError(ValueError):
    """A query that could not be evaluated; the message names its line and id."""


class Searcher(Protocol):
    def search(self, query: LabelledQuery, k: int, exact: bool) -> list[int]:
        """The ids of the k best hits, best first."""

    def ids_with(self, attribute: str, value: str, using: str) -> set[int]:
        """Every product whose keyword attribute holds value."""


class ClientSearcher:
    """A Searcher over a lookalike server, through lookalike.client.Client."""

    def __init__(self, client, page: int = 100) -> None:
        self._client = client
        self._page = page
        self._stats = None

    def search(self, query: LabelledQuery, k: int, exact: bool) -> list[int]:
        from lookalike.v1 import search_pb2

        reply = self._client.search(
            image=query.image.read_bytes() if query.image else None, text=query.text, k=k, using=query.using,
            params=search_pb2.SearchParams(exact=exact))
        return [hit.id for hit in reply.hits]

    def ids_with(self, attribute: str, value: str, using: str) -> set[int]:
        """Pages through an exact filtered search of an arbitrary vector (its
        order does not matter); bounded by the server's max_results."""
        from lookalike.client import Filter
        from lookalike.v1 import filter_pb2, search_pb2

        if self._stats is None:
            self._stats = self._client.stats()
        name = using or self._stats.default_space
        dims = {s.name: s.dim for s in self._stats.spaces}
        if name not in dims:
            raise ValueError(f"unknown vector space {name!r} (the server has: {', '.join(dims)})")
        probe = np.zeros(dims[name], dtype=np.float32)
        probe[0] = 1.0
        match = Filter(must=[filter_pb2.Condition(match=filter_pb2.Match(attribute=attribute, value=value))])
        found: set[int] = set()
        token = ""
        while True:
            reply = self._client.search(vector=probe, k=self._page, using=name, filter=match, page_token=token,
                                        params=search_pb2.SearchParams(exact=True))
            found.update(hit.id for hit in reply.hits)
            token = reply.next_page_token
            if not token:
                return found


@dataclass
class QueryResult:
    query: LabelledQuery
    relevant: set[int]
    ranked: list[int]                  # the index's hits, best first (max K of them)
    exact_ranked: list[int]            # the exact scan's
    metrics: dict[str, float]          # of the index's hits: "precision@5", "mrr", ...
    exact_metrics: dict[str, float]
    ann_recall: dict[str, float]       # "ann_recall@K": the index's top K against the exact top K

    def as_dict(self) -> dict:
        return {"id": self.query.id, "line": self.query.line, "kind": self.query.kind,
                "relevant": len(self.relevant), "ranked": self.ranked, "exact_ranked": self.exact_ranked,
                "relevant_hits": [i in self.relevant for i in self.ranked],
                "metrics": self.metrics, "exact_metrics": self.exact_metrics, "ann_recall": self.ann_recall}


@dataclass
class KindSummary:
    queries: int
    metrics: dict[str, float]          # means over the kind's queries
    exact_metrics: dict[str, float]
    ann_recall: dict[str, float]


@dataclass
class EvalReport:
    ks: tuple[int, ...]
    results: list[QueryResult]
    by_kind: dict[str, KindSummary] = field(default_factory=dict)  # "image", "text", "hybrid", "all"

    def as_dict(self) -> dict:
        return {"ks": list(self.ks),
                "by_kind": {kind: vars(s) for kind, s in self.by_kind.items()},
                "queries": [r.as_dict() for r in self.results]}


def parse_ks(text: str) -> tuple[int, ...]:
    """"1,5,10" -> (1, 5, 10), checked."""
    try:
        ks = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(f"--k: a comma-separated list of integers, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise ValueError(f"--k: values must be >= 1, got {text!r}")
    return ks


def ann_recall(ranked: Sequence[int], exact: Sequence[int], k: int) -> float:
    """The share of the exact top k that the index's top k found (1 when the
    exact answer is empty: nothing to miss)."""
    truth = list(exact[:k])
    return len(set(ranked[:k]).intersection(truth)) / len(truth) if truth else 1.0


def evaluate(queries: Sequence[LabelledQuery], searcher: Searcher, ks: Sequence[int] = (1, 5, 10),
             category_attribute: str = "category", progress=None) -> EvalReport:
    """Runs every query (index and exact) and averages per kind. ``progress``,
    if given, is called with (done, total) after each query."""
    ks = tuple(sorted(set(ks)))
    depth = ks[-1]
    categories: dict[tuple[str, str], set[int]] = {}
    results = []
    for n, query in enumerate(queries, start=1):
        relevant = _relevant(query, searcher, category_attribute, categories)
        try:
            ranked = searcher.search(query, depth, exact=False)
            exact = searcher.search(query, depth, exact=True)
        except Exception as e:
            raise EvalError(f"line {query.line}: query {query.id!r} failed: {_message(e)}") from e
        results.append(QueryResult(
            query, relevant, ranked, exact, query_metrics(ranked, relevant, ks), query_metrics(exact, relevant, ks),
            {f"ann_recall@{k}": ann_recall(ranked, exact, k) for k in ks}))
        if progress is not None:
            progress(n, len(queries))
    report = EvalReport(ks, results)
    for kind in (*KINDS, "all"):
        mine = [r for r in results if kind in ("all", r.query.kind)]
        if mine:
            report.by_kind[kind] = KindSummary(len(mine), mean_metrics([r.metrics for r in mine]),
                                               mean_metrics([r.exact_metrics for r in mine]),
                                               mean_metrics([r.ann_recall for r in mine]))
    return report


def _relevant(query: LabelledQuery, searcher: Searcher, attribute: str,
              cache: dict[tuple[str, str], set[int]]) -> set[int]:
    if query.relevant_ids is not None:
        return set(query.relevant_ids)
    key = (query.relevant_category, query.using)
    if key not in cache:
        try:
            cache[key] = searcher.ids_with(attribute, query.relevant_category, query.using)
        except Exception as e:
            raise EvalError(f"line {query.line}: query {query.id!r}: listing the products of "
                               f"{attribute} = {query.relevant_category!r} failed: {_message(e)}") from e
    if not cache[key]:
        raise EvalError(f"line {query.line}: query {query.id!r}: no product has {attribute} = "
                         f"{query.relevant_category!r}, so nothing is relevant to it")
    return cache[key]


def _message(e: Exception) -> str:
    details = getattr(e, "details", None)  # a grpc.RpcError: its status and the server's message
    if callable(details):
        return f"{e.code().name}: {details()}"
    return str(e)
