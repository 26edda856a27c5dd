"""Group graphs (HnswIndex.link_group): a graph over the nodes that share a value
a filter requires. Its walk returns the exact filtered top-k where it can see
every member; the planner takes it for a broad category whose members lie away
from the query; it survives saving, compaction and writes during searches."""

import threading

import numpy as np
import pytest

from conftest import clustered
from lookalike.index import (AttributeStore, HnswIndex, Is, Match, Must, Range, SearchCancelled, Should, StopToken,
                             UnknownIdError)

SCHEMA = {"category": "keyword", "price": "numeric", "in_stock": "bool"}
DIM = 16


def catalog(n: int, seed: int):
    """Vectors in clusters; the category follows the clusters (as real
    categories follow the embedding), prices and stock do not."""
    vectors = clustered(n, DIM, seed=seed, clusters=20)
    rng = np.random.default_rng(seed)
    side = vectors[:, 0] > 0.2  # a region of the space
    category = np.where(side, "shoes", np.where(rng.random(n) < 0.5, "bags", "hats"))
    price = rng.uniform(0, 100, n)
    stock = rng.random(n) < 0.8
    store = AttributeStore(SCHEMA)
    store.set(np.arange(n), {"category": [[c] for c in category], "price": price, "in_stock": stock})
    return vectors, store, category, price, stock


def linked_index(vectors, category, groups=("shoes", "bags")):
    index = HnswIndex(DIM, M=8, ef_construction=64, seed=3)
    index.add(np.arange(len(vectors)), vectors)
    for name in groups:
        index.link_group(f"category={name}", np.flatnonzero(category == name))
    return index


@pytest.fixture(scope="module")
def small():
    vectors, store, category, price, stock = catalog(800, seed=4)
    return linked_index(vectors, category), store, vectors, category, price, stock


def exact(vectors, rows, q, k):
    return np.sort(1 - vectors[rows] @ q)[:k]


@pytest.mark.parametrize("clause, group, mask_of", [
    (Must(Match("category", "shoes"), Is("in_stock", True)), "shoes", lambda c, p, s: (c == "shoes") & s),
    (Must(Match("category", "bags"), Range("price", gte=20, lt=60), Is("in_stock", True)), "bags",
     lambda c, p, s: (c == "bags") & (p >= 20) & (p < 60) & s),
    (Match("category", "shoes"), "shoes", lambda c, p, s: c == "shoes"),
    # Nested: the required value sits under a must inside a must.
    (Must(Must(Match("category", "bags"), Range("price", lt=30)), Should(Is("in_stock", True), Range("price", lt=5))),
     "bags", lambda c, p, s: (c == "bags") & (p < 30) & (s | (p < 5))),
])
def test_the_group_walk_returns_the_exact_filtered_top_k(small, clause, group, mask_of):
    index, store, vectors, category, price, stock = small
    rows = np.flatnonzero(mask_of(category, price, stock))
    members = int((category == group).sum())
    for q in clustered(6, DIM, seed=11):
        # ef as large as the index: the walk sees every member it can reach, the fallback scan the rest.
        found, dists, stats = index.search(q, 10, ef=len(vectors), filter=store.compile(clause), plan="group_graph",
                                           return_stats=True)
        assert stats.plan == "group_graph" and stats.group_size == members
        assert 0 < stats.expansions == stats.tested <= stats.distances
        assert not stats.fell_back  # the walk itself reached every match: the group is connected
        np.testing.assert_allclose(dists, exact(vectors, rows, q, 10), rtol=1e-5, atol=1e-5)
        assert np.isin(found, rows).all()


def test_a_group_plan_needs_a_group_of_a_required_value(small):
    index, store, vectors, *_ = small
    for clause in (Match("category", "hats"), Range("price", lt=50), Match("category", values=["shoes", "bags"])):
        with pytest.raises(ValueError, match="no group graph"):
            index.search(vectors[0], 10, filter=store.compile(clause), plan="group_graph")


def test_the_group_walk_stops_when_cancelled(small):
    index, store, vectors, *_ = small
    token = StopToken()
    token.cancel()
    with pytest.raises(SearchCancelled):
        index.search(vectors[0], 10, filter=store.compile(Match("category", "shoes")), plan="group_graph", stop=token)


def test_the_planner_walks_the_group_of_a_broad_category_away_from_the_query():
    """A category that follows one region of the space, a price window keeping
    half of it, a query from elsewhere: the whole graph's walk would cross the
    other regions first; the planner walks the category's graph, and its
    recall holds. Where the filter keeps few members, it scans them."""
    vectors, store, category, price, stock = catalog(6000, seed=7)
    index = linked_index(vectors, category, groups=("shoes",))
    window = Must(Match("category", "shoes"), Range("price", gte=25, lt=75))
    rows = np.flatnonzero((category == "shoes") & (price >= 25) & (price < 75))
    queries = clustered(200, DIM, seed=8)
    queries = queries[queries[:, 0] < 0][:20]  # from the other side of the space
    hits = 0
    for q in queries:
        found, _, stats = index.search(q, 10, ef=32, filter=store.compile(window), return_stats=True)
        assert stats.plan == "group_graph" and stats.group_size == int((category == "shoes").sum())
        assert np.isin(found, rows).all()
        hits += len(np.intersect1d(found, rows[np.argsort(1 - vectors[rows] @ q)[:10]]))
    assert hits / (10 * len(queries)) >= 0.9
    narrow = Must(Match("category", "shoes"), Range("price", gte=25, lt=26))
    assert index.search(queries[0], 10, ef=32, filter=store.compile(narrow), return_stats=True).stats.plan == \
        "exact_scan"


def test_linking_is_all_or_nothing_and_skips_members():
    vectors, store, category, *_ = catalog(300, seed=5)
    index = linked_index(vectors, category, groups=())
    shoes = np.flatnonzero(category == "shoes")
    with pytest.raises(UnknownIdError):
        index.link_group("category=shoes", np.append(shoes, 10_000))
    assert index.groups == {}
    index.link_group("category=shoes", shoes[:10])
    index.link_group("category=shoes", np.concatenate([shoes, shoes[:5]]))  # members and repeats count once
    assert index.groups == {"category=shoes": len(shoes)}
    usage = index.memory_usage()
    # A member: its slot, a link block of 2M + 2 words, its (slot, member) pair.
    assert len(shoes) * (4 + 18 * 4 + 8) <= usage["group_bytes"] < usage["total_bytes"]
    with pytest.raises(ValueError, match="group key"):
        index.link_group("", shoes)
    assert index.drop_group("category=shoes") and not index.drop_group("category=shoes")
    assert index.groups == {}


def test_groups_are_saved_loaded_and_compacted(tmp_path, small):
    _, store, vectors, category, price, stock = small
    index = linked_index(vectors, category)
    clause = Must(Match("category", "shoes"), Range("price", lt=70))
    queries = clustered(5, DIM, seed=12)
    before = [index.search(q, 10, filter=store.compile(clause), plan="group_graph").ids for q in queries]
    index.save(tmp_path / "groups.lkl")
    loaded = HnswIndex.load(tmp_path / "groups.lkl")
    assert loaded.groups == index.groups
    for q, ids in zip(queries, before):
        np.testing.assert_array_equal(loaded.search(q, 10, filter=store.compile(clause), plan="group_graph").ids, ids)

    # Deleted members leave their group at compaction; the rest are found as before.
    shoes = np.flatnonzero(category == "shoes")
    gone = shoes[::3]
    loaded.delete(gone)
    loaded.compact()
    live = np.setdiff1d(np.arange(len(vectors)), gone)
    store = AttributeStore(SCHEMA)  # as a collection clears a deleted product's attributes
    store.set(live, {"category": [[c] for c in category[live]], "price": price[live]})
    assert loaded.groups["category=shoes"] == len(shoes) - len(gone)
    rows = np.setdiff1d(np.flatnonzero((category == "shoes") & (price < 70)), gone)
    for q in queries:
        _, dists, stats = loaded.search(q, 10, ef=len(vectors), filter=store.compile(clause), plan="group_graph",
                                        return_stats=True)
        assert stats.group_size == len(shoes) - len(gone) and not stats.fell_back
        np.testing.assert_allclose(dists, exact(vectors, rows, q, 10), rtol=1e-5, atol=1e-5)


def test_members_linked_during_searches_are_found_and_nothing_else_is():
    """A group grows while its walk runs: every search returns only matches,
    and once linked, the new members are found."""
    vectors, store, category, *_ = catalog(1200, seed=6)
    index = linked_index(vectors, category, groups=())
    shoes = np.flatnonzero(category == "shoes")
    index.link_group("category=shoes", shoes[:50])
    clause = store.compile(Match("category", "shoes"))
    stop, bad, searches = threading.Event(), [], [0]

    def search():
        rng = np.random.default_rng(0)
        while not stop.is_set():
            found = index.search(vectors[rng.integers(len(vectors))], 10, filter=clause, plan="group_graph").ids
            searches[0] += 1
            if not np.isin(found[found >= 0], shoes).all():
                bad.append(found)

    reader = threading.Thread(target=search)
    reader.start()
    try:
        for start in range(50, len(shoes), 40):
            index.link_group("category=shoes", shoes[start:start + 40], threads=2)
    finally:
        stop.set()
        reader.join()
    assert searches[0] > 0 and not bad
    assert index.groups == {"category=shoes": len(shoes)}
    for q in vectors[shoes[-5:]]:  # a late member is its own nearest match
        found = index.search(q, 1, ef=64, filter=clause, plan="group_graph").ids
        assert found[0] in shoes[-5:]
