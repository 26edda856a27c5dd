"""FeedbackStore: shoppers' events on search hits (impressions, clicks,
add-to-cart, purchases), in SQLite, for the online metrics.

Its own file beside the catalog (data_dir/feedback.sqlite3), in WAL mode with
synchronous=FULL: a batch is one transaction, and once record() returns it
survives a power loss (the events are not in the write-ahead log of the
collection, so SQLite alone must keep them).

Growth is bounded two ways: events older than `retention_ms` are removed, and
beyond `max_events` the oldest go first. Both run after a batch is stored, so
the table never holds much more than max_events plus one batch.

Beside the events, the clicks that the click boost counted (its space and
normalised query words, which an event does not carry: the search they came
from is remembered only in memory) are kept under the same bounds, so that a
restarted server rebuilds the boost by counting them again in arrival order.
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
CREATE TABLE IF NOT EXISTS boost_clicks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order: the order they are counted again
    space TEXT NOT NULL,
    text TEXT NOT NULL,                     -- the query's words, normalised (ClickBoost.key)
    product_id INTEGER NOT NULL,
    time_ms INTEGER NOT NULL                -- when the click was stored
);
CREATE INDEX IF NOT EXISTS boost_clicks_by_time ON boost_clicks (time_ms);
"""


@dataclass(frozen=True)
class Event:
    search_id: str
    product_id: int
    position: int
    kind: str      # one of KINDS
    time_ms: int


@dataclass(frozen=True)
class BoostClick:
    """A click the click boost counts: on ``product_id``, searched with ``text`` in ``space``."""

    space: str
    text: str
    product_id: int


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
            self._boost_count = self._db.execute("SELECT COUNT(*) FROM boost_clicks").fetchone()[0]

    def record(self, events: Sequence[Event], now_ms: int, boost_clicks: Sequence[BoostClick] = ()) -> None:
        """Stores the events and the boost's clicks in one transaction (all or
        none), then drops what retention no longer keeps."""
        for e in events:
            if e.kind not in KINDS:
                raise ValueError(f"unknown event kind {e.kind!r} (one of {', '.join(KINDS)})")
        rows = [(e.search_id, e.product_id, e.position, e.kind, e.time_ms) for e in events]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO events (search_id, product_id, position, kind, time_ms) VALUES (?, ?, ?, ?, ?)", rows)
                self._db.executemany("INSERT INTO boost_clicks (space, text, product_id, time_ms) VALUES (?, ?, ?, ?)",
                                     [(c.space, c.text, c.product_id, now_ms) for c in boost_clicks])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count += len(rows)
            self._count -= self._prune("events", self._count, now_ms)
            self._boost_count += len(boost_clicks)
            self._boost_count -= self._prune("boost_clicks", self._boost_count, now_ms)

    def _prune(self, table: str, count: int, now_ms: int) -> int:
        """Removes the rows of ``table`` (events or boost_clicks) past retention; returns how many."""
        removed = self._db.execute(f"DELETE FROM {table} WHERE time_ms < ?", (now_ms - self._retention_ms,)).rowcount
        excess = count - removed - self._max_events
        if excess > 0:
            removed += self._db.execute(
                f"DELETE FROM {table} WHERE seq IN (SELECT seq FROM {table} ORDER BY seq LIMIT ?)", (excess,)).rowcount
        return removed

    def boost_clicks(self) -> list[BoostClick]:
        """The boost's clicks still kept, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT space, text, product_id FROM boost_clicks ORDER BY seq").fetchall()
        return [BoostClick(space, text, product_id) for space, text, product_id in rows]

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
