"""Request bodies: their size bounds, and a search by an uploaded photo.

A body longer than its bound is refused (413) from its Content-Length, before
a byte of it is read. A JSON body may be as large as the largest gRPC message
once its bytes fields are base64 (4/3 larger); a photo upload as large as the
largest image plus room for the form's other fields.

A photo search is ``multipart/form-data`` to the Search route with the parts

    image     the photo (any filename; the server sniffs the format)
    request   optional: a SearchRequest as JSON (k, filter, using, a hybrid query's text and weights, ...)

The photo becomes the query's image, or its hybrid image when the request
holds a hybrid query with words.
"""

from __future__ import annotations

import re
from email.message import Message as HeaderBlock

from lookalike.gateway.methods import message_from_json
from lookalike.gateway.status import GatewayError, bad_request
from lookalike.service.config import Limits
from lookalike.v1 import search_pb2

FORM_ROOM = 1 << 20          # a photo upload's fields besides the photo
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?')


def json_body_limit(limits: Limits) -> int:
    return limits.max_message_bytes * 4 // 3 + FORM_ROOM


def upload_limit(limits: Limits) -> int:
    return limits.max_image_bytes + FORM_ROOM


def too_large(what: str, size: int, limit: int, setting: str) -> GatewayError:
    return GatewayError(413, "INVALID_ARGUMENT", f"{what} is {size} bytes, at most {limit} ({setting})")


def form_parts(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body by name."""
    found = _BOUNDARY.search(content_type)
    if not found:
        raise bad_request("multipart/form-data without a boundary in its Content-Type")
    delimiter = b"--" + found.group(1).encode("latin-1")
    chunks = body.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise bad_request("multipart body is cut short: no closing boundary")
    parts = {}
    for chunk in chunks[1:-1]:
        head, blank, content = chunk.partition(b"\r\n\r\n")
        if not blank or not content.endswith(b"\r\n"):
            raise bad_request("multipart body: a part without its headers or its line end")
        headers = HeaderBlock()
        for line in head.decode("latin-1").strip().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip()] = value.strip()
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise bad_request("multipart body: a part without a name in its Content-Disposition")
        parts[name] = content[:-2]
    return parts


def photo_search(parts: dict[str, bytes], limits: Limits) -> search_pb2.SearchRequest:
    """The SearchRequest of a photo upload's fields."""
    unknown = set(parts) - {"image", "request"}
    if unknown:
        raise bad_request(f"unknown form field(s) {sorted(unknown)}: send 'image' (the photo) and optionally "
                          "'request' (a SearchRequest as JSON)")
    photo = parts.get("image")
    if not photo:
        raise bad_request("form field 'image' (the photo) is missing or empty")
    if len(photo) > limits.max_image_bytes:
        raise too_large("the photo", len(photo), limits.max_image_bytes, "limits.max_image_bytes")
    request = message_from_json(parts.get("request", b""), search_pb2.SearchRequest, "form field 'request'")
    kind = request.query.WhichOneof("kind")
    if kind is None:
        request.query.image = photo
    elif kind == "hybrid" and not request.query.hybrid.image:
        request.query.hybrid.image = photo
    else:
        raise bad_request(f"the uploaded photo is the query's image: leave the request's query unset, or make it "
                          f"a hybrid query without an image (it has query.{kind}"
                          f"{'.image' if kind == 'hybrid' else ''})")
    return request
