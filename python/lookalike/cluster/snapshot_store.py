"""Shard snapshots in the object store, so that a replica with an empty data
directory starts from the newest one and replays only the records after it.

Bucket LK_<collection>_snapshots; object ``shard-<i>/<seq, 20 digits>.tar``:
an uncompressed tar of ``snapshot/`` (a local snapshot directory, store/
snapshots.py, with its SNAPSHOT.json naming ``seq``) and ``catalog.sqlite3``
(a copy of the catalog taken right after the snapshot, between two records, so
both cover exactly the records up to ``seq``). Replicas publish one after a
local snapshot at most every `snapshot_publish_s`; the KEEP newest of a shard
are kept.

Retention rule: the stream must keep every record after the oldest kept
snapshot of every shard, or a bootstrapped replica has a gap (it refuses to
start, ReplicaGapError). With `max_age_s` set, keep it above KEEP x
snapshot_publish_s plus the longest time a shard may go without a snapshot
(no writes, no snapshot: its newest snapshot ages while its records do too).
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
from pathlib import Path

import nats.js.errors

from lookalike.cluster.log import STARTUP_PATIENCE_S, object_bucket, until_ready
from lookalike.cluster.nats_link import NatsLink

log = logging.getLogger("lookalike.cluster")
KEEP = 2


class SnapshotStore:
    def __init__(self, link: NatsLink) -> None:
        self._link = link
        self._bucket = object_bucket(link, f"{link.config.stream}_snapshots")

    def publish(self, shard: int, seq: int, snapshot: Path, catalog_copy: Path) -> str:
        """Uploads the snapshot covering ``seq`` and its catalog copy; removes the
        shard's older ones past KEEP. Returns the object's name."""
        name = f"shard-{shard}/{seq:020d}.tar"
        with tempfile.TemporaryDirectory(dir=snapshot.parent.parent) as scratch:
            archive = Path(scratch) / "snapshot.tar"
            with tarfile.open(archive, "w") as tar:
                tar.add(snapshot, arcname="snapshot")
                tar.add(catalog_copy, arcname="catalog.sqlite3")

            async def put() -> None:
                with open(archive, "rb") as data:
                    await self._bucket.put(name, data)

            until_ready(self._link, put, f"snapshot {name}")
        for old in self.names(shard)[KEEP:]:
            until_ready(self._link, lambda old=old: self._bucket.delete(old), f"snapshot {old}")
        return name

    def names(self, shard: int) -> list[str]:
        """The shard's published snapshots, newest first."""
        async def listed() -> list[str]:
            try:
                return [info.name for info in await self._bucket.list(ignore_deletes=True)]
            except nats.js.errors.NotFoundError:  # an empty bucket
                return []

        prefix = f"shard-{shard}/"
        names = until_ready(self._link, listed, "snapshot list", STARTUP_PATIENCE_S)
        return sorted((n for n in names if n.startswith(prefix)), reverse=True)

    def restore_newest(self, shard: int, data_dir: Path, snapshots_dir: Path, catalog_path: Path) -> int | None:
        """Puts the shard's newest published snapshot into ``snapshots_dir`` and
        its catalog at ``catalog_path``; returns its seq, or None when there is none."""
        names = self.names(shard)
        if not names:
            return None
        name = names[0]
        seq = int(Path(name).stem)
        with tempfile.TemporaryDirectory(dir=data_dir) as scratch:
            archive = Path(scratch) / "snapshot.tar"

            async def get() -> None:
                with open(archive, "wb") as out:
                    await self._bucket.get(name, writeinto=out)

            until_ready(self._link, get, f"snapshot {name}", STARTUP_PATIENCE_S)
            with tarfile.open(archive) as tar:
                tar.extractall(scratch, filter="data")
            snapshots_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(Path(scratch) / "snapshot", snapshots_dir / f"{seq:020d}")
            shutil.move(Path(scratch) / "catalog.sqlite3", catalog_path)
        log.info("shard %d: bootstrapped from the published snapshot %s (stream seq %d)", shard, name, seq)
        return seq
