"""Catalog: the product metadata that search hits are hydrated with (title and
image reference), in SQLite, the embedded default that needs no server. Each
row also names the product's original image in the blob store (its SHA-256,
store/blobs.py) and the log record that last wrote it (``seq``), which a
rollback uses to find the products changed since a snapshot.

Files written before those two columns existed are upgraded in place on open
(the columns are added, empty): such products have no stored image and seq 0.

Filterable attributes live natively beside the index (lookalike.index.attributes),
not here: this table is read once per hit, never per candidate.

SQLite runs in WAL mode, so readers do not wait on a writer; one connection is
shared by the service's threads behind a lock (SQLite serialises writes anyway,
and the reads here are point lookups by primary key).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    id INTEGER PRIMARY KEY,   -- the product id shared with the index
    title TEXT NOT NULL,
    image_uri TEXT NOT NULL,
    image_sha256 TEXT NOT NULL DEFAULT '',  -- the blob of the original image, '' for none
    seq INTEGER NOT NULL DEFAULT 0           -- the log record that last wrote the row
)
"""
_ADDED_COLUMNS = {"image_sha256": "TEXT NOT NULL DEFAULT ''", "seq": "INTEGER NOT NULL DEFAULT 0"}
# SQLite binds at most 999 variables a statement on older builds.
_CHUNK = 900


@dataclass(frozen=True)
class ProductRecord:
    id: int
    title: str = ""
    image_uri: str = ""
    image_sha256: str = ""


class Catalog:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Opens (or creates) the catalog database at ``path``; ":memory:" for a
        catalog that lives as long as the object."""
        self._db = sqlite3.connect(os.fspath(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            present = {row[1] for row in self._db.execute("PRAGMA table_info(products)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in present:  # a catalog from before the column
                    self._db.execute(f"ALTER TABLE products ADD COLUMN {column} {kind}")

    def upsert(self, records: Iterable[ProductRecord], seq: int | Sequence[int] = 0) -> None:
        """Adds or replaces rows; ``seq`` is the log record that carries them
        (one for every row, or one a row)."""
        records = list(records)
        seqs = [seq] * len(records) if isinstance(seq, int) else [int(s) for s in seq]
        rows = [(r.id, r.title, r.image_uri, r.image_sha256, s) for r, s in zip(records, seqs, strict=True)]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO products (id, title, image_uri, image_sha256, seq) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET title = excluded.title, image_uri = excluded.image_uri, "
                    "image_sha256 = excluded.image_sha256, seq = excluded.seq", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete(self, ids: Sequence[int]) -> None:
        with self._lock:
            for start in range(0, len(ids), _CHUNK):
                chunk = [int(i) for i in ids[start:start + _CHUNK]]
                self._db.execute(f"DELETE FROM products WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def checkpoint(self) -> None:
        """Copies SQLite's own log into the database file, fsync'ed: every change
        made so far survives a power loss (with synchronous=NORMAL a commit alone
        survives a process crash, not a power loss)."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(FULL)")

    def get(self, ids: Sequence[int]) -> dict[int, ProductRecord]:
        """The records of the ids that have one."""
        return {id_: record for id_, (record, _) in self.get_with_seq(ids).items()}

    def get_with_seq(self, ids: Sequence[int]) -> dict[int, tuple[ProductRecord, int]]:
        """The records of the ids that have one, each with the log record that
        last wrote it (a reader compares it to see whether the row changed)."""
        with self._lock:
            return {row[0]: (ProductRecord(*row[:4]), row[4])
                    for row in self._rows("id, title, image_uri, image_sha256, seq", ids)}

    def seqs(self, ids: Sequence[int]) -> dict[int, int]:
        """The log record that last wrote each row, of the ids that have one."""
        with self._lock:
            return dict(self._rows("id, seq", ids))

    def _rows(self, columns: str, ids: Sequence[int]) -> Iterator[tuple]:
        """``columns`` of the rows of the ids, read a chunk of ids at a time (under the lock)."""
        for start in range(0, len(ids), _CHUNK):
            chunk = [int(i) for i in ids[start:start + _CHUNK]]
            yield from self._db.execute(
                f"SELECT {columns} FROM products WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def digests(self) -> set[str]:
        """The blobs the catalog refers to."""
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT DISTINCT image_sha256 FROM products "
                                                       "WHERE image_sha256 != ''")}

    def ids(self, changed_after: int = -1) -> list[int]:
        """Every product id, ascending; with ``changed_after``, those written by a
        log record after that seq."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT id FROM products WHERE seq > ? ORDER BY id",
                                                       (changed_after,))]

    def backup(self, path: str | os.PathLike[str]) -> None:
        """Copies the whole catalog into a new SQLite file at ``path``, as of one
        moment (writes wait meanwhile)."""
        target = sqlite3.connect(os.fspath(path))
        try:
            with self._lock:
                self._db.backup(target)
        finally:
            target.close()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM products").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
