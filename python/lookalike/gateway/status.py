"""How a failure reaches an HTTP client: the gRPC status as its HTTP status (the
mapping of google.rpc.Code), and one JSON body for every error,

    {"code": "INVALID_ARGUMENT", "message": "query.image: ..."}

where the message is the server's own, unchanged.
"""

from __future__ import annotations

import json

import grpc

HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}


class GatewayError(Exception):
    """A refusal with its HTTP status, the gRPC code name it stands for, and a
    message naming the problem; ``headers`` go with it (Retry-After, Allow)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    @classmethod
    def from_rpc(cls, error: grpc.RpcError) -> GatewayError:
        """The gRPC failure as the HTTP client sees it; RESOURCE_EXHAUSTED's
        retry-after-ms trailer becomes Retry-After (whole seconds, rounded up)."""
        code = error.code()
        headers = {}
        for key, value in error.trailing_metadata() or ():
            if key == "retry-after-ms" and value.isdigit():
                headers["Retry-After"] = str(max(1, -(-int(value) // 1000)))
                headers["Retry-After-Ms"] = value
        return cls(HTTP_STATUS.get(code, 500), code.name, error.details() or "", headers)

    def body(self) -> bytes:
        return json.dumps({"code": self.code, "message": self.message}).encode()


def bad_request(message: str) -> GatewayError:
    return GatewayError(400, grpc.StatusCode.INVALID_ARGUMENT.name, message)
