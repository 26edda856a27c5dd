"""AttributeStore: typed columns per id, set / update / clear, checks that change
nothing on bad input, memory, and save / load with damaged files refused."""

import datetime as dt

import numpy as np
import pytest

from lookalike.index import AttributeStore, HnswIndex, IndexFileError, Match, Range

SCHEMA = {"category": "keyword", "price": "numeric", "in_stock": "bool", "listed_at": "timestamp"}


@pytest.fixture
def store():
    s = AttributeStore(SCHEMA)
    s.set([1, 2, 3], {
        "category": [["women", "women/dresses"], "men", None],
        "price": [19.5, 80, None],
        "in_stock": [True, False, True],
        "listed_at": [1_700_000_000, None, dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)],
    })
    return s


def everything(s, ids):
    return {i: s.get(i) for i in ids}


def test_values_of_every_type_come_back(store):
    assert store.get(1) == {"category": ["women", "women/dresses"], "price": 19.5, "in_stock": True,
                            "listed_at": 1_700_000_000}
    assert store.get(2) == {"category": ["men"], "price": 80.0, "in_stock": False}
    assert store.get(3) == {"in_stock": True, "listed_at": 1_704_067_200}
    assert store.get(99) == {}
    assert len(store) == 3 and store.schema == SCHEMA


def test_updates_replace_only_the_named_attributes(store):
    store.set([2, 4], {"price": np.array([40.0, 5.0])})
    assert store.get(2) == {"category": ["men"], "price": 40.0, "in_stock": False}
    assert store.get(4) == {"price": 5.0}
    store.set([1], {"category": [["kids"]], "in_stock": [None]})
    assert store.get(1) == {"category": ["kids"], "price": 19.5, "listed_at": 1_700_000_000}


def test_clear_named_attributes_or_forget_the_id(store):
    store.clear([1, 2, 777], ["price"])
    assert "price" not in store.get(1) and "price" not in store.get(2) and len(store) == 3
    store.clear([1])
    assert store.get(1) == {} and len(store) == 2
    store.set([5], {"price": [1.0]})  # a freed row is reused cleanly
    assert store.get(5) == {"price": 1.0}
    with pytest.raises(KeyError, match="'colour'"):
        store.clear([2], ["colour"])


@pytest.mark.parametrize("ids, values, error, message", [
    ([4], {"colour": ["red"]}, KeyError, "unknown attribute 'colour'"),
    ([4], {"price": ["cheap"]}, TypeError, "'price' is numeric"),
    ([4], {"price": [float("nan")]}, ValueError, "finite"),
    ([4], {"price": np.array([np.inf])}, ValueError, "finite"),
    ([4], {"in_stock": [1]}, TypeError, "'in_stock' is bool"),
    ([4], {"listed_at": [1.5]}, TypeError, "'listed_at' is timestamp"),
    ([4], {"category": [[1, 2]]}, TypeError, "'category' is keyword"),
    ([4, 5], {"price": [1.0]}, ValueError, "1 values for 2 ids"),
    ([4, 4], {"price": [1.0, 2.0]}, ValueError, "twice"),
    ([-4], {"price": [1.0]}, ValueError, ">= 0"),
    ([4], {"price": np.array(["a"])}, TypeError, "dtype"),
])
def test_bad_input_is_refused_and_changes_nothing(store, ids, values, error, message):
    before = everything(store, range(8))
    # A good column first: it must not be applied either.
    with pytest.raises(error, match=message):
        store.set(ids, {"in_stock": [False] * len(ids), **values})
    assert everything(store, range(8)) == before


def test_schema_is_checked():
    with pytest.raises(ValueError, match="unknown type 'text'"):
        AttributeStore({"title": "text"})
    with pytest.raises(TypeError, match="non-empty"):
        AttributeStore({"": "bool"})


def test_small_and_large_batches_leave_the_same_index():
    """A batch above the upkeep limit rebuilds the postings and sorted arrays; a
    small one updates them in place. Both must count and list the same rows."""
    rng = np.random.default_rng(3)
    n = 500
    prices, cats = rng.uniform(0, 100, n), rng.choice(["a", "b", "c"], n)
    bulk, trickle = AttributeStore(SCHEMA), AttributeStore(SCHEMA)
    bulk.set(np.arange(n), {"price": prices, "category": list(cats)})
    for i in range(0, n, 7):
        trickle.set(np.arange(i, min(i + 7, n)), {"price": prices[i:i + 7], "category": list(cats[i:i + 7])})
    updated = rng.choice(n, 20, replace=False)
    for s in (bulk, trickle):
        s.set(updated[:10], {"price": np.full(10, 50.0)})
        for i in updated[10:]:
            s.set([i], {"price": [51.0], "category": ["d"]})
        s.clear(updated[:3], ["category"])
    prices[updated[:10]], prices[updated[10:]] = 50.0, 51.0
    cats = cats.astype(object)
    cats[updated[10:]] = "d"
    cats[updated[:3]] = None
    for clause, truth in ((Range("price", gte=50, lte=51), (prices >= 50) & (prices <= 51)),
                          (Range("price", gt=50, lt=75), (prices > 50) & (prices < 75)),
                          (Match("category", values=["a", "d"]), np.isin(cats, ["a", "d"]))):
        for s in (bulk, trickle):
            f = s.compile(clause)
            assert f.estimate() == truth.sum()
            assert [i for i in range(n) if f.allows(i)] == list(np.flatnonzero(truth))


def test_the_holders_of_a_keyword_are_listed_and_counted():
    """ids_with / count_with / value_counts follow sets, replacements and clears,
    for multi-valued keywords, in a batch past the upkeep limit and one id at a time."""
    rng = np.random.default_rng(5)
    n = 3000
    paths = {i: [f"c{i % 5}", f"c{i % 5}/{i % 3}"] for i in range(n)}
    s = AttributeStore(SCHEMA)
    s.set(np.arange(n), {"category": [paths[i] for i in range(n)]})
    for i in rng.choice(n, 40, replace=False).tolist():
        paths[i] = ["moved"]
        s.set([i], {"category": [["moved"]]})
    gone = rng.choice(n, 30, replace=False).tolist()
    s.clear(gone[:15], ["category"])
    s.clear(gone[15:])
    for i in gone:
        paths.pop(i, None)
    truth: dict[str, set[int]] = {}
    for i, words in paths.items():
        for w in words:
            truth.setdefault(w, set()).add(i)
    assert s.value_counts("category") == {w: len(ids) for w, ids in truth.items()}
    for w, ids in truth.items():
        assert set(s.ids_with("category", w).tolist()) == ids and s.count_with("category", w) == len(ids)
    assert len(s.ids_with("category", "never-seen")) == 0 and s.count_with("category", "never-seen") == 0
    with pytest.raises(KeyError, match="colour"):
        s.ids_with("colour", "red")
    with pytest.raises(TypeError, match="'price' is numeric, not keyword"):
        s.count_with("price", "10")


def test_memory_is_compact():
    n = 20_000
    s = AttributeStore(SCHEMA)
    rng = np.random.default_rng(0)
    s.set(np.arange(n), {"category": [["top", f"top/{i % 50}"] for i in range(n)],
                         "price": rng.lognormal(3, 1, n), "in_stock": rng.random(n) < 0.9,
                         "listed_at": rng.integers(0, 2**40, n)})
    m = s.memory_usage()
    assert set(m["column_bytes"]) == set(SCHEMA) and m["ids"] == n
    assert m["total_bytes"] == m["id_map_bytes"] + sum(m["column_bytes"].values())
    assert m["total_bytes"] / n < 160  # ~100 bytes a product for four attributes


def test_save_and_load_round_trip(tmp_path, store):
    store.set(np.arange(10, 200), {"price": np.arange(190.0), "category": [f"c{i % 7}" for i in range(190)]})
    store.clear([2])
    path = tmp_path / "attrs.lka"
    store.save(path)
    loaded = AttributeStore.load(path)
    ids = [1, 2, 3] + list(range(10, 200))
    assert everything(loaded, ids) == everything(store, ids)
    assert loaded.schema == SCHEMA and len(loaded) == len(store)
    clause = Range("price", lt=100)
    assert loaded.compile(clause).estimate() == store.compile(clause).estimate()
    loaded.set([2], {"category": ["c3"]})  # a loaded store keeps working
    assert loaded.compile(Match("category", "c3")).allows(2)


def test_damaged_truncated_and_foreign_files_are_refused(tmp_path, store):
    path = tmp_path / "attrs.lka"
    store.save(path)
    data = bytearray(path.read_bytes())
    damaged = tmp_path / "damaged.lka"
    data[-3] ^= 0x40
    damaged.write_bytes(bytes(data))
    with pytest.raises(IndexFileError, match="checksum"):
        AttributeStore.load(damaged)
    truncated = tmp_path / "truncated.lka"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(IndexFileError):
        AttributeStore.load(truncated)
    index_file = tmp_path / "index.lkl"
    index = HnswIndex(4)
    index.add([1], np.ones((1, 4), dtype=np.float32))
    index.save(index_file)
    with pytest.raises(IndexFileError, match="kind"):
        AttributeStore.load(index_file)
    with pytest.raises(FileNotFoundError):
        AttributeStore.load(tmp_path / "missing.lka")
