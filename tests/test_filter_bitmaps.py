"""Match sets built as row bitmaps (predicate.h): a conjunction's clauses ANDed
a block of rows at a time, a range's rows from its column's value buckets
(columns.h), the rest checked on the rows left. They must equal the filter's
meaning on any store: values absent, tied at bucket edges, moved across them
one write at a time, cleared, ids forgotten and their rows reused by other ids,
saved and loaded; at every SIMD level. And the planner builds them this way
exactly when that costs less than listing the driver."""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import reference_matches
from lookalike import _core
from lookalike.index import AttributeStore, HasId, Is, Match, Must, MustNot, Range, Should

SCHEMA = {"category": "keyword", "price": "numeric", "in_stock": "bool", "added": "timestamp"}
HUGE = 10**12


def random_store(n: int, seed: int, dense_ids: bool):
    """Broad categories, prices with many ties (cents of a few dollars), some
    values absent; ids 0..n-1 (rows are ids) or spread out (they are not)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n) if dense_ids else rng.permutation(n) * 7 + 3
    store = AttributeStore(SCHEMA)
    categories = [list(rng.choice(["a", "b", "c", "rare"], rng.integers(0, 3), replace=False, p=[0.4, 0.3, 0.28, 0.02]))
                  for _ in range(n)]
    price = np.round(rng.uniform(0, 20, n) * 4) / 4
    stock = rng.random(n) < 0.7
    store.set(ids, {"category": categories,
                    "price": [float(p) if rng.random() < 0.9 else None for p in price],
                    "in_stock": [bool(s) if rng.random() < 0.95 else None for s in stock],
                    "added": rng.integers(0, 1000, n)})
    return store, ids


def write_row_by_row(store: AttributeStore, ids: np.ndarray, seed: int, steps: int = 12, fresh_ids: bool = True):
    """Small batches (the indexes kept up row by row): prices moved across
    bucket edges and past either end, cleared, ids forgotten and others taking
    their rows (new ids; or with fresh_ids False the same ones, each back in its
    own row, so rows stay ids), a run of ever larger timestamps (one bucket
    grows until it is cut again)."""
    rng = np.random.default_rng(seed + 1)
    live = list(ids)
    for step in range(steps):
        moved = rng.choice(live, 8, replace=False)
        store.set(moved, {"price": np.concatenate([np.round(rng.uniform(-2, 25, 6) * 4) / 4, [0.0, 20.0]])})
        store.clear(rng.choice(live, 2, replace=False), ["price"])
        gone = [int(i) for i in rng.choice(live, 3, replace=False)]
        store.clear(gone)
        live = [i for i in live if i not in gone]
        new = np.arange(3) + 10_000_000 + 3 * step if fresh_ids else np.array(gone[::-1])
        store.set(new, {"category": [["a"], ["b", "c"], []], "price": [5.0, 5.25, 30.0], "in_stock": [True, True, False],
                        "added": [5000 + step] * 3})
        live += [int(i) for i in new]
        store.set(rng.choice(live, 20, replace=False), {"added": 2000 + 40 * step + np.arange(20)})
    return np.array(sorted(live))


def bounds(lo: float, width: float, lo_kind: str, hi_kind: str) -> dict:
    out = {}
    if lo_kind:
        out[lo_kind] = lo
    if hi_kind:
        out[hi_kind] = lo + width
    return out or {"gte": lo}


prices = st.builds(lambda lo, w, a, b: Range("price", **bounds(lo, w, a, b)),
                   st.sampled_from([-1.0, 0.0, 0.25, 3.0, 7.5, 7.6, 12.25, 19.75, 20.0, 40.0]),
                   st.sampled_from([0.0, 0.25, 1.0, 5.0, 100.0]),
                   st.sampled_from(["gt", "gte", ""]), st.sampled_from(["lt", "lte", ""]))
broad = st.one_of(
    st.builds(lambda c: Match("category", values=c), st.lists(st.sampled_from(["a", "b", "c", "rare", "zzz"]),
                                                        min_size=1, max_size=3)),
    prices,
    st.builds(lambda lo, w: Range("added", gte=lo, lt=lo + w), st.integers(0, 2500), st.integers(0, 1500)),
    st.builds(Is, st.sampled_from(["in_stock"]), st.booleans()),
)
other = st.one_of(
    st.builds(lambda ids: HasId(ids), st.lists(st.integers(0, 30_000), min_size=1, max_size=30)),
    st.builds(lambda cs: Should(*cs), st.lists(broad, min_size=1, max_size=2)),
    st.builds(lambda cs: MustNot(*cs), st.lists(broad, min_size=1, max_size=2)),
)
conjunctions = st.one_of(
    broad,
    st.builds(lambda a, b: Must(*a, *b), st.lists(broad, min_size=1, max_size=3), st.lists(other, max_size=2)),
    st.builds(lambda a, b: Must(Must(*a), *b), st.lists(broad, min_size=1, max_size=2), st.lists(broad, max_size=2)),
)


def mentioned_ids(clause) -> list[int]:
    if isinstance(clause, HasId):
        return list(clause.ids)
    return [i for c in getattr(clause, "clauses", ()) for i in mentioned_ids(c)]


def check(store: AttributeStore, ids: np.ndarray, clause) -> dict:
    """The planner's match set equals the reference, at every SIMD level; returns the plan."""
    universe = np.union1d(ids, mentioned_ids(clause))
    attrs = {int(i): store.get(int(i)) for i in universe}
    expected = np.array([int(i) for i in universe if reference_matches(clause, attrs[int(i)], int(i))], dtype=np.int64)
    plans = []
    for level in _core.simd_levels():
        with _core.simd_level(level):
            plan = store.compile(clause).plan(HUGE)
        np.testing.assert_array_equal(plan["matches"], expected, err_msg=f"{level}: {clause!r} ({plan['built_by']})")
        assert plan["estimate"] == len(expected)
        plans.append(plan)
    return plans[0]


@pytest.fixture(scope="module", params=[True, False], ids=["rows-are-ids", "spread-ids"])
def stores(request, tmp_path_factory):
    """A store built whole, the same written row by row, and that one saved and loaded."""
    store, ids = random_store(6000, seed=3, dense_ids=request.param)
    written, written_ids = random_store(6000, seed=3, dense_ids=request.param)
    written_ids = write_row_by_row(written, written_ids, seed=3)
    kept, kept_ids = random_store(6000, seed=4, dense_ids=request.param)
    kept_ids = write_row_by_row(kept, kept_ids, seed=4, fresh_ids=False)
    path = tmp_path_factory.mktemp("bitmaps") / "store.bin"
    written.save(str(path))
    return [(store, ids), (written, written_ids), (kept, kept_ids), (AttributeStore.load(str(path)), written_ids)]


@settings(max_examples=40, deadline=None)
@given(clause=conjunctions, which=st.integers(0, 3))
def test_bitmap_match_sets_equal_the_reference(stores, clause, which):
    store, ids = stores[which]
    check(store, ids, clause)


def test_broad_conjunctions_are_built_as_bitmaps_on_every_store(stores):
    """The same checks on filters the planner surely builds as bitmaps (broad
    clauses: listing would cost a row each of thousands), at bucket edges."""
    clauses = [Must(Match("category", "a"), Range("price", gte=2.5, lt=12.25), Is("in_stock", True)),
               Must(Match("category", values=["a", "b"]), Range("price", gt=2.5, lte=12.25), Range("added", lt=300),
                    MustNot(Match("category", "c"))),
               Must(Range("price", gte=7.5, lte=15.0), Range("added", gte=100)),
               Must(Is("in_stock", False), Range("price", lt=20.0), Should(Match("category", values=["b", "rare"]), HasId([3, 10, 17]))),
               Range("price", gt=0.0)]
    for store, ids in stores:
        for clause in clauses:
            plan = check(store, ids, clause)
            assert plan["built_by"] == "bitmaps", clause


def test_the_planner_builds_by_bitmaps_only_when_cheaper():
    n = 20_000
    rng = np.random.default_rng(5)
    store = AttributeStore(SCHEMA)
    price = rng.uniform(0, 100, n)
    store.set(np.arange(n), {"category": [["broad"] if rng.random() < 0.5 else ["narrow"] for _ in range(n)],
                             "price": price, "in_stock": rng.random(n) < 0.8})
    # A broad category AND a wide window: listing ~10,000 rows, or ANDing 313 words a clause.
    wide = store.compile(Must(Match("category", "broad"), Range("price", gte=10, lt=60), Is("in_stock", True))).plan(HUGE)
    assert wide["built_by"] == "bitmaps" and wide["driver"] == int(((price >= 10) & (price < 60)).sum())
    assert wide["build"] < wide["driver"]
    # A window of ~20 rows drives: listing them is cheaper than any bitmap of the store.
    narrow = store.compile(Must(Match("category", "broad"), Range("price", gte=10, lt=10.1))).plan(HUGE)
    assert narrow["built_by"] == "listing" and narrow["build"] == narrow["driver"] < 50
    # A filter the bitmaps cannot hold (has_id alone, a should across ids) is listed.
    assert store.compile(Should(HasId([1, 2]), Match("category", "broad"))).plan(HUGE)["built_by"] == "listing"
    # build_limit bounds the cost, not the driver: a cheap bitmap of a long driver is built.
    assert store.compile(Must(Match("category", "broad"), Is("in_stock", True))).plan(2000)["built_by"] == "bitmaps"


def test_a_range_bitmap_stays_exact_when_values_arrive_at_one_end():
    """Timestamps: each new row's value past every other, so one bucket takes
    them all until it is cut again; values tied to an edge, and removed."""
    store = AttributeStore(SCHEMA)
    n = 5000
    store.set(np.arange(n), {"added": np.arange(n) // 3, "category": [["a"]] * n})
    for i in range(600):
        store.set([n + i], {"added": [n + i], "category": [["a"]]})
        if i % 50 == 0:
            store.clear([int(i) * 7], ["added"])
    ids = np.arange(n + 600)
    for lo, hi in ((0, 10**9), (n - 10, n + 300), (n + 599, n + 600), (1000, 1000), (1664, 1667)):
        plan = check(store, ids, Must(Match("category", "a"), Range("added", gte=lo, lte=hi)))
        assert plan["built_by"] in ("bitmaps", "listing")
    assert check(store, ids, Range("added", gte=0))["built_by"] == "bitmaps"


def test_value_buckets_cost_a_byte_a_row():
    n = 50_000
    store = AttributeStore({"price": "numeric"})
    store.set(np.arange(n), {"price": np.random.default_rng(0).uniform(0, 1, n)})
    per_row = store.memory_usage()["column_bytes"]["price"] / n
    # values 8 + present 1 + sorted entries 16 + bucket 1, plus a fixed 3 KB
    assert 26 <= per_row < 26 + 3


def test_bitmap_match_sets_see_each_row_by_row_write_whole():
    """A writer swaps the prices of 8 cheap and 8 dear rows a batch (kept up row
    by row: buckets and sorted index moved one write at a time) while match sets
    are built: each set sees a whole batch or none, so every group of 16 rows
    holds exactly 8 matches."""
    n = 4096
    ids = np.arange(n)
    store = AttributeStore(SCHEMA)
    cheap_price, dear_price = 1 + ids % 89 / 10, 10 + ids % 900 / 10  # below 10, and from 10 on
    store.set(ids, {"price": np.where(ids % 2 == 0, cheap_price, dear_price), "in_stock": np.ones(n, bool)})
    compiled = store.compile(Must(Range("price", lt=10.0), Is("in_stock", True)))
    stop, writes, bad = threading.Event(), [0], []

    def swap():
        rng = np.random.default_rng(0)
        while not stop.is_set() and writes[0] < 2000:
            group = ids[16 * rng.integers(0, n // 16):][:16]
            now = np.array([store.get(int(i))["price"] for i in group])
            store.set(group, {"price": np.where(now < 10, dear_price[group], cheap_price[group])})
            writes[0] += 1

    writer = threading.Thread(target=swap)
    writer.start()
    try:
        for _ in range(200):
            plan = compiled.plan(HUGE)
            counts = np.bincount(plan["matches"] // 16, minlength=n // 16)
            if plan["built_by"] != "bitmaps" or not (counts == 8).all():
                bad.append((plan["built_by"], counts))
    finally:
        stop.set()
        writer.join()
    assert writes[0] > 0 and not bad
