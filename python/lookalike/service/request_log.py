"""The service's request log: one JSON line per call on the `lookalike.requests`
logger, written by a thread of its own.

Writing a line through `logging` (a record, the handler's lock, a write and a
flush) on the call's own thread was the largest part of a vector Search's
time outside the index: 40-80 µs of 180-210 on the loaded 2-core VM
(bench/search_hot_path.py with and without INFO logging). A call now only
appends its fields to a queue; the writer thread turns them into records
(stamped with the call's end, not the write's) every FLUSH_S or as soon as
FLUSH_LINES wait. Lines still queued when the process dies are lost: at most
FLUSH_S of them, which an access log can afford and a write never does (writes
are made durable by the write-ahead log, not by this log). The same thread folds
the calls' queued metric observations in (observability.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from json.encoder import encode_basestring_ascii as _string  # json.dumps' own, in C

log = logging.getLogger("lookalike.requests")

FLUSH_S = 0.05
FLUSH_LINES = 256


class RequestLog:
    def __init__(self, also: Callable[[], None] = lambda: None) -> None:
        """``also`` runs on the writer thread after each batch of lines (the metrics' fold)."""
        self._also = also
        self._queued: deque[tuple] = deque()  # append and popleft are atomic: no lock
        self._wake = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._writer.start()

    def enabled(self) -> bool:
        return not self._closed and log.isEnabledFor(logging.INFO)

    def add(self, request_id: str, method: str, code: str, seconds: float, peer: str, error: str | None) -> None:
        """Queues the line of a call that ended now."""
        self._queued.append((time.time(), request_id, method, code, seconds, peer, error))
        if len(self._queued) >= FLUSH_LINES:
            self._wake.set()

    def close(self) -> None:
        """Writes what is queued and stops the writer."""
        self._closed = True
        self._wake.set()
        self._writer.join(timeout=10)
        self._write()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            self._write()
            self._also()

    def _write(self) -> None:
        while self._queued:
            try:
                at, request_id, method, code, seconds, peer, error = self._queued.popleft()
            except IndexError:  # close() and the writer raced for the last line
                return
            record = log.makeRecord(log.name, logging.INFO, __file__, 0,
                                    line(request_id, method, code, seconds, peer, error), None, None)
            record.created, record.msecs = at, (at % 1) * 1000
            log.handle(record)


def line(request_id: str, method: str, code: str, seconds: float, peer: str, error: str | None) -> str:
    """A call's JSON line, the text json.dumps gives for the same fields in this order
    (written by hand at a third of its cost: the writer thread shares the cores and the GIL
    with the calls)."""
    text = (f'{{"request_id": {_string(request_id)}, "method": {_string(method)}, "code": {_string(code)}, '
            f'"ms": {round(seconds * 1e3, 3)!r}, "peer": {_string(peer)}')
    # A client's mistake is logged here only, without a traceback.
    return text + (f', "error": {_string(error)}}}' if error is not None else "}")
