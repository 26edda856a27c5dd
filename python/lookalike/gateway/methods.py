"""The API's methods as HTTP routes, read from the services' descriptors (one
definition of the API: the .proto files).

A unary method is served at its gRPC path, ``POST /lookalike.v1.SearchService/Search``,
with the request message as JSON in the body (the proto3 JSON mapping: field
names as in the .proto or in lowerCamelCase, int64 as strings or numbers, bytes
as base64) and the response message as JSON back. Methods whose request has no
fields (Stats, ListVersions, ...) answer GET too. Upsert, a client stream over
gRPC, takes one UpsertRequest and streams it as one message. Server-streaming
methods (Health.Watch) have no route.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2

from lookalike.gateway.status import bad_request
from lookalike.v1 import admin_pb2, duplicates_pb2, feedback_pb2, search_pb2

SERVICES: tuple[ServiceDescriptor, ...] = (
    search_pb2.DESCRIPTOR.services_by_name["SearchService"],
    feedback_pb2.DESCRIPTOR.services_by_name["FeedbackService"],
    duplicates_pb2.DESCRIPTOR.services_by_name["DuplicatesService"],
    admin_pb2.DESCRIPTOR.services_by_name["AdminService"],
    health_pb2.DESCRIPTOR.services_by_name["Health"],
)
SEARCH_PATH = "/lookalike.v1.SearchService/Search"


@dataclass(frozen=True)
class Method:
    path: str                      # the gRPC method path, also the HTTP route
    descriptor: MethodDescriptor
    request_type: type[Message]
    response_type: type[Message]

    @property
    def streams_requests(self) -> bool:
        return self.descriptor.client_streaming

    @property
    def answers_get(self) -> bool:
        """GET is for methods with nothing to send (and that change nothing)."""
        return not self.descriptor.input_type.fields


def api_methods() -> dict[str, Method]:
    """Every method with a route, by path."""
    methods = {}
    for service in SERVICES:
        for method in service.methods:
            if method.server_streaming:
                continue
            path = f"/{service.full_name}/{method.name}"
            methods[path] = Method(path, method, GetMessageClass(method.input_type),
                                   GetMessageClass(method.output_type))
    return methods


def message_from_json(body: bytes, message_type: type[Message], where: str = "request body") -> Message:
    """The message a JSON body holds; an empty body is the empty message. Bad
    JSON, a field the message does not have, or a value of the wrong type is
    INVALID_ARGUMENT naming it."""
    try:
        data = json.loads(body) if body.strip() else {}
    except (UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"{where} is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise bad_request(f"{where} must be a JSON object (a {message_type.DESCRIPTOR.full_name}), "
                          f"got {type(data).__name__}")
    message = message_type()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        raise bad_request(f"{where}: {e}") from None
    return message


def message_to_json(message: Message) -> bytes:
    """Field names as in the .proto; fields at their default value included, so
    that a client sees every field (an empty list, a zero score) without
    knowing the defaults."""
    return json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True,
                                                always_print_fields_with_no_presence=True)).encode()
