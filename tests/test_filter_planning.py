"""Planning a filtered search costs time linear in the filter's size, however
deep it nests: each clause's list size is counted once per plan, and the list
of candidates follows the narrowest child of each must."""

import time

import numpy as np
import pytest

from lookalike.index import AttributeStore, HasId, HnswIndex, Match, Must, MustNot, Range, Should

N = 300  # the store of the report: 24 nested must levels on 300 products wedged a server


@pytest.fixture(scope="module")
def store():
    s = AttributeStore({"category": "keyword", "price": "numeric"})
    ids = np.arange(N)
    s.set(ids, {"category": [["a", "b", "c"][i % 3] for i in ids], "price": ids.astype(float)})
    return s


def nested(levels: int):
    """must(must(... must(category a, price < 200, category a) ..., price < 200, category a)):
    each level has three listable children, so a planner that recounts children
    on every level costs about 3^levels."""
    clause = Match("category", "a")
    for _ in range(levels):
        clause = Must(clause, Range("price", lt=200), Match("category", "a"))
    return clause


def test_a_deeply_nested_filter_plans_and_searches_at_once(store):
    expected = {i for i in range(200) if i % 3 == 0}
    index = HnswIndex(8, M=8, ef_construction=32)
    index.add(np.arange(N), np.random.default_rng(0).normal(size=(N, 8)).astype(np.float32))
    # 3^40 steps would never end; linear planning takes well under a millisecond.
    # The bound is only a guard against a hang, far above the real cost.
    started = time.perf_counter()
    compiled = store.compile(nested(40))
    assert set(compiled.candidates(10**9)) == expected
    ids, _, stats = index.search(np.ones(8, dtype=np.float32), 10, filter=compiled, return_stats=True)
    assert set(ids) <= expected and len(ids) == 10 and stats.plan == "exact_scan"
    assert time.perf_counter() - started < 10


def test_planning_grows_linearly_with_depth(store):
    # Count work rather than time: at 3x a level, 12 levels more would cost
    # 500,000 times more; linear planning costs about 4 times more for 4 times
    # the clauses. The median of repeats keeps a loaded machine's noise out.
    def plan_seconds(levels: int) -> float:
        compiled = store.compile(nested(levels))
        runs = []
        for _ in range(15):
            started = time.perf_counter()
            compiled.candidates(10**9)
            runs.append(time.perf_counter() - started)
        return float(np.median(runs))

    shallow, deep = plan_seconds(4), plan_seconds(16)
    assert deep < shallow * 100  # exponential: ~3^12 = 531,441 x


def test_candidates_follow_the_narrowest_clause_and_check_the_whole_filter(store):
    clause = Must(Match("category", values=["a", "b"]), Should(HasId([0, 1, 2, 3]), Range("price", gte=298)),
                  MustNot(Range("price", lt=1)))
    compiled = store.compile(clause)
    assert sorted(compiled.candidates(10**9)) == [1, 3, 298]
    # The must's narrowest child (the should: 4 ids + 2 in range) bounds what it must look at.
    assert compiled.candidates(5) is None
    assert compiled.candidates(6) is not None
    # Nothing listable (a must_not alone): the planner must walk.
    assert store.compile(MustNot(Match("category", "a"))).candidates(10**9) is None
