"""Feeding a catalog to a running server: `lookalike ingest`.

Three sources:
- a folder of images: every image file under it (sorted by path) becomes a
  product whose id is its position and whose title is its file name;
- a CSV manifest with a header row: columns id, image, title, image_uri, and one
  column per attribute (a keyword column may hold several values split by "|";
  an empty cell leaves the attribute unset);
- a JSONL manifest, one product a line:
      {"id": 17, "image": "photos/17.jpg", "title": "red floral dress",
       "image_uri": "https://cdn.example/17.jpg",
       "attributes": {"category": ["women", "women/dresses"], "price": 39.9, "in_stock": true}}
  `image` is a path relative to the manifest; `vectors` may replace it
  ({"clip": [0.1, ...]}). Attribute values are converted by the server's schema
  (keyword: a string or a list of strings; numeric: a number; bool; timestamp:
  whole seconds).

Images are sent as their bytes; the server decodes and encodes them.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lookalike.client import Client, Product, packed
from lookalike.v1 import search_pb2

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def attribute_value(name: str, value: Any, schema: Mapping[str, str]) -> search_pb2.AttributeValue:
    """One attribute value as the API's message, by its type in the server's schema."""
    kind = schema.get(name)
    if kind is None:
        raise ValueError(f"unknown attribute '{name}' (the server's schema has: {', '.join(schema) or 'none'})")
    if kind == "keyword":
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"attribute '{name}' is a keyword: give a string or a list of strings, got {value!r}")
        return search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=values))
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"attribute '{name}' is a bool, got {value!r}")
        return search_pb2.AttributeValue(flag=value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"attribute '{name}' is {kind}: give a number, got {value!r}")
    if kind == "timestamp":
        return search_pb2.AttributeValue(timestamp=int(value))
    return search_pb2.AttributeValue(number=float(value))


def products_from_folder(folder: Path) -> Iterator[Product]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for i, path in enumerate(paths):
        yield Product(id=i, image=path.read_bytes(), title=path.stem, image_uri=str(path.relative_to(folder)))


def products_from_manifest(manifest: Path, schema: Mapping[str, str]) -> Iterator[Product]:
    with open(manifest) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{manifest}:{number}"
            try:
                row = json.loads(line)
                product = Product(id=int(row["id"]), title=row.get("title", ""), image_uri=row.get("image_uri", ""))
                if "image" in row:
                    product.image = (manifest.parent / row["image"]).read_bytes()
                for space, vector in row.get("vectors", {}).items():
                    product.vectors[space].CopyFrom(packed(vector))
                for name, value in row.get("attributes", {}).items():
                    product.attributes[name].CopyFrom(attribute_value(name, value, schema))
            except (ValueError, KeyError, TypeError, OSError) as e:
                raise ValueError(f"{where}: {e}") from e
            yield product


def products_from_csv(manifest: Path, schema: Mapping[str, str]) -> Iterator[Product]:
    with open(manifest, newline="") as f:
        for number, row in enumerate(csv.DictReader(f), 2):
            where = f"{manifest}:{number}"
            try:
                product = Product(id=int(row.pop("id")), title=row.pop("title", "") or "",
                                  image_uri=row.pop("image_uri", "") or "")
                image = row.pop("image", "")
                if image:
                    product.image = (manifest.parent / image).read_bytes()
                for name, cell in row.items():
                    if cell:
                        product.attributes[name].CopyFrom(attribute_value(name, _csv_value(name, cell, schema), schema))
            except (ValueError, KeyError, TypeError, OSError) as e:
                raise ValueError(f"{where}: {e}") from e
            yield product


def _csv_value(name: str, cell: str, schema: Mapping[str, str]) -> Any:
    """A CSV cell as the Python value attribute_value() expects for the attribute's type."""
    kind = schema.get(name)
    if kind == "keyword":
        return cell.split("|")
    if kind == "bool":
        if cell.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"attribute '{name}' is a bool: write true or false, got {cell!r}")
        return cell.lower() in ("true", "1")
    if kind in ("numeric", "timestamp"):
        try:
            return float(cell) if kind == "numeric" else int(cell)
        except ValueError:
            raise ValueError(f"attribute '{name}' is {kind}: give a number, got {cell!r}") from None
    return cell  # unknown names: attribute_value() names the problem


def ingest(client: Client, source: Path, batch: int = 64, progress=sys.stderr) -> tuple[int, list[search_pb2.ItemResult]]:
    """Sends every product of `source` (a folder, a .csv or a .jsonl manifest); returns
    (products stored, results of the products that failed)."""
    schema = dict(client.stats().attribute_schema)
    if source.is_dir():
        products = products_from_folder(source)
    elif source.suffix.lower() == ".csv":
        products = products_from_csv(source, schema)
    else:
        products = products_from_manifest(source, schema)
    stored, failed, start = 0, [], time.monotonic()
    chunk: list[Product] = []

    def flush() -> None:
        nonlocal stored
        for result in client.upsert(chunk, batch=batch).results:
            if result.status_code == 0:
                stored += 1
            else:
                failed.append(result)
        chunk.clear()
        rate = stored / max(time.monotonic() - start, 1e-9)
        print(f"\ringested {stored} products, {len(failed)} failed ({rate:.0f}/s)", end="", file=progress, flush=True)

    for product in products:
        chunk.append(product)
        if len(chunk) == batch:
            flush()
    if chunk:
        flush()
    print(file=progress)
    return stored, failed
