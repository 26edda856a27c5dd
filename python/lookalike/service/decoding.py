"""A message that fails to decode is the client's mistake: INVALID_ARGUMENT with
protobuf's reason (invalid UTF-8 in a string field, nesting past protobuf's
recursion limit, truncated bytes), not gRPC's INTERNAL "Exception deserializing
request!" with a traceback in the log.

gRPC decodes a request with its handler's request_deserializer before any
servicer code runs, and reports any exception from it as INTERNAL. DecodeGuard
wraps the deserializer of every method of the API (lookalike.v1.*) so that a
DecodeError becomes an Undecodable value; the wrapped behaviour answers it with
INVALID_ARGUMENT (a streamed message: when the servicer reaches it, as a
ServiceError that `calls.rpc` turns into the status).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc
from google.protobuf.message import DecodeError

from lookalike.service.errors import ServiceError, invalid
from lookalike.service.wrapped_handlers import WrappedHandlers

_API = "/lookalike.v1."


class Undecodable(NamedTuple):
    """Stands for a request message that protobuf could not decode."""

    reason: str


class DecodeGuard(grpc.ServerInterceptor):
    def __init__(self) -> None:
        self._guarded = WrappedHandlers(_guarded)

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = continuation(details)
        if handler is None or handler.request_deserializer is None or not details.method.startswith(_API):
            return handler
        return self._guarded.get(details.method, handler)


def _guarded(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    deserializer = _tolerant(handler.request_deserializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(
            _streamed(handler.stream_unary), request_deserializer=deserializer,
            response_serializer=handler.response_serializer)
    return grpc.unary_unary_rpc_method_handler(
        _unary(handler.unary_unary), request_deserializer=deserializer,
        response_serializer=handler.response_serializer)


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as e:
            return Undecodable(str(e))
    return tolerant


def _unary(behaviour: Callable) -> Callable:
    def run(request: Any, context: grpc.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, _message(request))
        return behaviour(request, context)
    return run


def _streamed(behaviour: Callable) -> Callable:
    def run(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        try:
            return behaviour(_checked(requests), context)
        except ServiceError as e:  # raised by _checked in a servicer that does not turn it into a status
            context.abort(e.code, e.message)
    return run


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for i, request in enumerate(requests):
        if isinstance(request, Undecodable):
            raise invalid(f"message {i} of the stream: {_message(request)}")
        yield request


def _message(request: Undecodable) -> str:
    return f"the request is not a valid message: {request.reason}"
