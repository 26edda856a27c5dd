"""A small file replaced whole or not at all, durably: written to a tmp file
beside it, fsync'ed, renamed over the old one, and the folder fsync'ed, so a
crash at any point leaves the old file or the new one, never a mix."""

from __future__ import annotations

import os
from pathlib import Path

from lookalike.store.wal import fsync_directory


def write_atomically(path: str | os.PathLike[str], text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_directory(path.parent)
