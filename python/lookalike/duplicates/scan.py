"""The whole-catalog duplicate scan: a bounded background job with progress.

Visits every product (ascending id, as listed when the scan starts), finds its
candidates with the DuplicateFinder and keeps the pairs whose P(duplicate)
reaches ``min_probability``; each pair is kept once (as smaller id, larger id),
whichever side found it. It stops after scoring ``max_pairs`` candidate pairs
(``truncated``), when cancelled, or when done. Products deleted during the scan
are skipped.

Given a results file, a scan writes its status there when it starts and its
status and pairs when it ends (replaced whole: store/atomic.py), so the latest
scan's results outlive a restart (load_scan); a scan the server stopped in the
middle of is reported as failed, "interrupted".
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.duplicates.candidates import all_ids
from lookalike.duplicates.features import ProductView
from lookalike.duplicates.finder import DuplicateFinder, Pair
from lookalike.index import UnknownIdError
from lookalike.store.atomic import write_atomically

log = logging.getLogger("lookalike.duplicates")


class ScanState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class ScanProgress:
    """A snapshot of a scan's counters (copied under the scan's lock)."""

    scan_id: str
    state: ScanState
    products_total: int = 0
    products_done: int = 0
    pairs_examined: int = 0
    pairs_found: int = 0
    truncated: bool = False
    error: str = ""
    elapsed_seconds: float = 0.0


@dataclass
class _Counters:
    products_total: int = 0
    products_done: int = 0
    pairs_examined: int = 0
    truncated: bool = False
    error: str = ""
    finished: float | None = None
    pairs: dict[tuple[int, int], Pair] = field(default_factory=dict)


class ScanJob:
    def __init__(self, finder: DuplicateFinder, min_similarity: float, min_probability: float,
                 max_pairs: int, results: str | os.PathLike[str] | None = None) -> None:
        self.scan_id = uuid.uuid4().hex[:16]
        self._results = results
        self._finder = finder
        self._min_similarity = min_similarity
        self._min_probability = min_probability
        self._max_pairs = max_pairs
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state = ScanState.RUNNING
        self._counters = _Counters()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"duplicate-scan-{self.scan_id}", daemon=True)

    def start(self) -> ScanJob:
        self._save()
        self._thread.start()
        return self

    def cancel(self, wait: float | None = None) -> None:
        self._stop.set()
        self._thread.join(wait)

    @property
    def running(self) -> bool:
        with self._lock:
            return self._state is ScanState.RUNNING

    def progress(self) -> ScanProgress:
        with self._lock:
            return self._progress(self._state)

    def _progress(self, state: ScanState) -> ScanProgress:
        """The progress as of now, in ``state`` (the caller holds the lock)."""
        c = self._counters
        end = c.finished if c.finished is not None else time.monotonic()
        return ScanProgress(self.scan_id, state, c.products_total, c.products_done, c.pairs_examined,
                            len(c.pairs), c.truncated, c.error, end - self._started)

    def pairs(self) -> list[Pair]:
        """The pairs kept so far, most probable first (ties: by ids)."""
        with self._lock:
            pairs = list(self._counters.pairs.values())
        return sorted(pairs, key=lambda p: (-p.probability, p.product_id, p.duplicate_id))

    def _run(self) -> None:
        try:
            ids = all_ids(self._finder.collection).tolist()
            with self._lock:
                self._counters.products_total = len(ids)
            cache: dict[int, ProductView] = {}
            for id_ in ids:
                if self._stop.is_set():
                    self._end(ScanState.CANCELLED)
                    return
                try:
                    found = self._finder.find(id_, self._min_similarity, cache=cache)
                except UnknownIdError:  # deleted since the scan listed it
                    found = []
                cache.pop(id_, None)  # a product's view is needed again only by later ones that find it
                with self._lock:
                    c = self._counters
                    for pair in found[: max(0, self._max_pairs - c.pairs_examined)]:
                        c.pairs_examined += 1
                        key = (min(pair.product_id, pair.duplicate_id), max(pair.product_id, pair.duplicate_id))
                        if pair.probability >= self._min_probability and key not in c.pairs:
                            c.pairs[key] = _ordered(pair)
                    c.products_done += 1
                    if c.pairs_examined >= self._max_pairs and c.products_done < c.products_total:
                        c.truncated = True
                        break
            self._end(ScanState.DONE)
        except Exception as e:  # reported through the status; the server goes on
            log.exception("duplicate scan %s failed", self.scan_id)
            with self._lock:
                self._counters.error = f"{type(e).__name__}: {e}"
            self._end(ScanState.FAILED)

    def _end(self, state: ScanState) -> None:
        """Writes the ended scan to its file before its status says it ended, so
        that whoever sees it ended (a test, a restart) finds the file ended too."""
        with self._lock:
            self._counters.finished = time.monotonic()
            ended = self._progress(state)
        self._save(ended)
        with self._lock:
            self._state = state

    def _save(self, progress: ScanProgress | None = None) -> None:
        if self._results is None:
            return
        try:
            save_scan(self._results, progress or self.progress(), self.pairs())
        except OSError:  # the scan's answer is still served from memory
            log.exception("cannot write the results of duplicate scan %s to %s", self.scan_id, self._results)


class FinishedScan:
    """A scan read back from its results file: a ScanJob's read side, ended."""

    running = False

    def __init__(self, progress: ScanProgress, pairs: list[Pair]) -> None:
        self.scan_id = progress.scan_id
        self._progress, self._pairs = progress, pairs

    def progress(self) -> ScanProgress:
        return self._progress

    def pairs(self) -> list[Pair]:
        return list(self._pairs)

    def cancel(self, wait: float | None = None) -> None:
        pass


def save_scan(path: str | os.PathLike[str], progress: ScanProgress, pairs: list[Pair]) -> None:
    doc = {"progress": {**dataclasses.asdict(progress), "state": progress.state.value},
           "pairs": [dataclasses.asdict(p) for p in pairs]}
    write_atomically(path, json.dumps(doc))


def load_scan(path: str | os.PathLike[str]) -> FinishedScan:
    """The scan a results file holds; one still running when it was written
    (the server stopped in the middle) comes back failed. ValueError names a
    file that is not a scan's results."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        progress = ScanProgress(**{**doc["progress"], "state": ScanState(doc["progress"]["state"])})
        pairs = [Pair(**p) for p in doc["pairs"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not the results of a duplicate scan ({e})") from None
    if progress.state is ScanState.RUNNING:
        progress = dataclasses.replace(progress, state=ScanState.FAILED,
                                       error="interrupted: the server stopped during the scan")
    return FinishedScan(progress, pairs)


def _ordered(pair: Pair) -> Pair:
    """The pair with the smaller id first (features are symmetric)."""
    if pair.product_id < pair.duplicate_id:
        return pair
    return Pair(pair.duplicate_id, pair.product_id, pair.similarity, pair.probability, pair.is_duplicate,
                pair.features)
