"""Background compaction: once deleted vectors hold more than
`compact_deleted_fraction` of a space, the durable store's background thread
compacts it; memory drops, searches running meanwhile stay right, and the
reclaimed bytes are logged."""

import logging
import threading
import time

import numpy as np
import pytest

from conftest import exact_knn, recall
from lookalike.index.collection import Collection, SpaceConfig
from lookalike.service.config import DurabilityConfig
from lookalike.service.durable import DurableCollection
from lookalike.store.catalog import Catalog
from test_durable import SCHEMA, batch, open_store

# Index memory comes in segments of 4096 slots: compaction can only give back whole
# segments, so the test needs several.
N = 4 * 4096


def small_graph_store(data, **durability):
    """The spaces of test_durable with cheaper graphs: this test needs many vectors, not good links."""
    spaces = (SpaceConfig("clip", 8, M=8, ef_construction=32),
              SpaceConfig("visual", 4, metric="l2", storage="float32", rerank="", M=8, ef_construction=32))
    return DurableCollection(data, DurabilityConfig(fsync="never", **durability), Catalog(data / "catalog.sqlite3"),
                             new_collection=lambda: Collection(spaces, SCHEMA))


def test_deleting_half_is_compacted_in_the_background_while_searches_go_on(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lookalike.service")
    store = small_graph_store(tmp_path, snapshot_every_records=1, snapshot_every_seconds=60,
                              compact_deleted_fraction=0.3)
    for start in range(0, N, 4096):
        store.upsert(batch(range(start, start + 4096), seed=start))
    vectors = store.collection.vectors("clip", np.arange(N))
    memory_before = store.collection.memory_usage()["space_clip"]

    deleted = threading.Event()
    stop = threading.Event()
    problems, searches = [], [0]

    def search():
        rng = np.random.default_rng(0)
        while not stop.is_set() and searches[0] < 20_000:
            after_delete = deleted.is_set()
            hits = store.collection.search("clip", vectors[rng.integers(N)], 10)
            if len(hits.ids) != 10:
                problems.append(f"{len(hits.ids)} hits")
            if after_delete and (hits.ids % 2 == 0).any():
                problems.append(f"a deleted product came back: {hits.ids.tolist()}")
            searches[0] += 1

    searcher = threading.Thread(target=search)
    searcher.start()
    try:
        assert store.delete(list(range(0, N, 2))) == []
        deleted.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(store.collection.index(s).deleted_count for s in ("clip", "visual")):
            time.sleep(0.05)
        time.sleep(0.2)  # searches after the compaction too
    finally:
        stop.set()
        searcher.join(timeout=30)

    assert store.collection.index("clip").deleted_count == 0 and store.collection.index("visual").deleted_count == 0
    assert problems == [] and searches[0] > 0
    assert store.collection.memory_usage()["space_clip"] < 0.75 * memory_before
    assert f"compacted space 'clip': {N // 2} deleted vectors" in caplog.text and "bytes reclaimed" in caplog.text

    live = np.arange(1, N, 2)
    queries = vectors[live[:50]]
    found = np.stack([store.collection.search("clip", q, 10).ids for q in queries])
    truth = live[exact_knn(vectors[live], queries, 10)]
    assert recall(found, truth) > 0.9
    store.close()


def test_a_space_below_the_threshold_is_left_alone(tmp_path):
    store = open_store(tmp_path, compact_deleted_fraction=0.5)
    store.upsert(batch(range(100), seed=1))
    store.delete(list(range(30)))
    assert store.compact() == 0
    assert store.collection.index("clip").deleted_count == 30
    store.delete(list(range(30, 60)))
    assert store.compact() > 0
    assert store.collection.index("clip").deleted_count == 0 and len(store.collection) == 40
    store.close()


def test_the_threshold_must_be_a_fraction():
    with pytest.raises(ValueError, match="compact_deleted_fraction must be in"):
        DurabilityConfig(compact_deleted_fraction=0)
