"""Snapshot directories: ``<root>/<seq, 20 digits>/`` holds a saved state that
covers every write-ahead log record up to ``seq``, and a ``SNAPSHOT.json`` that
says so. The saving itself is the caller's (a function that fills a directory);
this module makes it atomic, lists, loads with a fallback, and prunes.

A snapshot is written into ``<root>/.tmp-<seq>/``, every file in it fsync'ed,
then renamed into place and the root fsync'ed: a crash leaves either no
snapshot or a whole one, and a leftover tmp directory is removed by prune().
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lookalike.store.wal import fsync_directory

log = logging.getLogger("lookalike.store")
T = TypeVar("T")
_MARKER = "SNAPSHOT.json"
_FORMAT_VERSION = 1


class SnapshotError(Exception):
    """No snapshot could be loaded although some exist."""


class Snapshots:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def write(self, seq: int, fill: Callable[[Path], None]) -> Path:
        """Makes the snapshot covering the log up to ``seq``: ``fill(directory)``
        writes the state into a fresh directory. Returns the snapshot's path."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / f"{seq:020d}"
        tmp = self.root / f".tmp-{seq:020d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            fill(tmp)
            marker = {"format_version": _FORMAT_VERSION, "seq": seq, "created_unix": time.time()}
            (tmp / _MARKER).write_text(json.dumps(marker))
            for path in tmp.iterdir():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            fsync_directory(tmp)
            if final.exists():  # a snapshot of the same point left by an earlier run
                shutil.rmtree(final)
            os.rename(tmp, final)
            fsync_directory(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def seqs(self) -> list[int]:
        """The sequence numbers of the complete snapshots, newest first."""
        if not self.root.is_dir():
            return []
        found = [int(p.name) for p in self.root.iterdir()
                 if p.name.isdigit() and (p / _MARKER).is_file()]
        return sorted(found, reverse=True)

    def path(self, seq: int) -> Path:
        return self.root / f"{seq:020d}"

    def load_newest(self, load: Callable[[Path], T]) -> tuple[T, int] | None:
        """``load(directory)`` of the newest snapshot that loads, and its seq;
        a damaged one is logged and the one before it tried. None when there is
        no snapshot; SnapshotError when there are some and none loads."""
        failures = []
        for seq in self.seqs():
            path = self.path(seq)
            try:
                marker = json.loads((path / _MARKER).read_text())
                if marker.get("format_version") != _FORMAT_VERSION or marker.get("seq") != seq:
                    raise ValueError(f"{path / _MARKER} does not describe snapshot {seq}")
                return load(path), seq
            except Exception as e:  # any damage: try the one before
                log.error("snapshot %s does not load (%s); trying the one before it", path, e)
                failures.append(f"{path}: {e}")
        if failures:
            raise SnapshotError("no snapshot loads:\n  " + "\n  ".join(failures))
        return None

    def prune(self, keep: int) -> list[int]:
        """Removes all but the ``keep`` newest snapshots and any leftover tmp
        directory; returns the seqs kept, newest first."""
        seqs = self.seqs()
        for seq in seqs[keep:]:
            # Renamed first, so that a crash in the middle of the removal leaves a
            # tmp directory to finish off, not a half snapshot.
            doomed = self.root / f".tmp-removing-{seq:020d}"
            os.rename(self.path(seq), doomed)
            shutil.rmtree(doomed)
        if self.root.is_dir():
            for leftover in self.root.glob(".tmp-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        return seqs[:keep]
