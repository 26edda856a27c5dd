"""Finding the duplicates of a product in a live collection: candidates by the
threshold range search, then the classifier's P(duplicate) per pair.

The finder reads the collection (vectors, attributes), the catalog's titles
(through ``titles``) and encodes titles with the text tower (through
``encode_titles``; the index keeps no title vectors). Title vectors are cached
per finder call; a scan passes one cache for the whole catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lookalike.duplicates.candidates import neighbours_above
from lookalike.duplicates.classifier import DuplicateClassifier
from lookalike.duplicates.features import AttributeNames, PairFeatures, ProductView
from lookalike.index import UnknownIdError
from lookalike.index.collection import Collection

TitleLookup = Callable[[Sequence[int]], Mapping[int, str]]
TitleEncoder = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class DuplicatesConfig:
    """The `[duplicates]` table of the service's config."""

    space: str = ""                 # where candidates are searched; "" = the model's image query space
    min_similarity: float = 0.95    # image cosine a candidate must reach (the range search's threshold)
    max_candidates: int = 100       # candidates per product at most
    scan_max_pairs: int = 100_000   # a catalog scan stops after scoring this many pairs (its upper bound too)
    price_attribute: str = "price"  # the attributes the features compare ("" = not in the schema)
    brand_attribute: str = "brand"
    category_attribute: str = "category"
    # At upsert, store the id of the most probable duplicate already in the catalog (when it
    # reaches the classifier's threshold) in flag_attribute and its P in <flag_attribute>_probability,
    # both numeric attributes added to the schema of a new collection. Costs a range search and a
    # title encoding per product.
    flag_on_upsert: bool = False
    flag_attribute: str = "duplicate_of"

    def __post_init__(self) -> None:
        if not 0.0 < self.min_similarity <= 1.0:
            raise ValueError(f"duplicates.min_similarity must be in (0, 1], got {self.min_similarity}")
        if self.max_candidates < 1 or self.scan_max_pairs < 1:
            raise ValueError("duplicates.max_candidates and duplicates.scan_max_pairs must be >= 1")

    @property
    def attribute_names(self) -> AttributeNames:
        return AttributeNames(self.price_attribute, self.brand_attribute, self.category_attribute)

    def flag_schema(self) -> dict[str, str]:
        """The attributes flag_on_upsert writes ({} when it is off)."""
        if not self.flag_on_upsert:
            return {}
        return {self.flag_attribute: "numeric", self.flag_attribute + "_probability": "numeric"}


@dataclass(frozen=True)
class Pair:
    """One scored candidate pair."""

    product_id: int
    duplicate_id: int
    similarity: float
    probability: float
    is_duplicate: bool
    features: dict[str, float]


def spaces_of(classifier: DuplicateClassifier) -> tuple[str, ...]:
    """The image spaces a classifier's features compare, in order."""
    return tuple(f.removeprefix("image_cos_") for f in classifier.features if f.startswith("image_cos_"))


class DuplicateFinder:
    def __init__(self, collection: Collection, classifier: DuplicateClassifier, config: DuplicatesConfig,
                 candidate_space: str, titles: TitleLookup, encode_titles: TitleEncoder | None) -> None:
        """Raises ValueError when the classifier compares a space the collection
        lacks or its features are not the ones this build computes."""
        self.collection = collection
        self.classifier = classifier
        self.config = config
        self.space = candidate_space
        self._titles = titles
        self._encode_titles = encode_titles
        spaces = spaces_of(classifier)
        missing = [s for s in spaces if s not in collection.spaces]
        if missing:
            raise ValueError(f"the duplicate classifier compares space(s) {missing} that the collection lacks")
        self.features = PairFeatures(spaces, config.attribute_names)
        if self.features.feature_names != list(classifier.features):
            raise ValueError(f"the duplicate classifier was trained on features {list(classifier.features)}, "
                             f"this build computes {self.features.feature_names}: retrain it")
        if candidate_space not in collection.spaces:
            raise ValueError(f"duplicates.space {candidate_space!r} is not a space of the collection")

    def find(self, product_id: int, min_similarity: float | None = None, max_candidates: int | None = None,
             cache: MutableMapping[int, ProductView] | None = None) -> list[Pair]:
        """Scored candidates of one product, most probable first. UnknownIdError
        when the product is not in the collection."""
        cache = {} if cache is None else cache
        mine = self.views([product_id], cache).get(product_id)
        if mine is None:
            raise UnknownIdError(product_id)
        return self.find_for(mine, min_similarity, max_candidates, cache)

    def find_for(self, mine: ProductView, min_similarity: float | None = None, max_candidates: int | None = None,
                 cache: MutableMapping[int, ProductView] | None = None) -> list[Pair]:
        """As find(), for a product given as a view (one being upserted, say): its
        vectors must include the candidate space. Its own id is never a candidate."""
        threshold = self.config.min_similarity if min_similarity is None else min_similarity
        limit = max_candidates or self.config.max_candidates
        if len(self.collection) == 0:
            return []
        ids, scores = neighbours_above(self.collection, self.space, mine.vectors[self.space], threshold, limit,
                                       exclude=mine.id)
        views = self.views(ids.tolist(), {} if cache is None else cache)
        found = [(int(i), float(s)) for i, s in zip(ids, scores) if int(i) in views]
        if not found:
            return []
        x = self.features.matrix([(mine, views[i]) for i, _ in found])
        p = self.classifier.probability(x)
        names = self.features.feature_names
        pairs = [Pair(mine.id, i, s, float(pi), bool(pi >= self.classifier.threshold),
                      dict(zip(names, row.tolist()))) for (i, s), pi, row in zip(found, p, x)]
        return sorted(pairs, key=lambda pair: -pair.probability)

    def flagged(self, product_id: int, vectors: Mapping[str, np.ndarray], title: str,
                attributes: Mapping[str, Any]) -> dict[str, Any]:
        """A product's attributes for an upsert with flag_on_upsert: plus the id of
        its most probable duplicate in the collection and that P, when the P
        reaches the classifier's threshold (the attributes unchanged otherwise)."""
        pairs = self.find_for(self.view_of(product_id, vectors, title, attributes))
        out = dict(attributes)
        if pairs and pairs[0].is_duplicate:
            out[self.config.flag_attribute] = float(pairs[0].duplicate_id)
            out[self.config.flag_attribute + "_probability"] = pairs[0].probability
        return out

    def views(self, ids: Sequence[int], cache: MutableMapping[int, ProductView]) -> dict[int, ProductView]:
        """ProductViews of the ids still in the collection (deleted ones are left
        out), from ``cache`` where it has them; new ones are added to it."""
        new = [i for i in dict.fromkeys(ids) if i not in cache and i in self.collection]
        spaces = {*self.features.spaces, self.space}
        try:
            vectors = {s: self.collection.vectors(s, new) for s in spaces} if new else {}
        except UnknownIdError:  # one was deleted since the check: check again, once
            new = [i for i in new if i in self.collection]
            try:
                vectors = {s: self.collection.vectors(s, new) for s in spaces} if new else {}
            except UnknownIdError:
                return {i: cache[i] for i in ids if i in cache}  # still moving: what the cache has
        if new:
            titles = self._titles(new)
            texts = [titles.get(i, "") for i in new]
            title_vectors = self.title_vectors(texts)
            for row, i in enumerate(new):
                cache[i] = ProductView(i, {s: v[row] for s, v in vectors.items()}, texts[row],
                                       title_vectors[row], self.collection.attributes(i))
        return {i: cache[i] for i in ids if i in cache}

    def view_of(self, product_id: int, vectors: Mapping[str, np.ndarray], title: str,
                attributes: Mapping[str, Any]) -> ProductView:
        """The view of a product not (yet) in the collection."""
        return ProductView(product_id, dict(vectors), title, self.title_vectors([title])[0], dict(attributes))

    def title_vectors(self, texts: list[str]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(texts)
        todo = [row for row, t in enumerate(texts) if t.strip()]
        if self._encode_titles is not None and todo:
            encoded = self._encode_titles([texts[row] for row in todo])
            for row, vector in zip(todo, encoded):
                out[row] = vector
        return out
