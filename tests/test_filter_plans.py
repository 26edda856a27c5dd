"""The filtered-search planner on conjunctions: the driver is the cheapest
clause, the match count is measured from it (not assumed independent), match
sets hold exactly what the filter allows, every plan returns the exact filtered
top-k where it can see everything, and each plan stops and lets writers in."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import clustered, reference_matches
from lookalike.index import (AttributeStore, DeadlineExceeded, HasId, HnswIndex, Is, Match, Must, MustNot, Range,
                             SearchCancelled, Should, StopToken)

SCHEMA = {"category": "keyword", "price": "numeric", "in_stock": "bool"}
PLANS = ("exact_scan", "filtered_graph", "two_hop_graph")
HUGE = 10**9


def catalog_store(n: int, seed: int = 0):
    """A broad category (60%) and narrow ones, prices 0..100, 80% in stock."""
    rng = np.random.default_rng(seed)
    category = rng.choice(["broad", "narrow", "other"], n, p=[0.6, 0.05, 0.35])
    price = rng.uniform(0, 100, n)
    stock = rng.random(n) < 0.8
    store = AttributeStore(SCHEMA)
    store.set(np.arange(n), {"category": [[c] for c in category], "price": price, "in_stock": stock})
    return store, category, price, stock


def test_a_broad_category_with_a_narrow_range_drives_from_the_range():
    store, category, price, stock = catalog_store(5000)
    clause = Must(Match("category", "broad"), Range("price", gte=40, lt=41), Is("in_stock", True))
    in_range = int(((price >= 40) & (price < 41)).sum())
    matching = np.flatnonzero((category == "broad") & (price >= 40) & (price < 41) & stock)
    plan = store.compile(clause).plan(HUGE)
    assert plan["driver"] == in_range  # ~50 ids listed, not the category's ~3,000
    assert plan["estimate"] == len(matching)
    np.testing.assert_array_equal(plan["matches"], matching)
    # The clause order does not matter; a narrow category drives when it is the narrowest.
    assert store.compile(Must(Is("in_stock", True), Range("price", gte=40, lt=41),
                              Match("category", "broad"))).plan(HUGE)["driver"] == in_range
    narrow = Must(Match("category", "narrow"), Range("price", lt=90))
    assert store.compile(narrow).plan(HUGE)["driver"] == int((category == "narrow").sum())


def test_the_estimate_is_measured_on_the_driver_not_assumed_independent():
    # Cheap products sit in one category: independence would guess 30% x 30% = 9%.
    n = 20_000
    rng = np.random.default_rng(1)
    cheap = rng.random(n) < 0.3
    store = AttributeStore(SCHEMA)
    store.set(np.arange(n), {"category": [["budget"] if c else ["premium"] for c in cheap],
                             "price": np.where(cheap, rng.uniform(1, 10, n), rng.uniform(20, 100, n))})
    compiled = store.compile(Must(Match("category", "budget"), Range("price", lte=10)))
    truth = int(cheap.sum())
    assert compiled.estimate() < 0.4 * truth  # independence
    sampled = compiled.plan(0)  # too long to list: measured on a sample of the driver
    assert sampled["matches"] is None
    assert abs(sampled["estimate"] - truth) < 0.05 * truth


def test_match_sets_pick_their_form_by_density():
    store = AttributeStore(SCHEMA)
    dense_ids = np.arange(1000)
    spread_ids = np.arange(50) * 1_000_003 + 5000
    store.set(np.concatenate([dense_ids, spread_ids]), {"category": [["d"]] * 1000 + [["s"]] * 50})
    dense = store.compile(Match("category", "d")).plan(HUGE)
    spread = store.compile(Match("category", "s")).plan(HUGE)
    assert dense["form"] == "bitmap" and spread["form"] == "sorted"
    np.testing.assert_array_equal(dense["matches"], dense_ids)
    np.testing.assert_array_equal(spread["matches"], spread_ids)



def test_a_match_set_of_one_id_in_a_hundred_is_a_bitmap():
    """Clearing and scanning a bitmap over the ids' span costs less than sorting
    them, even at 1% of the ids: a bitmap, whose test is a bit, not a search."""
    store = AttributeStore(SCHEMA)
    ids = np.arange(20_000)
    store.set(ids, {"category": [["rare"] if i % 100 == 7 else ["common"] for i in ids]})
    plan = store.compile(Match("category", "rare")).plan(HUGE)
    assert plan["form"] == "bitmap"
    np.testing.assert_array_equal(plan["matches"], ids[ids % 100 == 7])


leaves = st.one_of(
    st.builds(lambda c: Match("category", c), st.sampled_from(["a", "b", "c", "g", "t", "zzz"])),
    st.builds(lambda lo, w: Range("price", gte=lo, lt=lo + w), st.floats(0, 100), st.floats(0, 60)),
    st.builds(Is, st.just("in_stock"), st.booleans()),
    st.builds(lambda ids: HasId(ids), st.lists(st.integers(0, 5000), min_size=1, max_size=20)),
)
trees = st.recursive(leaves, lambda inner: st.one_of(
    st.builds(lambda cs: Must(*cs), st.lists(inner, min_size=1, max_size=4)),
    st.builds(lambda cs: Should(*cs), st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda cs: MustNot(*cs), st.lists(inner, min_size=1, max_size=2)),
), max_leaves=6)


def mentioned_ids(clause) -> list[int]:
    if isinstance(clause, HasId):
        return list(clause.ids)
    return [i for c in getattr(clause, "clauses", ()) for i in mentioned_ids(c)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), seed=st.integers(0, 2**16), spread=st.sampled_from([1, 17, 100_003]), clause=trees)
def test_match_sets_equal_the_reference_evaluation(n, seed, spread, clause):
    rng = np.random.default_rng(seed)
    ids = np.arange(n) * spread
    store = AttributeStore(SCHEMA)
    store.set(ids, {"category": [list(rng.choice(["a", "b", "c"], rng.integers(0, 3), replace=False))
                                 for _ in range(n)],
                    "price": rng.uniform(0, 100, n), "in_stock": rng.random(n) < 0.6})
    plan = store.compile(clause).plan(HUGE)
    if plan["driver"] is None:  # nothing to list from (a must_not at the top): the walk tests each node
        assert plan["matches"] is None
        return
    # has_id allows its ids whether or not the store knows them.
    universe = np.union1d(ids, mentioned_ids(clause))
    expected = [int(i) for i in universe if reference_matches(clause, store.get(int(i)), int(i))]
    np.testing.assert_array_equal(plan["matches"], np.array(expected, dtype=np.int64))
    assert plan["estimate"] == len(expected) and plan["driver"] >= len(expected)


@pytest.fixture(scope="module")
def written_store():
    """A store past the size where dense posting lists are kept as bitmaps too
    (columns.h), written in one large batch (built whole) and then row by row:
    a category grown from sparse to dense, one thinned out to sparse, updates
    and deletes."""
    rng = np.random.default_rng(7)
    n = 6000
    ids = np.arange(n) * 3
    store = AttributeStore(SCHEMA)
    categories = [list(rng.choice(["a", "b", "c"], rng.integers(0, 3), replace=False)) for _ in range(n)]
    categories[:300] = [["t"]] * 300  # 5%: a bitmap, until it thins out below 1/64 of the rows
    store.set(ids, {"category": categories, "price": rng.uniform(0, 100, n), "in_stock": rng.random(n) < 0.6})
    for step in range(40):  # small batches: the index kept up row by row
        grow = rng.choice(ids, 20, replace=False)
        store.set(grow, {"category": [["g", "a"]] * 20})  # "g" passes 1/32 of the rows on the way
        store.set(ids[10 * step:10 * step + 10], {"category": [["c"]] * 10})  # "t" thins out
        moved = rng.choice(ids, 20, replace=False)
        store.set(moved, {"category": [["c"]] * 20, "in_stock": rng.random(20) < 0.5})
        store.clear(rng.choice(ids, 5, replace=False))
        new = np.arange(5) + 100_000 + 5 * step
        store.set(new, {"category": [["b", "g"]] * 5, "price": rng.uniform(0, 100, 5)})
    return store, np.union1d(ids, np.arange(100_000, 100_200))


@settings(max_examples=25, deadline=None)
@given(clause=trees)
def test_match_sets_and_tests_equal_the_reference_on_a_store_written_row_by_row(written_store, clause):
    store, ids = written_store
    universe = np.union1d(ids, mentioned_ids(clause))
    expected = np.array([int(i) for i in universe if reference_matches(clause, store.get(int(i)), int(i))],
                        dtype=np.int64)
    compiled = store.compile(clause)
    plan = compiled.plan(HUGE)
    if plan["driver"] is not None:
        np.testing.assert_array_equal(plan["matches"], expected)
    # One id at a time, as a walk tests the nodes it meets.
    np.testing.assert_array_equal(universe[[compiled.allows(int(i)) for i in universe]], expected)


@pytest.fixture(scope="module")
def small():
    n = 600
    vectors = clustered(n, 16, seed=5)
    index = HnswIndex(16, M=8, ef_construction=64, seed=3)
    index.add(np.arange(n), vectors)
    store, category, price, stock = catalog_store(n, seed=5)
    return index, store, vectors, category, price, stock


CONJUNCTIONS = {
    "broad": (Must(Match("category", "broad"), Is("in_stock", True)),
              lambda c, p, s: (c == "broad") & s),
    "window": (Must(Match("category", "broad"), Range("price", gte=20, lt=40), Is("in_stock", True)),
               lambda c, p, s: (c == "broad") & (p >= 20) & (p < 40) & s),
    "narrow": (Must(Match("category", "narrow"), Range("price", lt=50)),
               lambda c, p, s: (c == "narrow") & (p < 50)),
    "must_not": (MustNot(Match("category", "other")), lambda c, p, s: c != "other"),
}


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("name", CONJUNCTIONS)
def test_every_plan_returns_the_exact_filtered_top_k(small, plan, name):
    index, store, vectors, category, price, stock = small
    clause, mask_of = CONJUNCTIONS[name]
    rows = np.flatnonzero(mask_of(category, price, stock))
    k = 10
    for q in clustered(5, 16, seed=11):
        # ef as large as the index: a walk sees every node it can reach, and the
        # fallback scan covers what it cannot.
        found, dists, stats = index.search(q, k, ef=len(vectors), filter=store.compile(clause), plan=plan,
                                           return_stats=True)
        assert stats.plan == plan
        expected = np.sort(1 - vectors[rows] @ q)[:k]
        np.testing.assert_allclose(dists[:len(expected)], expected, rtol=1e-5, atol=1e-5)
        assert np.isin(found[:len(expected)], rows).all() and (found[len(expected):] == -1).all()


def test_a_scan_on_compressed_codes_re_ranks_to_the_exact_filtered_top_k(small):
    """The scan scores int8 codes and re-ranks its ef best on the float32 copies:
    with ef above the matches' count that is the exact answer."""
    _, store, vectors, category, price, stock = small
    index = HnswIndex(16, M=8, ef_construction=64, seed=3, storage="int8", rerank="float32")
    index.add(np.arange(len(vectors)), vectors)
    clause, mask_of = CONJUNCTIONS["window"]
    rows = np.flatnonzero(mask_of(category, price, stock))
    for q in clustered(5, 16, seed=12):
        _, dists, stats = index.search(q, 10, ef=len(rows), filter=store.compile(clause), plan="exact_scan",
                                       return_stats=True)
        assert stats.plan == "exact_scan" and stats.distances == len(rows)
        np.testing.assert_allclose(dists, np.sort(1 - vectors[rows] @ q)[:10], rtol=1e-5, atol=1e-5)


def test_the_planner_scans_few_matches_and_walks_many(small):
    index, store, vectors, category, price, stock = small
    few = index.search(vectors[0], 10, filter=store.compile(CONJUNCTIONS["narrow"][0]), return_stats=True).stats
    assert few.plan == "exact_scan" and few.matches == few.estimate == int(((category == "narrow") & (price < 50)).sum())
    many = index.search(vectors[0], 10, ef=16, filter=store.compile(MustNot(Match("category", "zzz"))),
                        return_stats=True).stats
    assert many.plan == "filtered_graph" and many.driver is None and many.tested > 0


def test_stats_count_the_nodes_each_walk_expands(small):
    """Every node a walk expands was scored first (the entry point aside); the
    filtered walk tests the filter once per node it expands; a scan expands none."""
    index, store, vectors, *_ = small
    clause = store.compile(CONJUNCTIONS["broad"][0])
    for q in clustered(3, 16, seed=13):
        plain = index.search(q, 10, ef=32, return_stats=True).stats
        assert 0 < plain.expansions <= plain.distances + 1
        walk = index.search(q, 10, ef=32, filter=clause, plan="filtered_graph", return_stats=True).stats
        assert 0 < walk.expansions == walk.tested <= walk.distances + 1
        two_hop = index.search(q, 10, ef=32, filter=clause, plan="two_hop_graph", return_stats=True).stats
        assert 0 < two_hop.expansions <= two_hop.distances + 1 and two_hop.tested >= two_hop.expansions
        assert index.search(q, 10, filter=clause, plan="exact_scan", return_stats=True).stats.expansions == 0


def test_the_planner_returns_the_exact_filtered_top_k_for_drivers_of_every_length():
    """Price windows whose lists run from below the length the planner lists at
    once (a few per distance of a walk) to past the length at which a scan of
    all of them still beats every walk (listed whole at once, not sampled
    first), and on to walks: whichever plan runs, with a small ef, the scans
    return exactly the filtered top-k, and every plan only matches."""
    n, k = 4000, 5
    vectors = clustered(n, 16, seed=21)
    index = HnswIndex(16, M=8, ef_construction=48, seed=3)
    index.add(np.arange(n), vectors)
    store, category, price, stock = catalog_store(n, seed=21)
    plans = set()
    for width in (0.2, 1, 2, 4, 4.2, 4.4, 4.6, 5, 8, 30, 90):
        clause = Must(Range("price", gte=5, lt=5 + width), Is("in_stock", True))
        rows = np.flatnonzero((price >= 5) & (price < 5 + width) & stock)
        for q in clustered(4, 16, seed=22):
            found, dists, stats = index.search(q, k, ef=k, filter=store.compile(clause), return_stats=True)
            plans.add(stats.plan)
            assert np.isin(found[found >= 0], rows).all()
            if stats.plan == "exact_scan":
                assert stats.matches == len(rows)
                np.testing.assert_allclose(dists[:len(rows)], np.sort(1 - vectors[rows] @ q)[:k], rtol=1e-5,
                                           atol=1e-5)
    assert plans == {"exact_scan", "filtered_graph"}


@pytest.mark.parametrize("plan", PLANS)
def test_each_plan_stops_when_cancelled(small, plan):
    index, store, vectors, *_ = small
    token = StopToken()
    token.cancel()
    with pytest.raises(SearchCancelled):
        index.search(vectors[0], 10, filter=store.compile(CONJUNCTIONS["window"][0]), plan=plan, stop=token)


def test_listing_the_driver_stops_when_cancelled_or_late():
    """The planner's listing of the matches looks at the stop token too, not
    only the scan or walk after it."""
    store, *_ = catalog_store(5000)
    compiled = store.compile(CONJUNCTIONS["window"][0])
    assert compiled.plan(HUGE, stop=StopToken())["matches"] is not None  # a live token lists as before
    cancelled = StopToken()
    cancelled.cancel()
    with pytest.raises(SearchCancelled):
        compiled.plan(HUGE, stop=cancelled)
    with pytest.raises(DeadlineExceeded):
        compiled.plan(HUGE, stop=StopToken(timeout=0.0))


@pytest.mark.parametrize("plan", PLANS)
def test_writes_during_filtered_searches_are_seen_whole_or_not_at_all(plan):
    """Each plan reads one state of the store: a search's match set is built
    under the store's read lock and its results all come from that state."""
    n = 800
    vectors = clustered(n, 16, seed=9)
    index = HnswIndex(16, M=8)
    index.add(np.arange(n), vectors)
    store = AttributeStore(SCHEMA)
    evens = np.arange(n) % 2 == 0
    store.set(np.arange(n), {"in_stock": evens, "price": np.full(n, 5.0)})
    f = store.compile(Must(Range("price", lt=10), Is("in_stock", True)))
    stop, bad, writes = threading.Event(), [], [0]

    def flip():
        state = evens
        while not stop.is_set():
            state = ~state
            store.set(np.arange(n), {"in_stock": state})
            writes[0] += 1

    writer = threading.Thread(target=flip)
    writer.start()
    try:
        for q in vectors[:100]:
            found = index.search(q, 10, filter=f, plan=plan).ids
            if len(set(found % 2)) != 1 or (found < 0).any():
                bad.append(found)
    finally:
        stop.set()
        writer.join()
    assert writes[0] > 0 and not bad
