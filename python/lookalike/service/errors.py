"""How failures become gRPC statuses.

Servicer code raises ServiceError with the status code it means; anything else
that escapes is a bug, reported as INTERNAL with a generic message (the details
go to the log, not to the caller).
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """A failure with the status code the caller gets and a message naming the problem."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServiceError:
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def key_error_text(e: KeyError) -> str:
    """A KeyError's message without the quotes str() adds around it."""
    return e.args[0] if e.args and isinstance(e.args[0], str) else str(e)
