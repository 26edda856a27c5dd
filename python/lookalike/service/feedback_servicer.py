"""The FeedbackService of lookalike.v1: shoppers' events on search hits in, online
metrics out (store/feedback.py keeps the events, eval/online.py defines the rates).

Feedback is all or nothing: every event is checked before any is stored, and a
bad one fails the call with INVALID_ARGUMENT naming it. An event's search id is
not checked against the remembered searches: a purchase may come hours after its
search, long after the server forgot the query (or restarted).
"""

from __future__ import annotations

import time

import grpc

from lookalike.eval.online import online_metrics
from lookalike.service.calls import InFlight, rpc
from lookalike.service.config import Limits
from lookalike.service.errors import invalid
from lookalike.service.relevance_feedback import SearchFeedback
from lookalike.store.feedback import Event, FeedbackStore
from lookalike.v1 import feedback_pb2, feedback_pb2_grpc

_KINDS = {feedback_pb2.EVENT_KIND_IMPRESSION: "impression", feedback_pb2.EVENT_KIND_CLICK: "click",
          feedback_pb2.EVENT_KIND_ADD_TO_CART: "add_to_cart", feedback_pb2.EVENT_KIND_PURCHASE: "purchase"}
MAX_SEARCH_ID = 128  # characters; the server's own ids are 32


class FeedbackServicer(feedback_pb2_grpc.FeedbackServiceServicer):
    def __init__(self, search_feedback: SearchFeedback, limits: Limits, in_flight: InFlight | None = None) -> None:
        """Serves once attach() hands it the store; until then every call is UNAVAILABLE."""
        self._search_feedback = search_feedback
        self._limits = limits
        self._max_batch = limits.max_batch
        self._in_flight = in_flight or InFlight(limits.max_in_flight)
        self._store: FeedbackStore | None = None

    def attach(self, store: FeedbackStore) -> None:
        """Serves from ``store``, the click boost first rebuilt from the clicks it keeps."""
        self._search_feedback.count(store.boost_clicks())
        self._store = store

    @property
    def ready(self) -> bool:
        return self._store is not None

    @rpc
    def Feedback(self, request: feedback_pb2.FeedbackRequest,
                 context: grpc.ServicerContext) -> feedback_pb2.FeedbackResponse:
        if not request.events:
            raise invalid("events: no events to record")
        if len(request.events) > self._max_batch:
            raise invalid(f"{len(request.events)} events in one call, at most {self._max_batch}")
        now_ms = int(time.time() * 1000)
        events = [_checked(e, f"events[{i}]", now_ms) for i, e in enumerate(request.events)]
        clicks: dict[str, list[int]] = {}
        for e in events:
            if e.kind == "click":
                clicks.setdefault(e.search_id, []).append(e.product_id)
        boost = [c for search_id, product_ids in clicks.items()
                 for c in self._search_feedback.boost_clicks(search_id, product_ids)]
        self._store.record(events, now_ms, boost)
        self._search_feedback.count(boost)  # once stored: what a restart rebuilds is what was counted
        return feedback_pb2.FeedbackResponse(recorded=len(events))

    @rpc
    def Stats(self, request: feedback_pb2.FeedbackStatsRequest,
              context: grpc.ServicerContext) -> feedback_pb2.FeedbackStatsResponse:
        if request.since_ms < 0 or request.until_ms < 0:
            raise invalid("since_ms and until_ms must be >= 0 (0: open)")
        if request.since_ms and request.until_ms and request.until_ms <= request.since_ms:
            raise invalid(f"until_ms ({request.until_ms}) must be after since_ms ({request.since_ms})")
        counts = self._store.counts(request.since_ms or None, request.until_ms or None)
        metrics = online_metrics(counts.searches, counts.impressions, counts.clicks, counts.add_to_carts,
                                 counts.purchases, counts.searches_with_click)
        return feedback_pb2.FeedbackStatsResponse(**metrics.as_dict(), events_kept=len(self._store))


def _checked(e: feedback_pb2.FeedbackEvent, where: str, now_ms: int) -> Event:
    if not e.search_id:
        raise invalid(f"{where}.search_id: required (SearchResponse.search_id)")
    if len(e.search_id) > MAX_SEARCH_ID:
        raise invalid(f"{where}.search_id: {len(e.search_id)} characters, at most {MAX_SEARCH_ID}")
    if e.product_id < 0:
        raise invalid(f"{where}.product_id: must be >= 0, got {e.product_id}")
    if e.kind not in _KINDS:
        raise invalid(f"{where}.kind: set one of impression, click, add_to_cart, purchase (got {e.kind})")
    if e.time_ms < 0:
        raise invalid(f"{where}.time_ms: must be >= 0 (0: now), got {e.time_ms}")
    return Event(e.search_id, e.product_id, e.position, _KINDS[e.kind], e.time_ms or now_ms)
