"""A small file replaced whole or not at all, durably: written to a tmp file
beside it, fsync'ed, renamed over the old one, and the folder fsync'ed, so a
crash at any point leaves the old file or the new one, never a mix. Each write
has a tmp file of its own, so two writers of one file never write into each
other's half-written tmp: the last rename wins whole."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lookalike.store.wal import fsync_directory


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
