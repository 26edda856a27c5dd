"""The records of a collection's log, as the bytes of one JetStream message.

    message = b"LKR", u8 format version (1), then the body:
      an upsert or a delete by ids: the write batch of store/records.py (its own
        kind byte first: vectors as packed float32, attributes, titles, image URIs
        and image digests; or the ids)
      a delete by filter: u8 3, then the filter as JSON (Filter.to_dict), which
        each replica evaluates on its own state at that point of the stream, the
        same on every replica of a shard since they apply the same records in order

A message that is not such a record raises RecordError naming what is wrong; a
replica skips it and counts it (replica.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lookalike.index.filter import Filter
from lookalike.store import records
from lookalike.store.records import DeleteBatch, UpsertBatch

MAGIC = b"LKR"
VERSION = 1
_FILTER_DELETE = 3


class RecordError(ValueError):
    """A log message that is not a record of this format."""


@dataclass(frozen=True)
class FilterDelete:
    """Deletes every product the filter allows."""

    filter: Filter


Record = UpsertBatch | DeleteBatch | FilterDelete


def encode(record: Record) -> bytes:
    head = MAGIC + bytes([VERSION])
    if isinstance(record, FilterDelete):
        return head + bytes([_FILTER_DELETE]) + json.dumps(record.filter.to_dict(), separators=(",", ":")).encode()
    return head + records.encode(record)


def decode(message: bytes) -> Record:
    if len(message) < len(MAGIC) + 2:
        raise RecordError(f"log record of {len(message)} bytes is too short")
    if message[:len(MAGIC)] != MAGIC:
        raise RecordError(f"not a log record: starts with {bytes(message[:len(MAGIC)])!r}, not {MAGIC!r}")
    version = message[len(MAGIC)]
    if version != VERSION:
        raise RecordError(f"log record format version {version}; this build reads version {VERSION}")
    body = message[len(MAGIC) + 1:]
    if body[0] == _FILTER_DELETE:
        try:
            return FilterDelete(Filter.from_dict(json.loads(bytes(body[1:]))))
        except (ValueError, TypeError, KeyError) as e:
            raise RecordError(f"log record: a delete by filter with a bad filter: {e}") from e
    try:
        return records.decode(bytes(body))
    except ValueError as e:
        raise RecordError(f"log record: {e}") from e
