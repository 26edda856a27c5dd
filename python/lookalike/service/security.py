"""Service-to-service security: API keys with scopes, and TLS / mutual TLS.

API keys travel as `authorization: Bearer <key>` metadata. A key has a scope:
`read` may call every method of the API's services (lookalike.v1.*) but
these, which need `write`: Upsert and Delete, starting or cancelling a
duplicate scan (which reads the whole catalog), and the AdminService
(re-index, rollback, versions). The FeedbackService is open to `read`, since a
front end that searches also reports what shoppers did. Health and reflection
stay open (load balancers and tools call them
without keys). With no keys configured, auth is off. Keys are compared in
constant time against every configured key, and never logged.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

SCOPES = ("read", "write")
_PROTECTED_SERVICE = "/lookalike.v1."  # every service of the API
_ADMIN_SERVICE = "/lookalike.v1.AdminService/"
_WRITE_METHODS = {"/lookalike.v1.SearchService/Upsert", "/lookalike.v1.SearchService/Delete",
                  "/lookalike.v1.DuplicatesService/StartScan", "/lookalike.v1.DuplicatesService/CancelScan"}


@dataclass(frozen=True)
class TlsConfig:
    """PEM files. cert + key turn TLS on; client_ca also asks every client for a
    certificate signed by that CA (mutual TLS)."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.cert or self.key)

    def server_credentials(self) -> grpc.ServerCredentials:
        if not (self.cert and self.key):
            raise ValueError("tls: set both cert and key (PEM files)")
        try:
            cert, key = Path(self.cert).read_bytes(), Path(self.key).read_bytes()
            client_ca = Path(self.client_ca).read_bytes() if self.client_ca else None
        except OSError as e:
            raise ValueError(f"tls: cannot read {e.filename}: {e.strerror}") from e
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                           require_client_auth=client_ca is not None)


class ApiKeyInterceptor(grpc.ServerInterceptor):
    def __init__(self, keys: Mapping[str, str]) -> None:
        """``keys`` maps each API key to its scope ("read" or "write")."""
        for key, scope in keys.items():
            if scope not in SCOPES:
                raise ValueError(f"api key scope must be one of {SCOPES}, got {scope!r}")
            if len(key) < 16:
                raise ValueError("api keys must be at least 16 characters")
        self._keys = [(key.encode(), scope) for key, scope in keys.items()]

    def intercept_service(self, continuation: Callable, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method
        if not method.startswith(_PROTECTED_SERVICE):
            return continuation(details)
        scope = self.scope_of(dict(details.invocation_metadata or ()).get("authorization", ""))
        if scope is None:
            return _refusal(continuation(details), grpc.StatusCode.UNAUTHENTICATED,
                            "missing or unknown API key: send 'authorization: Bearer <key>' metadata")
        if (method in _WRITE_METHODS or method.startswith(_ADMIN_SERVICE)) and scope != "write":
            return _refusal(continuation(details), grpc.StatusCode.PERMISSION_DENIED,
                            "this API key may only read; writes and administration need a key with the write scope")
        return continuation(details)

    def scope_of(self, header: str) -> str | None:
        if not header.startswith("Bearer "):
            return None
        sent = header[len("Bearer "):].encode()
        found = None
        for key, scope in self._keys:  # no early exit: the time taken does not depend on which key matched
            if hmac.compare_digest(sent, key):
                found = scope
        return found


def _refusal(handler: grpc.RpcMethodHandler | None, code: grpc.StatusCode, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same shape as the refused one that only aborts."""
    def abort(request: object, context: grpc.ServicerContext) -> None:
        context.abort(code, message)

    if handler is not None and handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)
