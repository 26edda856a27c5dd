"""Group graphs kept whole by the Collection: every live product holding a
grouped value is a member of its group in every HNSW space, through batches,
a value crossing the threshold, replaced and deleted products, save / load,
compaction and a change of configuration; filtered searches that walk a group
return the exact filtered top-k."""

import numpy as np
import pytest

from conftest import clustered, recall
from lookalike.index import Match, Must, Range
from lookalike.index.collection import Collection, SpaceConfig

DIM, N, BATCH, MIN_MEMBERS = 16, 3000, 750, 350
SCHEMA = {"category": "keyword", "price": "numeric", "in_stock": "bool"}


def space(name="clip", **kw):
    return SpaceConfig(name, DIM, storage="float32", rerank=None, M=8, ef_construction=64, **kw)


def path(i, shift=0):
    """A category path: top level c0..c3, and one of two sub-categories."""
    top = (i + shift) % 4
    return [f"c{top}", f"c{top}/{(i // 4) % 2}"]


class Catalog:
    """A collection with groups on "category" and the live products it should
    hold (id -> category path), written in batches."""

    def __init__(self, spaces=None, **kw):
        self.collection = Collection(spaces or [space()], SCHEMA, groups=["category"],
                                     group_min_members=MIN_MEMBERS, **kw)
        self.vectors = clustered(N + 400, DIM, seed=11)
        self.paths: dict[int, list[str]] = {}

    def upsert(self, ids, shift=0, seed=0):
        ids = np.asarray(ids)
        vectors = clustered(len(ids), DIM, seed=100 + seed) if seed else self.vectors[ids]
        self.vectors[ids] = vectors
        paths = [path(i, shift) for i in ids.tolist()]
        self.collection.upsert(ids, {name: vectors for name in self.collection.spaces},
                               {"category": paths, "price": ids.astype(float), "in_stock": ids % 3 > 0})
        self.paths.update(zip(ids.tolist(), paths))

    def delete(self, ids):
        self.collection.delete(ids)
        for i in ids:
            self.paths.pop(int(i))

    def holders(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {}
        for i, words in self.paths.items():
            for w in words:
                out.setdefault(w, set()).add(i)
        return out


def assert_groups_whole(catalog, space_name="clip"):
    """Every value held by min_members products has a group, and a walk of that
    group alone, wide enough for all of it, finds every live holder (a member
    missing from the group could not be found)."""
    index = catalog.collection.index(space_name)
    groups = index.groups
    for word, ids in catalog.holders().items():
        key = f"category={word}"
        if len(ids) >= catalog.collection.groups.min_members:
            assert key in groups, key
        if key not in groups:
            continue
        found, _, stats = index.search(np.ones(DIM, np.float32), len(ids), ef=groups[key] + len(ids),
                                       filter=catalog.collection.compile_filter(Match("category", word)),
                                       plan="group_graph", return_stats=True)
        # A walk that finds fewer than k is followed by an exact scan (fell_back): not here.
        assert stats.plan == "group_graph" and not stats.fell_back, key
        assert set(found.tolist()) == ids, key


@pytest.fixture(scope="module")
def catalog():
    """Four batches (top values cross the threshold at the second, sub-values at
    the fourth), then replaced products (some moved to another category) and deletes."""
    c = Catalog()
    c.upsert(np.arange(0, BATCH))
    assert c.collection.index("clip").groups == {}  # 187 or 188 a value: below the threshold
    c.upsert(np.arange(BATCH, 2 * BATCH))
    assert sorted(c.collection.index("clip").groups) == [f"category=c{t}" for t in range(4)]
    for lo in range(2 * BATCH, N, BATCH):
        c.upsert(np.arange(lo, lo + BATCH))
    c.upsert(np.arange(0, 300), shift=1, seed=1)      # replaced, in another category
    c.upsert(np.arange(300, 400), seed=2)             # replaced, same category
    c.upsert(np.arange(N, N + 400))                   # new
    c.delete(np.arange(1000, 1200))
    return c


def test_groups_hold_every_live_product_with_their_value(catalog):
    assert len(catalog.collection.index("clip").groups) == 12  # c0..c3 and their eight sub-categories
    assert_groups_whole(catalog)


def test_a_filtered_search_walking_a_group_returns_the_exact_filtered_top_k(catalog):
    collection = catalog.collection
    queries = clustered(40, DIM, seed=23)
    ids = np.array(sorted(catalog.paths))
    vectors = catalog.vectors[ids]
    for clause, keep in ((Match("category", "c2"), lambda i: "c2" in catalog.paths[i]),
                         (Must(Match("category", "c1"), Range("price", lt=2500)),
                          lambda i: "c1" in catalog.paths[i] and i < 2500)):
        allowed = np.array([keep(i) for i in ids.tolist()])
        found, truth = [], []
        for q in queries:
            hits = collection.search("clip", q, 10, filter=clause)
            assert hits.stats.plan == "group_graph", clause
            assert hits.stats.group_size >= allowed.sum()
            found.append(hits.ids)
            scores = np.where(allowed, vectors @ q, -np.inf)
            truth.append(ids[np.argsort(-scores, kind="stable")[:10]])
        assert recall(np.array(found), np.array(truth)) >= 0.95, clause


def test_save_load_and_compaction_keep_the_groups(catalog, tmp_path):
    collection = catalog.collection
    collection.save(tmp_path / "saved")
    loaded = Collection.load(tmp_path / "saved")
    assert loaded.groups == collection.groups
    assert loaded.index("clip").groups == collection.index("clip").groups
    assert collection.index("clip").deleted_count > 0
    loaded.compact("clip", tmp_path / "scratch")
    assert loaded.index("clip").deleted_count == 0
    reloaded = Catalog()
    reloaded.collection, reloaded.paths, reloaded.vectors = loaded, catalog.paths, catalog.vectors
    # Compacted, a group's members are exactly the live holders of its value.
    assert loaded.index("clip").groups == {f"category={w}": len(ids) for w, ids in catalog.holders().items()}
    assert_groups_whole(reloaded)
    loaded.upsert([N + 1000], {"clip": catalog.vectors[:1]}, {"category": [["c3"]]})
    assert loaded.index("clip").groups["category=c3"] == len(catalog.holders()["c3"]) + 1


def test_a_manifest_without_groups_loads_with_none(catalog, tmp_path):
    import json

    catalog.collection.save(tmp_path)
    manifest = json.loads((tmp_path / "collection.json").read_text())
    del manifest["groups"], manifest["group_min_members"]
    (tmp_path / "collection.json").write_text(json.dumps(manifest))
    loaded = Collection.load(tmp_path)
    assert loaded.groups.attributes == ()
    before = loaded.index("clip").groups
    loaded.upsert([N + 1001], {"clip": catalog.vectors[:1]}, {"category": [["c3"]]})
    assert loaded.index("clip").groups == before  # nothing kept: no attribute grouped


def test_configuring_groups_builds_and_drops_them(catalog):
    c = Catalog()
    c.collection = Collection([space()], SCHEMA)
    for lo in range(0, N, BATCH):
        c.upsert(np.arange(lo, lo + BATCH))
    assert c.collection.index("clip").groups == {}
    c.collection.configure_groups(["category"], 500)
    assert sorted(c.collection.index("clip").groups) == [f"category=c{t}" for t in range(4)]
    assert_groups_whole(c)
    c.upsert(np.arange(0, 50), shift=2, seed=3)
    assert_groups_whole(c)
    c.collection.configure_groups([])
    assert c.collection.index("clip").groups == {} and c.collection.groups.attributes == ()


def test_ivf_pq_spaces_are_skipped_and_every_hnsw_space_keeps_groups():
    c = Catalog([space("clip"), space("visual"), space("coarse", index="ivf_pq", nlist=4, pq_m=4)])
    for lo in range(0, 2 * BATCH, BATCH):
        c.upsert(np.arange(lo, lo + BATCH))
    for name in ("clip", "visual"):
        assert sorted(c.collection.index(name).groups) == [f"category=c{t}" for t in range(4)]
        assert_groups_whole(c, name)


@pytest.mark.parametrize("kw, message", [
    ({"groups": ["colour"]}, "groups: unknown attribute 'colour'"),
    ({"groups": ["price"]}, "groups: attribute 'price' is numeric"),
    ({"groups": ["category"], "group_min_members": 0}, "min_members must be a positive integer"),
])
def test_bad_group_configuration_is_refused_naming_it(kw, message):
    with pytest.raises(ValueError, match=message):
        Collection([space()], SCHEMA, **kw)
    with pytest.raises(ValueError, match=message):
        Collection([space()], SCHEMA).configure_groups(kw["groups"], kw.get("group_min_members", 10))
