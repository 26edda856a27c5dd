"""Conversions between the API's messages (lookalike.v1) and the index's types.

Every function raises ServiceError(INVALID_ARGUMENT) with a message naming the
field that was wrong, so the servicer never has to guess what a ValueError meant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from lookalike.index import filter as flt
from lookalike.service.errors import ServiceError, invalid
from lookalike.v1 import filter_pb2, search_pb2

if TYPE_CHECKING:
    from lookalike.service.config import Limits
    from lookalike.store.catalog import ProductRecord

_FLOAT32 = np.dtype("<f4")
_DTYPES = {search_pb2.DTYPE_FLOAT32: _FLOAT32, search_pb2.DTYPE_FLOAT16: np.dtype("<f2")}


# --- vectors ---------------------------------------------------------------------

def vector_from_proto(v: search_pb2.Vector, dim: int, where: str, metric: str | None = None) -> np.ndarray:
    """A packed Vector as float32 (dim,), checked against the space's dimension;
    with the space's ``metric``, also refused as check_direction refuses."""
    dtype = _DTYPES.get(v.dtype)
    if dtype is None:
        raise invalid(f"{where}: dtype must be DTYPE_FLOAT32 or DTYPE_FLOAT16, got {v.dtype}")
    if v.dim != dim:
        raise invalid(f"{where}: dim is {v.dim}, the space has dimension {dim}")
    data = v.data
    if len(data) != dim * dtype.itemsize:
        raise invalid(f"{where}: data holds {len(data)} bytes, {dim} x {dtype.name} needs {dim * dtype.itemsize}")
    # float32 data is used where it lies (a read-only view of the message's bytes); float16 is widened.
    arr = np.frombuffer(data, dtype=dtype)
    if dtype is not _FLOAT32:
        arr = arr.astype(np.float32)
    # One dot product settles both checks for almost every vector: a sum of squares that is
    # finite and above zero has no NaN or infinity in it, and not only zeros. Anything else (a
    # NaN or inf, finite values whose squares overflow, zeros, or squares too tiny for float32)
    # is looked at element by element. (vdot, unlike dot and @, does not warn on an overflow.)
    if not 0.0 < float(np.vdot(arr, arr)) < math.inf:
        if not np.isfinite(arr).all():
            raise invalid(f"{where}: has a NaN or infinite value at element {int(np.argmin(np.isfinite(arr)))}")
        if metric is not None:
            check_direction(arr, metric, where)
    return arr


def check_direction(arr: np.ndarray, metric: str, where: str) -> np.ndarray:
    """``arr``, refused when it is all zeros in a cosine space (it has no direction to compare)."""
    if metric == "cosine" and not arr.any():
        raise invalid(f"{where}: an all-zero vector has no direction (the space's metric is cosine)")
    return arr


def vector_to_proto(arr: np.ndarray) -> search_pb2.Vector:
    arr = np.ascontiguousarray(arr, dtype="<f4")
    return search_pb2.Vector(data=arr.tobytes(), dtype=search_pb2.DTYPE_FLOAT32, dim=arr.shape[-1])


# --- bounds on one request ---------------------------------------------------------

def check_length(text: str, most: int, where: str, bound: str) -> None:
    """Refuses a text of more than ``most`` characters, naming the limit ``bound``."""
    if len(text) > most:
        raise invalid(f"{where}: {len(text)} characters, at most {most} (limits.{bound})")


def check_product_sizes(product: search_pb2.Product, limits: Limits, where: str) -> None:
    """A product's title, image_uri and keywords within the limits (its attributes
    are bounded by the schema, which refuses unknown ones)."""
    check_length(product.title, limits.max_text_chars, f"{where}.title", "max_text_chars")
    check_length(product.image_uri, limits.max_text_chars, f"{where}.image_uri", "max_text_chars")
    keyword_lists = {name: value.keywords.values for name, value in product.attributes.items()
                     if value.WhichOneof("value") == "keywords"}
    count = sum(len(values) for values in keyword_lists.values())
    if count > limits.max_keywords:
        raise invalid(f"{where}: {count} keyword values, at most {limits.max_keywords} (limits.max_keywords)")
    for name, values in keyword_lists.items():
        for keyword in values:
            check_length(keyword, limits.max_keyword_chars, f"{where}: a keyword of attribute '{name}'",
                         "max_keyword_chars")


def check_search_params(params: search_pb2.SearchParams, limits: Limits) -> None:
    if params.ef > limits.max_ef:
        raise invalid(f"params.ef is {params.ef}, at most {limits.max_ef} (limits.max_ef)")
    if params.nprobe > limits.max_nprobe:
        raise invalid(f"params.nprobe is {params.nprobe}, at most {limits.max_nprobe} (limits.max_nprobe)")


# --- attributes ------------------------------------------------------------------

# The oneof field of AttributeValue each attribute type takes.
_VALUE_FIELD = {"keyword": "keywords", "numeric": "number", "bool": "flag", "timestamp": "timestamp"}


def attributes_from_proto(values: Mapping[str, search_pb2.AttributeValue], schema: Mapping[str, str],
                          where: str) -> dict[str, Any]:
    """A product's attributes as Python values, checked against the schema."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in schema:
            known = ", ".join(schema) or "none"
            raise invalid(f"{where}: unknown attribute '{name}' (the schema has: {known})")
        field = value.WhichOneof("value")
        expected = _VALUE_FIELD[schema[name]]
        if field != expected:
            raise invalid(f"{where}: attribute '{name}' is {schema[name]}, so its value goes in '{expected}', "
                          f"got {field or 'nothing'}")
        if field == "keywords":
            if not value.keywords.values:
                raise invalid(f"{where}: attribute '{name}' has an empty keyword list")
            out[name] = list(value.keywords.values)
        elif field == "number":
            if not np.isfinite(value.number):
                raise invalid(f"{where}: attribute '{name}' must be a finite number, got {value.number}")
            out[name] = value.number
        else:
            out[name] = getattr(value, field)
    return out


def metadata_into(target: search_pb2.ProductMetadata, record: ProductRecord, attributes: Mapping[str, Any],
                  schema: Mapping[str, str]) -> None:
    """Writes a product's catalog record and attributes (those of the schema) into
    ``target``, a response's own message: building the messages and copying them in
    cost three times as much, per hit of a search with metadata."""
    target.title, target.image_uri, target.image_sha256 = record.title, record.image_uri, record.image_sha256
    values = target.attributes
    for name, value in attributes.items():
        kind = schema.get(name)
        if kind == "keyword":
            values[name].keywords.values.extend([value] if isinstance(value, str) else value)
        elif kind == "numeric":
            values[name].number = float(value)
        elif kind == "bool":
            values[name].flag = bool(value)
        elif kind == "timestamp":
            values[name].timestamp = int(value)


# --- filters ---------------------------------------------------------------------

def delete_target(request: search_pb2.DeleteRequest, limits: Limits) -> flt.Filter | list[int]:
    """What a Delete names, checked: the filter's clauses, or the ids (one of the
    two, a filter within the filter bounds and not empty, at most
    ``limits.max_ids`` ids)."""
    if request.ids and request.HasField("filter"):
        raise invalid("set one of ids and filter, not both")
    if request.HasField("filter"):
        clause = filter_from_proto(request.filter, limits)
        if clause is None:
            raise invalid("filter: an empty filter would delete every product; send the ids instead")
        return clause
    if len(request.ids) > limits.max_ids:
        raise invalid(f"{len(request.ids)} ids in one call, at most {limits.max_ids}")
    return list(request.ids)


def filter_from_proto(f: filter_pb2.Filter, limits: Limits, where: str = "filter") -> flt.Filter | None:
    """The filter tree as clauses of lookalike.index.filter; None for an empty
    filter. A filter nested deeper than limits.max_filter_depth, or holding more
    than limits.max_filter_clauses conditions, is refused before it is built."""
    _check_filter_size(f, limits, where)
    return _filter(f, where)


def _check_filter_size(f: filter_pb2.Filter, limits: Limits, where: str) -> None:
    # Breadth first, a level of nesting at a time: no recursion to exhaust. The
    # decoded message is bounded already (message size, protobuf's recursion limit).
    depth, clauses, level = 0, 0, [f]
    while level:
        depth += 1
        clauses += sum(len(g.must) + len(g.should) + len(g.must_not) for g in level)
        if clauses > limits.max_filter_clauses:  # counted no deeper: the rest is not looked at
            raise invalid(f"{where}: {clauses} conditions or more, at most {limits.max_filter_clauses} "
                          "(limits.max_filter_clauses)")
        level = [c.nested for g in level for c in (*g.must, *g.should, *g.must_not)
                 if c.WhichOneof("condition") == "nested"]
    if depth > limits.max_filter_depth:
        raise invalid(f"{where}: nested {depth} levels deep, at most {limits.max_filter_depth} "
                      "(limits.max_filter_depth)")


def _filter(f: filter_pb2.Filter, where: str) -> flt.Filter | None:
    parts: list[flt.Filter] = []
    if f.must:
        parts.append(flt.Must(*(_condition(c, f"{where}.must[{i}]") for i, c in enumerate(f.must))))
    if f.should:
        parts.append(flt.Should(*(_condition(c, f"{where}.should[{i}]") for i, c in enumerate(f.should))))
    if f.must_not:
        parts.append(flt.MustNot(*(_condition(c, f"{where}.must_not[{i}]") for i, c in enumerate(f.must_not))))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else flt.Must(*parts)


def _condition(c: filter_pb2.Condition, where: str) -> flt.Filter:
    kind = c.WhichOneof("condition")
    try:
        if kind == "match":
            target = c.match.WhichOneof("target")
            if target == "value":
                return flt.Match(c.match.attribute, c.match.value)
            if target == "any_of":
                return flt.Match(c.match.attribute, values=list(c.match.any_of.values))
            raise invalid(f"{where}.match: set value or any_of")
        if kind == "range":
            r = c.range
            bounds = {b: getattr(r, b) for b in ("gt", "gte", "lt", "lte") if r.HasField(b)}
            return flt.Range(r.attribute, **bounds)
        if kind == "is":
            return flt.Is(getattr(c, "is").attribute, getattr(c, "is").value)
        if kind == "has_id":
            return flt.HasId(list(c.has_id.ids))
        if kind == "nested":
            nested = _filter(c.nested, f"{where}.nested")
            if nested is None:
                raise invalid(f"{where}.nested: an empty filter")
            return nested
    except ServiceError:
        raise
    except (ValueError, TypeError) as e:
        raise invalid(f"{where}: {e}") from e
    raise invalid(f"{where}: no condition set")


def page_window(request: search_pb2.SearchRequest, max_k: int, max_results: int) -> tuple[int, int]:
    """(offset, want) of a search's page: its hits are the best ``want`` ranked
    from ``offset`` on. k defaults to 10 and is bounded by max_k; pagination
    never reaches past max_results."""
    k = request.k or 10
    if k > max_k:
        raise invalid(f"k is {k}, at most {max_k}")
    offset = page_offset(request.page_token, max_results)
    return offset, min(offset + k, max_results)


def page_offset(token: str, max_results: int) -> int:
    """The offset a page token carries ("" is the first page)."""
    if not token:
        return 0
    try:
        offset = int(token, 16)
    except ValueError:
        raise invalid(f"page_token {token!r} is not one this server issued") from None
    if not 0 < offset < max_results:
        raise invalid(f"page_token {token!r} is out of range")
    return offset


def page_token(offset: int) -> str:
    return format(offset, "x")

