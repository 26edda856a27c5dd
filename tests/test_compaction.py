"""Background compaction: once deleted vectors hold more than
`compact_deleted_fraction` of a space, the durable store's background thread
compacts it; memory drops, searches running meanwhile stay right, and the
reclaimed bytes are logged. Each space keeps its index kind (IVF-PQ trained or
not), and a compaction, snapshot or sweep that fails is counted and skipped
without stopping the others."""

import logging
import shutil
import threading
import time

import numpy as np
import pytest

from conftest import clustered, exact_knn, recall
from lookalike.index import Range
from lookalike.index.collection import Collection, SpaceConfig
from lookalike.index.ivf_space import IvfPqSpace
from lookalike.service.config import DurabilityConfig
from lookalike.service.durable import DurableCollection
from lookalike.service.observability import Metrics
from lookalike.store.catalog import Catalog
from lookalike.store.records import UpsertBatch
from test_durable import SCHEMA, SPACES, batch, open_store

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


def ivf_pq_store(data, metrics=None, **durability):
    """A trained IVF-PQ space ("trained": it trains at 400 vectors) and one that
    stays an untrained buffer ("buffer": 32 x 64 cells to train on)."""
    spaces = (SpaceConfig("trained", 32, index="ivf_pq", nlist=16, pq_m=8, nprobe=16, rerank_k=200, train_size=400),
              SpaceConfig("buffer", 8, index="ivf_pq", nlist=64, pq_m=4))
    config = DurabilityConfig(fsync="never", **durability)
    return DurableCollection(data, config, Catalog(data / "catalog.sqlite3"), metrics=metrics,
                             new_collection=lambda: Collection(spaces, SCHEMA))


def ivf_batch(ids):
    ids = np.asarray(ids, dtype=np.int64)
    return UpsertBatch(ids=ids, vectors={"trained": clustered(1000, 32, seed=11)[ids],
                                         "buffer": clustered(1000, 8, seed=12)[ids]},
                       attributes={"price": ids.astype(float).tolist()},
                       titles=[f"title {i}" for i in ids], image_uris=[""] * len(ids))


def wait_for(condition, seconds=20):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def store_with_metrics(data, metrics, **durability):
    """test_durable's store, snapshotting after every write, failures counted in ``metrics``."""
    config = DurabilityConfig(fsync="never", snapshot_every_records=1, snapshot_every_seconds=60, **durability)
    return DurableCollection(data, config, Catalog(data / "catalog.sqlite3"), metrics=metrics,
                             new_collection=lambda: Collection(SPACES, SCHEMA))


def test_ivf_pq_spaces_compact_into_themselves_and_the_snapshots_go_on(tmp_path):
    metrics = Metrics()
    store = ivf_pq_store(tmp_path, metrics, snapshot_every_records=8, snapshot_every_seconds=60,
                         compact_deleted_fraction=0.3, segment_bytes=4096)
    for start in range(0, 600, 100):
        store.upsert(ivf_batch(range(start, start + 100)))
    trained, buffer = store.collection.index("trained"), store.collection.index("buffer")
    assert trained.trained and not buffer.trained
    store.delete(list(range(0, 600, 2)))
    queries = {"trained": clustered(1000, 32, seed=11)[900:920], "buffer": clustered(1000, 8, seed=12)[900:920]}
    before = {space: [store.collection.search(space, q, 10, filter=Range("price", lt=500)) for q in qs]
              for space, qs in queries.items()}
    assert trained.deleted_count == 300 and buffer.deleted_count == 300

    # The 8th write wakes the background thread: compaction, then a snapshot that trims the log.
    store.upsert(ivf_batch([700]))
    assert wait_for(lambda: store.last_snapshot_seq == store.applied_seq)
    for space, was_trained in (("trained", True), ("buffer", False)):
        index = store.collection.index(space)
        assert isinstance(index, IvfPqSpace) and index.trained == was_trained and index.deleted_count == 0
        for q, hits in zip(queries[space], before[space]):
            again = store.collection.search(space, q, 10, filter=Range("price", lt=500))
            np.testing.assert_array_equal(again.ids, hits.ids)
            np.testing.assert_allclose(again.scores, hits.scores, atol=1e-6)
    assert metrics.registry.get_sample_value("lookalike_compaction_failures_total", {"space": "trained"}) is None
    first_segment = min(int(p.stem[4:]) for p in (tmp_path / "wal").iterdir())
    assert first_segment > 1  # the log was trimmed
    assert list((tmp_path / "compacting").iterdir()) == []
    store.close()

    store = ivf_pq_store(tmp_path)  # the snapshot holds both kinds as they were
    assert store.collection.index("trained").trained and not store.collection.index("buffer").trained
    assert len(store.collection) == 301 and 0 not in store.collection and 1 in store.collection
    store.close()


def test_a_failing_compaction_is_counted_and_skipped_and_the_snapshot_still_runs(tmp_path, caplog):
    metrics = Metrics()
    store = store_with_metrics(tmp_path, metrics, compact_deleted_fraction=0.3)
    store.upsert(batch(range(100), seed=1))
    assert wait_for(lambda: store.last_snapshot_seq == store.applied_seq)
    (tmp_path / "compacting").write_text("a file where the scratch folder goes")  # compaction cannot save there
    store.delete(list(range(50)))

    assert wait_for(lambda: store.last_snapshot_seq == store.applied_seq)
    # The first space failed, its leftover (the file) went, so the second one compacted.
    assert metrics.registry.get_sample_value("lookalike_compaction_failures_total", {"space": "clip"}) == 1
    assert store.collection.index("clip").deleted_count == 50 and store.collection.index("visual").deleted_count == 0
    assert "compaction of space 'clip' failed" in caplog.text
    scratch = tmp_path / "compacting"
    assert scratch.is_dir() and list(scratch.iterdir()) == []  # the file went; the folder is the second space's
    assert store.compact() > 0 and store.collection.index("clip").deleted_count == 0  # next time it works
    store.close()


def test_a_failing_snapshot_is_counted_and_the_blob_sweep_still_runs(tmp_path):
    metrics = Metrics()
    store = store_with_metrics(tmp_path, metrics)
    store.upsert(batch(range(10), seed=1))
    assert wait_for(lambda: store.last_snapshot_seq == store.applied_seq)
    shutil.rmtree(tmp_path / "snapshots")
    (tmp_path / "snapshots").write_text("a file where the snapshots go")
    store.upsert(batch(range(10, 20), seed=2))
    failures = lambda: metrics.registry.get_sample_value("lookalike_background_failures_total",  # noqa: E731
                                                         {"task": "snapshot"}) or 0
    assert wait_for(lambda: failures() >= 1)
    # From now on every snapshot fails: a sweep that removes this blob ran after a failed one.
    orphan = store.blobs.put(b"an image no product refers to")
    store.blobs.unpin([orphan])
    store.upsert(batch(range(20, 30), seed=3))
    assert wait_for(lambda: orphan not in store.blobs)
    assert failures() >= 2 and store.last_snapshot_seq < store.applied_seq
    store.close()


def test_compaction_leftovers_are_removed_at_start(tmp_path):
    (tmp_path / "compacting").mkdir()
    (tmp_path / "compacting" / "compacting_clip.lkl.tmp").write_bytes(b"half a file a crash left")
    store = open_store(tmp_path)
    assert not (tmp_path / "compacting").exists()
    store.close()
