"""Native searches stop when their StopToken says so (a deadline passed, or
cancelled from another thread), wherever they are: the graph walk, the exact
scans, the IVF-PQ cells. And a write to the attributes a long filtered search
reads never waits for the whole search."""

import threading
import time

import numpy as np
import pytest

from conftest import clustered
from lookalike.index import (AttributeStore, DeadlineExceeded, HnswIndex, IvfPqIndex, Match, MustNot, Range,
                             SearchCancelled, SearchStopped, StopToken)
from lookalike.index.collection import Collection, SpaceConfig

DIM = 8


def expired() -> StopToken:
    return StopToken(0.0)


def cancelled() -> StopToken:
    token = StopToken()
    token.cancel()
    return token


def test_a_token_tells_its_state():
    assert StopToken().remaining is None and not StopToken().cancelled
    assert 9 < StopToken(10).remaining <= 10
    assert cancelled().cancelled
    with pytest.raises(ValueError, match="NaN"):
        StopToken(float("nan"))
    assert issubclass(DeadlineExceeded, SearchStopped) and issubclass(SearchCancelled, SearchStopped)


@pytest.mark.parametrize("exact", [False, True])
def test_hnsw_searches_with_a_spent_token_stop_before_they_start(exact):
    index = HnswIndex(DIM, M=8, ef_construction=32)
    vectors = clustered(500, DIM, seed=2)
    index.add(np.arange(500), vectors)
    store = AttributeStore({"price": "numeric"})
    store.set(np.arange(500), {"price": np.arange(500.0)})
    filtered = store.compile(Range("price", gte=100))
    for filter in (None, filtered):
        with pytest.raises(DeadlineExceeded, match="deadline"):
            index.search(vectors[0], 5, filter=filter, exact=exact, stop=expired())
        with pytest.raises(SearchCancelled, match="cancelled"):
            index.search(vectors[:3], 5, filter=filter, exact=exact, stop=cancelled(), threads=2)
    # A live token changes nothing.
    assert np.array_equal(index.search(vectors[0], 5, exact=exact, stop=StopToken(60)).ids,
                          index.search(vectors[0], 5, exact=exact).ids)


def test_ivf_pq_searches_with_a_spent_token_stop():
    vectors = clustered(2000, 16, seed=3)
    index = IvfPqIndex(16, nlist=16, m=4, nbits=8)
    index.train(vectors)
    index.add(np.arange(2000), vectors)
    with pytest.raises(DeadlineExceeded):
        index.search(vectors[0], 5, stop=expired())
    with pytest.raises(SearchCancelled):
        index.search(vectors[0], 5, stop=cancelled())
    assert np.array_equal(index.search(vectors[0], 5, stop=StopToken(60)).ids, index.search(vectors[0], 5).ids)


@pytest.mark.parametrize("kind", ["hnsw", "ivf_pq"])
def test_a_collection_search_passes_its_token_on(kind):
    collection = Collection([SpaceConfig("clip", DIM, index=kind, nlist=4, pq_m=2, train_size=0)])
    vectors = clustered(200, DIM, seed=4)
    collection.upsert(np.arange(200), {"clip": vectors})
    with pytest.raises(DeadlineExceeded):
        collection.search("clip", vectors[0], 5, stop=expired())
    assert len(collection.search("clip", vectors[0], 5, stop=StopToken(60)).ids) == 5
    with pytest.raises(DeadlineExceeded):  # the scan behind a delete by filter
        collection.ids(stop=expired())
    assert len(collection.ids(stop=StopToken(60))) == 200


# --- a long filtered walk ---------------------------------------------------------------

N_WALK = 12_000


@pytest.fixture(scope="module")
def far_filter():
    """An index whose every product has its own tag, and a filter that no
    product passes but whose cost is a long look at each one: must_not(tag in
    every tag). Nothing can be listed (a must_not), so the planner walks the
    graph; the walk admits nothing, so it goes through every node, then scans."""
    index = HnswIndex(DIM, M=8, ef_construction=24, seed=5)
    vectors = clustered(N_WALK, DIM, seed=5)
    index.add(np.arange(N_WALK), vectors)
    store = AttributeStore({"tag": "keyword", "price": "numeric"})
    tags = [f"t{i}" for i in range(N_WALK)]
    store.set(np.arange(N_WALK), {"tag": tags, "price": np.arange(float(N_WALK))})
    return index, store, store.compile(MustNot(Match("tag", values=tags))), vectors[0]


@pytest.mark.parametrize("plan", ["filtered_graph", "two_hop_graph"])
def test_a_filtered_walk_that_admits_nothing_stops_at_its_deadline(far_filter, plan):
    index, _, compiled, query = far_filter
    started = time.perf_counter()
    ids, _, stats = index.search(query, 5, filter=compiled, return_stats=True, plan=plan)
    unbounded = time.perf_counter() - started
    assert stats.plan == plan and stats.fell_back and (ids == -1).all()

    deadline = unbounded / 20
    started = time.perf_counter()
    with pytest.raises(DeadlineExceeded):
        index.search(query, 5, filter=compiled, stop=StopToken(deadline), plan=plan)
    stopped = time.perf_counter() - started
    # Measured against the same search on the same (loaded) machine: it stops
    # near its deadline, far before the walk and the scan would have ended.
    assert stopped < unbounded / 2, (stopped, unbounded)


def test_a_walk_stops_when_cancelled_from_another_thread(far_filter):
    index, _, compiled, query = far_filter
    token = StopToken()
    outcome = []

    def search():
        try:
            index.search(query, 5, filter=compiled, stop=token)
            outcome.append("finished")
        except SearchCancelled:
            outcome.append("cancelled")

    searcher = threading.Thread(target=search)
    searcher.start()
    time.sleep(0.02)
    token.cancel()
    searcher.join(timeout=60)
    assert outcome == ["cancelled"]


def test_attribute_writes_pass_a_long_filtered_search(far_filter):
    index, store, compiled, query = far_filter
    searching = threading.Event()
    done = threading.Event()

    def search():
        searching.set()
        index.search(query, 5, filter=compiled)
        done.set()

    searcher = threading.Thread(target=search)
    searcher.start()
    searching.wait()
    time.sleep(0.02)  # inside the walk, holding the store
    store.set([0], {"price": [-1.0]})  # would wait for the whole search without the checkpoints
    wrote_while_searching = not done.is_set()
    searcher.join(timeout=60)
    assert store.get(0)["price"] == -1.0
    assert wrote_while_searching


def test_index_writes_pass_a_long_ivf_pq_search(far_filter):
    _, _, compiled, query = far_filter
    vectors = clustered(N_WALK, DIM, seed=5)
    index = IvfPqIndex(DIM, nlist=16, m=2, nbits=8)
    index.train(vectors)
    index.add(np.arange(N_WALK), vectors)
    searching = threading.Event()
    done = threading.Event()

    def search():
        searching.set()
        assert (index.search(query, 5, nprobe=16, filter=compiled).ids == -1).all()  # every cell, nothing passes
        done.set()

    searcher = threading.Thread(target=search)
    searcher.start()
    searching.wait()
    time.sleep(0.02)  # inside the scan of the cells, holding the index
    index.upsert([0], vectors[1:2])  # waits for the next cell, not for the whole scan
    index.delete([1])
    wrote_while_searching = not done.is_set()
    searcher.join(timeout=60)
    assert done.is_set() and wrote_while_searching
    assert 1 not in index and np.allclose(index.get([0])[0], vectors[1], atol=1e-6)
