"""Ranking metrics of one query: a ranked list of product ids against the set of
ids that are relevant to it (binary relevance).

Each function takes the ranking as returned by a search (best first, possibly
shorter than k) and the relevant ids; averaging over queries is the caller's
(`mean_metrics`). Conventions, chosen to match the usual IR definitions:
- Precision@K divides by K, not by the number returned: a search that returns
  fewer than K hits is charged for the missing ones.
- Recall@K divides by the number of relevant ids; a query with none is an input
  error, since every metric of it would be undefined.
- MRR uses the rank of the first relevant hit (0 when none is in the ranking).
- nDCG@K uses gain 1 per relevant hit and the log2(rank + 1) discount, normalised
  by the ideal ranking of min(K, |relevant|) relevant hits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["precision_at_k", "recall_at_k", "reciprocal_rank", "ndcg_at_k", "query_metrics", "mean_metrics"]


def _checked(ranked: Sequence[int], relevant: Iterable[int], k: int | None) -> tuple[list[int], set[int]]:
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    relevant_set = set(relevant)
    if not relevant_set:
        raise ValueError("a query needs at least one relevant id; its metrics are undefined without one")
    ranking = list(ranked)
    return (ranking if k is None else ranking[:k]), relevant_set


def precision_at_k(ranked: Sequence[int], relevant: Iterable[int], k: int) -> float:
    top, rel = _checked(ranked, relevant, k)
    return sum(1 for id in top if id in rel) / k


def recall_at_k(ranked: Sequence[int], relevant: Iterable[int], k: int) -> float:
    top, rel = _checked(ranked, relevant, k)
    return len(rel.intersection(top)) / len(rel)


def reciprocal_rank(ranked: Sequence[int], relevant: Iterable[int], k: int | None = None) -> float:
    top, rel = _checked(ranked, relevant, k)
    for rank, id in enumerate(top, start=1):
        if id in rel:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[int], relevant: Iterable[int], k: int) -> float:
    top, rel = _checked(ranked, relevant, k)
    seen: set[int] = set()
    dcg = 0.0
    for rank, id in enumerate(top, start=1):
        if id in rel and id not in seen:  # a repeated id earns no second gain
            dcg += 1.0 / math.log2(rank + 1)
        seen.add(id)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(rel)) + 1))
    return dcg / ideal


def query_metrics(ranked: Sequence[int], relevant: Iterable[int], ks: Sequence[int]) -> dict[str, float]:
    """Every metric of one query at every K in ks: keys like "precision@5", "mrr"."""
    rel = set(relevant)
    out: dict[str, float] = {"mrr": reciprocal_rank(ranked, rel)}
    for k in ks:
        out[f"precision@{k}"] = precision_at_k(ranked, rel, k)
        out[f"recall@{k}"] = recall_at_k(ranked, rel, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranked, rel, k)
    return out


def mean_metrics(per_query: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each metric over queries (all queries must carry the same keys)."""
    if not per_query:
        raise ValueError("no queries to average")
    keys = list(per_query[0])
    for i, m in enumerate(per_query):
        if list(m) != keys:
            raise ValueError(f"query {i} has metrics {sorted(m)}, the first has {sorted(keys)}")
    return {key: sum(m[key] for m in per_query) / len(per_query) for key in keys}
