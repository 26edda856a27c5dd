"""What every servicer of the API (search, a router's search, feedback,
duplicates) does around each call: a limit on calls in flight, failures turned into statuses, and a stop for
calls whose client gave up.

A servicer using `rpc` has `_in_flight` (an InFlight), `_limits` (Limits) and a
`ready` property (False while it loads: calls get UNAVAILABLE).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import grpc

from lookalike.index import DeadlineExceeded, SearchStopped, StopToken
from lookalike.service.errors import ServiceError, invalid
from lookalike.v1 import search_pb2

log = logging.getLogger("lookalike.service")


class InFlight:
    """Counts calls being served; refuses one beyond the limit instead of queueing it.
    A server shares one among its services (ServiceConfig.in_flight_limit)."""

    def __init__(self, limit: int) -> None:
        """``limit`` 0: no limit of its own (the handler threads bound the calls)."""
        self._slots = threading.BoundedSemaphore(limit) if limit else None

    def __enter__(self) -> InFlight:
        if self._slots is not None and not self._slots.acquire(blocking=False):
            raise ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, "the server is at its limit of calls in flight; "
                                                                   "retry after the retry-after-ms trailer")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._slots is not None:
            self._slots.release()


def rpc(method: Callable) -> Callable:
    """Runs a servicer method inside the in-flight limit and turns its failures
    into statuses (see errors.py)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            with self._in_flight:
                if not self.ready:
                    raise ServiceError(grpc.StatusCode.UNAVAILABLE, "the service is still loading; retry shortly")
                return method(self, request, context)
        except ServiceError as e:
            if e.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                context.set_trailing_metadata((("retry-after-ms", str(self._limits.retry_after_ms)),))
            context.abort(e.code, e.message)
        except Exception:
            log.exception("%s failed", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{method.__name__} failed inside the server (see its log)")

    return wrapper


def search_batch(request: search_pb2.SearchBatchRequest, context: grpc.ServicerContext, max_batch: int,
                 search_one: Callable[[search_pb2.SearchRequest], search_pb2.SearchResponse],
                 ) -> search_pb2.SearchBatchResponse:
    """SearchBatch of a server or a router: each query through ``search_one``,
    its failure its own result; more than ``max_batch`` queries fail the call."""
    if len(request.requests) > max_batch:
        raise invalid(f"{len(request.requests)} requests in one batch, at most {max_batch}")
    results = []
    for i, one in enumerate(request.requests):
        check_alive(context)
        try:
            results.append(search_pb2.SearchResult(response=search_one(one)))
        except ServiceError as e:
            results.append(search_pb2.SearchResult(status_code=e.code.value[0], error=f"requests[{i}]: {e.message}"))
    return search_pb2.SearchBatchResponse(results=results)


def upsert_stream(requests: Iterable[search_pb2.UpsertRequest], context: grpc.ServicerContext, max_batch: int,
                  upsert_message: Callable[[search_pb2.UpsertRequest], list[search_pb2.ItemResult]],
                  ) -> search_pb2.UpsertResponse:
    """The Upsert stream of a server or a router: each message goes to
    ``upsert_message`` (one result per product, in order); a message with more than
    ``max_batch`` products fails each of them with INVALID_ARGUMENT."""
    results: list[search_pb2.ItemResult] = []
    for request in requests:
        check_alive(context)
        if len(request.products) > max_batch:
            error = f"{len(request.products)} products in one message, at most {max_batch}"
            results.extend(search_pb2.ItemResult(id=p.id, status_code=grpc.StatusCode.INVALID_ARGUMENT.value[0],
                                                 error=error) for p in request.products)
            continue
        results.extend(upsert_message(request))
    return search_pb2.UpsertResponse(results=results, seq=max((r.seq for r in results), default=0))


def micros(seconds: float) -> int:
    """Seconds as whole microseconds, as StageTimings carries them."""
    return int(seconds * 1e6)


def check_alive(context: grpc.ServicerContext) -> None:
    """Stops work for a call whose client gave up or whose deadline passed."""
    if not context.is_active():
        raise ServiceError(grpc.StatusCode.CANCELLED, "the call was cancelled")
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed")


class NativeStop:
    """A stop token for the native searches and scans of a call: they check it
    as they go and stop at the call's deadline or when it is cancelled, which
    becomes DEADLINE_EXCEEDED or CANCELLED (never INTERNAL).

        with NativeStop(context) as stop:
            collection.search(..., stop=stop)

    (A class, not a @contextmanager generator: it is on every search's path.)"""

    __slots__ = ("_context", "_token")

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context

    def __enter__(self) -> StopToken:
        self._token = StopToken(self._context.time_remaining())
        self._context.add_callback(self._token.cancel)
        return self._token

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        if not isinstance(error, SearchStopped):
            return
        # gRPC ends a call at its deadline as it does a cancelled one: the token tells them apart.
        remaining = self._token.remaining
        if isinstance(error, DeadlineExceeded) or (remaining is not None and remaining <= 0):
            raise ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               "the search was stopped at the call's deadline") from None
        raise ServiceError(grpc.StatusCode.CANCELLED, "the search was stopped: the call was cancelled") from None
