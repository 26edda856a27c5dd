"""P(duplicate) from pair features: logistic regression in numpy (no sklearn at
serving time), fitted by Newton's method with an L2 penalty on standardised
features, saved as a small JSON file inside the model bundle.

The file (``duplicates.json``, named by the manifest's ``duplicates`` field):

    {"format": "lookalike-duplicate-classifier", "format_version": 1,
     "features": ["image_cos_visual", ...], "mean": [...], "scale": [...],
     "weights": [...], "bias": -3.2, "threshold": 0.5,
     "training": {"pairs": 400, "held_out": {"precision": 0.97, ...}}}
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.encoders.bundle import Bundle, load_bundle
from lookalike.encoders.errors import BundleError

FORMAT_NAME = "lookalike-duplicate-classifier"
FORMAT_VERSION = 1
DEFAULT_FILE = "duplicates.json"


@dataclass(frozen=True)
class DuplicateClassifier:
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float = 0.5
    training: dict[str, Any] = field(default_factory=dict)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(duplicate) of each row of features (n, len(features)), or of one row."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != len(self.features):
            raise ValueError(f"expected {len(self.features)} features ({', '.join(self.features)}), got {x.shape[-1]}")
        z = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "features": list(self.features),
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
                "bias": float(self.bias), "threshold": float(self.threshold), "training": self.training}


def fit(x: np.ndarray, y: np.ndarray, features: Sequence[str], l2: float = 1.0,
        iterations: int = 50) -> DuplicateClassifier:
    """Logistic regression of labels ``y`` (0/1) on features ``x``. Features are
    standardised first (a constant one gets scale 1 and so no weight); ``l2``
    penalises the weights, not the bias, which keeps separable data finite."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(features) or len(x) != len(y):
        raise ValueError(f"x must be (n, {len(features)}) and y (n,), got {x.shape} and {y.shape}")
    if len(np.unique(y)) != 2 or not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("training needs both duplicate (1) and distinct (0) pairs")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -50, 50)))
        gradient = z.T @ (p - y) + penalty * w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return DuplicateClassifier(tuple(features), mean, scale, w[:-1], float(w[-1]))


def precision_recall(probability: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Precision and recall of "duplicate" at a threshold, with the counts behind them."""
    predicted = np.asarray(probability) >= threshold
    actual = np.asarray(y).astype(bool)
    tp = int((predicted & actual).sum())
    fp = int((predicted & ~actual).sum())
    fn = int((~predicted & actual).sum())
    return {"precision": tp / (tp + fp) if tp + fp else 1.0, "recall": tp / (tp + fn) if tp + fn else 1.0,
            "true_positives": tp, "false_positives": fp, "false_negatives": fn, "pairs": int(len(actual))}


def parse_classifier(doc: Any, where: str) -> DuplicateClassifier:
    """Validates a decoded classifier file; BundleError names the field."""
    def fail(problem: str) -> None:
        raise BundleError(f"{where}: {problem}")

    if not isinstance(doc, dict):
        fail("expected a JSON object")
    if doc.get("format") != FORMAT_NAME:
        fail(f"format: expected {FORMAT_NAME!r}, got {doc.get('format')!r}")
    if doc.get("format_version") != FORMAT_VERSION:
        fail(f"format_version {doc.get('format_version')!r} is not supported (this build reads {FORMAT_VERSION})")
    features = doc.get("features")
    if not isinstance(features, list) or not features or not all(isinstance(f, str) and f for f in features):
        fail("features: expected a non-empty list of feature names")
    arrays = {}
    for key in ("mean", "scale", "weights"):
        value = doc.get(key)
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (len(features),) or not np.isfinite(arr).all():
            fail(f"{key}: expected {len(features)} finite numbers, one per feature")
        arrays[key] = arr
    if (arrays["scale"] <= 0).any():
        fail("scale: every scale must be > 0")
    for key in ("bias", "threshold"):
        if isinstance(doc.get(key), bool) or not isinstance(doc.get(key), (int, float)) or not np.isfinite(doc[key]):
            fail(f"{key}: expected a finite number")
    if not 0.0 < doc["threshold"] < 1.0:
        fail(f"threshold: must be between 0 and 1, got {doc['threshold']}")
    return DuplicateClassifier(tuple(features), arrays["mean"], arrays["scale"], arrays["weights"],
                               float(doc["bias"]), float(doc["threshold"]), dict(doc.get("training", {})))


def load_classifier(bundle: Bundle | str | os.PathLike[str]) -> DuplicateClassifier | None:
    """The bundle's duplicate classifier, or None when it has none."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    path = bundle.extra("duplicates")
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: the duplicate classifier is unreadable ({e})") from None
    return parse_classifier(doc, str(path))


def save_classifier(classifier: DuplicateClassifier, bundle: Bundle | str | os.PathLike[str],
                    file: str = DEFAULT_FILE) -> Path:
    """Writes the classifier into the bundle and names it in the manifest's extras."""
    bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    text = json.dumps(classifier.to_json(), indent=2) + "\n"
    bundle.with_extra("duplicates", file, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return bundle.file(file)
