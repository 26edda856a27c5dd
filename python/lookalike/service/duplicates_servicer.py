"""The DuplicatesService of lookalike.v1: the duplicates of one product, and
whole-catalog scans run as background jobs (lookalike.duplicates does the work).

Without a classifier in the model bundle (`lookalike train duplicates`) every
call is FAILED_PRECONDITION: the image similarity alone is what Search gives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np

from lookalike.duplicates.classifier import DuplicateClassifier
from lookalike.duplicates.finder import DuplicateFinder, DuplicatesConfig, Pair
from lookalike.duplicates.scan import FinishedScan, ScanJob, ScanProgress, ScanState, load_scan
from lookalike.index import UnknownIdError
from lookalike.service import convert
from lookalike.service.calls import InFlight, rpc
from lookalike.service.config import Limits
from lookalike.service.durable import DurableCollection
from lookalike.service.encoding import ModelEncoder
from lookalike.service.errors import ServiceError, invalid, not_found
from lookalike.v1 import duplicates_pb2, duplicates_pb2_grpc

log = logging.getLogger("lookalike.duplicates")

_STATES = {ScanState.RUNNING: duplicates_pb2.SCAN_STATE_RUNNING, ScanState.DONE: duplicates_pb2.SCAN_STATE_DONE,
           ScanState.FAILED: duplicates_pb2.SCAN_STATE_FAILED,
           ScanState.CANCELLED: duplicates_pb2.SCAN_STATE_CANCELLED}
_DEFAULT_PAGE = 100


class DuplicatesServicer(duplicates_pb2_grpc.DuplicatesServiceServicer):
    def __init__(self, limits: Limits, config: DuplicatesConfig = DuplicatesConfig(),
                 scan_results: Path | None = None, in_flight: InFlight | None = None) -> None:
        """``scan_results``: where the latest scan's results are kept across restarts
        (and read back from here); None keeps them in memory only."""
        self._limits = limits
        self._config = config
        self._in_flight = in_flight or InFlight(limits.max_in_flight)
        self._collection = None          # set by attach(); until then calls are UNAVAILABLE
        self._finder: DuplicateFinder | None = None
        self._why_not = ""
        self._scans: dict[str, ScanJob | FinishedScan] = {}
        self._latest = ""
        self._scans_lock = threading.Lock()
        self._scan_results = scan_results
        if scan_results is not None and scan_results.exists():
            try:
                restored = load_scan(scan_results)
            except ValueError as e:  # a scan is cheap to run again: serve without it
                log.warning("the last duplicate scan is lost: %s", e)
            else:
                self._scans, self._latest = {restored.scan_id: restored}, restored.scan_id

    def attach(self, store: DurableCollection, encoder: ModelEncoder | None,
               classifier: DuplicateClassifier | None) -> None:
        """Serves the duplicates of `store`'s collection. Raises ValueError when the
        classifier does not fit the collection (a space it compares is missing)."""
        collection = store.collection
        if classifier is None:
            self._why_not = ("the model bundle has no duplicate classifier: train one with "
                             "`lookalike train duplicates --pairs PAIRS.jsonl --model BUNDLE`")
        else:
            space = self._config.space or (encoder.image_query_space if encoder else "") or collection.default_space
            text_space = next(iter(sorted(encoder.text_spaces)), None) if encoder else None

            def encode_titles(titles: Sequence[str]) -> np.ndarray:
                return encoder.encoder.encode_texts(list(titles))[text_space]

            def titles(ids: Sequence[int]) -> dict[int, str]:
                return {i: r.title for i, r in store.catalog.get(list(ids)).items()}

            self._finder = DuplicateFinder(collection, classifier, self._config, space, titles,
                                           encode_titles if text_space else None)
        self._collection = collection

    @property
    def ready(self) -> bool:
        return self._collection is not None

    @property
    def finder(self) -> DuplicateFinder | None:
        """The finder, once attached with a classifier."""
        return self._finder

    def stop(self) -> None:
        """Cancels running scans (called when the server stops)."""
        with self._scans_lock:
            jobs = list(self._scans.values())
        for job in jobs:
            job.cancel(wait=5.0)

    @rpc
    def FindDuplicates(self, request: duplicates_pb2.FindDuplicatesRequest,
                       context: grpc.ServicerContext) -> duplicates_pb2.FindDuplicatesResponse:
        finder = self._ready()
        threshold = self._threshold(request.min_similarity)
        limit = request.max_candidates or self._config.max_candidates
        if limit > self._limits.max_k:
            raise invalid(f"max_candidates is {limit}, at most {self._limits.max_k}")
        _probability_bound(request.min_probability)
        try:
            pairs = finder.find(request.product_id, threshold, limit)
        except UnknownIdError:
            raise not_found(f"product_id: no product {request.product_id}") from None
        return duplicates_pb2.FindDuplicatesResponse(
            pairs=[_pair(p) for p in pairs if p.probability >= request.min_probability],
            space=finder.space, min_similarity=threshold)

    @rpc
    def StartScan(self, request: duplicates_pb2.StartScanRequest,
                  context: grpc.ServicerContext) -> duplicates_pb2.ScanStatus:
        finder = self._ready()
        threshold = self._threshold(request.min_similarity)
        _probability_bound(request.min_probability)
        max_pairs = request.max_pairs or self._config.scan_max_pairs
        if max_pairs > self._config.scan_max_pairs:
            raise invalid(f"max_pairs is {max_pairs}, at most {self._config.scan_max_pairs} (duplicates.scan_max_pairs)")
        with self._scans_lock:
            if any(job.running for job in self._scans.values()):
                raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"scan {self._latest} is still running: wait for it or cancel it")
            job = ScanJob(finder, threshold, request.min_probability or finder.classifier.threshold, max_pairs,
                          self._scan_results)
            self._scans = {job.scan_id: job}  # only the latest scan's results are kept
            self._latest = job.scan_id
        job.start()
        return _status(job.progress())

    @rpc
    def GetScanStatus(self, request: duplicates_pb2.ScanStatusRequest,
                      context: grpc.ServicerContext) -> duplicates_pb2.ScanStatus:
        return _status(self._scan(request.scan_id).progress())

    @rpc
    def CancelScan(self, request: duplicates_pb2.ScanStatusRequest,
                   context: grpc.ServicerContext) -> duplicates_pb2.ScanStatus:
        job = self._scan(request.scan_id)
        job.cancel(wait=5.0)
        return _status(job.progress())

    @rpc
    def GetScanResults(self, request: duplicates_pb2.ScanResultsRequest,
                       context: grpc.ServicerContext) -> duplicates_pb2.ScanResultsResponse:
        job = self._scan(request.scan_id)
        size = request.page_size or _DEFAULT_PAGE
        if size > self._limits.max_k:
            raise invalid(f"page_size is {size}, at most {self._limits.max_k}")
        status = job.progress()  # read before the pairs: they hold at least what the status counts
        pairs = job.pairs()
        offset = convert.page_offset(request.page_token, len(pairs) + 1) if request.page_token else 0
        page = pairs[offset:offset + size]
        response = duplicates_pb2.ScanResultsResponse(pairs=[_pair(p) for p in page], status=_status(status))
        if offset + size < len(pairs):
            response.next_page_token = convert.page_token(offset + size)
        return response

    def _ready(self) -> DuplicateFinder:
        if self._finder is None:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION, self._why_not)
        return self._finder

    def _threshold(self, value: float) -> float:
        if value == 0:
            return self._config.min_similarity
        if not (0.0 < value <= 1.0):
            raise invalid(f"min_similarity must be in (0, 1], got {value}")
        return float(value)

    def _scan(self, scan_id: str) -> ScanJob | FinishedScan:
        with self._scans_lock:
            job = self._scans.get(scan_id or self._latest)
        if job is None:
            raise not_found(f"no scan {scan_id!r} (only the latest scan is kept)" if scan_id
                            else "no scan has been started")
        return job


def _probability_bound(value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise invalid(f"min_probability must be in [0, 1], got {value}")


def _pair(pair: Pair) -> duplicates_pb2.DuplicatePair:
    return duplicates_pb2.DuplicatePair(product_id=pair.product_id, duplicate_id=pair.duplicate_id,
                                        similarity=pair.similarity, probability=pair.probability,
                                        is_duplicate=pair.is_duplicate, features=pair.features)


def _status(p: ScanProgress) -> duplicates_pb2.ScanStatus:
    return duplicates_pb2.ScanStatus(scan_id=p.scan_id, state=_STATES[p.state], products_total=p.products_total,
                                     products_done=p.products_done, pairs_examined=p.pairs_examined,
                                     pairs_found=p.pairs_found, truncated=p.truncated, error=p.error,
                                     elapsed_seconds=p.elapsed_seconds)
