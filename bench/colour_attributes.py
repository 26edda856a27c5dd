"""How well the default bundle reads colours off photos (zero-shot attributes)
and how much "same style, any colour" (ignore_colour) helps, on generated
colour variants of products. No labelled colour data can be had offline, so:

- Products are random crops of the four sample photos that matplotlib and
  scikit-learn ship (lookalike.sample_photos).
- Zero-shot colour: each crop is turned to greyscale and tinted with one of the
  vocabulary's colours (the truth); reported is how often the tagger's colour
  is that colour (chance: 1 / number of colours).
- Same style, any colour: each crop gets ``--variants`` colourways by hue
  rotation (0, 90, 180, 270 degrees by default); every variant queries all the
  others (exact cosine search; the stored vectors are untouched, only the
  query loses its colour directions), and reported is the fraction of its own
  product's other variants found in its top 5, with and without the option,
  per space and per way of estimating the directions. Directions from photos
  (``bundle``, as ``lookalike train colour-directions`` makes them) are fitted
  on crops of two of the photos and measured on products cut from the other
  two, then the other way round (the mean of both is reported), so no product
  photo is seen when fitting; and, as a catalog would fit them on its own
  photos (``--photos``), on other random crops of all four photos (the
  products' source photos, but never the product crops or their variants).

    python bench/colour_attributes.py --bundle DIR [--products 40]

Writes bench/results/colour_attributes.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.encoders import Encoder, RuntimeConfig
from lookalike.encoders.colour import (SWATCH_RGB, hue_rotated, photo_bases, prompt_basis, swatch_basis,
                                       without_directions)
from lookalike.encoders.zero_shot import COLOURS, ZeroShotConfig, ZeroShotTagger
from lookalike.sample_photos import open_photos, random_crop, sample_photos

RESULTS = Path(__file__).resolve().parent / "results"
RANKS = (4, 8, 16, 32, 64)


def tinted_photo(image: Image.Image, rgb: tuple[int, int, int]) -> Image.Image:
    grey = np.asarray(image.convert("L"), dtype=np.float64) / 255
    lum = 0.35 + 0.65 * grey
    return Image.fromarray(np.clip(lum[..., None] * np.asarray(rgb)[None, None], 0, 255).astype(np.uint8), "RGB")


def top5_same_product(queries: np.ndarray, stored: np.ndarray, variants: int) -> float:
    """The fraction of each query's own product's other variants (rows i // variants
    alike) among its 5 best stored vectors, itself left out."""
    scores = queries @ stored.T
    np.fill_diagonal(scores, -np.inf)
    best = np.argsort(-scores, axis=1)[:, :5]
    own = np.arange(len(queries))[:, None] // variants
    return float(((best // variants) == own).sum() / (len(queries) * min(5, variants - 1)))


def zero_shot_colour(encoder: Encoder, products: list[Image.Image]) -> dict:
    colours = [c for c in COLOURS if c in SWATCH_RGB]
    truth = [colours[i % len(colours)] for i in range(len(products))]
    joint = encoder.encode_images([tinted_photo(p, SWATCH_RGB[c]) for p, c in zip(products, truth)])["joint"]
    tagger = ZeroShotTagger(ZeroShotConfig(vocabularies={"colour": colours}, min_confidence=0.0),
                            lambda texts: encoder.encode_texts(list(texts))["joint"])
    tags = [tagger.tag(v) for v in joint]
    given, counts = np.unique([t["colour"][0] for t in tags], return_counts=True)
    return {"accuracy": sum(t["colour"] == [c] for t, c in zip(tags, truth)) / len(truth),
            "chance": 1 / len(colours), "labels_given": {str(g): int(c) for g, c in zip(given, counts)},
            "mean_confidence": float(np.mean([t["colour_confidence"] for t in tags]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--products", type=int, default=40)
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--fit-crops", type=int, default=12, help="crops per half to fit photo directions on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    encoder = Encoder(args.bundle, RuntimeConfig(device="cpu", intra_op_threads=2))
    photos = open_photos(sample_photos())
    source = [i % len(photos) for i in range(args.products)]
    products = [random_crop(photos[s], rng, 224) for s in source]
    result: dict = {"bundle": encoder.bundle.manifest.model_id, "products": args.products, "variants": args.variants}

    result["zero_shot_colour"] = zero_shot_colour(encoder, products)
    z = result["zero_shot_colour"]
    print(f"zero-shot colour: accuracy {z['accuracy']:.3f} (chance {z['chance']:.3f}), labels given "
          f"{z['labels_given']}", file=sys.stderr)

    angles = [360 * k / args.variants for k in range(args.variants)]
    vectors = encoder.encode_images([hue_rotated(p, a) for p in products for a in angles])
    spaces = list(vectors)
    halves = [(0, 1), (2, 3)]
    fitted = []  # per half: bases fitted on the photos of the other half
    for half in halves:
        fit_on = [photos[i] for i in range(len(photos)) if i not in half]
        crops = [random_crop(fit_on[i % len(fit_on)], rng, 224) for i in range(args.fit_crops)]
        fitted.append(photo_bases(encoder.encode_images, crops, spaces, max(RANKS)))
    catalog_crops = [random_crop(photos[i % len(photos)], rng, 224) for i in range(2 * args.fit_crops)]
    from_catalog = photo_bases(encoder.encode_images, catalog_crops, spaces, max(RANKS))
    rows = []
    for space in spaces:
        v = vectors[space]
        rows.append({"space": space, "removed": "nothing", "rank": 0, "top5_same_product": top5_same_product(v, v, args.variants)})
        for rank in RANKS:
            per_half = []
            for half, bases in zip(halves, fitted):
                rows_of_half = np.flatnonzero(np.repeat([s in half for s in source], args.variants))
                sub = v[rows_of_half]
                cleaned = np.stack([without_directions(q, bases[space][:rank]) for q in sub])
                per_half.append(top5_same_product(cleaned, sub, args.variants))
            # The baseline on the same halves, so the comparison is like for like.
            rows.append({"space": space, "removed": "bundle (other photos)", "rank": rank,
                         "top5_same_product": float(np.mean(per_half))})
            cleaned = np.stack([without_directions(q, from_catalog[space][:rank]) for q in v])
            rows.append({"space": space, "removed": "bundle (catalog's photos)", "rank": rank,
                         "top5_same_product": top5_same_product(cleaned, v, args.variants)})
        estimators = [("swatches", lambda r, s=space: swatch_basis(lambda im: encoder.encode_images(im)[s], r))]
        if space in encoder.bundle.manifest.towers["text"].outputs.values():
            estimators.append(("prompts", lambda r, s=space: prompt_basis(lambda t: encoder.encode_texts(list(t))[s], r)))
        for name, make in estimators:
            for rank in RANKS[:3]:
                basis = make(rank)
                cleaned = np.stack([without_directions(q, basis) for q in v])
                rows.append({"space": space, "removed": name, "rank": int(len(basis)),
                             "top5_same_product": top5_same_product(cleaned, v, args.variants)})
        halves_baseline = []
        for half in halves:
            rows_of_half = np.flatnonzero(np.repeat([s in half for s in source], args.variants))
            halves_baseline.append(top5_same_product(v[rows_of_half], v[rows_of_half], args.variants))
        rows.append({"space": space, "removed": "nothing (per half, as bundle rows)", "rank": 0,
                     "top5_same_product": float(np.mean(halves_baseline))})
    for row in rows:
        print(f"{row['space']:>7} {row['removed']:>34} rank {row['rank']:>2}: other colourways in the top 5 "
              f"{row['top5_same_product']:.3f}", file=sys.stderr)
    result["same_style_any_colour"] = rows
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "colour_attributes.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
