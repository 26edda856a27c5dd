"""Method handlers an interceptor wraps, made once per method instead of once per call.

gRPC runs every interceptor's intercept_service on every call, and building the
wrapped handler (a closure and an RpcMethodHandler or two) each time was a
measurable part of a vector Search's time outside the index. The inner handler
of a method is the same object from call to call, unless an interceptor further
in returns one made for this call (a refusal): a cached wrapper is reused only
while its inner handler is that very object, and rebuilt otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc

Wrap = Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler]


class WrappedHandlers:
    def __init__(self, wrap: Wrap) -> None:
        """``wrap(method, handler)`` makes the wrapped handler of one method."""
        self._wrap = wrap
        # method -> (inner handler, its wrapper). Plain dict reads and writes are
        # atomic under the GIL; two calls racing on a miss both wrap, one wins.
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        cached = self._by_method.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._by_method[method] = (handler, wrapped)
        return wrapped
