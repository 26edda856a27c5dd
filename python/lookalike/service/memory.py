"""Gives memory back to the operating system after requests that took a lot.

A decoded image, a long text or a large message is freed when its call ends, but
glibc's malloc keeps freed memory in its arenas (one per handler thread, with a
mmap threshold that grows with the blocks freed), so the process stays at its
peak: RSS rose from 282 MB to 1.1 GB after a handful of bad requests and stayed
there. MemoryTrimmer looks from a thread of its own at the bytes lying free in
malloc's arenas (mallinfo2's fordblks) and, once `threshold` more of them have
been freed since its last trim, calls malloc_trim(0), which returns the free
pages of every arena. Free bytes stay counted after a trim (their pages are
released, the chunks kept), so the growth since the last trim, not their total,
is what says that something new lies resident and unused. Without glibc 2.33+
it does nothing.
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


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc() -> tuple[Callable[[], int], Callable[[int], int]] | None:
    """(bytes free in malloc's arenas, malloc_trim), or None without glibc 2.33+."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallinfo2, trim = libc.mallinfo2, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    return (lambda: mallinfo2().fordblks), trim


class MemoryTrimmer:
    def __init__(self, threshold: int = 64 << 20, period: float = 1.0) -> None:
        """Looks every `period` seconds; trims once `threshold` bytes more lie free
        than after the last trim."""
        self._threshold = threshold
        self._period = period
        self._glibc = _glibc()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="memory-trimmer", daemon=True)
        self.trims = 0  # trims so far (for tests and the log)

    def start(self) -> None:
        if self._glibc is not None:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        free_bytes, trim = self._glibc
        floor = free_bytes()  # free bytes after the last trim, or fewer once reused
        while not self._stop.wait(self._period):
            free = free_bytes()
            if free - floor > self._threshold:
                before = resident_bytes()
                trim(0)
                self.trims += 1
                log.debug("returned freed memory to the system: resident %d MB -> %d MB",
                          before >> 20, resident_bytes() >> 20)
                floor = free
            else:
                floor = min(floor, free)
