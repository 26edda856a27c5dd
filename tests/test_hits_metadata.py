"""A hit comes back with its metadata or not at all: while writers add, replace
and delete products, no search with metadata returns a hit without its title
or attributes (the catalog row and the attributes are in place before a product
can be found, and a product is hidden before they go)."""

import threading
import time

import numpy as np

from conftest import clustered
from lookalike.client import Client, Filter, Product, packed
from lookalike.index import Range
from lookalike.index.collection import Collection, SpaceConfig
from lookalike.service.config import DurabilityConfig, ServiceConfig
from lookalike.service.durable import DurableCollection
from lookalike.service.hydrate import read_metadata
from lookalike.service.server import Server
from lookalike.store.catalog import Catalog
from lookalike.v1 import filter_pb2, search_pb2
from test_durable import SCHEMA, SPACES, batch, open_store

DIM = 16
SECONDS, MAX_SEARCHES = 2.5, 1500


def product(id_, vector):
    attributes = {"category": search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=["shoes"])),
                  "price": search_pb2.AttributeValue(number=float(id_ % 100))}
    return Product(id=id_, title=f"product {id_}", attributes=attributes, vectors={"clip": packed(vector)})


def lacks_metadata(hit):
    attributes = hit.metadata.attributes
    return (hit.metadata.title != f"product {hit.id}" or list(attributes["category"].keywords.values) != ["shoes"]
            or attributes["price"].number != float(hit.id % 100))


def test_no_hit_lacks_its_metadata_while_writers_add_and_delete(tmp_path):
    config = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path),
                           spaces=(SpaceConfig("clip", DIM, M=8, ef_construction=32),),
                           schema={"category": "keyword", "price": "numeric"},
                           durability=DurabilityConfig(fsync="never"))
    vectors = clustered(4000, DIM, seed=5)
    shoes = Filter(must=[filter_pb2.Condition(match=filter_pb2.Match(attribute="category", value="shoes")),
                         filter_pb2.Condition(range=filter_pb2.Range(attribute="price", lt=90))])
    server = Server(config)
    server.start()
    counts = {"searches": 0, "hits": 0, "writes": 0}
    lacking = []

    def writer(first):
        """Adds a batch, then deletes the one before, cycling through its own ids."""
        def write(stop):
            ids = np.arange(first, first + 2000).reshape(-1, 20)
            with Client(server.address) as client:
                for round_ in range(10_000):
                    if stop.is_set():
                        return
                    client.upsert([product(int(i), vectors[i]) for i in ids[round_ % len(ids)]])
                    client.delete(ids[(round_ - 1) % len(ids)].tolist())
                    counts["writes"] += 1
        return write

    def reader(seed):
        def read(stop):
            rng = np.random.default_rng(seed)
            with Client(server.address) as client:
                while not stop.is_set() and counts["searches"] < MAX_SEARCHES:
                    reply = client.search(vector=vectors[rng.integers(4000)], k=20, filter=shoes, with_metadata=True)
                    counts["searches"] += 1
                    counts["hits"] += len(reply.hits)
                    lacking.extend(h.id for h in reply.hits if lacks_metadata(h))
        return read

    try:
        errors = run_bounded([writer(0), writer(2000), *(reader(seed) for seed in range(3))], SECONDS,
                             lambda: counts["searches"] >= MAX_SEARCHES)
    finally:
        server.stop(grace=1)
    assert errors == []
    assert counts["searches"] > 100 and counts["hits"] > 1000 and counts["writes"] > 20, counts
    assert lacking == [], f"{len(lacking)} of {counts['hits']} hits lacked their metadata ({counts})"


def run_bounded(workers, seconds, done):
    """Runs the worker functions (each gets a stop event) until ``done()`` or
    ``seconds`` pass; returns the exceptions they raised."""
    stop, errors = threading.Event(), []

    def guarded(work):
        try:
            work(stop)
        except Exception as e:  # noqa: BLE001 - returned to the test
            errors.append(repr(e))

    threads = [threading.Thread(target=guarded, args=(work,)) for work in workers]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not done() and not errors:
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    return errors


def test_a_durable_store_never_gives_a_search_hit_without_its_metadata(tmp_path):
    store = open_store(tmp_path)
    counts = {"searches": 0, "hits": 0, "writes": 0}
    lacking = []

    def write(stop):
        for round_ in range(100_000):
            if stop.is_set():
                return
            ids = range(100 * (round_ % 20), 100 * (round_ % 20) + 100)
            store.upsert(batch(ids, seed=round_))
            store.delete(list(range(100 * ((round_ - 1) % 20), 100 * ((round_ - 1) % 20) + 100)))
            counts["writes"] += 1

    def read(stop):
        rng = np.random.default_rng(1)
        while not stop.is_set() and counts["searches"] < 5000:
            collection = store.collection
            hits = collection.search("clip", rng.normal(size=8), 20, filter=Range("price", lt=1500))
            metadata = read_metadata(store.catalog, collection, hits.ids.tolist())
            lacking.extend(i for i, m in metadata.items()
                           if not m.record.title.startswith(f"title {i} ") or m.attributes.get("price") != float(i))
            counts["searches"] += 1
            counts["hits"] += len(metadata)

    errors = run_bounded([write, read, read], 2.5, lambda: counts["searches"] >= 5000)
    store.close()
    assert errors == []
    assert counts["searches"] > 100 and counts["hits"] > 1000 and counts["writes"] > 10, counts
    assert lacking == [], f"{len(lacking)} of {counts['hits']} hits lacked their metadata ({counts})"


def test_a_product_deleted_after_its_search_is_left_out(tmp_path):
    store = open_store(tmp_path)
    store.upsert(batch(range(5), seed=1))
    store.delete([1])
    store.collection.upsert([7], {"clip": np.ones((1, 8)), "visual": np.ones((1, 4))})  # no catalog row
    metadata = read_metadata(store.catalog, store.collection, [0, 1, 2, 7, 2])
    assert sorted(metadata) == [0, 2]
    assert metadata[2].record.title == "title 2 v1" and metadata[2].attributes == {"price": 2.0, "category": ["c1"]}
    store.close()
