"""DurableCollection: the Collection and the Catalog behind the write-ahead log,
so that every acknowledged write survives a crash.

A write is logged, made durable (the fsync policy), then applied to the
collection and the catalog, in log order, then acknowledged:

    seq = wal.write(record); wal.commit(seq)     # concurrent writers share an fsync
    wait for the turn of seq                     # applies follow the log's order, so
    apply to collection and catalog              #   memory and replay agree on who won
                                                 #   (_apply says in which order)

A write may instead be acknowledged once it is durable in the log and has
passed every check that could make its apply fail (upsert(..., wait_applied=False),
Upsert's ACKNOWLEDGE_LOGGED): its apply is then left to the applier thread,
still in log order, and a write that must wait for its own apply (any other
upsert, a delete) waits for the ones queued before it. A crash with applies
queued loses nothing: they are log records after the newest snapshot, replayed
at start. At most ``max_unindexed_products`` products wait for the applier; a
write that would pass that waits before it is logged.

On start the newest snapshot that loads (data_dir/snapshots/<seq>/) gives the
collection, and the log records after its seq are replayed over it.

The catalog is not copied into snapshots. SQLite keeps it durable on its own, and
every catalog change is also in the log: replay re-applies the catalog changes
after the snapshot (idempotently: upsert = replace, delete = delete), and a
snapshot checkpoints the catalog first, so that it holds at least everything up
to the snapshot's seq even after a power loss. This saves copying the whole
catalog per snapshot; the price is that a catalog file damaged by something
other than a crash cannot be restored from a snapshot.

Snapshots are fuzzy: their seq S is read first (every record up to S applied),
then the collection is saved while writes continue, so it may also hold some
writes after S. Replay from S + 1 is still exact, because every record replaces
or deletes its products whole and records are replayed in order: each product
touched after S ends as its last record says. Collection.save blocks writes
(not searches) while it writes the index files; writes queue behind it.

Two snapshots are kept, and the log from the older one on, so that a damaged
newest snapshot falls back to the one before with every write still replayable.

Original images live in a content-addressed blob store (data_dir/blobs/,
store/blobs.py). The servicer stores a product's image there (durably) before
it logs the write, and the record and the catalog row carry its digest. After
each snapshot the background thread sweeps the blobs nothing needs any more:
a blob stays while a catalog row refers to it, while a log record after the
newest snapshot does (replay may still apply it), or while a write that put
it is in flight (pinned).

Compaction: a delete only marks a vector deleted (it is never returned again,
but its slot stays). When the background thread wakes, it first compacts every
space whose deleted share passed ``compact_deleted_fraction`` (Collection.compact:
each space stays the index kind it is; an HNSW index is replaced by a compacted
copy, survivors renumbered and relinked, while searches go on and writes wait;
a trained IVF-PQ index drops its deleted codes in place), then snapshots the
smaller index, then sweeps the blobs. Each step fails on its own: a failure is
logged and counted (lookalike_compaction_failures_total by space,
lookalike_background_failures_total by task) and the next step still runs, so
that a space that cannot be compacted never stops the snapshots that trim the
log. The compaction's scratch folder (data_dir/compacting/) is emptied at
start and after a failed compaction.

Index versions (store/versions.py, service/reindex.py): the log and the catalog
are shared by every version; the collection and its snapshots belong to the
active one (``snapshots_root``). A re-index watches the writes applied while it
builds (watch()), and at its swap, while no write is in flight, switch()es this
store to the new collection, whose first snapshot covers the log up to then.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np

from lookalike.index.collection import Collection
from lookalike.service.config import DurabilityConfig
from lookalike.service.errors import ServiceError
from lookalike.service.observability import Metrics
from lookalike.store import records
from lookalike.store.blobs import BlobStore
from lookalike.store.catalog import Catalog, ProductRecord
from lookalike.store.records import DeleteBatch, UpsertBatch
from lookalike.store.snapshots import Snapshots
from lookalike.store.wal import WalError, WalWriteError, WriteAheadLog

log = logging.getLogger("lookalike.service")


class DurableCollection:
    def __init__(self, data_dir: str | Path, config: DurabilityConfig, catalog: Catalog,
                 new_collection: Callable[[], Collection], legacy: Path | None = None,
                 snapshots_root: Path | None = None, metrics: Metrics | None = None) -> None:
        """Recovers the state in ``data_dir``: the newest loadable snapshot in
        ``snapshots_root`` (default data_dir/snapshots; or the pre-log ``legacy``
        collection directory, or ``new_collection()``), then the log replayed
        over it and over ``catalog``; then starts the background snapshots,
        whose failures are counted in ``metrics``."""
        data_dir = Path(data_dir)
        self._data_dir = data_dir
        self._scratch = data_dir / "compacting"
        self._remove_compaction_leftovers()  # a compaction that a crash interrupted
        self._metrics = metrics or Metrics()
        self.catalog = catalog
        self._watchers: list[Callable[[np.ndarray], None]] = []
        self.blobs = BlobStore(data_dir / "blobs")
        # Blob digests of the upserts after the newest snapshot, by seq: replay may need them.
        self._unsnapshotted_digests: dict[int, list[str]] = {}
        self._digests_lock = threading.Lock()
        self._config = config
        self._snapshots = Snapshots(snapshots_root or data_dir / "snapshots")
        self._records_since_snapshot = 0
        self._wake = threading.Event()          # asks for a snapshot before the timer does
        self._stop = threading.Event()
        started = time.perf_counter()
        loaded = self._snapshots.load_newest(Collection.load)
        if loaded is not None:
            self.collection, covered = loaded
        elif legacy is not None and Collection.exists(legacy):
            self.collection, covered = Collection.load(legacy), 0
        else:
            self.collection, covered = new_collection(), 0
        self._wal = WriteAheadLog(data_dir / "wal", fsync=config.fsync, interval_ms=config.fsync_interval_ms,
                                  segment_bytes=config.segment_bytes, covered_seq=covered)
        replayed = 0
        for record in self._wal.records(after=covered):
            self._apply(records.decode(record.payload), record.seq, replaying=True)
            replayed += 1
        log.info("recovered %d products: snapshot at record %d, %d log records replayed in %.2f s",
                 len(self.collection), covered, replayed, time.perf_counter() - started)

        self._turn = threading.Condition()      # applies go in log order; guards _applied_seq and _queued
        self._applied_seq = self._wal.last_seq
        # By seq, for the applier: a logged batch and its size (None: skipped, its fsync failed).
        self._queued: dict[int, tuple[UpsertBatch | None, int]] = {}
        self._unindexed = 0                     # products in _queued and in the applier's hands
        self._snapshot_lock = threading.Lock()  # one snapshot at a time
        self.last_snapshot_seq = covered
        self._snapshotter = threading.Thread(target=self._snapshot_loop, name="lookalike-snapshots", daemon=True)
        self._snapshotter.start()
        self._applier = threading.Thread(target=self._apply_loop, name="lookalike-applier", daemon=True)
        self._applier.start()

    # --- writes ---------------------------------------------------------------------

    @property
    def applied_seq(self) -> int:
        """The last log record applied: every write acknowledged as applied is at or before it."""
        with self._turn:
            return self._applied_seq

    @property
    def unindexed_products(self) -> int:
        """Products logged and acknowledged (wait_applied=False) but not applied yet."""
        with self._turn:
            return self._unindexed

    def wait_applied(self, seq: int, timeout: float | None) -> bool:
        """Waits until the log record ``seq`` is applied (at most ``timeout`` s); whether it is."""
        with self._turn:
            return self._turn.wait_for(lambda: self._applied_seq >= seq, timeout)

    @property
    def logged_seq(self) -> int:
        """The last log record written."""
        return self._wal.last_seq

    def upsert(self, batch: UpsertBatch, *, wait_applied: bool = True) -> int:
        """Logs the batch durably and returns its log seq: then (and only then)
        the products may be acknowledged. With ``wait_applied`` they are applied
        before it returns; without, the batch is first checked as the apply
        checks it (ValueError, KeyError or TypeError: nothing is logged) and
        left to the applier thread. Raises ServiceError if the log cannot take it."""
        if wait_applied:
            return self._write(batch)[1]
        self.collection.check_upsert(batch.ids, batch.vectors, batch.attributes)
        with self._turn:  # room in the backlog before it grows (a batch larger than the bound waits for none)
            self._turn.wait_for(lambda: self._unindexed == 0
                                or self._unindexed + len(batch.ids) <= self._config.max_unindexed_products)
            self._unindexed += len(batch.ids)
        try:
            seq, durable = self._log(batch)
        except ServiceError:
            with self._turn:
                self._unindexed -= len(batch.ids)
                self._turn.notify_all()
            raise
        with self._turn:  # skipped in its turn when not durable, as _write does
            self._queued[seq] = (batch if durable is None else None, len(batch.ids))
            self._turn.notify_all()
        if durable is not None:
            raise ServiceError(grpc.StatusCode.UNAVAILABLE, f"{durable}; this write was not applied") from durable
        return seq

    def delete(self, ids: list[int]) -> list[int]:
        """Deletes the products; returns the ids that were not there."""
        if not len(ids):
            return []
        return self._write(DeleteBatch(np.asarray(ids, dtype=np.int64)))[0]

    def _log(self, batch: UpsertBatch | DeleteBatch) -> tuple[int, WalError | None]:
        """Writes the batch to the log and fsyncs it: its seq, and the fsync's
        error when the record may not be durable (it then takes its turn
        unapplied). Raises ServiceError if the log cannot take it (nothing written)."""
        try:
            seq = self._wal.write(records.encode(batch))
        except WalError as e:
            raise _log_failure(e) from e
        try:
            self._wal.commit(seq)
        except WalError as e:
            return seq, e
        return seq, None

    def _write(self, batch: UpsertBatch | DeleteBatch) -> tuple[list[int], int]:
        """Logs and applies the batch; its apply's result and its seq."""
        seq, durable = self._log(batch)
        with self._turn:
            self._turn.wait_for(lambda: self._applied_seq == seq - 1)
        try:  # its turn: no other write applies until applied_seq moves
            if durable is None:
                return self._apply(batch, seq), seq
        finally:
            with self._turn:
                self._applied_seq = seq
                self._turn.notify_all()
        raise ServiceError(grpc.StatusCode.UNAVAILABLE, f"{durable}; this write was not applied") from durable

    def _apply_loop(self) -> None:
        """The applier thread: applies the queued batches in log order, taking
        its turn with the writes that apply their own batch."""
        while True:
            with self._turn:
                self._turn.wait_for(lambda: self._applied_seq + 1 in self._queued
                                    or (self._stop.is_set() and not self._queued))
                if self._applied_seq + 1 not in self._queued:
                    return
                seq = self._applied_seq + 1
                batch, size = self._queued.pop(seq)
            try:
                if batch is not None:
                    self._apply(batch, seq)
            except Exception:  # checked before it was logged: a bug or a resource, not the input
                self._metrics.background_failures.labels("apply").inc()
                log.exception("log record %d (acknowledged when logged) failed to apply; a restart "
                              "replays it", seq)
            finally:
                with self._turn:
                    self._applied_seq = seq
                    self._unindexed -= size
                    self._turn.notify_all()

    def _apply(self, batch: UpsertBatch | DeleteBatch, seq: int, *, replaying: bool = False) -> list[int]:
        """Applies one logged batch, live or on replay, in the order that lets a
        search find a product only while its metadata is in place (hydrate.py
        reads it so): an upsert checks its input (a bad one changes nothing),
        sets the attributes, writes the catalog rows, and only then the indexes;
        a delete hides the products in the indexes before their attributes and
        rows go. On replay a batch that fails fails as it did live (it was never
        acknowledged) and is skipped."""
        try:
            if isinstance(batch, DeleteBatch):
                unknown = self.collection.delete(batch.ids)
                self.catalog.delete(batch.ids.tolist())
                self._tell_watchers(batch.ids)
                return unknown
            digests = batch.digests()
            if any(digests):
                with self._digests_lock:
                    self._unsnapshotted_digests[seq] = digests
            rows = [ProductRecord(int(i), t, u, d)
                    for i, t, u, d in zip(batch.ids, batch.titles, batch.image_uris, digests)]
            self.collection.upsert(batch.ids, batch.vectors, batch.attributes,
                                   before_searchable=lambda: self.catalog.upsert(rows, seq))
            self._tell_watchers(batch.ids)
            return []
        except (KeyError, ValueError, TypeError) as e:
            if not replaying:
                raise
            log.warning("log record %d does not apply (%s); skipped, as it was when written", seq, e)
            return []
        finally:
            self._note_write()

    def watch(self, watcher: Callable[[np.ndarray], None]) -> None:
        """Calls ``watcher(ids)`` after each write applied from now on, with the
        ids it touched (in log order, while the next write waits: keep it short)."""
        self._watchers.append(watcher)

    def unwatch(self, watcher: Callable[[np.ndarray], None]) -> None:
        self._watchers.remove(watcher)

    def _tell_watchers(self, ids: np.ndarray) -> None:
        for watcher in list(self._watchers):
            watcher(ids)

    def drain(self) -> None:
        """Waits until every write logged so far is applied (the applier's backlog empty)."""
        self.wait_applied(self._wal.last_seq, None)

    def switch(self, collection: Collection, snapshots_root: Path, covered_seq: int) -> None:
        """Serves and snapshots ``collection`` from now on; its snapshot in
        ``snapshots_root`` covers the log up to ``covered_seq``, the last record
        applied. Call while no write is in flight and after drain() (a re-index's swap)."""
        with self._snapshot_lock:
            with self._turn:
                self.collection = collection
            self._snapshots = Snapshots(snapshots_root)
            self.last_snapshot_seq = covered_seq
            self._records_since_snapshot = 0
            with self._digests_lock:
                self._unsnapshotted_digests.clear()
            # The log before covered_seq goes at the next snapshot's pruning; nothing here can
            # fail half-way, since the ACTIVE pointer already names the new version.

    # --- snapshots ------------------------------------------------------------------

    def _note_write(self) -> None:
        self._records_since_snapshot += 1
        if self._records_since_snapshot >= self._config.snapshot_every_records:
            self._wake.set()

    def _snapshot_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._config.snapshot_every_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            self.compact()  # skips (and counts) a space whose compaction fails
            # One failing step must not stop the other: the snapshot is what trims the log.
            for task, step in (("snapshot", self.snapshot), ("blob_sweep", self.sweep_blobs)):
                try:
                    step()
                except Exception:  # the log still holds everything; tried again at the next wake
                    self._metrics.background_failures.labels(task).inc()
                    log.exception("%s failed; tried again at the next wake", task.replace("_", " "))

    def snapshot(self) -> int:
        """Saves a snapshot unless the newest already covers every applied write;
        returns the seq the newest snapshot covers. Then removes older snapshots
        and the log segments no kept snapshot needs."""
        with self._snapshot_lock:
            with self._turn:
                seq = self._applied_seq
            if seq == self.last_snapshot_seq:
                return seq
            started = time.perf_counter()
            self._records_since_snapshot = 0
            self.catalog.checkpoint()  # the catalog now holds everything up to seq durably
            self._snapshots.write(seq, self.collection.save)
            self.last_snapshot_seq = seq
            with self._digests_lock:
                for covered in [s for s in self._unsnapshotted_digests if s <= seq]:
                    del self._unsnapshotted_digests[covered]
            kept = self._snapshots.prune(self._config.keep_snapshots)
            removed = self._wal.remove_before(min(kept) + 1)
            log.info("snapshot at record %d in %.2f s; %d log segment(s) removed", seq,
                     time.perf_counter() - started, removed)
            return seq

    def compact(self) -> int:
        """Compacts the spaces whose deleted share passed the threshold; returns
        the bytes reclaimed. A space whose compaction fails is logged, counted
        and left as it was (it is tried again at the next wake)."""
        collection = self.collection
        reclaimed = 0
        for name in collection.spaces:
            try:
                reclaimed += self._compact_space(collection, name)
            except Exception:  # the space serves on uncompacted; the snapshot must still run
                self._metrics.compaction_failures.labels(name).inc()
                log.exception("compaction of space '%s' failed; skipped until the next wake", name)
                self._remove_compaction_leftovers()
        return reclaimed

    def _compact_space(self, collection: Collection, name: str) -> int:
        fraction = collection.deleted_fraction(name)
        if fraction < self._config.compact_deleted_fraction:
            return 0
        deleted = collection.index(name).deleted_count
        started = time.perf_counter()
        freed = collection.compact(name, scratch=self._scratch)
        log.info("compacted space '%s': %d deleted vectors (%.0f%% of its slots) dropped, %d bytes reclaimed "
                 "in %.0f ms", name, deleted, 100 * fraction, freed, (time.perf_counter() - started) * 1e3)
        return freed

    def _remove_compaction_leftovers(self) -> None:
        """Removes whatever is in the compaction's scratch folder (or in its way)."""
        try:
            if self._scratch.is_dir() and not self._scratch.is_symlink():
                shutil.rmtree(self._scratch)
            elif self._scratch.exists() or self._scratch.is_symlink():
                self._scratch.unlink()
        except OSError as e:
            log.warning("could not remove the compaction leftovers in %s: %s", self._scratch, e)

    def sweep_blobs(self) -> int:
        """Removes the blobs that no product, no log record after the newest
        snapshot and no write in flight refers to; returns the bytes reclaimed."""
        def referenced() -> set[str]:
            with self._digests_lock:
                pending = {d for digests in self._unsnapshotted_digests.values() for d in digests if d}
            return pending | self.catalog.digests()

        removed, reclaimed = self.blobs.sweep(referenced)
        if removed:
            log.info("blob sweep: %d unreferenced image(s) removed, %d bytes reclaimed", removed, reclaimed)
        return reclaimed

    # --- closing --------------------------------------------------------------------

    def close(self, snapshot: bool = True) -> None:
        """Stops the background snapshots, takes a last one (so the next start
        replays nothing) unless ``snapshot`` is false, and closes the log.
        The applier first applies what it has queued."""
        self._stop.set()
        with self._turn:
            self._turn.notify_all()
        self._applier.join()
        self._wake.set()
        self._snapshotter.join()
        try:
            if snapshot:
                self.snapshot()
        except Exception:  # nothing is lost: the log holds every write, the next start replays it
            log.exception("the last snapshot failed")
        finally:
            self.blobs.close()
            self._wal.close()


def _log_failure(error: Exception) -> ServiceError:
    """The status of a write the log could not take (nothing of it was applied)."""
    if isinstance(error, WalWriteError):
        code = (grpc.StatusCode.RESOURCE_EXHAUSTED if error.errno in (errno.ENOSPC, errno.EDQUOT)
                else grpc.StatusCode.UNAVAILABLE)
        return ServiceError(code, f"{error}; nothing of this write was applied, retry later")
    return ServiceError(grpc.StatusCode.UNAVAILABLE, f"{error}; nothing of this write was applied")
