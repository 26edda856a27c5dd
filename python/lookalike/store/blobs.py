"""Content-addressed blobs: the original image bytes of products, kept so that
the catalog can be re-encoded by another model (service/reindex.py).

A blob lives at ``<root>/<2 hex>/<2 hex>/<sha256 hex>``: two levels of fan-out
keep every directory small at a hundred million images. The same bytes are
stored once, however many products share them.

A blob is written to a tmp file, fsync'ed, renamed into place and its folder
fsync'ed (and the parent of each fan-out folder the write made) before put() returns: the caller logs the write that refers to it only
then, so an acknowledged product always has its image, even after a crash.

``put_soon`` stores on a small pool of threads: a write's images are stored
side by side (each waits on its own fsyncs) while its photos are encoded.

Who may remove a blob is the caller's business (service/durable.py sweeps the
ones nothing refers to); put() pins a digest until unpin(), so that a sweep
running between the blob's write and its log record cannot take it, and a blob
put while a sweep runs is never removed by that sweep.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from lookalike.store.wal import fsync_directory

_HEX = frozenset("0123456789abcdef")
# Blob writes in flight at once: mostly waiting on fsync, so more than the cores.
_WRITERS = 8


def digest_of(data: bytes) -> str:
    """The blob name of ``data``: its SHA-256 in lowercase hex."""
    return hashlib.sha256(data).hexdigest()


def is_digest(text: str) -> bool:
    return len(text) == 64 and set(text) <= _HEX


class BlobStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._pins: Counter[str] = Counter()
        self._put_during_sweep: set[str] = set()
        self._lock = threading.Lock()      # guards both, and each removal against a put of the same bytes
        self._writers: ThreadPoolExecutor | None = None

    def path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ValueError(f"not a blob digest: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Stores ``data`` durably (once: existing bytes are not written again)
        and pins it; returns its digest. OSError (ENOSPC, ...) leaves no blob."""
        digest = digest_of(data)
        with self._lock:
            self._pins[digest] += 1
            self._put_during_sweep.add(digest)
        try:
            final = self.path(digest)
            if not final.exists():
                # A folder made here is an entry of its parent, which is fsync'ed too (below).
                made = [d for d in (self.root, final.parent.parent, final.parent) if not d.is_dir()]
                final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.with_name(f".tmp-{digest}-{threading.get_ident()}")
                try:
                    with open(tmp, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, final)
                finally:
                    tmp.unlink(missing_ok=True)
                fsync_directory(final.parent)
                for folder in reversed(made):
                    fsync_directory(folder.parent)
        except BaseException:
            self.unpin([digest])
            raise
        return digest

    def put_soon(self, data: bytes) -> Future:
        """put() on the store's writer threads: a Future of the digest (or of the OSError)."""
        with self._lock:
            if self._writers is None:
                self._writers = ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="blob-writer")
            return self._writers.submit(self.put, data)

    def close(self) -> None:
        """Waits for the writes put_soon started."""
        with self._lock:
            writers, self._writers = self._writers, None
        if writers is not None:
            writers.shutdown()

    def unpin(self, digests: Iterable[str]) -> None:
        """Lets a sweep remove these blobs again once nothing refers to them."""
        with self._lock:
            for digest in digests:
                if digest:
                    self._pins[digest] -= 1
                    if self._pins[digest] <= 0:
                        del self._pins[digest]

    def read(self, digest: str) -> bytes:
        """The bytes of a blob; FileNotFoundError if there is none."""
        return self.path(digest).read_bytes()

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, str) and is_digest(digest) and self.path(digest).is_file()

    def digests(self) -> Iterator[str]:
        """Every stored blob (tmp files of unfinished writes are not blobs)."""
        if not self.root.is_dir():
            return
        for first in self.root.iterdir():
            if not first.is_dir():
                continue
            for second in first.iterdir():
                if second.is_dir():
                    yield from (p.name for p in second.iterdir() if is_digest(p.name))

    def sweep(self, referenced: Callable[[], set[str]]) -> tuple[int, int]:
        """Removes every blob that is not in ``referenced()`` (called after the
        blobs are listed), not pinned and not put since the sweep began; returns
        (blobs removed, bytes reclaimed)."""
        with self._lock:
            self._put_during_sweep = set()
        candidates = list(self.digests())
        keep = referenced()
        removed = reclaimed = 0
        for digest in candidates:
            if digest in keep:
                continue
            path = self.path(digest)
            with self._lock:  # a put of these bytes now either sees the file gone or is protected
                if digest in self._pins or digest in self._put_during_sweep:
                    continue
                try:
                    size = path.stat().st_size
                    path.unlink()
                except FileNotFoundError:
                    continue
            removed += 1
            reclaimed += size
        return removed, reclaimed
