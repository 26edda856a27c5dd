"""bench/service_peers.py's adapters against real servers: lookalike, Milvus Lite
and Chroma, each started on loopback in a temp dir and asked, on a tiny catalog,
for what must be the exact top-k (exact search, a FLAT index, or an ef_search
past the catalog's size), with and without a category-and-price filter; and the
open-loop runner on lookalike.

The peers come from the `bench` extra, which the `test` extra includes: a peer
that does not install or start fails its test, naming why."""

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import clustered

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import open_loop  # noqa: E402
from peer_systems import (Catalog, Chroma, Hnsw, Lookalike, LookalikeLogged, Milvus, exact_ids, filters_for,  # noqa: E402
                          open_searcher)

N, DIM, K = 300, 32, 10


@pytest.fixture(scope="module")
def catalog():
    return Catalog.of(clustered(N, DIM, seed=5))


@pytest.fixture(scope="module")
def queries():
    return clustered(6, DIM, seed=6)


PEERS = {
    # (system, what makes its answers exact)
    "lookalike": (lambda: Lookalike(Hnsw()), {"exact": True}),
    "lookalike-logged": (lambda: LookalikeLogged(Hnsw()), {"exact": True}),
    "milvus-lite": (lambda: Milvus(Hnsw(), index="FLAT"), {}),
    "chroma": (lambda: Chroma(Hnsw(ef_search=2 * N)), {}),
}


@pytest.mark.parametrize("name", PEERS)
def test_peer_returns_the_exact_top_k_with_and_without_a_filter(name, catalog, queries, tmp_path):
    make, exact = PEERS[name]
    system = make()
    system.start(tmp_path, DIM)
    try:
        system.ingest(catalog, batch=64)
        system.settle()
        assert system.wait_indexed(len(catalog), 60) is not False  # lookalike-logged: its backlog inserted
        where = [None, None, *filters_for(len(queries) - 2)]
        searcher = open_searcher(system.spec(**exact))
        try:
            found = [searcher.search(q, K, w) for q, w in zip(queries, where)]
        finally:
            searcher.close()
        assert system.rss() > 10 << 20  # the server's own process (and children), alive
    finally:
        system.stop()
    truth = exact_ids(catalog, queries, K, where)
    for got, want, w in zip(found, truth, where):
        assert got.tolist() == want.tolist(), f"{name}, filter {w}"
        if w is not None:  # the filter let only matching products through
            assert w.mask(catalog)[got].all()


def test_open_loop_run_on_lookalike_answers_every_call(catalog, queries, tmp_path):
    system = Lookalike(Hnsw())
    system.start(tmp_path, DIM)
    try:
        system.ingest(catalog, batch=100)
        load = open_loop.Load(rate=60, seconds=1.0, processes=2, threads=2, max_calls=60)
        outcome = open_loop.run(system.spec(), queries, K, [None, *filters_for(3)], load)
    finally:
        system.stop()
    assert outcome.sent == 60 and outcome.ok == 60 and outcome.failed == 0
    assert 0 < outcome.p50_ms <= outcome.p99_ms < 10_000


def test_the_bench_sees_when_each_system_has_everything_in_its_hnsw_index(catalog, tmp_path):
    # lookalike's graph holds a product when its Upsert returns; Milvus Lite
    # builds a segment's HNSW in the background after a flush.
    ours, milvus = Lookalike(Hnsw()), Milvus(Hnsw())
    for system, folder in ((ours, tmp_path / "ours"), (milvus, tmp_path / "milvus")):
        folder.mkdir()
        system.start(folder, DIM)
    try:
        for system in (ours, milvus):
            system.ingest(catalog, batch=100)
        assert ours.wait_indexed(N, 0) is True
        assert milvus.wait_indexed(N, 0) is False  # not flushed: no segment, no graph
        milvus.settle()
        assert milvus.wait_indexed(N, 120) is True
    finally:
        ours.stop()
        milvus.stop()
