"""Duplicate products: candidate pairs by image similarity (a threshold range
search over the index), features per pair (image cosines, title similarity,
price and attribute agreement) and a small logistic classifier that gives
P(duplicate). The classifier is trained from labelled pairs and saved in the
model bundle (``lookalike train duplicates``).

Imports downward only: index and encoders, never the service.
"""

from lookalike.duplicates.candidates import neighbours_above
from lookalike.duplicates.classifier import DuplicateClassifier, load_classifier, save_classifier
from lookalike.duplicates.features import AttributeNames, PairFeatures, ProductView, feature_names

__all__ = [
    "AttributeNames",
    "DuplicateClassifier",
    "PairFeatures",
    "ProductView",
    "feature_names",
    "load_classifier",
    "neighbours_above",
    "save_classifier",
]
