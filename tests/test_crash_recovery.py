"""kill -9 at random moments loses no acknowledged write: a real server process
takes upserts and deletes from two concurrent writers and is SIGKILLed at a
seeded random moment, round after round (snapshots are taken every few writes,
so kills land before, during and after them); each restart must hold every
acknowledged write, none of the acknowledged deletes, and answer searches."""

import errno
import os
import threading
import time

import grpc
import numpy as np
import pytest

from lookalike.client import Client, Product, packed
from lookalike.service.config import ServiceConfig
from lookalike.service.server import Server
from lookalike.v1 import search_pb2
from test_service import CONFIG, start_server, stop_server

ROUNDS = 10
IDS = 120
WRITERS = 2
CRASH_CONFIG = CONFIG + """
[durability]
fsync = "always"
snapshot_every_records = 15
segment_bytes = 8192
"""


class Writer:
    """Streams seeded random upserts and deletes of its own ids (id % WRITERS ==
    number); knows what was acknowledged and which one write was in flight when
    the server died."""

    def __init__(self, number, seed, versions):
        self.ids = list(range(number, IDS, WRITERS))
        self.rng = np.random.default_rng(seed)
        self.versions = versions          # title -> (clip, visual) of every upsert sent
        self.acknowledged = {}            # id -> title of its last acknowledged upsert, or None: deleted
        self.in_doubt = {}                # id -> the outcome of the write that got no answer
        self.counter = 0
        self.prefix = f"w{number}"

    def run(self, client):
        while True:
            ids = [int(i) for i in self.rng.choice(self.ids, size=int(self.rng.integers(1, 6)), replace=False)]
            if self.rng.random() < 0.25:
                outcome = dict.fromkeys(ids)
                send = lambda: client.delete(ids)  # noqa: E731
            else:
                outcome = {i: self._new_version(i) for i in ids}
                send = lambda: self._upsert(client, outcome)  # noqa: E731
            self.in_doubt = outcome
            try:
                send()
            except grpc.RpcError:
                return  # the server died: this write may or may not have happened
            self.acknowledged.update(outcome)
            self.in_doubt = {}

    def _new_version(self, id_):
        self.counter += 1
        title = f"{self.prefix}-{self.counter} of {id_}"
        self.versions[title] = (self.rng.normal(size=32).astype(np.float32),
                                self.rng.normal(size=16).astype(np.float32))
        return title

    def _upsert(self, client, outcome):
        products = [Product(id=i, title=t, vectors={"clip": packed(self.versions[t][0]),
                                                    "visual": packed(self.versions[t][1])},
                            attributes={"price": search_pb2.AttributeValue(number=float(len(t)))})
                    for i, t in outcome.items()]
        reply = client.upsert(products)
        assert [r.status_code for r in reply.results] == [0] * len(products), reply


def check_and_settle(client, writers, versions):
    """Every id holds its acknowledged state, or the outcome of the write in
    doubt; that becomes the acknowledged state for the next round."""
    reply = client.get(range(IDS), with_vectors=["clip", "visual"])
    present = {p.id: p for p in reply.products}
    for writer in writers:
        for id_ in writer.ids:
            product = present.get(id_)
            actual = product.metadata.title if product is not None else None
            allowed = {writer.acknowledged.get(id_)}
            if id_ in writer.in_doubt:
                allowed.add(writer.in_doubt[id_])
            assert actual in allowed, f"product {id_}: found {actual!r}, acknowledged {allowed}"
            if product is not None:
                clip, visual = versions[actual]
                stored_visual = np.frombuffer(product.vectors["visual"].data, dtype=np.float32)
                np.testing.assert_array_equal(stored_visual, visual)
                stored_clip = np.frombuffer(product.vectors["clip"].data, dtype=np.float32)
                np.testing.assert_allclose(stored_clip, clip / np.linalg.norm(clip), atol=2e-2)
                assert product.metadata.attributes["price"].number == float(len(actual))
                writer.acknowledged[id_] = actual
            else:
                writer.acknowledged[id_] = None
        writer.in_doubt = {}
    # Searches see exactly the surviving products.
    for id_ in list(present)[:10]:
        visual = versions[present[id_].metadata.title][1]
        hits = client.search(vector=visual, k=1, using="visual",
                             params=search_pb2.SearchParams(exact=True)).hits
        assert hits[0].id == id_ and hits[0].score == 0.0
    assert client.stats().products == len(present)


def test_kill_9_at_random_moments_loses_no_acknowledged_write(tmp_path):
    rng = np.random.default_rng(20240607)
    versions = {}
    writers = [Writer(n, 1000 + n, versions) for n in range(WRITERS)]
    killed_with_writes = 0
    for _ in range(ROUNDS):
        process, address = start_server(tmp_path, config_text=CRASH_CONFIG)
        try:
            with Client(address, timeout=20) as client:
                check_and_settle(client, writers, versions)
                before = sum(w.counter for w in writers)
                threads = [threading.Thread(target=w.run, args=(client,)) for w in writers]
                for t in threads:
                    t.start()
                time.sleep(float(rng.uniform(0.05, 0.6)))
                process.kill()
                process.wait(timeout=30)
                for t in threads:
                    t.join(timeout=30)
                    assert not t.is_alive()
                killed_with_writes += sum(w.counter for w in writers) > before
        finally:
            process.kill()
            process.wait(timeout=30)
    assert killed_with_writes >= ROUNDS // 2  # the kills really landed among writes
    process, address = start_server(tmp_path, config_text=CRASH_CONFIG)
    try:
        with Client(address, timeout=20) as client:
            check_and_settle(client, writers, versions)
            assert any(w.acknowledged.get(i) for w in writers for i in w.ids)
    finally:
        stop_server(process)
    snapshots = list((tmp_path / "data" / "snapshots").iterdir())
    assert 1 <= len(snapshots) <= 2 and all((s / "SNAPSHOT.json").is_file() for s in snapshots)


def test_a_full_disk_fails_writes_with_resource_exhausted_over_grpc(tmp_path):
    """ENOSPC injected through the log's writer (the test hook): the write gets
    RESOURCE_EXHAUSTED naming the full disk; nothing acknowledged is lost."""
    config = tmp_path / "lookalike.toml"
    config.write_text(CONFIG)
    server = Server(ServiceConfig.load(config, address="127.0.0.1:0", data_dir=str(tmp_path / "data")))
    server.start()
    vectors = {"clip": packed(np.ones(32, np.float32)), "visual": packed(np.zeros(16, np.float32))}
    try:
        with Client(server.address) as client:
            assert client.upsert([Product(id=1, title="kept", vectors=vectors)]).results[0].status_code == 0

            def full_disk(fd, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            server.store._wal._write = full_disk
            for write in (lambda: client.upsert([Product(id=2, title="refused", vectors=vectors)]),
                          lambda: client.delete([1])):
                with pytest.raises(grpc.RpcError) as caught:
                    write()
                assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "the disk is full" in caught.value.details()
            assert [p.id for p in client.get([1, 2]).products] == [1]
    finally:
        server.stop(grace=1)
    server = Server(ServiceConfig.load(config, address="127.0.0.1:0", data_dir=str(tmp_path / "data")))
    server.start()
    try:
        with Client(server.address) as client:
            assert [(p.id, p.metadata.title) for p in client.get([1, 2]).products] == [(1, "kept")]
    finally:
        server.stop(grace=1)
