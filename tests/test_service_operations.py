"""What operators and other services rely on: API keys and scopes, TLS and mutual
TLS, overload answered at once, deadlines, metrics, request ids. Each test runs
an in-process server on a loopback port."""

import datetime
import json
import logging
import threading
import time
import urllib.request

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lookalike.client import Client, Product, packed
from lookalike.index.collection import SpaceConfig
from lookalike.service.config import Limits, ServiceConfig
from lookalike.service.security import TlsConfig
from lookalike.service.errors import ServiceError
from lookalike.service.server import Server
from lookalike.service.calls import check_alive
from lookalike.v1 import search_pb2

WRITER_KEY = "w" * 24
READER_KEY = "r" * 24


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(**overrides):
        config = ServiceConfig(address="127.0.0.1:0", data_dir=str(tmp_path / f"data{len(servers)}"),
                               spaces=(SpaceConfig("clip", 8),), **overrides)
        server = Server(config)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(grace=1)


def product(i):
    v = np.zeros(8, dtype=np.float32)
    v[i % 8] = 1.0
    return Product(id=i, vectors={"clip": packed(v)})


def test_api_keys_and_scopes(serve):
    server = serve(api_keys={WRITER_KEY: "write", READER_KEY: "read"})
    with Client(server.address) as anonymous, Client(server.address, api_key="x" * 24) as wrong, \
            Client(server.address, api_key=READER_KEY) as reader, \
            Client(server.address, api_key=WRITER_KEY) as writer:
        for client in (anonymous, wrong):
            with pytest.raises(grpc.RpcError) as caught:
                client.stats()
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer" in caught.value.details()
        with pytest.raises(grpc.RpcError) as caught:
            reader.upsert([product(1)])
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert writer.upsert([product(1)]).results[0].status_code == 0
        assert reader.search(vector=packed_one(1), k=1).hits[0].id == 1
        with pytest.raises(grpc.RpcError) as caught:
            reader.delete([1])
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def packed_one(i):
    v = np.zeros(8, dtype=np.float32)
    v[i % 8] = 1.0
    return v


def test_short_keys_and_unknown_scopes_are_refused():
    with pytest.raises(ValueError, match="at least 16 characters"):
        Server(ServiceConfig(address="127.0.0.1:0", api_keys={"short": "read"}))
    with pytest.raises(ValueError, match="scope must be one of"):
        Server(ServiceConfig(address="127.0.0.1:0", api_keys={READER_KEY: "admin"}))


# --- TLS ----------------------------------------------------------------------------


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject, key, issuer, issuer_key, *, ca=False, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(obj):
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def pki(tmp_path):
    """A throwaway CA, a server certificate for localhost and a client certificate."""
    ca_key = _key()
    ca = _cert("test CA", ca_key, "test CA", ca_key, ca=True)
    server_key, client_key = _key(), _key()
    files = {"ca.pem": _pem(ca), "server.key": _pem(server_key), "client.key": _pem(client_key),
             "server.pem": _pem(_cert("localhost", server_key, "test CA", ca_key, san="localhost")),
             "client.pem": _pem(_cert("indexer", client_key, "test CA", ca_key))}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return tmp_path, files


def test_tls_serves_clients_that_trust_its_ca_only(serve, pki):
    folder, files = pki
    server = serve(tls=TlsConfig(cert=str(folder / "server.pem"), key=str(folder / "server.key")))
    address = f"localhost:{server.port}"
    with Client(address, tls_root=files["ca.pem"]) as client:
        assert client.stats().products == 0
    with Client(address, timeout=3) as plaintext:
        with pytest.raises(grpc.RpcError) as caught:
            plaintext.stats()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_requires_a_client_certificate(serve, pki):
    folder, files = pki
    server = serve(tls=TlsConfig(cert=str(folder / "server.pem"), key=str(folder / "server.key"),
                                 client_ca=str(folder / "ca.pem")))
    address = f"localhost:{server.port}"
    with Client(address, tls_root=files["ca.pem"], tls_cert=files["client.pem"], tls_key=files["client.key"]) as ok:
        assert ok.stats().products == 0
    with Client(address, tls_root=files["ca.pem"], timeout=3) as no_cert:
        with pytest.raises(grpc.RpcError) as caught:
            no_cert.stats()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_unreadable_tls_files_are_named(tmp_path):
    config = ServiceConfig(address="127.0.0.1:0", tls=TlsConfig(cert=str(tmp_path / "nope.pem"), key="x.key"))
    with pytest.raises(ValueError, match="nope.pem"):
        Server(config)



@pytest.mark.parametrize("field, address, problem", [
    ("address", "127.0.0.1:501000", "port must be a number from 0 to 65535"),
    ("address", "localhost", "is not host:port"),
    ("metrics_address", ":9100", "is not host:port"),
    ("http_address", "127.0.0.1:http", "port must be a number"),
])
def test_addresses_no_server_could_listen_on_are_refused_naming_the_setting(field, address, problem):
    with pytest.raises(ValueError, match=f"{field} '{address}'.*{problem}"):
        ServiceConfig(**{field: address})


def test_ipv6_and_any_port_addresses_are_accepted():
    assert ServiceConfig(address="[::1]:0", http_address="0.0.0.0:8080").address == "[::1]:0"

# --- load -----------------------------------------------------------------------------


def test_overload_is_refused_at_once_with_a_retry_hint(serve):
    server = serve(limits=Limits(max_in_flight=1, retry_after_ms=250))
    release = threading.Event()

    def slow_stream():  # holds the only slot until released
        yield search_pb2.UpsertRequest(products=[product(1)])
        release.wait(10)

    with Client(server.address) as client:
        pending = client.stub.Upsert.future(slow_stream(), timeout=20)
        try:
            refused = None
            for _ in range(100):  # until the stream has taken the slot
                try:
                    client.stats()
                except grpc.RpcError as e:
                    refused = e
                    break
                threading.Event().wait(0.02)
            assert refused is not None and refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert ("retry-after-ms", "250") in tuple(refused.trailing_metadata())
        finally:
            release.set()
        assert pending.result().results[0].status_code == 0
        assert client.stats().products == 1  # served again once the slot is free


def test_an_oversized_message_is_refused(serve):
    server = serve(limits=Limits(max_message_bytes=4096))
    with Client(server.address) as client:
        with pytest.raises(grpc.RpcError) as caught:
            client.upsert([Product(id=1, title="x" * 10_000, vectors={"clip": packed(packed_one(1))})])
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert client.stats().products == 0


class _Context:
    """The two questions check_alive asks of a call."""

    def __init__(self, active, remaining):
        self._active, self._remaining = active, remaining

    def is_active(self):
        return self._active

    def time_remaining(self):
        return self._remaining


@pytest.mark.parametrize("active, remaining, code", [
    (False, 5.0, grpc.StatusCode.CANCELLED),
    (True, 0.0, grpc.StatusCode.DEADLINE_EXCEEDED),
    (True, -1.0, grpc.StatusCode.DEADLINE_EXCEEDED),
])
def test_work_stops_for_cancelled_and_expired_calls(active, remaining, code):
    with pytest.raises(ServiceError) as caught:
        check_alive(_Context(active, remaining))
    assert caught.value.code == code


def test_live_calls_go_on():
    check_alive(_Context(True, None))  # no deadline
    check_alive(_Context(True, 0.5))


# --- observability -------------------------------------------------------------------


def test_metrics_count_calls_by_method_and_status(serve):
    server = serve(metrics_address="127.0.0.1:0")
    with Client(server.address) as client:
        client.upsert([product(i) for i in range(3)])
        client.search(vector=packed_one(2), k=2)
        with pytest.raises(grpc.RpcError):
            client.search(vector=np.ones(3), k=2)
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5).read().decode()
    assert 'lookalike_requests_total{code="OK",method="Search"} 1.0' in text
    assert 'lookalike_requests_total{code="INVALID_ARGUMENT",method="Search"} 1.0' in text
    assert 'lookalike_requests_total{code="OK",method="Upsert"} 1.0' in text
    assert "lookalike_products 3.0" in text
    assert 'lookalike_stage_seconds_count{stage="search"} 1.0' in text


def test_each_call_is_logged_as_one_json_line_stamped_when_it_ended(serve, caplog):
    caplog.set_level(logging.INFO, logger="lookalike.requests")
    server = serve()
    with Client(server.address) as client:
        client.stub.Stats.with_call(search_pb2.StatsRequest(), metadata=[("x-request-id", "abc-123")])
        ended = time.time()
        with pytest.raises(grpc.RpcError):
            client.stub.Search(search_pb2.SearchRequest(k=0))
    time.sleep(0.2)  # the line is written by the log's own thread, after the call
    server.stop(grace=1)  # writes what is still queued
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "lookalike.requests"]
    assert [(line["method"], line["code"]) for line in lines] == [("Stats", "OK"), ("Search", "INVALID_ARGUMENT")]
    assert lines[0]["request_id"] == "abc-123" and "error" not in lines[0]
    assert lines[1]["error"] and len(lines[1]["request_id"]) == 32
    stats_record = next(r for r in caplog.records if r.name == "lookalike.requests")
    assert stats_record.created <= ended  # the call's end, not when the line was written


def test_each_call_gets_a_request_id_back(serve):
    server = serve()
    with Client(server.address) as client:
        _, call = client.stub.Stats.with_call(search_pb2.StatsRequest(), metadata=[("x-request-id", "abc-123")])
        assert ("x-request-id", "abc-123") in tuple(call.trailing_metadata())
        _, call = client.stub.Stats.with_call(search_pb2.StatsRequest())
        generated = dict(call.trailing_metadata())["x-request-id"]
        assert len(generated) == 32
