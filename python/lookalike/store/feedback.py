"""FeedbackStore: shoppers' events on search hits (impressions, clicks,
add-to-cart, purchases), in SQLite, for the online metrics.

Its own file beside the catalog (data_dir/feedback.sqlite3), in WAL mode with
synchronous=FULL: a batch is one transaction, and once record() returns it
survives a power loss (the events are not in the write-ahead log of the
collection, so SQLite alone must keep them).

Growth is bounded two ways: events older than `retention_ms` are removed, and
beyond `max_events` the oldest go first. Both run after a batch is stored, so
the table never holds much more than max_events plus one batch.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass

KINDS = ("impression", "click", "add_to_cart", "purchase")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order: the oldest go first beyond max_events
    search_id TEXT NOT NULL,
    product_id INTEGER NOT NULL,
    position INTEGER NOT NULL,              -- 1-based rank shown; 0 unknown
    kind TEXT NOT NULL,                     -- one of KINDS
    time_ms INTEGER NOT NULL                -- event time, ms since the Unix epoch
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (time_ms);
CREATE INDEX IF NOT EXISTS events_by_search ON events (search_id, kind);
"""


@dataclass(frozen=True)
class Event:
    search_id: str
    product_id: int
    position: int
    kind: str      # one of KINDS
    time_ms: int


@dataclass(frozen=True)
class WindowCounts:
    """What happened in a time window (see lookalike.eval.online for the rates)."""

    searches: int              # distinct search ids with an impression
    impressions: int
    clicks: int
    add_to_carts: int
    purchases: int
    searches_with_click: int   # of those searches, the ones with a click


class FeedbackStore:
    def __init__(self, path: str | os.PathLike[str], *, retention_ms: int, max_events: int) -> None:
        if retention_ms <= 0 or max_events <= 0:
            raise ValueError("feedback retention and max_events must be > 0")
        self._retention_ms = retention_ms
        self._max_events = max_events
        self._db = sqlite3.connect(os.fspath(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._count = self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def record(self, events: Sequence[Event], now_ms: int) -> None:
        """Stores the events in one transaction (all or none), then drops what
        retention no longer keeps."""
        for e in events:
            if e.kind not in KINDS:
                raise ValueError(f"unknown event kind {e.kind!r} (one of {', '.join(KINDS)})")
        rows = [(e.search_id, e.product_id, e.position, e.kind, e.time_ms) for e in events]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO events (search_id, product_id, position, kind, time_ms) VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += len(rows)
            self._prune(now_ms)

    def _prune(self, now_ms: int) -> None:
        removed = self._db.execute("DELETE FROM events WHERE time_ms < ?", (now_ms - self._retention_ms,)).rowcount
        excess = self._count - removed - self._max_events
        if excess > 0:
            removed += self._db.execute(
                "DELETE FROM events WHERE seq IN (SELECT seq FROM events ORDER BY seq LIMIT ?)", (excess,)).rowcount
        self._count -= removed

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def counts(self, since_ms: int | None = None, until_ms: int | None = None) -> WindowCounts:
        """Counts of the events with since_ms <= time_ms < until_ms (None: open)."""
        where, args = "time_ms >= ? AND time_ms < ?", (
            since_ms if since_ms is not None else -(1 << 62), until_ms if until_ms is not None else 1 << 62)
        with self._lock:
            by_kind = dict(self._db.execute(f"SELECT kind, COUNT(*) FROM events WHERE {where} GROUP BY kind", args))
            searches, with_click = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(clicked), 0) FROM ("
                "  SELECT MAX(kind = 'click') AS clicked FROM events"
                f"  WHERE {where} GROUP BY search_id HAVING MAX(kind = 'impression') = 1)", args).fetchone()
        return WindowCounts(searches=searches, impressions=by_kind.get("impression", 0), clicks=by_kind.get("click", 0),
                            add_to_carts=by_kind.get("add_to_cart", 0), purchases=by_kind.get("purchase", 0),
                            searches_with_click=with_click)

    def close(self) -> None:
        with self._lock:
            self._db.close()
