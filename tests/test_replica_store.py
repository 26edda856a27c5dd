"""A replica applies consecutive upsert records as one write
(ReplicaStore.apply_run): the same state as applying them one by one, each
catalog row naming the record that wrote it, and nothing applied when one
record of the run is bad."""

import numpy as np
import pytest

from lookalike.cluster.replica_store import ReplicaStore
from lookalike.index.collection import Collection, SpaceConfig
from lookalike.store.catalog import Catalog
from lookalike.store.records import UpsertBatch

DIM = 8


def store(tmp_path, name):
    return ReplicaStore(tmp_path / name, Catalog(tmp_path / f"{name}.db"),
                        lambda: Collection([SpaceConfig("v", DIM)], {"colour": "keyword"}),
                        snapshot_every_records=10**6, snapshot_every_seconds=1e6, keep_snapshots=2)


def upsert(ids, rng, colour=None, dim=DIM):
    ids = np.asarray(ids, dtype=np.int64)
    return UpsertBatch(ids=ids, vectors={"v": rng.standard_normal((len(ids), dim)).astype(np.float32)},
                       attributes={} if colour is None else {"colour": [colour] * len(ids)},
                       titles=[f"{colour} {i}" for i in ids], image_uris=[""] * len(ids))


def test_a_run_leaves_the_state_that_one_by_one_leaves(tmp_path):
    rng = np.random.default_rng(0)
    run = [(10, upsert([1, 2], rng, "red")), (11, upsert([3], rng)), (12, upsert([2, 4], rng, "blue")),
           (13, upsert([1], rng, "green"))]
    together, alone = store(tmp_path, "together"), store(tmp_path, "alone")
    together.apply_run(run)
    for seq, record in run:
        alone.apply(seq, record)

    ids = [1, 2, 3, 4]
    assert together.applied_seq == alone.applied_seq == 13
    assert np.array_equal(together.collection.vectors("v", ids), alone.collection.vectors("v", ids))
    assert [together.collection.attributes(i) for i in ids] == [alone.collection.attributes(i) for i in ids]
    assert together.collection.attributes(2) == {"colour": ["blue"]} and together.collection.attributes(3) == {}
    rows = together.catalog.get_with_seq(ids)
    assert rows == alone.catalog.get_with_seq(ids)
    assert {i: (record.title, seq) for i, (record, seq) in rows.items()} == {
        1: ("green 1", 13), 2: ("blue 2", 12), 3: ("None 3", 11), 4: ("blue 4", 12)}


def test_a_run_with_a_bad_record_applies_nothing(tmp_path):
    rng = np.random.default_rng(1)
    replica = store(tmp_path, "replica")
    replica.apply(1, upsert([1], rng, "red"))
    with pytest.raises(ValueError):
        replica.apply_run([(2, upsert([2], rng)), (3, upsert([3], rng, dim=DIM + 1))])
    assert replica.applied_seq == 1
    assert len(replica.collection) == 1 and replica.catalog.get([2, 3]) == {}
