"""WriteGate: lets many writes run together, and stops them all for a moment.

Writes (Upsert, Delete) hold the gate shared while they check, encode, log and
apply; a re-index holds it exclusively for its swap, so that no write prepared
for the old model lands in the new collection. A waiting swap goes first: new
writes queue behind it instead of starving it. Searches never touch the gate.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class WriteGate:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writers = 0          # writes inside the gate
        self._closing = False      # an exclusive holder is waiting or inside

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._closing)
            self._writers += 1
        try:
            yield
        finally:
            with self._cond:
                self._writers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Waits for the writes inside to finish, keeps new ones out until the block ends."""
        with self._cond:
            self._cond.wait_for(lambda: not self._closing)
            self._closing = True
            self._cond.wait_for(lambda: self._writers == 0)
        try:
            yield
        finally:
            with self._cond:
                self._closing = False
                self._cond.notify_all()
