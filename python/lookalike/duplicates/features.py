"""The features of a pair of products that the duplicate classifier weighs.

Per pair, in the order of ``feature_names(spaces)``:

- ``image_cos_<space>``: cosine of the two products' vectors in each image
  space (a near-duplicate photo scores close to 1 in every space);
- ``title_cos``: cosine of the titles' text-tower vectors (0 when either title
  is empty or the model has no text tower), and ``title_jaccard``: the overlap
  of the titles' lower-cased word sets, which catches retitled copies that
  keep most words;
- ``price_ratio``: the smaller price over the larger (1 = the same price), with
  ``price_known`` saying whether both prices exist (the ratio is 0 when not);
- ``brand_equal`` / ``brand_known`` and ``category_equal`` /
  ``category_known``: keyword agreement, when both products have the attribute.

Missing values become 0 with a ``*_known`` flag beside them, so that the
classifier can learn how much an absent price says, instead of us guessing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class AttributeNames:
    """Which attributes of the schema hold price, brand and category ("" = none)."""

    price: str = "price"
    brand: str = "brand"
    category: str = "category"


@dataclass
class ProductView:
    """What the features need of one product: its vectors per image space
    (L2-normalised), its title and the title's text vector, its attributes."""

    id: int
    vectors: Mapping[str, np.ndarray]
    title: str = ""
    title_vector: np.ndarray | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


def feature_names(spaces: Sequence[str]) -> list[str]:
    return [f"image_cos_{s}" for s in spaces] + [
        "title_cos", "title_jaccard", "price_ratio", "price_known",
        "brand_equal", "brand_known", "category_equal", "category_known"]


@dataclass(frozen=True)
class PairFeatures:
    """Computes the features of pairs for one set of image spaces."""

    spaces: tuple[str, ...]
    names: AttributeNames = AttributeNames()

    @property
    def feature_names(self) -> list[str]:
        return feature_names(self.spaces)

    def __call__(self, a: ProductView, b: ProductView) -> np.ndarray:
        row = [float(np.dot(a.vectors[s], b.vectors[s])) for s in self.spaces]
        row.append(_cosine(a.title_vector, b.title_vector) if a.title and b.title else 0.0)
        row.append(title_jaccard(a.title, b.title))
        row.extend(_price(a.attributes.get(self.names.price), b.attributes.get(self.names.price)))
        for name in (self.names.brand, self.names.category):
            row.extend(_keywords_equal(a.attributes.get(name), b.attributes.get(name)))
        return np.array(row, dtype=np.float64)

    def matrix(self, pairs: Sequence[tuple[ProductView, ProductView]]) -> np.ndarray:
        if not pairs:
            return np.empty((0, len(self.feature_names)))
        return np.stack([self(a, b) for a, b in pairs])


def title_jaccard(a: str, b: str) -> float:
    """|words in both| / |words in either|, lower-cased; 0 when either is empty."""
    wa, wb = set(_WORD.findall(a.lower())), set(_WORD.findall(b.lower()))
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / len(wa | wb)


def _cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    if a is None or b is None:
        return 0.0
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(np.dot(a, b) / (na * nb)) if na and nb else 0.0


def _price(a: Any, b: Any) -> tuple[float, float]:
    if a is None or b is None:
        return 0.0, 0.0
    a, b = abs(float(a)), abs(float(b))
    if max(a, b) == 0.0:
        return 1.0, 1.0
    return min(a, b) / max(a, b), 1.0


def _keywords_equal(a: Any, b: Any) -> tuple[float, float]:
    """(1 if the keyword sets are equal, 1 if both exist)."""
    if not a or not b:
        return 0.0, 0.0
    sa = {a} if isinstance(a, str) else set(a)
    sb = {b} if isinstance(b, str) else set(b)
    return float(sa == sb), 1.0
