"""The writes that go through the write-ahead log, as bytes.

A record holds one checked write batch, everything needed to apply it again on
replay without the model or the client: an upsert's ids, its vectors per space
(float32, after encoding images and titles), attributes, titles, image URIs and
the digests of the original images in the blob store (store/blobs.py; "" for a
product sent without an image); a delete's ids (a delete by filter is logged as
the ids it matched).

    payload = u8 kind, then
      upsert: u32 n, u32 length of a JSON header, the JSON header
              {"titles", "image_uris", "attributes": {name: [value per product]},
               "spaces": [[name, dim], ...], "image_sha256": [digest per product]},
              n int64 ids, then per space in that order n * dim float32 values
      (records written before the blob store have no "image_sha256": they
      read as products without a stored image)
      delete: u32 n, n int64 ids

Replaying a record is idempotent (an upsert replaces whole products, a delete
of an unknown id does nothing), so replaying records a snapshot already holds
is harmless.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_UPSERT, _DELETE = 1, 2
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class UpsertBatch:
    """Products to add or replace whole: ``vectors`` holds an (n, dim) float32
    array per space, ``attributes`` a list of n values (None: unset) per name."""

    ids: np.ndarray
    vectors: dict[str, np.ndarray]
    attributes: dict[str, list[Any]]
    titles: list[str]
    image_uris: list[str]
    image_sha256: list[str] = field(default_factory=list)  # empty: no product has a stored image

    def digests(self) -> list[str]:
        """The blob digest of each product ("" for none)."""
        return list(self.image_sha256) or [""] * len(self.ids)


@dataclass(frozen=True)
class DeleteBatch:
    ids: np.ndarray


def encode(batch: UpsertBatch | DeleteBatch) -> bytes:
    ids = np.ascontiguousarray(batch.ids, dtype="<i8")
    if isinstance(batch, DeleteBatch):
        return bytes([_DELETE]) + _U32.pack(len(ids)) + ids.tobytes()
    header = json.dumps({"titles": batch.titles, "image_uris": batch.image_uris, "attributes": batch.attributes,
                         "image_sha256": batch.digests(), "spaces": [[name, int(v.shape[1])] for name, v in batch.vectors.items()]},
                        separators=(",", ":"), allow_nan=False).encode()
    parts = [bytes([_UPSERT]), _U32.pack(len(ids)), _U32.pack(len(header)), header, ids.tobytes()]
    parts += [np.ascontiguousarray(v, dtype="<f4").tobytes() for v in batch.vectors.values()]
    return b"".join(parts)


def decode(payload: bytes) -> UpsertBatch | DeleteBatch:
    """The batch a payload holds; ValueError if it is not one (the log's
    checksums make that a bug, not damage)."""
    view = memoryview(payload)
    try:
        kind = view[0]
        (n,) = _U32.unpack_from(view, 1)
        if kind == _DELETE:
            return DeleteBatch(_array(view, 5, "<i8", n).astype(np.int64))
        if kind != _UPSERT:
            raise ValueError(f"unknown record kind {kind}")
        (header_len,) = _U32.unpack_from(view, 5)
        offset = 9 + header_len
        header = json.loads(bytes(view[9:offset]))
        ids = _array(view, offset, "<i8", n).astype(np.int64)
        offset += 8 * n
        vectors = {}
        for name, dim in header["spaces"]:
            vectors[name] = _array(view, offset, "<f4", n * dim).reshape(n, dim).astype(np.float32)
            offset += 4 * n * dim
        if offset != len(view):
            raise ValueError(f"{len(view) - offset} bytes after the last vector")
        return UpsertBatch(ids, vectors, header["attributes"], header["titles"], header["image_uris"],
                           header.get("image_sha256", []))
    except (IndexError, KeyError, TypeError, struct.error, json.JSONDecodeError) as e:
        raise ValueError(f"not a write batch: {e}") from e


def _array(view: memoryview, offset: int, dtype: str, count: int) -> np.ndarray:
    size = np.dtype(dtype).itemsize * count
    if offset + size > len(view):
        raise ValueError("the record ends inside an array")
    return np.frombuffer(view[offset:offset + size], dtype=dtype)
