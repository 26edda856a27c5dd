"""Searches, inserts and deletes from many threads at once: no crash, no lost id."""

import threading

import numpy as np

from conftest import clustered
from lookalike.index import HnswIndex


def test_concurrent_inserts_and_searches_lose_nothing():
    vectors = clustered(6000, 32, seed=11)
    index = HnswIndex(32, M=12, ef_construction=100)
    index.add(np.arange(1000), vectors[:1000])
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(part: int) -> None:
        try:
            for start in range(1000 + part * 2500, 1000 + (part + 1) * 2500, 100):
                rows = np.arange(start, start + 100)
                index.add(rows, vectors[rows], threads=1)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            while not stop.is_set():
                q = vectors[rng.integers(0, len(vectors), 8)]
                ids = index.search(q, 10, ef=32).ids
                assert ((ids >= -1) & (ids < len(vectors))).all()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    writers = [threading.Thread(target=writer, args=(p,)) for p in range(2)]
    readers = [threading.Thread(target=reader, args=(s,)) for s in range(2)]
    for t in writers + readers:
        t.start()
    for t in writers:
        t.join(timeout=120)
    stop.set()
    for t in readers:
        t.join(timeout=30)
    assert not errors, errors
    assert len(index) == 6000
    # Every id is reachable through the graph: its own vector finds it.
    found = index.search(vectors, 1, ef=64, threads=2).ids[:, 0]
    assert np.mean(found == np.arange(6000)) >= 0.99


def test_concurrent_deletes_and_searches_never_return_deleted_ids():
    vectors = clustered(4000, 32, seed=12)
    index = HnswIndex(32)
    index.add(np.arange(4000), vectors)
    deleted = np.arange(0, 4000, 2)
    done = threading.Event()
    leaks: list[np.ndarray] = []

    def deleter() -> None:
        for chunk in np.array_split(deleted, 40):
            index.delete(chunk)
        done.set()

    def reader() -> None:
        rng = np.random.default_rng(1)
        while not done.is_set():
            index.search(vectors[rng.integers(0, 4000, 4)], 10)
        ids = index.search(vectors[:200], 10).ids  # after the last delete
        leaks.append(ids[np.isin(ids, deleted)])

    threads = [threading.Thread(target=deleter), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert leaks and leaks[0].size == 0
    assert len(index) == 2000


def test_batch_add_uses_threads_and_gives_the_same_recall_as_one_thread():
    vectors = clustered(5100, 32, seed=13)
    base, queries = vectors[:5000], vectors[5000:]
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    recalls = []
    for threads in (1, 2):
        index = HnswIndex(32)
        index.add(np.arange(5000), base, threads=threads)
        ids = index.search(queries, 10, ef=64).ids
        recalls.append(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)]))
    assert min(recalls) >= 0.95


def test_a_parallel_build_leaves_no_node_unreachable():
    """A node inserted on several levels becomes reachable on its top level before
    it links itself on the lower ones; inserts running meanwhile may link to it
    there, and those links must survive (overwriting them once orphaned 1-8 nodes
    in most of these builds). With ef = n a search reaches every reachable node."""
    for seed in range(30):
        x = np.random.default_rng(seed).standard_normal((128, 256)).astype(np.float32)
        index = HnswIndex(256, "l2", M=16, ef_construction=100, seed=seed)
        index.add(np.arange(128), x, threads=4)
        found = index.search(x, 1, ef=128).ids[:, 0]
        assert (found == np.arange(128)).all(), f"seed {seed}: unreachable {np.nonzero(found != np.arange(128))[0]}"
