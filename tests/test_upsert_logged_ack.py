"""Upsert's ACKNOWLEDGE_LOGGED: a product is acknowledged once it is durable in
the write-ahead log and has passed every check, and inserted into the index
behind the reply, in log order. The applier is held (its index insert waits
on an event) to see the backlog; a process SIGKILLed with a backlog replays it."""

import threading

import grpc
import numpy as np
import pytest

from lookalike.client import Client, Product, packed
from lookalike.service.config import ServiceConfig
from lookalike.service.server import Server
from lookalike.v1 import search_pb2
from test_service import CONFIG, start_server, stop_server

LOGGED = search_pb2.ACKNOWLEDGE_LOGGED


def product(id_, title="", seed=None, dim=(32, 16), price=1.0):
    rng = np.random.default_rng(id_ if seed is None else seed)
    return Product(id=id_, title=title or f"product {id_}",
                   vectors={"clip": packed(rng.normal(size=dim[0]).astype(np.float32)),
                            "visual": packed(rng.normal(size=dim[1]).astype(np.float32))},
                   attributes={"price": search_pb2.AttributeValue(number=price)})


@pytest.fixture
def held(tmp_path):
    """A server whose applier waits at its next index insert until `release` is set."""
    config = tmp_path / "lookalike.toml"
    config.write_text(CONFIG)
    server = Server(ServiceConfig.load(config, address="127.0.0.1:0", data_dir=str(tmp_path / "data")))
    server.start()
    release = threading.Event()
    collection = server.store.collection
    insert = collection.upsert

    def held_insert(*args, **kwargs):
        if threading.current_thread().name == "lookalike-applier":
            assert release.wait(30)
        return insert(*args, **kwargs)

    collection.upsert = held_insert
    try:
        with Client(server.address, timeout=20) as client:
            yield server, client, release
    finally:
        release.set()
        server.stop(grace=1)


def test_a_logged_ack_comes_before_the_insert_and_min_seq_waits_for_it(held):
    server, client, release = held
    reply = client.upsert([product(1), product(2)], acknowledge=LOGGED)
    assert [r.status_code for r in reply.results] == [0, 0]
    seq = reply.seq
    assert seq > 0 and [r.seq for r in reply.results] == [seq, seq]
    stats = client.stats()
    assert stats.unindexed_products == 2 and stats.applied_seq < seq and stats.products == 0
    assert client.get([1, 2]).missing_ids == [1, 2]  # without min_seq: not yet visible
    with pytest.raises(grpc.RpcError) as caught:  # with min_seq: waits, here past the call's deadline
        client.stub.Get(search_pb2.GetRequest(ids=[1], min_seq=seq), timeout=0.3)
    assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

    waiting = {}
    reader = threading.Thread(target=lambda: waiting.update(
        got=client.get([1, 2], min_seq=seq), hits=client.stub.Search(search_pb2.SearchRequest(
            query=search_pb2.Query(vector=product(2).vectors["clip"]), k=1, min_seq=seq), timeout=20)))
    reader.start()
    reader.join(0.3)
    assert reader.is_alive()  # held until the insert is done
    release.set()
    reader.join(20)
    assert [p.id for p in waiting["got"].products] == [1, 2]
    assert waiting["hits"].hits[0].id == 2
    assert client.stats().unindexed_products == 0 and client.stats().applied_seq >= seq


def test_a_write_acknowledged_as_searchable_waits_for_the_logged_ones_before_it(held):
    server, client, release = held
    first = client.upsert([product(1, title="old")], acknowledge=LOGGED)
    assert first.results[0].status_code == 0
    done = {}
    writer = threading.Thread(target=lambda: done.update(reply=client.upsert([product(1, title="new")])))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive()  # its apply waits for its turn, behind the held one
    release.set()
    writer.join(20)
    assert done["reply"].results[0].status_code == 0 and done["reply"].seq == 0
    assert client.get([1]).products[0].metadata.title == "new"  # log order: the later write wins


def test_logged_acks_refuse_bad_products_before_logging_them(held):
    server, client, release = held
    logged_before = server.store.logged_seq
    reply = client.upsert([product(1), product(2, dim=(31, 16)), Product(id=-3)], acknowledge=LOGGED)
    assert [r.status_code for r in reply.results] == [0, grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                                      grpc.StatusCode.INVALID_ARGUMENT.value[0]]
    assert "dim" in reply.results[1].error and "id must be >= 0" in reply.results[2].error
    assert reply.results[1].seq == reply.results[2].seq == 0
    assert server.store.logged_seq == logged_before + 1  # one record: the good product only
    with pytest.raises(grpc.RpcError) as caught:
        client.get([1], min_seq=reply.seq + 5)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "no write has that seq" in caught.value.details()


def test_the_backlog_bound_holds_writes_before_they_are_logged(tmp_path):
    config = tmp_path / "lookalike.toml"
    config.write_text(CONFIG + "\n[durability]\nmax_unindexed_products = 3\n")
    server = Server(ServiceConfig.load(config, address="127.0.0.1:0", data_dir=str(tmp_path / "data")))
    server.start()
    release = threading.Event()
    insert = server.store.collection.upsert
    server.store.collection.upsert = lambda *a, **k: (release.wait(30), insert(*a, **k))[1]
    try:
        with Client(server.address, timeout=20) as client:
            assert client.upsert([product(1), product(2)], acknowledge=LOGGED).results[0].status_code == 0
            logged = server.store.logged_seq
            done = {}
            writer = threading.Thread(target=lambda: done.update(
                reply=client.upsert([product(3), product(4)], acknowledge=LOGGED)))
            writer.start()
            writer.join(0.3)
            assert writer.is_alive() and server.store.logged_seq == logged  # 2 + 2 > 3: not logged yet
            release.set()
            writer.join(20)
            assert [r.status_code for r in done["reply"].results] == [0, 0]
            assert [p.id for p in client.get([1, 2, 3, 4], min_seq=done["reply"].seq).products] == [1, 2, 3, 4]
    finally:
        release.set()
        server.stop(grace=1)


BIG_CONFIG = CONFIG.replace("dim = 32", "dim = 256\nef_construction = 400").replace("max_batch = 64", "max_batch = 512")


def test_kill_9_with_a_backlog_loses_no_logged_ack(tmp_path):
    """Products acknowledged when logged and killed before the applier inserted
    them all are there after the restart (the log is replayed)."""
    process, address = start_server(tmp_path, config_text=BIG_CONFIG)
    acknowledged = []
    try:
        with Client(address, timeout=30) as client:
            for start in range(0, 6144, 512):
                batch = [product(i, title=f"t{i}", dim=(256, 16)) for i in range(start, start + 512)]
                reply = client.upsert(batch, acknowledge=LOGGED)
                assert all(r.status_code == 0 for r in reply.results)
                acknowledged += [p.id for p in batch]
            backlog = client.stats().unindexed_products
            process.kill()
            process.wait(timeout=30)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert backlog > 0  # the kill landed with acknowledged products not yet in the index
    process, address = start_server(tmp_path, config_text=BIG_CONFIG)
    try:
        with Client(address, timeout=30) as client:
            stats = client.stats()
            assert stats.products == len(acknowledged) and stats.unindexed_products == 0
            got = client.get(acknowledged[-200:])
            assert [p.id for p in got.products] == acknowledged[-200:] and not got.missing_ids
            assert got.products[-1].metadata.title == f"t{acknowledged[-1]}"
            last = product(acknowledged[-1], dim=(256, 16))
            visual = np.frombuffer(last.vectors["visual"].data, np.float32)
            assert client.search(vector=visual, k=1, using="visual").hits[0].id == acknowledged[-1]
    finally:
        stop_server(process)
