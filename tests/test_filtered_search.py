"""Filtered search over attributes: only matching ids come back, k of them
whenever k match, the planner's choice shows in the stats, and deletes, updates,
concurrent writes and persistence keep it all true."""

import math
import threading

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from conftest import clustered, exact_knn, recall, reference_matches
from lookalike.index import AttributeStore, HasId, HnswIndex, IdFilter, Is, Match, Must, MustNot, Range, Should

N, DIM = 4000, 32
SCHEMA = {"category": "keyword", "price": "numeric", "in_stock": "bool", "listed_at": "timestamp"}


@pytest.fixture(scope="module")
def catalog():
    """An index and its attributes: 20 categories under 4 parents, Zipf-like in
    size, log-normal prices, 90% in stock. Ids are row * 10 + 5."""
    rng = np.random.default_rng(17)
    vectors = clustered(N + 50, DIM, seed=17)
    base, queries = vectors[:N], vectors[N:]
    ids = np.arange(N) * 10 + 5
    weights = 1.0 / np.arange(1, 21)
    leaf = rng.choice(20, N, p=weights / weights.sum())
    store = AttributeStore(SCHEMA)
    store.set(ids, {"category": [[f"p{c % 4}", f"p{c % 4}/c{c}"] for c in leaf],
                    "price": np.round(rng.lognormal(3.5, 0.8, N), 2),
                    "in_stock": rng.random(N) < 0.9,
                    "listed_at": rng.integers(1_600_000_000, 1_700_000_000, N)})
    index = HnswIndex(DIM, M=12, ef_construction=100, ef_search=48, seed=1)
    index.add(ids, base)
    attrs = [store.get(int(i)) for i in ids]
    return index, store, base, queries, ids, attrs


def truth(catalog, clause, k=10):
    """The exact filtered answer: ids of the k nearest matching rows per query."""
    _, _, base, queries, ids, attrs = catalog
    rows = np.array([r for r in range(N) if reference_matches(clause, attrs[r], int(ids[r]))], dtype=np.int64)
    if len(rows) == 0:
        return rows, np.empty((len(queries), 0), dtype=np.int64)
    return rows, ids[rows[exact_knn(base[rows], queries, min(k, len(rows)))]]


CLAUSES = {
    "match": Match("category", "p1/c5"),
    "match_any": Match("category", values=["p0/c4", "p2/c6", "p3/c19"]),
    "range": Range("price", gte=20, lt=25),
    "timestamp": Range("listed_at", gt=1_690_000_000),
    "is": Is("in_stock", False),
    "has_id": HasId(np.arange(N)[::97] * 10 + 5),
    "nested": Must(Match("category", "p0"), Should(Range("price", lt=15), Is("in_stock", False)),
                   MustNot(Range("listed_at", lt=1_620_000_000))),
    "broad": Must(Is("in_stock", True), MustNot(Match("category", "p3/c3"))),
}


@pytest.mark.parametrize("name", CLAUSES)
def test_results_match_the_filter_and_the_exact_filtered_answer(catalog, name):
    index, store, _, queries, _, _ = catalog
    clause = CLAUSES[name]
    rows, expected = truth(catalog, clause)
    found, _, stats = index.search(queries, 10, filter=store.compile(clause), return_stats=True)
    allowed = set(int(i) for i in catalog[4][rows])
    assert all(int(i) in allowed for i in found[found >= 0])
    assert ((found >= 0).sum(axis=1) == min(10, len(rows))).all()
    if stats[0].plan != "exact_scan":
        assert recall(found, expected) >= 0.95
        return
    # A scan of many matches estimates them on their sketches and reads the
    # vectors their bounds cannot rule out: exact where the bounds hold (all
    # but a share of ~5% of estimates at the default width), and always
    # exact with an unbounded width.
    assert recall(found, expected) >= 0.99
    unbounded = index.search(queries, 10, filter=store.compile(clause), bound_sigmas=math.inf)
    assert recall(unbounded.ids, expected) == 1.0


def test_the_planner_scans_when_few_match_and_walks_when_many_do(catalog):
    index, store, _, queries, _, _ = catalog
    narrow = store.compile(Must(Match("category", "p1/c5"), Range("price", lt=40)))
    _, _, s = index.search(queries[0], 10, filter=narrow, return_stats=True)
    assert s.plan == "exact_scan" and 0 < s.estimate < 200 and s.ef == 0 and s.distances <= s.estimate * 3
    wide = store.compile(Is("in_stock", True))
    _, _, s = index.search(queries[0], 10, filter=wide, return_stats=True)
    assert s.plan == "filtered_graph" and abs(s.estimate - 0.9 * N) < 0.05 * N
    # The walk admits ef x selectivity, at least 4 x k and at most ef.
    assert s.ef == max(4 * 10, int(48 * s.estimate / N)) and 0 < s.distances < N
    _, _, s = index.search(queries[0], 10, return_stats=True)
    assert (s.plan, s.estimate, s.ef) == ("graph", None, 48) and s.distances > 0
    ids, dists = index.search(queries[0], 10, filter=wide)  # without stats: still a pair
    assert ids.shape == dists.shape == (10,)


def test_id_filters_are_planned_too(catalog):
    index, _, _, queries, ids, _ = catalog
    _, _, s = index.search(queries[0], 5, filter=IdFilter(ids[:30]), return_stats=True)
    assert (s.plan, s.estimate) == ("exact_scan", 30)
    _, _, s = index.search(queries[0], 5, filter=IdFilter(ids[:30], exclude=True), return_stats=True)
    assert (s.plan, s.estimate) == ("filtered_graph", None)


def test_fewer_matches_than_k_are_all_returned_then_padded(catalog):
    index, store, _, queries, ids, _ = catalog
    f = store.compile(HasId(ids[[3, 900, 2500]]))
    found = index.search(queries[:4], 10, filter=f).ids
    assert (np.sort(found[:, :3], axis=1) == np.sort(ids[[3, 900, 2500]])).all() and (found[:, 3:] == -1).all()
    nothing = store.compile(Match("category", "no-such-category"))
    assert (index.search(queries[0], 10, filter=nothing).ids == -1).all()


def test_deleted_products_never_return_and_updates_apply_at_once():
    vectors = clustered(600, 16, seed=4)
    index = HnswIndex(16, M=8, ef_construction=60)
    index.add(np.arange(600), vectors)
    store = AttributeStore(SCHEMA)
    store.set(np.arange(600), {"category": ["a" if i % 5 == 0 else "b" for i in range(600)]})
    a, b = Match("category", "a"), Match("category", "b")
    nearest_a = index.search(vectors[0], 10, filter=store.compile(a)).ids
    index.delete(nearest_a[:5])  # their attributes remain
    for clause in (a, Should(a, b)):  # an exact scan and a graph walk
        found = index.search(vectors[0], 10, filter=store.compile(clause)).ids
        assert not np.isin(found, nearest_a[:5]).any() and (found >= 0).all()
    store.set([1, 2, 3], {"category": ["a", "a", "a"]})  # now in, and 0 out
    store.set([0], {"category": ["b"]})
    f = store.compile(a)
    assert [index.search(vectors[i], 1, filter=f).ids[0] for i in (1, 2, 3)] == [1, 2, 3]
    assert 0 not in index.search(vectors[0], 10, filter=f).ids
    index.upsert([1], -vectors[1])  # a new vector, same attributes
    assert index.search(-vectors[1], 1, filter=store.compile(a)).ids[0] == 1
    store.clear([2])  # no attributes: no longer matches
    assert 2 not in index.search(vectors[2], 10, filter=store.compile(a)).ids


def test_index_and_attributes_survive_save_and_load(tmp_path, catalog):
    index, store, _, queries, _, _ = catalog
    index.save(tmp_path / "index.lkl")
    store.save(tmp_path / "attrs.lka")
    index2, store2 = HnswIndex.load(tmp_path / "index.lkl"), AttributeStore.load(tmp_path / "attrs.lka")
    for clause in (CLAUSES["nested"], CLAUSES["broad"]):
        a = index.search(queries, 10, filter=store.compile(clause))
        b = index2.search(queries, 10, filter=store2.compile(clause))
        np.testing.assert_array_equal(a.ids, b.ids)


def test_writes_during_searches_are_seen_whole_or_not_at_all():
    """A search holds the store still: its results come from one state of it."""
    vectors = clustered(800, 16, seed=9)
    index = HnswIndex(16, M=8)
    index.add(np.arange(800), vectors)
    store = AttributeStore(SCHEMA)
    evens = np.arange(800) % 2 == 0
    store.set(np.arange(800), {"in_stock": evens})
    f = store.compile(Is("in_stock", True))
    stop, bad = threading.Event(), []

    def flip():
        state = evens
        while not stop.is_set():
            state = ~state
            store.set(np.arange(800), {"in_stock": state})

    writer = threading.Thread(target=flip)
    writer.start()
    try:
        for q in vectors[:150]:
            found = index.search(q, 10, filter=f).ids
            parity = set(found % 2)
            if len(parity) != 1 or len(found[found >= 0]) != 10:
                bad.append(found)
    finally:
        stop.set()
        writer.join()
    assert not bad


def test_search_refuses_an_uncompiled_clause(catalog):
    index, _, _, queries, _, _ = catalog
    with pytest.raises(TypeError, match="compile it"):
        index.search(queries[0], 10, filter=Is("in_stock", True))


# --- property: filtered search == the exact filtered answer on small random sets ----

small_clauses = st.one_of(
    st.builds(lambda c: Match("category", c), st.sampled_from(["a", "b", "c", "d"])),
    st.builds(lambda lo, w: Range("price", gte=lo, lt=lo + w), st.floats(0, 100), st.floats(0, 100)),
    st.builds(Is, st.just("in_stock"), st.booleans()),
    st.builds(HasId, st.lists(st.integers(0, 400), min_size=1, max_size=30)),
)
small_trees = st.recursive(small_clauses, lambda inner: st.one_of(
    st.builds(lambda cs: Must(*cs), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda cs: Should(*cs), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda cs: MustNot(*cs), st.lists(inner, min_size=1, max_size=2)),
), max_leaves=5)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(20, 400), seed=st.integers(0, 2**16), k=st.integers(1, 15), clause=small_trees)
def test_filtered_search_agrees_with_the_exact_filtered_answer(n, seed, k, clause):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    index = HnswIndex(8, "l2", M=6, ef_construction=40, ef_search=16)
    index.add(np.arange(n), vectors)
    deleted = rng.choice(n, n // 10, replace=False)
    index.delete(deleted)
    store = AttributeStore(SCHEMA)
    store.set(np.arange(n), {"category": list(rng.choice(["a", "b", "c", "d"], n)),
                             "price": rng.uniform(0, 200, n), "in_stock": rng.random(n) < 0.7})
    live = np.setdiff1d(np.arange(n), deleted)
    matching = np.array([i for i in live if reference_matches(clause, store.get(int(i)), int(i))], dtype=np.int64)
    query = rng.standard_normal(8).astype(np.float32)
    found, dists, stats = index.search(query, k, filter=store.compile(clause), return_stats=True)
    event(stats.plan)  # both plans are exercised (see --hypothesis-show-statistics)
    hits = found[found >= 0]
    assert np.isin(hits, matching).all()  # never a product that fails the filter, nor a deleted one
    assert len(hits) == min(k, len(matching))  # k whenever k match
    if len(matching) and stats.plan == "exact_scan":
        # A walk is approximate (its recall is checked over many queries above); a scan is exact.
        exact = matching[np.argsort(((vectors[matching] - query) ** 2).sum(1), kind="stable")[:k]]
        np.testing.assert_allclose(dists[:len(hits)], np.sort(((vectors[exact] - query) ** 2).sum(1)),
                                   rtol=1e-4, atol=1e-4)
