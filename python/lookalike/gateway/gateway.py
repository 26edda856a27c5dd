"""The HTTP/JSON gateway and the browser console, in the gRPC server's process.

    [http] client --HTTP/JSON--> Gateway --gRPC over a private unix socket--> the same grpc.Server

One code path: the gateway does not call the servicers itself. It turns each
HTTP request into a gRPC call to its own server, over a unix socket in a
private temporary folder (mode 0700) that the server listens on beside its
TCP port, forwarding the caller's API key and request id as metadata. So the
interceptors (API keys and scopes, metrics, the per-call log line), the
in-flight limit, message size limits, deadlines and every error message are
those of gRPC, with no second copy to keep in step; the cost is one protobuf
round trip over a local socket per call. (Calling the servicer methods with a
stand-in context would skip the interceptors, and calling the TCP port would
need the gateway to hold a client certificate under mutual TLS.)

Routes (methods.py has the API's; /openapi.json describes them all):

    GET  /                                  the console (console/index.html)
    POST /lookalike.v1.SearchService/Search and every other unary method, JSON in and out
    GET  /v1/images/<sha256>                a product's image from the blob store
    GET  /openapi.json, /healthz

Headers: ``Authorization: Bearer <key>`` (as over gRPC) or ``x-api-key: <key>``;
``x-timeout-ms``, the call's deadline (default 60 s); ``x-request-id``, sent on
as gRPC metadata and returned. With [tls] in the config the gateway speaks
HTTPS with the server's certificate (and asks for client certificates when
client_ca is set).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from lookalike.gateway.methods import SEARCH_PATH, Method, api_methods, message_from_json, message_to_json
from lookalike.gateway.openapi import openapi
from lookalike.gateway.status import GatewayError, bad_request
from lookalike.gateway.uploads import form_parts, json_body_limit, photo_search, too_large, upload_limit
from lookalike.service.config import ServiceConfig
from lookalike.service.security import ApiKeyInterceptor
from lookalike.store.blobs import BlobStore, is_digest

log = logging.getLogger("lookalike.gateway")
CONSOLE = Path(__file__).parent / "console"
DEFAULT_TIMEOUT_MS = 60_000
IDLE_SECONDS = 60            # a connection silent this long (or dribbling a body) is closed
CONNECTIONS_PER_CALL = 4     # open connections allowed per call in flight (ServiceConfig.in_flight_limit()): most idle
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
                (b"RIFF", "image/webp"))


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def _json_reply(body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return Reply(200, "application/json", body, headers or {})


class Gateway:
    def __init__(self, config: ServiceConfig, grpc_server: grpc.Server,
                 blobs: Callable[[], BlobStore | None]) -> None:
        """Adds the private socket to ``grpc_server`` (before it starts) and
        binds config.http_address; ``blobs`` gives the store images are read
        from (None while loading, and on a router)."""
        self._limits = config.limits
        self._blobs = blobs
        self._keys = ApiKeyInterceptor(config.api_keys) if config.api_keys else None
        self._methods = api_methods()
        try:
            package_version = version("lookalike")
        except PackageNotFoundError:
            package_version = "0"
        self._openapi = _json_bytes(openapi(self._methods, package_version))
        tls = _tls_context(config) if config.tls.enabled else None
        # Each connection holds a thread while it is open (idle ones for up to IDLE_SECONDS);
        # the calls they make are bounded by max_in_flight on the gRPC side.
        try:
            self._http = _HttpServer(_host_port(config.http_address), _Handler,
                                     max_connections=CONNECTIONS_PER_CALL * config.in_flight_limit())
        except OSError as e:
            raise ValueError(f"http_address {config.http_address}: cannot listen there ({e.strerror}); "
                             "choose another (--http HOST:PORT)") from e
        self._http.gateway = self
        if tls is not None:
            self._http.socket = tls.wrap_socket(self._http.socket, server_side=True, do_handshake_on_connect=False)
        self.scheme = "https" if tls is not None else "http"
        host = config.http_address.rsplit(":", 1)[0]
        self.address = f"{host}:{self._http.server_address[1]}"
        self._thread: threading.Thread | None = None
        self._socket_dir = tempfile.mkdtemp(prefix="lookalike-gateway-")  # mode 0700: this user only
        target = f"unix:{self._socket_dir}/grpc.sock"
        if grpc_server.add_insecure_port(target) == 0:
            self._http.server_close()
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            raise OSError(f"the gateway cannot listen on {target}")
        size = [("grpc.max_receive_message_length", config.limits.max_message_bytes),
                ("grpc.max_send_message_length", config.limits.max_message_bytes)]
        self._channel = grpc.insecure_channel(target, options=size)
        self._calls = {path: self._callable(m) for path, m in self._methods.items()}

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}/"

    def _callable(self, method: Method) -> Any:
        serialize, deserialize = method.request_type.SerializeToString, method.response_type.FromString
        if method.streams_requests:
            return self._channel.stream_unary(method.path, request_serializer=serialize,
                                              response_deserializer=deserialize)
        return self._channel.unary_unary(method.path, request_serializer=serialize, response_deserializer=deserialize)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._http.serve_forever, name="lookalike-http", daemon=True)
        self._thread.start()
        log.info("HTTP gateway and console on %s", self.url)

    def stop(self) -> None:
        if self._thread is not None:  # shutdown() waits for a serve_forever that never ran otherwise
            self._http.shutdown()
        self._http.server_close()
        self._channel.close()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

    # --- routes ---------------------------------------------------------------------

    def respond(self, request: _Handler) -> Reply:
        path = request.path.split("?", 1)[0]
        verb = request.command
        if path in self._methods:
            method = self._methods[path]
            if verb == "POST" or (verb == "GET" and method.answers_get):
                return self._call(method, request)
            allowed = "GET, POST" if method.answers_get else "POST"
            raise GatewayError(405, "UNIMPLEMENTED", f"{path} answers {allowed}, not {verb}", {"Allow": allowed})
        if verb == "GET":
            if path in ("/", "/index.html"):
                return self._static("index.html")
            if path.startswith("/console/"):
                return self._static(path[len("/console/"):])
            if path == "/openapi.json":
                return _json_reply(self._openapi)
            if path == "/healthz":
                return self._health()
            if path.startswith("/v1/images/"):
                return self._image(path[len("/v1/images/"):], request)
        raise GatewayError(404, "NOT_FOUND", f"no route {verb} {path}: the API is described at /openapi.json")

    def _call(self, method: Method, request: _Handler) -> Reply:
        message = method.request_type() if request.command == "GET" else self._request_message(method, request)
        metadata = [("authorization", key) for key in [_authorization(request)] if key]
        request_id = request.headers.get("x-request-id")
        if request_id:
            metadata.append(("x-request-id", request_id))
        timeout = _timeout_seconds(request.headers.get("x-timeout-ms"))
        sent = iter([message]) if method.streams_requests else message
        try:
            response, call = self._calls[method.path].with_call(sent, metadata=metadata, timeout=timeout)
        except grpc.RpcError as e:
            raise GatewayError.from_rpc(e) from None
        headers = {"X-Request-Id": v for k, v in call.trailing_metadata() or () if k == "x-request-id"}
        return _json_reply(message_to_json(response), headers)

    def _request_message(self, method: Method, request: _Handler) -> Any:
        content_type = request.headers.get("content-type", "")
        is_upload = content_type.startswith("multipart/form-data")
        if is_upload and method.path != SEARCH_PATH:
            raise GatewayError(415, "INVALID_ARGUMENT", f"{method.path} takes JSON; photo uploads go to {SEARCH_PATH}")
        # JSON, said so (or a photo upload to Search, which writes nothing): a page of another site
        # cannot post that here without a CORS preflight, which the gateway never grants.
        if not is_upload and not content_type.startswith("application/json"):
            raise GatewayError(415, "INVALID_ARGUMENT",
                               f"Content-Type {content_type!r}: send application/json (or multipart/form-data with "
                               f"a photo to {SEARCH_PATH})")
        if is_upload:
            body = request.body(upload_limit(self._limits), "a photo upload",
                                "limits.max_image_bytes plus 1 MiB for the other fields")
            return photo_search(form_parts(content_type, body), self._limits)
        body = request.body(json_body_limit(self._limits), "a JSON body",
                            "limits.max_message_bytes as base64, plus 1 MiB")
        return message_from_json(body, method.request_type)

    def _health(self) -> Reply:
        check = self._calls["/grpc.health.v1.Health/Check"]
        try:
            status = check(health_pb2.HealthCheckRequest(), timeout=5).status
        except grpc.RpcError as e:
            raise GatewayError.from_rpc(e) from None
        name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
        serving = status == health_pb2.HealthCheckResponse.SERVING
        return Reply(200 if serving else 503, "application/json", _json_bytes({"status": name}))

    def _image(self, digest: str, request: _Handler) -> Reply:
        """Images need the read scope, like Get: the same check the gRPC interceptor makes."""
        if self._keys is not None and self._keys.scope_of(_authorization(request)) is None:
            raise GatewayError(401, "UNAUTHENTICATED", "missing or unknown API key: send 'Authorization: Bearer <key>' "
                                                       "or 'x-api-key: <key>'")
        if not is_digest(digest):
            raise bad_request(f"not an image digest: {digest[:80]!r} (64 lowercase hex digits, a product's "
                              "image_sha256)")
        blobs = self._blobs()
        if blobs is None:
            raise GatewayError(404, "NOT_FOUND", "this server keeps no images (still loading, or a router: "
                                                 "images live on the shard servers)")
        try:
            data = blobs.path(digest).read_bytes()
        except FileNotFoundError:
            raise GatewayError(404, "NOT_FOUND", f"no image {digest}") from None
        content_type = next((t for magic, t in _IMAGE_MAGIC if data.startswith(magic)), "application/octet-stream")
        # The name is the content's hash: it never changes.
        return Reply(200, content_type, data, {"Cache-Control": "private, max-age=31536000, immutable",
                                               "ETag": f'"{digest}"'})

    def _static(self, name: str) -> Reply:
        files = {p.name: p for p in CONSOLE.iterdir()}  # only the console's own files, whatever the path says
        if name not in files:
            raise GatewayError(404, "NOT_FOUND", f"no console file {name!r}")
        path = files[name]
        return Reply(200, _STATIC_TYPES.get(path.suffix, "application/octet-stream"), path.read_bytes(),
                     {"Cache-Control": "no-cache"})


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data).encode()


def _authorization(request: _Handler) -> str:
    """The caller's key as gRPC metadata carries it: 'Bearer <key>'."""
    header = request.headers.get("authorization", "")
    if header:
        return header
    key = request.headers.get("x-api-key", "")
    return f"Bearer {key}" if key else ""


def _timeout_seconds(header: str | None) -> float:
    if header is None:
        return DEFAULT_TIMEOUT_MS / 1000
    if not header.isdigit() or int(header) == 0:
        raise bad_request(f"x-timeout-ms must be a whole number of milliseconds > 0, got {header!r}")
    return int(header) / 1000


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"http_address must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


def _tls_context(config: ServiceConfig) -> ssl.SSLContext:
    tls = config.tls
    if not (tls.cert and tls.key):
        raise ValueError("tls: set both cert and key (PEM files)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.cert, tls.key)
        if tls.client_ca:
            context.load_verify_locations(tls.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"tls: cannot use {tls.cert} / {tls.key}: {e}") from e
    return context


class _HttpServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them: one more is
    answered 503 at once (or, under TLS, closed) instead of growing the threads."""

    daemon_threads = True
    gateway: Gateway

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._connections = threading.BoundedSemaphore(max_connections)
        self.max_connections = max_connections
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._connections.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def _refuse(self, connection: socket.socket) -> None:
        if not isinstance(connection, ssl.SSLSocket):  # a TLS reply would need a handshake on this thread
            body = GatewayError(503, "UNAVAILABLE", f"the gateway is at its limit of {self.max_connections} "
                                                    "connections; retry shortly").body()
            try:
                connection.settimeout(0.2)
                connection.recv(1 << 16)  # the request, read so that closing does not reset the reply away
                connection.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                   b"Retry-After: 1\r\nConnection: close\r\n"
                                   + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            except OSError:
                pass  # the client is gone already
        self.shutdown_request(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that left, or failed the TLS handshake: the client's affair, not a traceback."""
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            log.debug("HTTP connection from %s ended: %s", client_address, sys.exc_info()[1])
        else:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lookalike"
    timeout = IDLE_SECONDS
    # Headers and body are written apart: with Nagle's algorithm the body would wait for
    # the client's delayed ACK of the headers (~40 ms a reply on a kept-alive connection).
    disable_nagle_algorithm = True
    server: _HttpServer

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    # Answered in JSON too (405 or 404), rather than the base class's HTML 501.
    do_PUT = do_PATCH = do_DELETE = do_POST

    def body(self, limit: int, what: str, setting: str) -> bytes:
        """The request's body, refused (413) from its Content-Length when past ``limit``."""
        length = self.headers.get("content-length")
        if length is None or not length.isdigit():
            raise GatewayError(411, "INVALID_ARGUMENT", "send the body with a Content-Length header")
        size = int(length)
        if size > limit:
            self.close_connection = True  # the body stays unread
            raise too_large(what, size, limit, setting)
        return self.rfile.read(size)

    def _serve(self) -> None:
        try:
            reply = self.server.gateway.respond(self)
        except GatewayError as e:
            reply = Reply(e.status, "application/json", e.body(), e.headers)
        except Exception:
            log.exception("HTTP %s %s failed", self.command, self.path)
            reply = Reply(500, "application/json", GatewayError(500, "INTERNAL", "the gateway failed on this request "
                                                                                   "(see the server's log)").body())
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("%s %s", self.address_string(), format % args)
