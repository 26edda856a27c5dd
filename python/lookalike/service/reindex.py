"""Re-indexing with a new model, and rolling back, while the service serves.

A job builds the collection of another index version (store/versions.py) in a
background thread; the active version keeps serving every call meanwhile:

  1. Its starting point. Re-index: a new version folder with a copy of the
     bundle, and an empty collection with the model's spaces (plus any space of
     the active collection that the model does not write, carried over as is).
     Rollback: the previous version's newest snapshot, taken at the moment it
     was swapped out, and its model.
  2. It watches the writes applied from then on (their ids become "dirty"),
     then lists the products to process: every live product (re-index), or
     those written after that snapshot and those deleted since (rollback).
  3. Processing a product makes the new collection hold what the live one
     holds, under the job's model: absent if deleted; else the live attributes
     and, per space, a vector encoded from the product's stored image (the blob
     store), or from its title where the model's text tower writes the space, or
     carried over (see below).
  4. Catch-up: the dirty products are processed again, round after round, until
     one batch or less is left. A product is read after its id was taken off the
     dirty set and a write marks its ids after it is applied, so none is missed.
  5. The swap, with the write gate closed (writes wait; searches go on): the last
     dirty products; a last snapshot of the old version, which is what a later
     rollback starts from; the new version's first snapshot at the same log
     position; the ACTIVE pointer (the durable swap); then the store and the
     servicer switch to the new collection and model. A crash before the
     pointer leaves the old version serving (the unfinished folder is removed at
     the next start, and the job can be started again); after it, the new one.

Products the job's model cannot encode (no stored image, and no title or no
text tower for the space: products sent as vectors only, or stored before the
blob store existed) fail the job by default: it ends FAILED with each product
and the reason, and nothing is swapped. With ``carry_over_unencodable`` such a
product keeps its current vector instead, where the space's dimension is the
same in both versions (the vector then comes from the other model: the client
should re-send it). A space the model does not write is always carried over.

Rollback brings back the previous model and collection as they were at the
swap, then applies the writes made since, re-encoded with that model from
their stored images and titles (deletes are applied as deletes): no
acknowledged write is lost by a rollback.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from lookalike.index import UnknownIdError
from lookalike.index.collection import Collection, SpaceConfig
from lookalike.service.durable import DurableCollection
from lookalike.service.encoding import ModelEncoder
from lookalike.service.errors import ServiceError, invalid, not_found
from lookalike.service.gate import WriteGate
from lookalike.store.catalog import ProductRecord
from lookalike.store.snapshots import Snapshots
from lookalike.store.versions import Versions

log = logging.getLogger("lookalike.reindex")

MAX_LISTED_FAILURES = 100


class JobFailed(Exception):
    """A job that cannot finish; its message says why."""


@dataclass
class Job:
    """The progress of one re-index or rollback, as ReindexStatus reports it."""

    id: str
    kind: str                          # "reindex" | "rollback"
    from_version: int
    to_version: int
    model_id: str
    state: str = "running"             # "running" | "succeeded" | "failed"
    done: int = 0
    total: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    failed: int = 0
    message: str = ""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def fail_product(self, id: int, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < MAX_LISTED_FAILURES:
            self.failures.append((id, reason))


class _Dirty:
    """The ids written since the job began watching, to be processed again."""

    def __init__(self) -> None:
        self._ids: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self, ids: np.ndarray) -> None:
        with self._lock:
            self._ids.update(int(i) for i in ids)

    def take(self) -> list[int]:
        with self._lock:
            ids, self._ids = sorted(self._ids), set()
        return ids


class Reindexer:
    batch = 32            # products per model run
    catch_up_rounds = 20  # at most; the rest is caught up behind the closed gate

    def __init__(self, store: DurableCollection, versions: Versions, gate: WriteGate,
                 swap: Callable[[ModelEncoder | None, Collection], None],
                 open_encoder: Callable[[Path], ModelEncoder],
                 model_path: Callable[[int], Path | None],
                 configured_spaces: Sequence[SpaceConfig] = (), default_space: str = "") -> None:
        """``swap(encoder, collection)`` makes the servicer serve them (called
        with the gate closed); ``open_encoder(bundle)`` loads a model;
        ``model_path(version)`` is a version's bundle (None: no model)."""
        self._store = store
        self._versions = versions
        self._gate = gate
        self._swap = swap
        self._open_encoder = open_encoder
        self._model_path = model_path
        self._configured = {s.name: s for s in configured_spaces}
        self._default_space = default_space
        self._jobs: dict[str, Job] = {}
        self._latest: Job | None = None
        self._lock = threading.Lock()   # one job at a time
        self._thread: threading.Thread | None = None

    # --- starting jobs --------------------------------------------------------------

    def start_reindex(self, bundle: str, carry_over: bool = False) -> Job:
        """Starts building a new version with the bundle ``bundle`` names in
        data_dir/models; ServiceError (INVALID_ARGUMENT for a path outside it or a
        broken bundle, NOT_FOUND, FAILED_PRECONDITION) when it cannot."""
        with self._lock:
            self._refuse_if_running()
            path = self._bundle_path(bundle)
            if not path.is_dir():
                raise not_found(f"model_path: no model bundle folder {bundle!r} in the models folder")
            try:
                encoder = self._open_encoder(path)
            except Exception as e:  # a broken manifest, a graph onnxruntime refuses, ...
                raise ServiceError(grpc.StatusCode.INVALID_ARGUMENT, f"model_path: {bundle}: {e}") from None
            try:
                live = self._store.collection
                spaces = self._spaces_for(encoder, live)
                base = Collection(spaces, live.schema, self._default_for([s.name for s in spaces], live),
                                  groups=live.groups.attributes, group_min_members=live.groups.min_members)
                version = self._versions.create(path, encoder.model_id)
            except BaseException:
                encoder.close()
                raise
            job = Job(uuid.uuid4().hex[:12], "reindex", self._versions.active, version, encoder.model_id)
            self._launch(job, encoder, lambda: (base, self._store.catalog.ids()), carry_over,
                         cleanup=lambda: self._versions.remove(version))
            return job

    def _bundle_path(self, requested: str) -> Path:
        """The folder ``requested`` names inside data_dir/models (relative to it,
        or absolute). Any other path is refused with one answer, whether it
        exists or not, so that a caller learns nothing of the server's files."""
        models = self._versions.models_dir.resolve()
        try:  # an absolute path replaces models; resolve() follows '..' and symlinks
            path = (models / requested).resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
            path = None
        if path is None or path == models or not path.is_relative_to(models):  # "" and "." name models
            raise invalid("model_path: a model bundle must be a folder inside the models folder of the server's "
                          "data directory (data_dir/models), named relative to it or by its absolute path; "
                          "neither '..' nor a symlink may lead out of it")
        return path

    def start_rollback(self, carry_over: bool = False) -> Job:
        """Starts bringing the previous version back; FAILED_PRECONDITION when
        there is none or a job is running."""
        with self._lock:
            self._refuse_if_running()
            previous = self._versions.previous
            if previous is None:
                raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                   "there is no previous version to roll back to (none was swapped out)")
            snapshots = Snapshots(self._versions.snapshots_dir(previous))
            if not snapshots.seqs():
                raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"version {previous} has no snapshot to roll back to")
            path = self._model_path(previous)
            try:
                encoder = self._open_encoder(path) if path is not None else None
            except Exception as e:
                raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"the model of version {previous} ({path}) does not load: {e}") from None
            job = Job(uuid.uuid4().hex[:12], "rollback", self._versions.active, previous,
                      encoder.model_id if encoder else "")

            def start() -> tuple[Collection, list[int]]:
                """The previous version as swapped out, and the products changed since."""
                loaded = snapshots.load_newest(Collection.load)
                if loaded is None:
                    raise JobFailed(f"version {previous} has no snapshot to roll back to")
                base, covered = loaded
                groups = self._store.collection.groups
                if base.groups != groups:  # configured since that version was swapped out
                    base.configure_groups(groups.attributes, groups.min_members)
                since = set(self._store.catalog.ids(changed_after=covered))
                gone = {int(i) for i in base.ids() if int(i) not in self._store.collection}
                return base, sorted(since | gone)

            self._launch(job, encoder, start, carry_over, cleanup=lambda: None)
            return job

    def _refuse_if_running(self) -> None:
        if self._latest is not None and self._latest.state == "running":
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"job {self._latest.id} ({self._latest.kind}) is still running; wait for it")

    def _spaces_for(self, encoder: ModelEncoder, live: Collection) -> list[SpaceConfig]:
        """The model's spaces (index parameters from the config where it names
        the space), then the live spaces the model does not write."""
        model_spaces = encoder.encoder.bundle.manifest.spaces
        spaces = []
        for name, space in model_spaces.items():
            configured = self._configured.get(name)
            if configured is not None and configured.dim != space.dim:
                raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"space '{name}' is configured with dimension {configured.dim} but model "
                                   f"{encoder.model_id} writes {space.dim}: change [[spaces]] in the config first")
            spaces.append(configured or SpaceConfig(name, space.dim, space.metric))
        spaces += [config for name, config in live.spaces.items() if name not in model_spaces]
        return spaces

    def _default_for(self, names: list[str], live: Collection) -> str:
        """The configured default space, else the live one, else the model's first."""
        return next((name for name in (self._default_space, live.default_space) if name in names), names[0])

    def _launch(self, job: Job, encoder: ModelEncoder | None, start: Callable[[], tuple[Collection, list[int]]],
                carry_over: bool, cleanup: Callable[[], None]) -> None:
        """Runs the job in its thread; ``start()`` (called there, once the writes
        are watched) gives the collection to build on and the products to process."""
        self._jobs[job.id] = self._latest = job
        self._thread = threading.Thread(target=self._run, args=(job, encoder, start, carry_over, cleanup),
                                        name=f"lookalike-{job.kind}", daemon=True)
        self._thread.start()
        log.info("%s %s started: version %d -> %d (model %s)", job.kind, job.id, job.from_version,
                 job.to_version, job.model_id or "none")

    # --- status ---------------------------------------------------------------------

    def job(self, job_id: str = "") -> Job:
        """A job by id; "" is the latest. NOT_FOUND if there is none."""
        job = self._jobs.get(job_id) if job_id else self._latest
        if job is None:
            raise not_found(f"no job {job_id!r}" if job_id else "no re-index or rollback has run since the start")
        return job

    def wait(self, timeout: float | None = None) -> None:
        """Until the running job (if any) ends (tests, and the server's stop)."""
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the job ----------------------------------------------------------------------

    def _run(self, job: Job, encoder: ModelEncoder | None, start: Callable[[], tuple[Collection, list[int]]],
             carry_over: bool, cleanup: Callable[[], None]) -> None:
        dirty = _Dirty()
        self._store.watch(dirty)
        state = "failed"
        try:
            base, todo = start()
            job.total = len(todo)
            self._process(job, encoder, base, todo, carry_over)
            for _ in range(self.catch_up_rounds):
                if job.failed:
                    break
                todo = dirty.take()
                job.total += len(todo)
                self._process(job, encoder, base, todo, carry_over)
                if len(todo) <= self.batch:
                    break
            if job.failed or not self._swap_in(job, encoder, base, dirty, carry_over):
                raise JobFailed(f"{job.failed} product(s) could not be encoded with model {job.model_id or 'none'}; "
                                "nothing was swapped (see failures; carry_over_unencodable keeps their vectors "
                                "where the dimension is unchanged)")
            state = "succeeded"
            job.message = f"version {job.to_version} (model {job.model_id or 'none'}) is active"
            log.info("%s %s done in %.1f s: %d products, version %d active", job.kind, job.id, job.elapsed,
                     job.done, job.to_version)
        except Exception as e:  # any failure leaves the old version serving
            job.message = str(e) if isinstance(e, (JobFailed, ServiceError)) else f"{type(e).__name__}: {e}"
            if isinstance(e, JobFailed):
                log.warning("%s %s failed: %s", job.kind, job.id, e)
            else:
                log.exception("%s %s failed", job.kind, job.id)
        finally:
            self._store.unwatch(dirty)
        try:
            if state == "succeeded":
                removed = self._versions.prune()
                if removed:
                    log.info("removed index version(s) %s (neither active nor previous)", removed)
            else:
                if encoder is not None:
                    encoder.close()
                cleanup()
        finally:
            # Last: a caller that sees the job ended may start the next one at once.
            job.finished = time.monotonic()
            job.state = state

    def _swap_in(self, job: Job, encoder: ModelEncoder | None, base: Collection, dirty: _Dirty,
                 carry_over: bool) -> bool:
        """Catches up the last writes and swaps, with writes held; False if a
        product failed on the way (nothing swapped)."""
        with self._gate.exclusive():
            started = time.perf_counter()
            self._store.drain()  # writes acknowledged when logged are applied (and marked dirty) first
            todo = dirty.take()
            job.total += len(todo)
            self._process(job, encoder, base, todo, carry_over)
            if job.failed:
                return False
            self._store.snapshot()  # the old version as of this moment: where a rollback starts
            seq = self._store.applied_seq
            root = self._versions.snapshots_dir(job.to_version)
            Snapshots(root).write(seq, base.save)
            self._versions.activate(job.to_version, previous=job.from_version)
            self._store.switch(base, root, seq)
            self._swap(encoder, base)
            log.info("swap to version %d at log record %d: writes held %.0f ms", job.to_version, seq,
                     (time.perf_counter() - started) * 1e3)
        return True

    def _process(self, job: Job, encoder: ModelEncoder | None, base: Collection, ids: list[int],
                 carry_over: bool) -> None:
        for start in range(0, len(ids), self.batch):
            chunk = ids[start:start + self.batch]
            self._rebuild(job, encoder, base, chunk, carry_over)
            job.done += len(chunk)

    def _rebuild(self, job: Job, encoder: ModelEncoder | None, base: Collection, ids: list[int],
                 carry_over: bool) -> None:
        """Makes ``base`` hold these products as the live collection does, under the job's model."""
        live = self._store.collection
        gone = [i for i in ids if i not in live and i in base]
        if gone:
            base.delete(gone)
        records = self._store.catalog.get([i for i in ids if i in live])
        encoded = _Encoded(encoder, records, self._store)
        rows: dict[int, dict[str, np.ndarray]] = {}
        for id_ in records:
            try:
                rows[id_] = {name: encoded.vector(id_, name, config, live, carry_over)
                             for name, config in base.spaces.items()}
            except _Unencodable as e:
                job.fail_product(id_, str(e))
            except (UnknownIdError, _Changed):
                pass  # deleted or replaced meanwhile: it is dirty, and will be processed again
        if not rows:
            return
        ids_ = np.array(list(rows), dtype=np.int64)
        attributes = {i: live.attributes(i) for i in rows}
        names = sorted({name for a in attributes.values() for name in a})
        base.upsert(ids_, {name: np.stack([rows[i][name] for i in rows]) for name in base.spaces},
                    {name: [attributes[i].get(name) for i in rows] for name in names})


class _Unencodable(Exception):
    """A product the job's model cannot encode into a space."""


class _Changed(Exception):
    """A product replaced while the job read it."""


class _Encoded:
    """The vectors of one batch of products under a model, encoded lazily (one
    model run per tower for the whole batch)."""

    def __init__(self, encoder: ModelEncoder | None, records: dict[int, ProductRecord],
                 store: DurableCollection) -> None:
        self._encoder = encoder
        self._model = encoder.model_id if encoder else "none"
        self._records = records
        self._store = store
        self._images: dict[int, dict[str, np.ndarray] | str] | None = None  # vectors, or why not
        self._texts: dict[int, dict[str, np.ndarray] | str] | None = None
        self.image_spaces = encoder.image_spaces if encoder else frozenset()
        self.text_spaces = encoder.text_spaces if encoder else frozenset()

    def vector(self, id_: int, space: str, config: SpaceConfig, live: Collection, carry_over: bool) -> np.ndarray:
        written = space in self.image_spaces or space in self.text_spaces
        if written:
            record = self._records[id_]
            found = None
            if space in self.image_spaces and record.image_sha256:
                found = self._image_vectors().get(id_)
                if found is None:
                    raise _Changed()
            elif space in self.text_spaces and record.title.strip():
                found = self._text_vectors()[id_]
            if isinstance(found, str):
                raise _Unencodable(found)
            if found is not None:
                return found[space]
        if space in live.spaces and live.spaces[space].dim == config.dim and (carry_over or not written):
            return live.vectors(space, [id_])[0]
        raise _Unencodable(self._why_not(id_, space, written, live, config))

    def _why_not(self, id_: int, space: str, written: bool, live: Collection, config: SpaceConfig) -> str:
        if not written:
            return f"space '{space}' is not written by model {self._model} and the live collection has no vector for it"
        record = self._records[id_]
        has = [what for what, ok in (("a stored image", bool(record.image_sha256)),
                                     ("a title", bool(record.title.strip()))) if ok]
        can = [what for what, spaces in (("images", self.image_spaces), ("titles", self.text_spaces))
               if space in spaces]
        reason = (f"no stored image or title to encode into space '{space}'" if not has else
                  f"it has only {' and '.join(has)}, and model {self._model} encodes only "
                  f"{' and '.join(can)} into space '{space}'")
        if space in live.spaces and live.spaces[space].dim != config.dim:
            return reason + f" (its vector cannot be carried over: dimension {live.spaces[space].dim} -> {config.dim})"
        return reason

    def _image_vectors(self) -> dict[int, dict[str, np.ndarray] | str]:
        if self._images is None:
            self._images = {}
            data = {}
            for id_, record in self._records.items():
                if not record.image_sha256:
                    continue
                try:
                    data[id_] = self._store.blobs.read(record.image_sha256)
                except FileNotFoundError:
                    now = self._store.catalog.get([id_]).get(id_)
                    if now is None or now.image_sha256 != record.image_sha256:
                        continue  # replaced or deleted since the catalog was read: absent here, dirty there
                    self._images[id_] = f"its stored image {record.image_sha256} is missing from the blob store"
            self._images.update(_encode_each(self._encoder.encoder.encode_images, data, "stored image"))
        return self._images

    def _text_vectors(self) -> dict[int, dict[str, np.ndarray] | str]:
        if self._texts is None:
            titles = {i: r.title for i, r in self._records.items() if r.title.strip()}
            self._texts = _encode_each(self._encoder.encoder.encode_texts, titles, "title")
        return self._texts


def _encode_each(encode: Callable[[list], dict[str, np.ndarray]], inputs: dict[int, object],
                 what: str) -> dict[int, dict[str, np.ndarray] | str]:
    """{id: {space: vector}} for every input, in one model run; when the batch
    fails, one run per input, so that a bad one fails alone ({id: reason})."""
    if not inputs:
        return {}
    ids = list(inputs)
    try:
        out = encode([inputs[i] for i in ids])
        return {i: {space: matrix[row] for space, matrix in out.items()} for row, i in enumerate(ids)}
    except ValueError:
        pass
    results: dict[int, dict[str, np.ndarray] | str] = {}
    for i in ids:
        try:
            out = encode([inputs[i]])
            results[i] = {space: matrix[0] for space, matrix in out.items()}
        except ValueError as e:
            results[i] = f"its {what} does not encode: {e}"
    return results
