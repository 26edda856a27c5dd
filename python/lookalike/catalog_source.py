"""The products of a catalog source, as plain rows: what `lookalike ingest`
sends to a server and what a batch build (`lookalike ingest --ray`) encodes
and indexes itself.

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
  ({"clip": [0.1, ...]}). Attribute values are checked against the schema
  (keyword: a string or a list of strings; numeric: a number; bool; timestamp:
  whole seconds).

A bad row raises ValueError naming the file and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass
class CatalogRow:
    """One product as its source describes it; attribute values already checked."""

    id: int
    title: str = ""
    image_uri: str = ""
    image: Path | None = None                                      # the photo's file, if any
    vectors: dict[str, list[float]] = field(default_factory=dict)  # vectors given by space
    attributes: dict[str, Any] = field(default_factory=dict)       # name -> list[str] | float | bool | int


def attribute_python_value(name: str, value: Any, schema: Mapping[str, str]) -> Any:
    """An attribute value checked against its type in the schema: a keyword as
    a list of strings, numeric as a float, bool, timestamp as an int."""
    kind = schema.get(name)
    if kind is None:
        raise ValueError(f"unknown attribute '{name}' (the schema has: {', '.join(schema) or 'none'})")
    if kind == "keyword":
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"attribute '{name}' is a keyword: give a string or a list of strings, got {value!r}")
        return values
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"attribute '{name}' is a bool, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"attribute '{name}' is {kind}: give a number, got {value!r}")
    return int(value) if kind == "timestamp" else float(value)


def catalog_rows(source: Path, schema: Mapping[str, str]) -> Iterator[CatalogRow]:
    """The rows of a folder, a .csv or a .jsonl manifest (anything else is read as JSONL)."""
    if source.is_dir():
        return rows_from_folder(source)
    if source.suffix.lower() == ".csv":
        return rows_from_csv(source, schema)
    return rows_from_jsonl(source, schema)


def rows_from_folder(folder: Path) -> Iterator[CatalogRow]:
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    for i, path in enumerate(paths):
        yield CatalogRow(id=i, image=path, title=path.stem, image_uri=str(path.relative_to(folder)))


def rows_from_jsonl(manifest: Path, schema: Mapping[str, str]) -> Iterator[CatalogRow]:
    with open(manifest) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                yield CatalogRow(
                    id=int(row["id"]), title=row.get("title", ""), image_uri=row.get("image_uri", ""),
                    image=_image_file(manifest, row.get("image")),
                    vectors={space: [float(x) for x in v] for space, v in row.get("vectors", {}).items()},
                    attributes={name: attribute_python_value(name, value, schema)
                                for name, value in row.get("attributes", {}).items()})
            except (ValueError, KeyError, TypeError, OSError) as e:
                raise ValueError(f"{manifest}:{number}: {e}") from e


def rows_from_csv(manifest: Path, schema: Mapping[str, str]) -> Iterator[CatalogRow]:
    with open(manifest, newline="") as f:
        for number, cells in enumerate(csv.DictReader(f), 2):
            try:
                row = CatalogRow(id=int(cells.pop("id")), title=cells.pop("title", "") or "",
                                 image_uri=cells.pop("image_uri", "") or "",
                                 image=_image_file(manifest, cells.pop("image", "")))
                for name, cell in cells.items():
                    if cell:
                        row.attributes[name] = attribute_python_value(name, _csv_value(name, cell, schema), schema)
            except (ValueError, KeyError, TypeError, OSError) as e:
                raise ValueError(f"{manifest}:{number}: {e}") from e
            yield row


def _image_file(manifest: Path, relative: str | None) -> Path | None:
    if not relative:
        return None
    path = manifest.parent / relative
    if not path.is_file():
        raise FileNotFoundError(f"no image file {path}")
    return path


def _csv_value(name: str, cell: str, schema: Mapping[str, str]) -> Any:
    """A CSV cell as the Python value attribute_python_value() expects for the attribute's type."""
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
    return cell  # unknown names: attribute_python_value() names the problem
