"""A labelled catalog of product photos: Fashion-MNIST (Zalando Research, MIT
licence), as Debian's package ``dataset-fashion-mnist`` installs it
(``apt-get install dataset-fashion-mnist``: the four IDX files under
``/usr/share/datasets/fashion-mnist``), for relevance reports and fine-tuning
without internet.

Fashion-MNIST holds 70,000 of Zalando's product shots in 10 categories, each
cut down to 28x28 grey levels and negated (the product light on black). The
builder negates them back, so that a product is dark on white as it was
photographed, and writes:

- products: ``per_category`` images of each category from the training split;
- image queries: ``queries_per_category`` images of each category from the test
  split, so a query is never a catalog image (no ``item``: they were made from
  no product of the catalog);
- text queries: four ways a shopper names each category (``PHRASES``), chosen
  once, before anything was measured with them.

Every query's relevant products are those of its category. Run

    python -m lookalike.eval.fashion_catalog --out fashion-catalog

to write ``catalog.csv``, ``queries.jsonl`` (the lookalike.eval.queries format),
the images under ``catalog/`` and ``queries/``, and ``LICENSES.txt``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
# The label order of Fashion-MNIST, as its authors name the categories, and
# the slug each one gets as the ``category`` attribute.
CATEGORIES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SLUGS = tuple(name.lower().replace("/", "-").replace(" ", "-") for name in CATEGORIES)
PHRASES = (
    ("t-shirt", "top", "tee", "tank top"),
    ("trousers", "pants", "jeans", "slacks"),
    ("pullover", "sweater", "jumper", "knitted sweater"),
    ("dress", "summer dress", "evening dress", "frock"),
    ("coat", "jacket", "winter coat", "parka"),
    ("sandal", "sandals", "flip-flops", "strappy sandal"),
    ("shirt", "button-down shirt", "blouse", "flannel shirt"),
    ("sneaker", "trainers", "running shoe", "canvas shoe"),
    ("bag", "handbag", "tote bag", "purse"),
    ("ankle boot", "boots", "chelsea boot", "heeled boot"),
)
SPLITS = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_IMAGES_MAGIC, _LABELS_MAGIC = 0x00000803, 0x00000801
LICENSES = """\
Images: Fashion-MNIST, copyright (c) 2017 Zalando SE, licensed under the MIT licence
(https://github.com/zalandoresearch/fashion-mnist); from Debian's package dataset-fashion-mnist.
The pixels are negated back to dark-on-white; nothing else is changed.
"""


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (gzipped) as a uint8 array; ValueError names a file that is
    not one of the expected kind or is cut short."""
    data = gzip.decompress(path.read_bytes())
    dims = magic & 0xFF
    if len(data) < 4 + 4 * dims or int.from_bytes(data[:4], "big") != magic:
        raise ValueError(f"{path}: not an IDX file of {dims}-d unsigned bytes (magic {magic:#010x})")
    shape = tuple(int.from_bytes(data[4 + 4 * d:8 + 4 * d], "big") for d in range(dims))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: the header promises {shape} values, the file holds {body.size}")
    return body.reshape(shape)


def load_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 28, 28), labels (n,)) of the ``train`` or ``test`` split."""
    images_file, labels_file = (folder / name for name in SPLITS[split])
    for path in (images_file, labels_file):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: install Debian's dataset-fashion-mnist "
                                    "or pass the folder that holds Fashion-MNIST's IDX files")
    images, labels = read_idx(images_file, _IMAGES_MAGIC), read_idx(labels_file, _LABELS_MAGIC)
    if images.ndim != 3 or len(images) != len(labels) or labels.max(initial=0) >= len(CATEGORIES):
        raise ValueError(f"{folder}: the {split} split's images {images.shape} and labels {labels.shape} do not agree")
    return images, labels


def sample_per_category(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Row numbers of ``count`` rows of each category, in category order."""
    rows = []
    for label in range(len(CATEGORIES)):
        have = np.flatnonzero(labels == label)
        if len(have) < count:
            raise ValueError(f"category {CATEGORIES[label]!r} has {len(have)} images, {count} were asked for")
        rows.append(np.sort(rng.choice(have, count, replace=False)))
    return np.concatenate(rows)


def _save(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(255 - pixels).save(path)


def build_fashion_catalog(out: str | Path, source: str | Path = DEBIAN_FOLDER, per_category: int = 100,
                          queries_per_category: int = 30, seed: int = 0) -> tuple[int, int]:
    """Writes the catalog into ``out``; returns (products, queries)."""
    source, out = Path(source), Path(out)
    rng = np.random.default_rng(seed)
    train_images, train_labels = load_split(source, "train")
    test_images, test_labels = load_split(source, "test")
    products = sample_per_category(train_labels, per_category, rng)
    image_queries = sample_per_category(test_labels, queries_per_category, rng)
    (out / "catalog").mkdir(parents=True, exist_ok=True)
    (out / "queries").mkdir(exist_ok=True)
    with open(out / "catalog.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "image", "title", "category"])
        for id, row in enumerate(products):
            label = int(train_labels[row])
            image = f"catalog/train-{row}.png"
            _save(train_images[row], out / image)
            writer.writerow([id, image, CATEGORIES[label], SLUGS[label]])
    queries = []
    for row in image_queries:
        image = f"queries/test-{row}.png"
        _save(test_images[row], out / image)
        queries.append({"id": f"i{row}", "image": image, "relevant_category": SLUGS[int(test_labels[row])]})
    for slug, phrases in zip(SLUGS, PHRASES):
        queries += [{"id": f"t-{slug}-{n}", "text": text, "relevant_category": slug} for n, text in enumerate(phrases)]
    with open(out / "queries.jsonl", "w") as f:
        f.writelines(json.dumps(q) + "\n" for q in queries)
    (out / "LICENSES.txt").write_text(LICENSES)
    return len(products), len(queries)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lookalike.eval.fashion_catalog",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to write the catalog into")
    parser.add_argument("--source", default=str(DEBIAN_FOLDER), help="folder of Fashion-MNIST's four IDX files")
    parser.add_argument("--per-category", type=int, default=100, help="products of each category")
    parser.add_argument("--queries-per-category", type=int, default=30, help="image queries of each category")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    args = parser.parse_args(argv)
    try:
        products, queries = build_fashion_catalog(args.out, args.source, args.per_category,
                                                  args.queries_per_category, args.seed)
    except (OSError, ValueError) as e:
        print(f"lookalike: {e}", file=sys.stderr)
        return 1
    print(f"wrote {products} products and {queries} queries to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
