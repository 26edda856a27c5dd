"""The OpenAPI 3.1 description of the gateway, generated from the message and
service descriptors (never written by hand, so it cannot drift from the
.proto files). Schemas follow the proto3 JSON mapping the gateway speaks:
field names as in the .proto, 64-bit integers as strings (numbers accepted),
bytes as base64, enums by name, maps as objects."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from lookalike.gateway.methods import SEARCH_PATH, Method

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "int32", "minimum": 0},
}
_INT64 = (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64,
          FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)
ERROR_SCHEMA = {"type": "object", "required": ["code", "message"], "properties": {
    "code": {"type": "string", "description": "the gRPC status code's name, e.g. INVALID_ARGUMENT"},
    "message": {"type": "string", "description": "what was wrong, as the gRPC server says it"}}}


class _Schemas:
    """components/schemas, filled as messages are referred to."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}

    def ref(self, message: Descriptor) -> dict[str, str]:
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}  # placeholder first: messages may refer to themselves
            self.schemas[message.full_name] = self._message(message)
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def _message(self, message: Descriptor) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "additionalProperties": False,
                                  "properties": {f.name: self._field(f) for f in message.fields}}
        oneofs = [o for o in message.oneofs if not o.name.startswith("_")]  # "_gt": proto3 optional, not a choice
        if oneofs:
            schema["description"] = "; ".join(f"at most one of {', '.join(f.name for f in o.fields)}" for o in oneofs)
        return schema

    def _field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            return {"type": "object", "additionalProperties": self._single(value)}
        single = self._single(field)
        return {"type": "array", "items": single} if field.is_repeated else single

    def _single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            return self.ref(field.message_type)
        if field.type == FieldDescriptor.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        if field.type in _INT64:
            return {"type": ["string", "integer"], "format": "int64"}
        return dict(_SCALARS[field.type])


def _errors() -> dict[str, Any]:
    return {"default": {"description": "the gRPC status as its HTTP status (400, 401, 403, 404, 413, 429 with "
                                       "Retry-After, 501, 503, 504, ...)",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}


def openapi(methods: dict[str, Method], version: str) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, Any] = {}
    for path, method in methods.items():
        content = {"application/json": {"schema": schemas.ref(method.descriptor.input_type)}}
        if path == SEARCH_PATH:
            content["multipart/form-data"] = {"schema": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "contentMediaType": "application/octet-stream",
                          "description": "the photo: the query's image, or a hybrid query's image"},
                "request": schemas.ref(method.descriptor.input_type)}}}
        operation = {"operationId": f"{method.descriptor.containing_service.name}.{method.descriptor.name}",
                     "tags": [method.descriptor.containing_service.full_name],
                     "responses": {"200": {"description": method.descriptor.output_type.full_name, "content": {
                         "application/json": {"schema": schemas.ref(method.descriptor.output_type)}}}, **_errors()}}
        paths[path] = {"post": {**operation, "requestBody": {"required": False, "content": content}}}
        if method.answers_get:
            paths[path]["get"] = {**operation, "operationId": operation["operationId"] + ".get"}
    paths["/v1/images/{sha256}"] = {"get": {
        "operationId": "image", "summary": "a product's original image, by the image_sha256 of its metadata",
        "parameters": [{"name": "sha256", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
        "responses": {"200": {"description": "the image bytes as uploaded",
                              "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}},
                      **_errors()}}}
    paths["/healthz"] = {"get": {"operationId": "healthz", "summary": "200 when serving, 503 otherwise",
                                 "responses": {"200": {"description": "serving"},
                                               "503": {"description": "not serving"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lookalike HTTP/JSON gateway", "version": version,
                 "description": "The gRPC API of proto/lookalike/v1 over HTTP: each unary method at its gRPC path, "
                                "its messages in the proto3 JSON mapping."},
        "paths": paths,
        "components": {"schemas": schemas.schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
        "security": [{}, {"bearer": []}, {"apiKey": []}],
    }
