"""Index versions on disk: which model and collection the service serves, and
the one before it, kept for a rollback (service/reindex.py builds them).

    data_dir/snapshots/              version 0: the collection from before any re-index
                                     (its model is the one the config names)
    data_dir/versions/ACTIVE.json    {"active": 2, "previous": 1}; absent: version 0, no previous
    data_dir/versions/<n>/VERSION.json   {"version", "model_id", "created_unix"}
    data_dir/versions/<n>/model/     a copy of the bundle that encoded it
    data_dir/versions/<n>/snapshots/ its snapshots (store/snapshots.py)

The write-ahead log (data_dir/wal/) and the catalog are shared by every
version: the active version's snapshots say where replay starts.

ACTIVE.json is the swap: written to a tmp file, fsync'ed, renamed over the old
one and the folder fsync'ed, so a crash leaves the old pointer or the new one.
A version folder that the pointer names neither as active nor as previous is a
build that did not finish (or one replaced since) and is removed by prune().
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lookalike.store.atomic import write_atomically

_POINTER = "ACTIVE.json"
_INFO = "VERSION.json"


@dataclass(frozen=True)
class VersionInfo:
    version: int
    model_id: str
    created_unix: float


class Versions:
    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir / "versions"
        # Where an operator puts the bundles a re-index may be started with (the only ones it may use).
        self.models_dir = self.data_dir / "models"

    # --- the pointer ----------------------------------------------------------------

    def _pointer(self) -> dict:
        path = self.root / _POINTER
        if not path.is_file():
            return {"active": 0, "previous": None}
        try:
            pointer = json.loads(path.read_text())
            return {"active": int(pointer["active"]), "previous": pointer.get("previous")}
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: damaged version pointer ({e}); it names the version to serve") from e

    @property
    def active(self) -> int:
        return self._pointer()["active"]

    @property
    def previous(self) -> int | None:
        return self._pointer()["previous"]

    def activate(self, version: int, previous: int | None) -> None:
        """Makes ``version`` the one served from now on (and after a restart)."""
        write_atomically(self.root / _POINTER, json.dumps({"active": version, "previous": previous}))

    # --- the folders ----------------------------------------------------------------

    def folder(self, version: int) -> Path:
        return self.root / str(version)

    def snapshots_dir(self, version: int) -> Path:
        return self.data_dir / "snapshots" if version == 0 else self.folder(version) / "snapshots"

    def model_dir(self, version: int) -> Path | None:
        """The bundle of a version; None for version 0 (the config names it)."""
        return None if version == 0 else self.folder(version) / "model"

    def create(self, bundle: str | os.PathLike[str], model_id: str) -> int:
        """A new version folder holding a copy of ``bundle``; returns its number."""
        pointer = self._pointer()
        numbers = [int(p.name) for p in self.root.iterdir() if p.name.isdigit()] if self.root.is_dir() else []
        version = max([pointer["active"], *numbers]) + 1
        folder = self.folder(version)
        shutil.copytree(bundle, folder / "model")
        info = {"version": version, "model_id": model_id, "created_unix": time.time()}
        (folder / _INFO).write_text(json.dumps(info))
        return version

    def info(self, version: int, model_id: str = "") -> VersionInfo:
        """What VERSION.json says (version 0 has none: ``model_id`` is used)."""
        if version == 0:
            return VersionInfo(0, model_id, 0.0)
        info = json.loads((self.folder(version) / _INFO).read_text())
        return VersionInfo(version, info["model_id"], info["created_unix"])

    def kept(self) -> list[int]:
        """The active version and the previous one, ascending."""
        pointer = self._pointer()
        return sorted({pointer["active"]} | ({pointer["previous"]} if pointer["previous"] is not None else set()))

    def remove(self, version: int) -> None:
        """Removes a version that is neither active nor previous (a failed build)."""
        if version in self.kept():
            raise ValueError(f"version {version} is in use")
        if version == 0:
            shutil.rmtree(self.snapshots_dir(0), ignore_errors=True)
        else:
            shutil.rmtree(self.folder(version), ignore_errors=True)

    def prune(self) -> list[int]:
        """Removes every version but the active one and the previous; returns those removed."""
        kept = self.kept()
        removed = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.name.isdigit() and int(path.name) not in kept:
                    shutil.rmtree(path)
                    removed.append(int(path.name))
        if 0 not in kept and self.snapshots_dir(0).exists():
            shutil.rmtree(self.snapshots_dir(0))
            removed.append(0)
        return sorted(removed)
