"""A generated, labelled set of duplicate and distinct product pairs, for
training and testing the duplicate classifier without any download.

Products are crops of the sample photos that matplotlib and scikit-learn ship
(several regions of each photo, so distinct products can look alike), with
titles, brands, categories and prices drawn from small vocabularies (so
distinct products share words and brands too). Each product gets one
near-duplicate of one kind:

- ``crop``: 80-95% of the picture, re-encoded;
- ``jpeg``: the same picture recompressed at JPEG quality 25-50;
- ``jitter``: brightness, saturation and contrast shifted by up to 20%;
- ``retitled``: the same picture re-uploaded with a reworded title.

Distinct pairs are a product with another one, half of them cut from the same
photo. ``write_pairs`` writes the images and a ``pairs.jsonl`` in the format
``lookalike train duplicates`` reads.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from lookalike.sample_photos import open_photos, random_crop, sample_photos

KINDS = ("crop", "jpeg", "jitter", "retitled")
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli", "stark")
NOUNS = {"dress": "dresses", "scarf": "scarves", "tote": "bags", "poster": "posters", "jacket": "jackets",
         "cushion": "home", "mug": "home", "shirt": "tops"}
ADJECTIVES = ("floral", "vintage", "classic", "soft", "printed", "summer", "bold", "slim", "cotton", "linen")
REWORDINGS = ("new", "original", "genuine", "best", "sale", "limited", "edition", "gift")


@dataclass
class SyntheticProduct:
    image: bytes
    title: str
    attributes: dict[str, Any] = field(default_factory=dict)
    source: int = 0  # which sample photo it was cut from


@dataclass(frozen=True)
class LabelledPair:
    a: int             # indexes into the product list
    b: int
    duplicate: bool
    kind: str          # a KINDS entry, "same_photo" or "other_photo"


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def make_catalog(n_products: int, seed: int = 0, size: int = 160,
                 photos: list[Path] | None = None) -> tuple[list[SyntheticProduct], list[LabelledPair]]:
    """``n_products`` originals and one near-duplicate of each (2n products), and
    the labelled pairs: n duplicates and 2n distinct ones."""
    rng = np.random.default_rng(seed)
    sources = open_photos(photos or sample_photos())
    originals: list[tuple[Image.Image, SyntheticProduct]] = []
    for i in range(n_products):
        source = i % len(sources)
        picture = random_crop(sources[source], rng, size)
        noun = str(rng.choice(list(NOUNS)))
        title = f"{rng.choice(ADJECTIVES)} {rng.choice(ADJECTIVES)} {noun}"
        attributes = {"price": round(float(np.exp(rng.normal(3.3, 0.8))), 2), "brand": str(rng.choice(BRANDS)),
                      "category": NOUNS[noun]}
        originals.append((picture, SyntheticProduct(jpeg(picture), title, attributes, source)))
    products = [p for _, p in originals]
    pairs: list[LabelledPair] = []
    for i, (picture, product) in enumerate(originals):
        kind = KINDS[i % len(KINDS)]
        products.append(_near_duplicate(picture, product, kind, rng))
        pairs.append(LabelledPair(i, len(products) - 1, True, kind))
    for i, (_, product) in enumerate(originals):
        same = [j for j, (_, p) in enumerate(originals) if j != i and p.source == product.source]
        other = [j for j, (_, p) in enumerate(originals) if p.source != product.source]
        for kind, choices in (("same_photo", same), ("other_photo", other)):
            if choices:
                # The other product, or its near-duplicate: distinct either way.
                j = int(rng.choice(choices)) + n_products * int(rng.integers(0, 2))
                pairs.append(LabelledPair(i, j, False, kind))
    return products, pairs


def _near_duplicate(picture: Image.Image, product: SyntheticProduct, kind: str,
                    rng: np.random.Generator) -> SyntheticProduct:
    title = product.title
    attributes = dict(product.attributes)
    attributes["price"] = round(attributes["price"] * float(rng.uniform(0.9, 1.1)), 2)
    if kind == "crop":
        keep = rng.uniform(0.8, 0.95)
        w, h = picture.size
        cw, ch = int(w * keep), int(h * keep)
        left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        image = jpeg(picture.crop((left, top, left + cw, top + ch)))
    elif kind == "jpeg":
        image = jpeg(picture, quality=int(rng.integers(25, 51)))
    elif kind == "jitter":
        changed = picture
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Color, ImageEnhance.Contrast):
            changed = enhancer(changed).enhance(float(rng.uniform(0.8, 1.2)))
        image = jpeg(changed)
    else:  # retitled: the same photo under a reworded title
        words = title.split()
        title = " ".join([str(rng.choice(REWORDINGS)), attributes["brand"], *rng.permutation(words[1:]).tolist()])
        image = jpeg(picture, quality=85)
    return SyntheticProduct(image, title, attributes, product.source)


def write_pairs(folder: Path, products: list[SyntheticProduct], pairs: list[LabelledPair]) -> Path:
    """Writes each product's image and ``pairs.jsonl`` into ``folder``; returns the JSONL's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(exist_ok=True)
    for i, product in enumerate(products):
        (folder / "images" / f"{i}.jpg").write_bytes(product.image)
    path = folder / "pairs.jsonl"
    with open(path, "w") as out:
        for pair in pairs:
            row = {"a": _side(pair.a, products), "b": _side(pair.b, products), "duplicate": pair.duplicate,
                   "kind": pair.kind}
            out.write(json.dumps(row) + "\n")
    return path


def _side(index: int, products: list[SyntheticProduct]) -> dict[str, Any]:
    product = products[index]
    return {"image": f"images/{index}.jpg", "title": product.title, "attributes": product.attributes}
