"""The HTTP/JSON gateway (lookalike.gateway) in front of a real server: the same
hits as gRPC for the same query, gRPC statuses as HTTP statuses, refusals that
name the problem, API keys and scopes, images by digest, the OpenAPI document.
The catalog is the demo's (lookalike.demo) encoded by the tiny random CLIP."""

import base64
import http.client
import json
import socket
import ssl
import time
import uuid

import grpc
import pytest
from google.protobuf import json_format

from conftest import start_demo_server
from lookalike.client import Client
from lookalike.demo import demo_products
from lookalike.gateway import Gateway
from lookalike.service.config import Limits, ServiceConfig
from lookalike.service.security import TlsConfig
from lookalike.v1 import filter_pb2, search_pb2
from test_service_operations import pki  # noqa: F401 - the throwaway CA and certificates, a fixture

SEARCH = "/lookalike.v1.SearchService/Search"
WRITER_KEY = "w" * 24
READER_KEY = "r" * 24


def request(address, verb, path, body=b"", headers=None, tls_context=None):
    """(status, headers, body parsed as JSON when it is JSON) of one HTTP request."""
    host, port = address.rsplit(":", 1)
    if tls_context is not None:
        connection = http.client.HTTPSConnection(host, int(port), timeout=30, context=tls_context)
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(verb, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        if response.getheader("content-type", "").startswith("application/json"):
            data = json.loads(data)
        return response.status, dict(response.getheaders()), data
    finally:
        connection.close()


def post_json(server, path, message, headers=None):
    body = json.dumps(message if isinstance(message, dict) else json_format.MessageToDict(message)).encode()
    return request(server.gateway.address, "POST", path, body, {"Content-Type": "application/json", **(headers or {})})


def multipart(fields):
    """A multipart/form-data body of {name: bytes}, and its Content-Type."""
    boundary = uuid.uuid4().hex
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                    f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
                    for name, data in fields.items())
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def upload(server, photo, search_request=None, headers=None):
    fields = {"image": photo}
    if search_request is not None:
        fields["request"] = json.dumps(json_format.MessageToDict(search_request)).encode()
    body, content_type = multipart(fields)
    return request(server.gateway.address, "POST", SEARCH, body, {"Content-Type": content_type, **(headers or {})})


def hits(reply):
    """(id, score, title) of each hit of a JSON SearchResponse, as the proto reads them."""
    response = json_format.ParseDict(reply, search_pb2.SearchResponse())
    return [(h.id, h.score, h.metadata.title) for h in response.hits], response.next_page_token


def grpc_hits(response):
    return [(h.id, h.score, h.metadata.title) for h in response.hits], response.next_page_token


PHOTO = demo_products()[9].image   # product 10: a crop of the gift box photo
CHEAP = filter_pb2.Filter(must=[filter_pb2.Condition(range=filter_pb2.Range(attribute="price", lt=100))])


@pytest.mark.parametrize("case", ["photo upload", "photo as base64", "text", "filtered text", "second page",
                                  "hybrid upload", "more like this", "vector"])
def test_gateway_and_grpc_give_the_same_hits(demo_server, case):
    base = dict(k=5, with_metadata=True)
    if case == "vector":  # product 3's stored vector (price 84), read over HTTP: JSON both ways
        got = post_json(demo_server, "/lookalike.v1.SearchService/Get", {"ids": [3], "with_vectors": ["joint"]})[2]
        vector = json_format.ParseDict(got["products"][0]["vectors"]["joint"], search_pb2.Vector())
        assert vector.dtype == search_pb2.DTYPE_FLOAT32 and len(vector.data) == 4 * vector.dim
        expected = search_pb2.SearchRequest(query=search_pb2.Query(vector=vector), filter=CHEAP, **base)
    elif case in ("photo upload", "photo as base64"):
        expected = search_pb2.SearchRequest(query=search_pb2.Query(image=PHOTO), **base)
    elif case == "hybrid upload":
        expected = search_pb2.SearchRequest(query=search_pb2.Query(hybrid=search_pb2.HybridQuery(
            image=PHOTO, text="temple poster", image_weight=0.7, text_weight=0.3)), **base)
    elif case == "more like this":
        expected = search_pb2.SearchRequest(query=search_pb2.Query(product_id=3), filter=CHEAP, **base)
    else:
        expected = search_pb2.SearchRequest(query=search_pb2.Query(text="flower print dress"), **base)
        if case != "text":
            expected.filter.CopyFrom(CHEAP)
        if case == "second page":
            first = Client(demo_server.address).stub.Search(expected, timeout=30)
            expected.page_token = first.next_page_token
    with Client(demo_server.address) as client:
        want = client.stub.Search(expected, timeout=30)
    if case == "photo upload":
        status, _, reply = upload(demo_server, PHOTO, search_pb2.SearchRequest(**base))
    elif case == "hybrid upload":
        sent = search_pb2.SearchRequest(query=search_pb2.Query(hybrid=search_pb2.HybridQuery(
            text="temple poster", image_weight=0.7, text_weight=0.3)), **base)
        status, _, reply = upload(demo_server, PHOTO, sent)
    else:
        status, _, reply = post_json(demo_server, SEARCH, expected)
    assert status == 200, reply
    assert hits(reply) == grpc_hits(want)
    assert len(want.hits) == 5 or case == "more like this"
    if case.startswith("photo"):
        assert want.hits[0].id == 10
    if case == "vector":
        assert want.hits[0].id == 3
    if case == "filtered text":
        prices = {p.id: p.attributes["price"].number for p in demo_products()}
        assert all(prices[h.id] < 100 for h in want.hits)


def test_stats_get_upsert_and_delete_over_http(tiny_clip_bundle, tmp_path):
    server = start_demo_server(tiny_clip_bundle, tmp_path)
    try:
        status, _, stats = request(server.gateway.address, "GET", "/lookalike.v1.SearchService/Stats")
        assert status == 200 and stats["products"] == "24"
        assert stats["attribute_schema"] == {"category": "keyword", "price": "numeric", "in_stock": "bool"}
        photo = demo_products()[0].image
        product = {"id": "100", "title": "new jacket", "image": base64.b64encode(photo).decode(),
                   "attributes": {"price": {"number": 42}}}
        status, _, reply = post_json(server, "/lookalike.v1.SearchService/Upsert", {"products": [product]})
        assert status == 200 and reply["results"] == [{"id": "100", "status_code": 0, "error": "", "seq": "0"}]  # seq: cluster mode
        status, _, got = post_json(server, "/lookalike.v1.SearchService/Get", {"ids": [100, 999]})
        assert status == 200 and got["missing_ids"] == ["999"]
        assert got["products"][0]["metadata"]["title"] == "new jacket"
        assert got["products"][0]["metadata"]["attributes"]["price"] == {"number": 42.0}
        status, _, reply = post_json(server, "/lookalike.v1.SearchService/Delete", {"ids": ["100"]})
        assert status == 200 and reply["deleted"] == "1"
        with Client(server.address) as client:
            assert list(client.stub.Get(search_pb2.GetRequest(ids=[100]), timeout=10).missing_ids) == [100]
    finally:
        server.stop(grace=1)


def test_images_are_served_by_digest(demo_server):
    status, _, reply = post_json(demo_server, "/lookalike.v1.SearchService/Get", {"ids": [7]})
    digest = reply["products"][0]["metadata"]["image_sha256"]
    status, headers, data = request(demo_server.gateway.address, "GET", f"/v1/images/{digest}")
    assert status == 200 and data == demo_products()[6].image and headers["Content-Type"] == "image/jpeg"
    status, _, reply = request(demo_server.gateway.address, "GET", "/v1/images/../../etc/passwd")
    assert status == 400 and "not an image digest" in reply["message"]
    status, _, reply = request(demo_server.gateway.address, "GET", "/v1/images/" + "0" * 64)
    assert status == 404 and reply == {"code": "NOT_FOUND", "message": f"no image {'0' * 64}"}


def test_health_openapi_and_the_console_page(demo_server):
    address = demo_server.gateway.address
    assert request(address, "GET", "/healthz")[:3:2] == (200, {"status": "SERVING"})
    status, _, spec = request(address, "GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.1")
    for service in ("SearchService", "FeedbackService", "DuplicatesService", "AdminService"):
        for method in search_pb2.DESCRIPTOR.pool.FindServiceByName(f"lookalike.v1.{service}").methods:
            assert f"/lookalike.v1.{service}/{method.name}" in spec["paths"]
    schemas = spec["components"]["schemas"]
    request_schema = schemas["lookalike.v1.SearchRequest"]["properties"]
    assert set(request_schema) == {f.name for f in search_pb2.SearchRequest.DESCRIPTOR.fields}
    assert schemas["lookalike.v1.Hit"]["properties"]["id"]["format"] == "int64"
    assert "multipart/form-data" in spec["paths"][SEARCH]["post"]["requestBody"]["content"]
    status, headers, page = request(address, "GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"console.js" in page
    assert request(address, "GET", "/console/console.js")[0] == 200
    assert request(address, "GET", "/console/../gateway.py")[0] == 404


def test_replies_and_requests_match_the_openapi_schemas(demo_server):
    from jsonschema import Draft202012Validator

    spec = request(demo_server.gateway.address, "GET", "/openapi.json")[2]

    def check(message_name, document):
        root = {"$ref": f"#/components/schemas/{message_name}", "components": spec["components"]}
        errors = [e.message for e in Draft202012Validator(root).iter_errors(document)]
        assert errors == [], (message_name, errors[:3])

    conditions = [{"range": {"attribute": "price", "lt": 100}},
                  {"match": {"attribute": "category", "any_of": {"values": ["mug"]}}}]
    search = {"query": {"text": "temple"}, "k": 3, "with_metadata": True, "filter": {"must": conditions}}
    check("lookalike.v1.SearchRequest", search)
    check("lookalike.v1.SearchResponse", post_json(demo_server, SEARCH, search)[2])
    check("lookalike.v1.StatsResponse", post_json(demo_server, "/lookalike.v1.SearchService/Stats", {})[2])
    check("lookalike.v1.GetResponse", post_json(demo_server, "/lookalike.v1.SearchService/Get", {"ids": [1, 99]})[2])
    with pytest.raises(AssertionError, match="Additional properties"):
        check("lookalike.v1.SearchRequest", {"kk": 3})  # the schemas refuse what the gateway refuses


@pytest.mark.parametrize("body, content_type, status, message", [
    (b'{"query": {"text": "dress"}', "application/json", 400, "request body is not JSON"),
    (b'[1, 2]', "application/json", 400, "must be a JSON object (a lookalike.v1.SearchRequest)"),
    (b'{"query": {"text": "dress"}, "kk": 5}', "application/json", 400, 'has no field named "kk"'),
    (b'{"query": {"text": "dress"}, "k": "many"}', "application/json", 400, "Failed to parse k field"),
    (b'{"query": {"text": "dress"}, "filter": {"must": [{"range": {"attribute": "price", "under": 3}}]}}',
     "application/json", 400, 'no field named "under"'),
    (b"query=dress", "application/x-www-form-urlencoded", 415, "send application/json"),
    (b'{"query": {"text": "dress"}}', None, 415, "send application/json"),  # what a cross-site no-cors fetch can send
])
def test_bad_bodies_are_refused_with_a_clear_message(demo_server, body, content_type, status, message):
    headers = {"Content-Type": content_type} if content_type else {}
    got_status, _, reply = request(demo_server.gateway.address, "POST", SEARCH, body, headers)
    assert got_status == status and reply["code"] == "INVALID_ARGUMENT" and message in reply["message"], reply


def test_bad_uploads_are_refused_with_a_clear_message(demo_server):
    status, _, reply = upload(demo_server, b"x" * 300_001)
    assert status == 413 and reply["message"] == ("the photo is 300001 bytes, at most 300000 "
                                                  "(limits.max_image_bytes)")
    status, _, reply = upload(demo_server, b"not a photo at all")
    assert status == 400 and reply["code"] == "INVALID_ARGUMENT" and reply["message"].startswith("query.image")
    status, _, reply = upload(demo_server, PHOTO, search_pb2.SearchRequest(query=search_pb2.Query(text="dress")))
    assert status == 400 and "leave the request's query unset" in reply["message"] and "query.text" in reply["message"]
    body, content_type = multipart({"image": PHOTO, "photo2": PHOTO})
    status, _, reply = request(demo_server.gateway.address, "POST", SEARCH, body, {"Content-Type": content_type})
    assert status == 400 and "unknown form field(s) ['photo2']" in reply["message"]
    body, content_type = multipart({"image": PHOTO})
    status, _, reply = request(demo_server.gateway.address, "POST", SEARCH, body[:-20], {"Content-Type": content_type})
    assert status == 400 and "cut short" in reply["message"]


def test_a_body_past_its_bound_is_refused_before_it_is_read(demo_server):
    host, port = demo_server.gateway.address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", SEARCH)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(1 << 30))   # a gigabyte announced, none sent
        connection.endheaders()
        response = connection.getresponse()
        reply = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 413 and reply["message"].startswith(f"a JSON body is {1 << 30} bytes, at most ")


def test_service_refusals_keep_their_status_and_message(demo_server):
    cases = [({"query": {"text": "dress"}, "k": 51}, 400, "INVALID_ARGUMENT"),
             ({"query": {"text": "dress"}, "using": "nope"}, 404, "NOT_FOUND"),
             ({"query": {"product_id": 999}}, 404, "NOT_FOUND")]
    with Client(demo_server.address) as client:
        for body, status, code in cases:
            with pytest.raises(grpc.RpcError) as caught:
                client.stub.Search(json_format.ParseDict(body, search_pb2.SearchRequest()), timeout=10)
            got_status, _, reply = post_json(demo_server, SEARCH, body)
            assert (got_status, reply) == (status, {"code": code, "message": caught.value.details()})
    assert request(demo_server.gateway.address, "GET", SEARCH)[0] == 405
    for verb in ("GET", "POST"):
        status, _, reply = request(demo_server.gateway.address, verb, "/nowhere")
        assert (status, reply["code"]) == (404, "NOT_FOUND") and "/openapi.json" in reply["message"]
    status, _, reply = request(demo_server.gateway.address, "POST", SEARCH, b"{}",
                               {"Content-Type": "application/json", "x-timeout-ms": "soon"})
    assert status == 400 and "x-timeout-ms" in reply["message"]
    photo_query = {"query": {"image": base64.b64encode(PHOTO).decode()}}  # decoding and encoding take > 1 ms
    status, _, reply = post_json(demo_server, SEARCH, photo_query, {"x-timeout-ms": "1"})
    assert (status, reply["code"]) == (504, "DEADLINE_EXCEEDED")
    status, headers, reply = request(demo_server.gateway.address, "DELETE", SEARCH)
    assert status == 405 and headers["Allow"] == "POST" and reply["message"].endswith("answers POST, not DELETE")


class _Refuser(grpc.GenericRpcHandler):
    """A gRPC service whose Search fails with the status named by the request's
    `using` (with a retry-after-ms trailer on RESOURCE_EXHAUSTED)."""

    def service(self, details):
        if details.method != SEARCH:
            return None

        def refuse(request, context):
            code = grpc.StatusCode[request.using]
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                context.set_trailing_metadata((("retry-after-ms", "1500"),))
            context.abort(code, f"refused with {code.name}")

        return grpc.unary_unary_rpc_method_handler(refuse, search_pb2.SearchRequest.FromString,
                                                   search_pb2.SearchResponse.SerializeToString)


EXPECTED_HTTP = {"CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
                 "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
                 "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
                 "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401}


def test_serve_http_listens_on_loopback_unless_told_otherwise():
    from lookalike.cli import _http_address, build_parser, serve_config

    def http_of(*flags):
        return serve_config(build_parser().parse_args(["serve", *flags])).http_address

    assert http_of() == "127.0.0.1:8080"                  # one server, told nothing: the console on loopback
    assert http_of("--http", "off") == ""
    assert http_of("--router") == "" and http_of("--shard", "0") == ""  # only when told
    assert http_of("--http", "9000", "--router") == "127.0.0.1:9000"
    assert _http_address(build_parser().parse_args(["serve", "--http"]).http) == "127.0.0.1:8080"
    assert _http_address("9000") == "127.0.0.1:9000"
    assert _http_address("0.0.0.0:9000") == "0.0.0.0:9000"
    assert ServiceConfig().http_address == ""


def test_a_taken_http_port_is_named(demo_server):
    with pytest.raises(ValueError, match=f"http_address {demo_server.gateway.address}: cannot listen there"):
        Gateway(ServiceConfig(http_address=demo_server.gateway.address), grpc.server(None), lambda: None)


def test_every_grpc_status_maps_to_its_http_status():
    from concurrent import futures

    assert set(EXPECTED_HTTP) == {c.name for c in grpc.StatusCode} - {"OK"}
    server = grpc.server(futures.ThreadPoolExecutor(2), handlers=[_Refuser()])
    gateway = Gateway(ServiceConfig(http_address="127.0.0.1:0"), server, lambda: None)
    server.start()
    gateway.start()
    try:
        for name, status in EXPECTED_HTTP.items():
            got, headers, reply = request(gateway.address, "POST", SEARCH, json.dumps({"using": name}).encode(),
                                          {"Content-Type": "application/json"})
            assert (got, reply) == (status, {"code": name, "message": f"refused with {name}"})
            if name == "RESOURCE_EXHAUSTED":
                assert headers["Retry-After"] == "2" and headers["Retry-After-Ms"] == "1500"
    finally:
        gateway.stop()
        server.stop(0)


def test_connections_past_the_bound_are_refused_at_once():
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(2), handlers=[_Refuser()])
    gateway = Gateway(ServiceConfig(http_address="127.0.0.1:0", limits=Limits(max_in_flight=1)), server, lambda: None)
    server.start()
    gateway.start()
    host, port = gateway.address.rsplit(":", 1)
    idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(4)]  # 4 per call in flight
    try:
        status, headers, reply = request(gateway.address, "GET", "/openapi.json")
        assert status == 503 and headers["Retry-After"] == "1" and "limit of 4 connections" in reply["message"]
        idle.pop().close()
        deadline = time.monotonic() + 30
        while status == 503 and time.monotonic() < deadline:  # until the closed connection's thread has ended
            time.sleep(0.05)
            status = request(gateway.address, "GET", "/openapi.json")[0]
        assert status == 200
    finally:
        for connection in idle:
            connection.close()
        gateway.stop()
        server.stop(0)


def test_a_router_has_the_gateway_too(tmp_path):
    from test_router import LIMITS, cluster, products
    from lookalike.service.shardmap import RouterConfig, Shard

    catalog = products(60)
    with cluster(tmp_path, replicas=(1, 1)) as c:
        shard_map = tuple(Shard(f"shard-{i}", (replicas[0].address,)) for i, replicas in enumerate(c.shards))
        router = c.start(ServiceConfig(address="127.0.0.1:0", http_address="127.0.0.1:0", limits=LIMITS,
                                       data_dir=str(tmp_path / "router"), router=RouterConfig(shards=shard_map)),
                         router=True)
        with Client(router.address) as client:
            assert [r.status_code for r in client.upsert(catalog).results] == [0] * 60
            want = client.stub.Search(search_pb2.SearchRequest(query=search_pb2.Query(product_id=catalog[0].id), k=5,
                                                               with_metadata=True), timeout=30)
        status, _, reply = post_json(router, SEARCH, {"query": {"product_id": str(catalog[0].id)}, "k": 5,
                                                      "with_metadata": True})
        assert status == 200 and hits(reply) == grpc_hits(want) and len(want.hits) == 5
        status, _, reply = post_json(router, "/lookalike.v1.DuplicatesService/GetScanStatus", {})
        assert (status, reply["code"]) == (501, "UNIMPLEMENTED")   # a router serves the SearchService only
        status, _, reply = request(router.gateway.address, "GET", "/v1/images/" + "0" * 64)
        assert status == 404 and "images live on the shard servers" in reply["message"]


def test_keys_and_scopes_are_enforced_over_http(tiny_clip_bundle, tmp_path):
    server = start_demo_server(tiny_clip_bundle, tmp_path, api_keys={WRITER_KEY: "write", READER_KEY: "read"})
    try:
        address = server.gateway.address
        query = {"query": {"product_id": 1}, "k": 3, "with_metadata": True}
        status, _, reply = post_json(server, SEARCH, query)
        assert status == 401 and reply["code"] == "UNAUTHENTICATED" and "API key" in reply["message"]
        assert post_json(server, SEARCH, query, {"Authorization": "Bearer " + "x" * 24})[0] == 401
        status, _, found = post_json(server, SEARCH, query, {"x-api-key": READER_KEY})
        assert status == 200 and len(found["hits"]) == 3
        assert post_json(server, SEARCH, query, {"Authorization": f"Bearer {READER_KEY}"})[0] == 200
        delete = {"ids": ["1"]}
        status, _, reply = post_json(server, "/lookalike.v1.SearchService/Delete", delete, {"x-api-key": READER_KEY})
        assert status == 403 and reply["code"] == "PERMISSION_DENIED" and "write scope" in reply["message"]
        status, _, reply = post_json(server, "/lookalike.v1.AdminService/ListVersions", {}, {"x-api-key": READER_KEY})
        assert status == 403
        digest = found["hits"][0]["metadata"]["image_sha256"]
        assert request(address, "GET", f"/v1/images/{digest}")[0] == 401
        assert request(address, "GET", f"/v1/images/{digest}", headers={"x-api-key": READER_KEY})[0] == 200
        status, _, reply = post_json(server, "/lookalike.v1.SearchService/Delete", delete, {"x-api-key": WRITER_KEY})
        assert status == 200 and reply["deleted"] == "1"
        assert request(address, "GET", "/healthz")[0] == 200        # open, as over gRPC
        status, headers, _ = post_json(server, "/lookalike.v1.SearchService/Stats", {},
                                       {"x-api-key": READER_KEY, "x-request-id": "req-42"})
        assert status == 200 and headers["X-Request-Id"] == "req-42"
    finally:
        server.stop(grace=1)


def test_the_gateway_speaks_https_with_the_servers_certificate(tiny_clip_bundle, tmp_path, pki):  # noqa: F811
    folder, files = pki
    server = start_demo_server(tiny_clip_bundle, tmp_path / "data", tls_root=files["ca.pem"],
                               tls=TlsConfig(cert=str(folder / "server.pem"), key=str(folder / "server.key")))
    try:
        assert server.gateway.url.startswith("https://")
        port = server.gateway.address.rsplit(":", 1)[1]
        trusting = ssl.create_default_context(cadata=files["ca.pem"].decode())
        status, _, stats = request(f"localhost:{port}", "GET", "/lookalike.v1.SearchService/Stats",
                                   tls_context=trusting)
        assert status == 200 and stats["products"] == "24"
        with pytest.raises(ssl.SSLError):
            request(f"localhost:{port}", "GET", "/healthz", tls_context=ssl.create_default_context())
    finally:
        server.stop(grace=1)
