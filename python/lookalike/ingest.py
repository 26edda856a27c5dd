"""Feeding a catalog to a running server: `lookalike ingest`.

The sources (a folder of images, a CSV or a JSONL manifest) are read by
catalog_source.py. Images are sent as their bytes; the server decodes and
encodes them. (`lookalike ingest --ray` builds shard snapshots instead:
batch/pipeline.py.)
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc

from lookalike.catalog_source import CatalogRow, attribute_python_value, catalog_rows
from lookalike.client import Client, Product, packed
from lookalike.v1 import search_pb2

# Upsert calls of one ingest at once: two keep the server's tower busy across
# round trips; more only queue photos in its memory.
CALLS_IN_FLIGHT = 2


def attribute_value(name: str, value: Any, schema: Mapping[str, str]) -> search_pb2.AttributeValue:
    """One attribute value as the API's message, by its type in the server's schema."""
    value = attribute_python_value(name, value, schema)
    kind = schema[name]
    if kind == "keyword":
        return search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=value))
    if kind == "bool":
        return search_pb2.AttributeValue(flag=value)
    if kind == "timestamp":
        return search_pb2.AttributeValue(timestamp=value)
    return search_pb2.AttributeValue(number=value)


def to_product(row: CatalogRow, schema: Mapping[str, str]) -> Product:
    """A catalog row as the API's Product, with its image's bytes."""
    out = Product(id=row.id, title=row.title, image_uri=row.image_uri)
    if row.image is not None:
        out.image = row.image.read_bytes()
    for space, vector in row.vectors.items():
        out.vectors[space].CopyFrom(packed(vector))
    for name, value in row.attributes.items():
        out.attributes[name].CopyFrom(attribute_value(name, value, schema))
    return out


def ingest(client: Client, source: Path, batch: int = 64, progress=sys.stderr) -> tuple[int, list[search_pb2.ItemResult]]:
    """Sends every product of `source` (a folder, a .csv or a .jsonl manifest); returns
    (products stored, results of the products that failed).

    Each `batch` of products is one Upsert call, and CALLS_IN_FLIGHT of them are
    sent at once: the server decodes a batch's photos while it encodes and
    writes the one before, so its image tower does not wait for each round trip.
    A batch that holds an id of a batch in flight waits for it: the later row of
    an id still wins, as when sent one by one."""
    schema = dict(client.stats().attribute_schema)
    products = (to_product(row, schema) for row in catalog_rows(source, schema))
    stored, failed, start = 0, [], time.monotonic()
    in_flight: deque[tuple[set[int], grpc.Future]] = deque()

    def collect() -> None:
        nonlocal stored
        for result in in_flight.popleft()[1].result().results:
            if result.status_code == 0:
                stored += 1
            else:
                failed.append(result)
        rate = stored / max(time.monotonic() - start, 1e-9)
        print(f"\ringested {stored} products, {len(failed)} failed ({rate:.0f}/s)", end="", file=progress, flush=True)

    def send(chunk: list[Product]) -> None:
        ids = {product.id for product in chunk}
        while in_flight and (len(in_flight) >= CALLS_IN_FLIGHT or any(ids & sent for sent, _ in in_flight)):
            collect()
        in_flight.append((ids, client.upsert_soon(chunk, batch=batch)))

    try:
        chunk: list[Product] = []
        for product in products:
            chunk.append(product)
            if len(chunk) == batch:
                send(chunk)
                chunk = []
        if chunk:
            send(chunk)
        while in_flight:
            collect()
    finally:  # a failed call or a bad row: the calls still in flight are not left running
        for _, call in in_flight:
            call.cancel()
    print(file=progress)
    return stored, failed
