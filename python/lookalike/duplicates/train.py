"""``lookalike train duplicates``: fits the duplicate classifier on labelled
pairs with a model bundle's encoders, reports it on a held-out split and saves
it into the bundle.

The pairs file is JSONL, one pair a line, image paths relative to the file:

    {"a": {"image": "images/3.jpg", "title": "floral summer dress",
           "attributes": {"price": 39.9, "brand": "acme", "category": "dresses"}},
     "b": {"image": "images/51.jpg", "title": "new acme dress floral", "attributes": {...}},
     "duplicate": true}

(``lookalike.duplicates.synthetic`` writes such a file from generated products.)
The classifier saved is the one fitted on the training split, so the held-out
numbers reported describe the saved model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.duplicates.classifier import DuplicateClassifier, fit, precision_recall, save_classifier
from lookalike.duplicates.features import AttributeNames, PairFeatures, ProductView
from lookalike.encoders import Encoder, RuntimeConfig


@dataclass(frozen=True)
class TrainingReport:
    classifier: DuplicateClassifier
    train: dict[str, float]
    held_out: dict[str, float]
    saved_to: Path | None


def read_pairs(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], np.ndarray]:
    """(a sides, b sides, labels) of a pairs file; ValueError names the line."""
    sides_a, sides_b, labels = [], [], []
    with open(path) as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                a, b, duplicate = row["a"], row["b"], row["duplicate"]
                if not isinstance(duplicate, bool):
                    raise ValueError(f"duplicate must be true or false, got {duplicate!r}")
                for side in (a, b):
                    if not isinstance(side, dict) or not isinstance(side.get("image"), str):
                        raise ValueError("a and b are objects with an image path")
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}:{number}: {e}") from None
            sides_a.append(a)
            sides_b.append(b)
            labels.append(float(duplicate))
    if not labels:
        raise ValueError(f"{path}: no pairs")
    return sides_a, sides_b, np.array(labels)


def pair_views(encoder: Encoder, root: Path, sides: list[dict[str, Any]]) -> list[ProductView]:
    """Encodes each distinct image and title once."""
    images = sorted({s["image"] for s in sides})
    try:
        image_bytes = [(root / name).read_bytes() for name in images]
    except OSError as e:
        raise ValueError(f"pairs: cannot read image {e.filename}: {e.strerror}") from None
    by_image = encoder.encode_images(image_bytes)
    image_row = {name: i for i, name in enumerate(images)}
    titles = sorted({s.get("title", "") for s in sides if s.get("title", "").strip()})
    title_vectors: dict[str, np.ndarray] = {}
    text = encoder.bundle.manifest.towers.get("text")
    if text is not None and titles:
        space = next(iter(text.outputs.values()))
        title_vectors = dict(zip(titles, encoder.encode_texts(titles)[space]))
    return [ProductView(-1, {s: v[image_row[side["image"]]] for s, v in by_image.items()}, side.get("title", ""),
                        title_vectors.get(side.get("title", "")), side.get("attributes", {})) for side in sides]


def train_duplicates(pairs_path: str | Path, bundle: str | Path, held_out: float = 0.25, seed: int = 0,
                     names: AttributeNames = AttributeNames(), l2: float = 1.0, save: bool = True) -> TrainingReport:
    """Fits on a random (1 - held_out) of the pairs, reports precision and recall
    at the threshold 0.5 on both splits, and saves into ``bundle`` unless ``save`` is false."""
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be between 0 and 1, got {held_out}")
    pairs_path = Path(pairs_path)
    sides_a, sides_b, y = read_pairs(pairs_path)
    encoder = Encoder(bundle, RuntimeConfig(device="cpu"))
    views = pair_views(encoder, pairs_path.parent, sides_a + sides_b)
    image = encoder.bundle.manifest.towers.get("image")
    if image is None:
        raise ValueError(f"bundle {bundle}: has no image tower; duplicates are found by image similarity")
    features = PairFeatures(tuple(image.outputs.values()), names)
    n = len(y)
    x = features.matrix(list(zip(views[:n], views[n:])))
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * (1.0 - held_out)))
    train, test = order[:cut], order[cut:]
    if len(np.unique(y[test])) < 2:
        raise ValueError(f"the held-out split of {len(test)} pairs lacks duplicates or distinct pairs: "
                         "give more pairs or a larger held_out")
    classifier = fit(x[train], y[train], features.feature_names, l2=l2)
    train_report = precision_recall(classifier.probability(x[train]), y[train])
    test_report = precision_recall(classifier.probability(x[test]), y[test])
    classifier = DuplicateClassifier(classifier.features, classifier.mean, classifier.scale, classifier.weights,
                                     classifier.bias, classifier.threshold,
                                     {"pairs": int(n), "train_pairs": int(len(train)), "held_out": test_report,
                                      "model": f"{encoder.bundle.manifest.model_id}@{encoder.bundle.manifest.model_version}"})
    saved = save_classifier(classifier, encoder.bundle) if save else None
    return TrainingReport(classifier, train_report, test_report, saved)
