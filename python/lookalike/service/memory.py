"""Gives memory back to the operating system after requests that took a lot.

A decoded image, a long text or a large message is freed when its call ends, but
glibc's malloc keeps the freed pages in its arenas (one per handler thread, with
a mmap threshold that grows with the blocks freed), so the process's resident
size stays at its peak: RSS rose from 282 MB to 1.1 GB after a handful of bad
requests and stayed there. MemoryTrimmer watches the resident size from a
thread of its own and calls glibc's malloc_trim(0), which returns every arena's
free pages, when it has grown by `threshold` bytes since the last look; memory
still in use stays, and becomes the new baseline. Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Callable

log = logging.getLogger("lookalike.service")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """The process's resident set size (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return 0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim") if name else None
    except (OSError, AttributeError):  # not glibc
        return None


class MemoryTrimmer:
    def __init__(self, threshold: int = 64 << 20, period: float = 1.0) -> None:
        """Looks every `period` seconds; trims once the resident size is
        `threshold` bytes above what it was after the last trim (or its lowest since)."""
        self._threshold = threshold
        self._period = period
        self._trim = _malloc_trim()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="memory-trimmer", daemon=True)
        self.trims = 0  # trims so far (for tests)

    def start(self) -> None:
        if self._trim is not None and resident_bytes():
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        baseline = resident_bytes()
        while not self._stop.wait(self._period):
            now = resident_bytes()
            if now - baseline > self._threshold:
                self._trim(0)
                self.trims += 1
                baseline = resident_bytes()  # what is still in use
                log.debug("malloc_trim: resident %d MB -> %d MB", now >> 20, baseline >> 20)
            else:
                baseline = min(baseline, now)
