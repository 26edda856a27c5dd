"""A shard replica's local state: a Collection and a Catalog, rebuilt from the
log, with snapshots that name the stream sequence they cover.

The stream is the replica's write-ahead log, so it keeps none of its own. The
apply loop (replica.py) is the only writer: records are applied one at a time,
in stream order, and a snapshot is taken between two records, so it covers
exactly every record up to its ``applied_seq``. After a crash the newest
snapshot that loads gives the collection and the seq to resume the stream
from; the catalog (SQLite, durable on its own) may hold rows of records after
the snapshot, and replaying those records rewrites them in order, as in
service/durable.py. Two snapshots are kept, so a damaged newest one falls back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lookalike.cluster.log_records import FilterDelete, Record
from lookalike.index.collection import Collection
from lookalike.store.catalog import Catalog, ProductRecord
from lookalike.store.records import DeleteBatch, UpsertBatch
from lookalike.store.snapshots import Snapshots

log = logging.getLogger("lookalike.cluster")


class ReplicaStore:
    def __init__(self, data_dir: Path, catalog: Catalog, new_collection: Callable[[], Collection],
                 snapshot_every_records: int, snapshot_every_seconds: float, keep_snapshots: int) -> None:
        self.catalog = catalog
        self._snapshots = Snapshots(Path(data_dir) / "snapshots")
        self._every_records, self._every_seconds = snapshot_every_records, snapshot_every_seconds
        self._keep = max(keep_snapshots, 2)
        loaded = self._snapshots.load_newest(Collection.load)
        self.collection, covered = loaded if loaded is not None else (new_collection(), 0)
        self._lock = threading.Lock()
        self._applied_seq = covered
        self.last_snapshot_seq = covered
        self.last_snapshot_unix = time.time() if loaded is not None else 0.0
        self._records_since_snapshot = 0
        self._last_snapshot_at = time.monotonic()
        log.info("replica state: %d products, snapshot at stream seq %d", len(self.collection), covered)

    @property
    def applied_seq(self) -> int:
        """The stream sequence of the last record of this shard applied (or skipped)."""
        with self._lock:
            return self._applied_seq

    @property
    def unindexed_products(self) -> int:
        """None: a replica counts a record applied once it is in the index (Stats
        reports the same field as a server's store)."""
        return 0

    def apply(self, seq: int, record: Record) -> None:
        """Applies the record at stream sequence ``seq``. The collection checks
        its input first and changes nothing on a bad one, which raises (KeyError,
        ValueError, TypeError) and leaves the record unapplied. As in
        service/durable.py, a hit is never without its catalog row: an upsert
        writes the row before the index makes the product searchable, a delete
        hides the product before its row goes."""
        if isinstance(record, FilterDelete):
            ids = self.collection.ids(self.collection.compile_filter(record.filter))
            record = DeleteBatch(ids)
        if isinstance(record, DeleteBatch):
            self.collection.delete(record.ids)
            self.catalog.delete(record.ids.tolist())
        else:
            rows = [ProductRecord(int(i), t, u, d)
                    for i, t, u, d in zip(record.ids, record.titles, record.image_uris, record.digests())]
            self.collection.upsert(record.ids, record.vectors, record.attributes,
                                   before_searchable=lambda: self.catalog.upsert(rows, seq))
        self._advance(seq)

    def apply_run(self, run: list[tuple[int, UpsertBatch]]) -> None:
        """Applies consecutive upsert records (stream sequence, record) as one
        write: one index insert and one catalog transaction instead of one a
        record, which is what lets a replica that fell behind catch up faster
        than the writes came. A product named twice keeps its later record, as
        if applied one by one. Raises as apply() does, applying nothing."""
        last_of: dict[int, tuple[int, int]] = {}  # id -> (record index, row) of its last version
        for r, (_, record) in enumerate(run):
            for row, id_ in enumerate(record.ids.tolist()):
                last_of[id_] = (r, row)
        picks = sorted(last_of.values())
        names = {name for _, record in run for name in record.attributes}
        spaces = run[0][1].vectors.keys()
        if any(record.vectors.keys() != spaces for _, record in run):
            raise ValueError("records of one run name different vector spaces")
        ids = np.array([run[r][1].ids[row] for r, row in picks], dtype=np.int64)
        vectors = {space: np.stack([run[r][1].vectors[space][row] for r, row in picks]) for space in spaces}
        attributes = {name: [(run[r][1].attributes.get(name) or [None] * len(run[r][1].ids))[row]
                             for r, row in picks] for name in names}
        rows = [ProductRecord(int(ids[i]), run[r][1].titles[row], run[r][1].image_uris[row],
                              run[r][1].digests()[row]) for i, (r, row) in enumerate(picks)]
        seqs = [run[r][0] for r, _ in picks]
        self.collection.upsert(ids, vectors, attributes, before_searchable=lambda: self.catalog.upsert(rows, seqs))
        for seq, _ in run:
            self._advance(seq)

    def skip(self, seq: int) -> None:
        """Passes over the record at ``seq`` (it does not apply)."""
        self._advance(seq)

    def _advance(self, seq: int) -> None:
        with self._lock:
            self._applied_seq = seq
        self._records_since_snapshot += 1

    def snapshot_path(self, seq: int) -> Path:
        return self._snapshots.path(seq)

    def snapshot_due(self) -> bool:
        return self._records_since_snapshot > 0 and (
            self._records_since_snapshot >= self._every_records
            or time.monotonic() - self._last_snapshot_at >= self._every_seconds)

    def snapshot(self) -> int:
        """Saves a snapshot covering every record applied (call between two
        records); returns its seq."""
        seq = self.applied_seq
        if seq == self.last_snapshot_seq:
            return seq
        started = time.perf_counter()
        self.catalog.checkpoint()
        self._snapshots.write(seq, self.collection.save)
        self._snapshots.prune(self._keep)
        self.last_snapshot_seq = seq
        self.last_snapshot_unix = time.time()
        self._records_since_snapshot = 0
        self._last_snapshot_at = time.monotonic()
        log.info("replica snapshot at stream seq %d in %.2f s", seq, time.perf_counter() - started)
        return seq
