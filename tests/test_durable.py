"""DurableCollection in process: writes are logged before they are applied, a
restart without a clean close replays them, snapshots trim the log, a damaged
newest snapshot falls back to the one before, and a full disk fails a write
with RESOURCE_EXHAUSTED without losing what was acknowledged."""

import errno
import os
import threading

import grpc
import numpy as np
import pytest

from lookalike.index.collection import Collection, SpaceConfig
from lookalike.service.config import DurabilityConfig
from lookalike.service.durable import DurableCollection
from lookalike.service.errors import ServiceError
from lookalike.store.catalog import Catalog
from lookalike.store.records import UpsertBatch

SPACES = (SpaceConfig("clip", 8), SpaceConfig("visual", 4, metric="l2", storage="float32", rerank=""))
SCHEMA = {"category": "keyword", "price": "numeric"}


def open_store(data, **durability):
    config = DurabilityConfig(**{"fsync": "never", **durability})
    return DurableCollection(data, config, Catalog(data / "catalog.sqlite3"),
                             new_collection=lambda: Collection(SPACES, SCHEMA))


def batch(ids, seed):
    rng = np.random.default_rng(seed)
    n = len(ids)
    return UpsertBatch(ids=np.array(ids, dtype=np.int64),
                       vectors={"clip": rng.normal(size=(n, 8)).astype(np.float32),
                                "visual": rng.normal(size=(n, 4)).astype(np.float32)},
                       attributes={"price": [float(i) for i in ids], "category": [[f"c{seed}"]] * n},
                       titles=[f"title {i} v{seed}" for i in ids], image_uris=[f"img/{i}" for i in ids])


def crash(store):
    """Drops the store as a kill -9 would: no snapshot, no close of the log."""
    store._stop.set()
    store._wake.set()
    store._snapshotter.join()
    store.catalog.close()


def state(store):
    ids = sorted(i for i in range(200) if i in store.collection)
    return {i: (store.collection.vectors("visual", [i])[0].tolist(), store.collection.attributes(i),
                store.catalog.get([i]).get(i)) for i in ids}


def test_a_restart_without_close_replays_every_write(tmp_path):
    store = open_store(tmp_path)
    store.upsert(batch(range(0, 50), seed=1))
    store.upsert(batch(range(40, 60), seed=2))       # replaces 40..49
    assert store.delete([5, 6, 999]) == [999]
    store.upsert(batch([5], seed=3))                  # back again
    before = state(store)
    crash(store)
    store = open_store(tmp_path)
    assert state(store) == before
    assert len(before) == 59 and before[45][2].title == "title 45 v2" and 6 not in before
    store.close()


def test_snapshots_trim_the_log_and_a_damaged_newest_falls_back(tmp_path):
    store = open_store(tmp_path, segment_bytes=4096)
    for seed in range(6):
        store.upsert(batch(range(seed * 10, seed * 10 + 10), seed))
    first = store.snapshot()
    for seed in range(6, 12):
        store.upsert(batch(range(seed * 10, seed * 10 + 10), seed))
    second = store.snapshot()
    store.delete(list(range(0, 30)))
    before = state(store)
    crash(store)
    assert sorted(int(p.name) for p in (tmp_path / "snapshots").iterdir()) == [first, second]
    wal_files = sorted((tmp_path / "wal").iterdir())
    assert int(wal_files[0].stem[4:]) <= first + 1  # the log still covers the older snapshot

    newest = tmp_path / "snapshots" / f"{second:020d}" / "space_clip.lkl"
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    newest.write_bytes(raw)
    store = open_store(tmp_path)
    assert store.last_snapshot_seq == first
    assert state(store) == before
    store.close()


def test_a_snapshot_taken_while_writes_go_on_recovers_exactly(tmp_path):
    store = open_store(tmp_path)
    stop = threading.Event()

    def writer(offset):
        seed = offset
        while not stop.is_set() and seed < offset + 400:
            ids = [(seed * 7 + j) % 100 for j in range(5)]
            store.upsert(batch(ids, seed))
            if seed % 3 == 0:
                store.delete([(seed * 11) % 100])
            seed += 1

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(2)]
    for t in threads:
        t.start()
    for _ in range(3):
        store.snapshot()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    before = state(store)
    crash(store)
    store = open_store(tmp_path)
    assert state(store) == before
    store.close()


def test_a_full_disk_fails_the_write_with_resource_exhausted_and_loses_nothing(tmp_path):
    store = open_store(tmp_path, fsync="always")
    store.upsert(batch(range(10), seed=1))

    def full_disk(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    store._wal._write = full_disk  # the log's injectable writer: the test hook for ENOSPC
    with pytest.raises(ServiceError) as caught:
        store.upsert(batch(range(5, 20), seed=2))
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "disk is full" in caught.value.message and "nothing of this write was applied" in caught.value.message
    with pytest.raises(ServiceError):
        store.delete([1])
    assert sorted(state(store)) == list(range(10))  # the refused writes changed nothing in memory
    before = state(store)
    crash(store)
    store = open_store(tmp_path)
    assert state(store) == before
    store.close()


class WatchingCatalog(Catalog):
    """A real catalog that notes, at each write, which of the products the
    collection already finds (searchable) and whether their attributes are set."""

    def __init__(self, path, collection):
        super().__init__(path)
        self.collection = collection
        self.seen = []

    def upsert(self, records, seq=0):
        records = list(records)
        ids = [r.id for r in records]
        self.seen.append(("upsert", [i for i in ids if i in self.collection],
                          all(self.collection.attributes(i).get("price") == float(i) for i in ids)))
        super().upsert(records, seq)

    def delete(self, ids):
        self.seen.append(("delete", [i for i in ids if i in self.collection]))
        super().delete(ids)


def test_metadata_is_in_place_before_a_product_is_searchable_live_and_on_replay(tmp_path):
    expected = [("upsert", [], True), ("upsert", [5, 6, 7, 8, 9], True), ("delete", [])]  # 5..9 replaced
    for replaying in (False, True):
        collection = Collection(SPACES, SCHEMA)
        catalog = WatchingCatalog(tmp_path / "catalog.sqlite3", collection)
        store = DurableCollection(tmp_path, DurabilityConfig(fsync="never"), catalog,
                                  new_collection=lambda: collection)
        if not replaying:
            store.upsert(batch(range(10), seed=1))
            store.upsert(batch(range(5, 15), seed=2))
            store.delete([3, 4, 12])
        assert catalog.seen == expected
        assert sorted(i for i in range(20) if i in store.collection) == [0, 1, 2, *range(5, 12), 13, 14]
        crash(store)  # the second round replays the three records from the log


def test_a_bad_upsert_writes_no_catalog_row(tmp_path):
    store = open_store(tmp_path)
    bad = batch([1, 2], seed=1)
    bad.attributes["price"] = [1.0, "not a number"]
    with pytest.raises(TypeError, match="price"):
        store.upsert(bad)
    assert store.catalog.get([1, 2]) == {} and len(store.collection) == 0
    store.close()


def test_a_row_s_seq_is_the_log_record_that_last_wrote_it(tmp_path):
    store = open_store(tmp_path)
    first = store.upsert(batch([1, 2], seed=1))
    second = store.upsert(batch([2, 3], seed=2))
    assert store.catalog.seqs([1, 2, 3, 4]) == {1: first, 2: second, 3: second}
    assert {i: seq for i, (_, seq) in store.catalog.get_with_seq([1, 2, 3, 4]).items()} == store.catalog.seqs([1, 2, 3])
    store.close()
