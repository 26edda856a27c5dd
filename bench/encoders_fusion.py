"""Which space should an image query use in the default bundle: ``visual``,
``joint`` (ConSE), or a fused score w * cos_joint + (1 - w) * cos_visual?

No labelled product photos can be downloaded here, so this builds the only
labelled set it can offline, and it is weak evidence:

- "Products" are crops of the few real photos that installed packages ship
  (matplotlib's and scikit-learn's sample images): each photo gives several
  crops of different regions, so a query's hardest distractors come from the
  same photo.
- Each product gets ``--views`` photos of itself: random re-crops, flips,
  small rotations, scale changes, colour and brightness shifts, JPEG
  re-compression and placement on a white canvas (as catalogue shots are).
- Every view queries all other views; the relevant ones are the views of the
  same product. Reported: recall@1 and mean average precision per scoring.

This measures near-duplicate, same-item retrieval (a shopper photographing a
product the catalogue holds), not category-level similarity, on a handful of
source photos. Writes bench/results/encoders_fusion.json.

    python bench/encoders_fusion.py --bundle bench/results/default-bundle
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from lookalike.encoders import Encoder, RuntimeConfig

RESULTS = Path(__file__).resolve().parent / "results"
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)  # weight of the joint space


def source_photos() -> list[Path]:
    import matplotlib
    import sklearn.datasets

    mpl = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
    skl = Path(sklearn.datasets.__file__).parent / "images"
    return [mpl / "grace_hopper.jpg", mpl / "Minduka_Present_Blue_Pack.png", skl / "china.jpg", skl / "flower.jpg"]


def products(photos: list[Path], per_photo: int, rng: np.random.Generator) -> list[Image.Image]:
    """Crops of 45-70% of each photo's shorter side, at random places."""
    out = []
    for path in photos:
        photo = Image.open(path).convert("RGB")
        side = min(photo.size)
        for _ in range(per_photo):
            size = int(side * rng.uniform(0.45, 0.7))
            left, top = rng.integers(0, photo.width - size + 1), rng.integers(0, photo.height - size + 1)
            out.append(photo.crop((left, top, left + size, top + size)))
    return out


def view(product: Image.Image, rng: np.random.Generator) -> bytes:
    """One more photo of the same product."""
    w, h = product.size
    keep = rng.uniform(0.75, 1.0)
    cw, ch = int(w * keep), int(h * keep)
    left, top = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    image = product.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.rotate(rng.uniform(-12, 12), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.75, 1.25))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
    scale = rng.uniform(0.5, 1.5)
    image = image.resize((max(16, int(image.width * scale)), max(16, int(image.height * scale))), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:  # a catalogue shot: the product on a white canvas
        canvas = Image.new("RGB", (int(image.width * 1.4), int(image.height * 1.4)), (255, 255, 255))
        canvas.paste(image, ((canvas.width - image.width) // 2, (canvas.height - image.height) // 2))
        image = canvas
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(60, 95)))
    return buffer.getvalue()


def retrieval_scores(similarity: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Recall@1 and mAP with every item as a query against all the others."""
    n = len(labels)
    recall1, average_precisions = [], []
    for q in range(n):
        scores = similarity[q].copy()
        scores[q] = -np.inf
        order = np.argsort(-scores, kind="stable")[: n - 1]
        relevant = labels[order] == labels[q]
        recall1.append(float(relevant[0]))
        hits = np.cumsum(relevant)
        average_precisions.append(float((hits[relevant] / (np.flatnonzero(relevant) + 1)).mean()))
    return {"recall@1": float(np.mean(recall1)), "mAP": float(np.mean(average_precisions))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=RESULTS / "default-bundle")
    parser.add_argument("--per-photo", type=int, default=8, help="products cut from each source photo")
    parser.add_argument("--views", type=int, default=4, help="photos of each product")
    parser.add_argument("--seeds", type=int, default=8, help="independent repetitions")
    args = parser.parse_args()
    encoder = Encoder(args.bundle, RuntimeConfig(device="cpu", intra_op_threads=os.cpu_count() or 1))
    per_seed = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        items = products(source_photos(), args.per_photo, rng)
        images = [view(p, rng) for p in items for _ in range(args.views)]
        labels = np.repeat(np.arange(len(items)), args.views)
        vectors = encoder.encode_images(images)
        joint, visual = vectors["joint"] @ vectors["joint"].T, vectors["visual"] @ vectors["visual"].T
        per_seed.append({f"{w:.1f}": retrieval_scores(w * joint + (1 - w) * visual, labels) for w in WEIGHTS})
        print(f"seed {seed}: {len(items)} products x {args.views} views", file=sys.stderr)
    summary = {}
    for key in per_seed[0]:
        summary[key] = {m: float(np.mean([s[key][m] for s in per_seed])) for m in ("recall@1", "mAP")}
        print(f"joint weight {key}: recall@1 {summary[key]['recall@1']:.3f}  mAP {summary[key]['mAP']:.3f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "encoders_fusion.json"
    out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "by_joint_weight": summary, "per_seed": per_seed}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
