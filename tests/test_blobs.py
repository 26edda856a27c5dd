"""The blob store of original images: content-addressed, atomic, swept when
nothing refers to a blob any more; and the log records and catalog files
written before it existed still read."""

import hashlib
import json
import sqlite3
import struct

import numpy as np

from lookalike.store import records
from lookalike.store.blobs import BlobStore
from lookalike.store.catalog import Catalog, ProductRecord
from test_durable import batch, crash, open_store


def test_a_blob_is_stored_once_under_its_sha256_in_fanout_folders(tmp_path):
    blobs = BlobStore(tmp_path)
    data = b"\x89PNG pretend image bytes"
    digest = blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert blobs.path(digest) == tmp_path / digest[:2] / digest[2:4] / digest
    assert blobs.read(digest) == data and digest in blobs
    assert blobs.put(data) == digest  # the same bytes again: no second copy
    assert list(blobs.digests()) == [digest]
    assert [p.name for p in blobs.path(digest).parent.iterdir()] == [digest]  # no tmp file left


def test_a_put_syncs_the_folders_that_hold_its_new_entries(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr("lookalike.store.blobs.fsync_directory", synced.append)
    root = tmp_path / "blobs"
    blobs = BlobStore(root)
    digest = blobs.put(b"first")
    folder = blobs.path(digest).parent
    # the blob's entry, then those of the two fan-out folders and of the root, all made by this put
    assert synced == [folder, folder.parent, root, tmp_path]
    synced.clear()
    assert blobs.put(b"first") == digest  # stored already: nothing new to sync
    assert synced == []


def test_a_sweep_removes_only_blobs_nothing_refers_to(tmp_path):
    blobs = BlobStore(tmp_path)
    kept, pinned, orphan = blobs.put(b"kept"), blobs.put(b"pinned"), blobs.put(b"orphan")
    blobs.unpin([kept, orphan])
    assert blobs.sweep(lambda: {kept}) == (1, len(b"orphan"))
    assert kept in blobs and pinned in blobs and orphan not in blobs
    blobs.unpin([pinned])
    assert blobs.sweep(lambda: set()) == (2, len(b"kept") + len(b"pinned"))
    assert list(blobs.digests()) == []


def test_a_blob_put_while_a_sweep_runs_is_not_removed_by_it(tmp_path):
    blobs = BlobStore(tmp_path)

    def referenced():  # the same bytes are put, logged and unpinned between listing and removing
        blobs.unpin([blobs.put(b"bytes")])
        return set()

    digest = blobs.put(b"bytes")
    blobs.unpin([digest])
    assert blobs.sweep(referenced) == (0, 0)
    assert digest in blobs
    assert blobs.sweep(lambda: set()) == (1, len(b"bytes"))


def test_an_upsert_record_of_the_old_layout_reads_as_products_without_images():
    ids = np.array([3, 4], dtype="<i8")
    vectors = np.arange(8, dtype="<f4").reshape(2, 4)
    header = json.dumps({"titles": ["a", "b"], "image_uris": ["", ""], "attributes": {},
                         "spaces": [["clip", 4]]}).encode()
    payload = bytes([1]) + struct.pack("<II", 2, len(header)) + header + ids.tobytes() + vectors.tobytes()
    decoded = records.decode(payload)
    assert decoded.ids.tolist() == [3, 4] and decoded.digests() == ["", ""]
    np.testing.assert_array_equal(decoded.vectors["clip"], vectors)
    again = records.decode(records.encode(decoded))
    assert again.digests() == ["", ""] and again.titles == ["a", "b"]


def test_a_catalog_file_of_the_old_layout_is_upgraded_on_open(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE products (id INTEGER PRIMARY KEY, title TEXT NOT NULL, image_uri TEXT NOT NULL)")
    db.execute("INSERT INTO products VALUES (7, 'old dress', 'img/7.jpg')")
    db.commit()
    db.close()
    catalog = Catalog(path)
    assert catalog.get([7]) == {7: ProductRecord(7, "old dress", "img/7.jpg", "")}
    catalog.upsert([ProductRecord(8, "new dress", "", "ab" * 32)], seq=5)
    assert catalog.digests() == {"ab" * 32}
    assert catalog.ids() == [7, 8] and catalog.ids(changed_after=0) == [8]
    catalog.close()


def with_images(ids, seed, store):
    """A batch whose products have stored images (pinned as the servicer leaves them until logged)."""
    plain = batch(ids, seed)
    digests = [store.blobs.put(f"image {i} v{seed}".encode()) for i in ids]
    return records.UpsertBatch(plain.ids, plain.vectors, plain.attributes, plain.titles, plain.image_uris, digests)


def test_the_durable_store_keeps_the_blobs_of_live_products_and_of_unsnapshotted_records(tmp_path):
    store = open_store(tmp_path)
    first = with_images([1, 2, 3], 1, store)
    store.upsert(first)
    store.blobs.unpin(first.digests())
    replacement = with_images([2], 2, store)
    store.upsert(replacement)
    store.blobs.unpin(replacement.digests())
    store.delete([3])
    d1, d2_old, d3 = first.digests()
    # The replaced and deleted products' blobs are still named by log records after the newest snapshot.
    store.sweep_blobs()
    assert all(d in store.blobs for d in (d1, d2_old, d3))
    assert store.catalog.get([1, 2])[2].image_sha256 == replacement.digests()[0]

    crash(store)  # a restart replays those records, so their blobs are still needed
    store = open_store(tmp_path)
    store.sweep_blobs()
    assert all(d in store.blobs for d in (d1, d2_old, d3))
    store.snapshot()
    assert store.sweep_blobs() > 0
    assert d1 in store.blobs and replacement.digests()[0] in store.blobs
    assert d2_old not in store.blobs and d3 not in store.blobs
    store.close()


def test_the_background_thread_sweeps_after_its_snapshots(tmp_path):
    import time

    store = open_store(tmp_path, snapshot_every_records=1)
    first = with_images([1], 1, store)
    store.upsert(first)
    store.blobs.unpin(first.digests())
    replacement = with_images([1], 2, store)
    store.upsert(replacement)
    store.blobs.unpin(replacement.digests())
    deadline = time.monotonic() + 10
    while first.digests()[0] in store.blobs and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.digests()[0] not in store.blobs and replacement.digests()[0] in store.blobs
    store.close()
