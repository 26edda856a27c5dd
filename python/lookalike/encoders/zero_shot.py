"""Zero-shot attributes: a product's colour, pattern or category read off its
image embedding by comparing it with text prompts in the joint space.

Per attribute, each label's prompt ("a photo of a red product") is encoded by
the text tower once; a product's image vector scores every label by cosine, a
softmax over the scores (divided by ``temperature``) gives the confidences, and
the best label is kept when its confidence reaches ``min_confidence``. It is
stored as a keyword attribute (``colour``) with the confidence beside it as a
numeric one (``colour_confidence``), both filterable.

How well this works depends on the model: a CLIP reads colours off photos; the
default bundle's joint space reaches images only through ImageNet classes, so
its colours are weak (README, "Zero-shot attributes", measured).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "grey")
PATTERNS = ("striped", "floral", "checked", "polka dot", "plain", "animal print")
CATEGORIES = ("dress", "shirt", "trousers", "shoe", "bag", "hat", "jacket", "watch", "poster", "toy")

TextEncoder = Callable[[Sequence[str]], np.ndarray]


def _default_vocabularies() -> dict[str, list[str]]:
    return {"colour": list(COLOURS), "pattern": list(PATTERNS), "category": list(CATEGORIES)}


@dataclass(frozen=True)
class ZeroShotConfig:
    """The `[zero_shot]` table of the service's config."""

    enabled: bool = False
    space: str = "joint"                 # the space where image and prompt vectors meet
    template: str = "a photo of a {} product"   # the prompt of a label; {} is the label
    templates: dict[str, str] = field(default_factory=dict)  # per attribute, instead of template
    min_confidence: float = 0.3          # below it the attribute is left unset
    temperature: float = 0.01            # softmax over cosine / temperature (CLIP's is 0.01)
    confidence_suffix: str = "_confidence"  # colour -> colour_confidence
    # attribute name -> its labels; the names become keyword attributes of the schema
    vocabularies: dict[str, list[str]] = field(default_factory=_default_vocabularies)

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"zero_shot.min_confidence must be in [0, 1], got {self.min_confidence}")
        if self.temperature <= 0:
            raise ValueError(f"zero_shot.temperature must be > 0, got {self.temperature}")
        for name, labels in self.vocabularies.items():
            if not name.isidentifier() or len(labels) < 2 or len(set(labels)) != len(labels):
                raise ValueError(f"zero_shot.vocabularies.{name}: an identifier with at least two distinct labels")
        for name, template in {"": self.template, **self.templates}.items():
            if template.count("{}") != 1:
                raise ValueError(f"zero_shot.template{'s.' + name if name else ''}: needs exactly one {{}}, "
                                 f"got {template!r}")

    def schema(self) -> dict[str, str]:
        """The attributes the tagger writes: a keyword and its numeric confidence each."""
        out = {}
        for name in self.vocabularies:
            out[name] = "keyword"
            out[name + self.confidence_suffix] = "numeric"
        return out

    def prompts(self, name: str) -> list[str]:
        template = self.templates.get(name, self.template)
        return [template.format(label) for label in self.vocabularies[name]]


class ZeroShotTagger:
    def __init__(self, config: ZeroShotConfig, encode_texts: TextEncoder) -> None:
        """Encodes every prompt once with ``encode_texts`` (texts -> (n, dim)
        vectors of ``config.space``)."""
        self.config = config
        self._labels = {name: list(labels) for name, labels in config.vocabularies.items()}
        self._prompts = {name: _normalised(encode_texts(config.prompts(name))) for name in config.vocabularies}

    def confidences(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Per attribute, the softmax confidence of each label for one image vector."""
        v = np.asarray(vector, dtype=np.float32)
        v = v / max(float(np.linalg.norm(v)), 1e-12)
        out = {}
        for name, prompts in self._prompts.items():
            logits = (prompts @ v) / self.config.temperature
            e = np.exp(logits - logits.max())
            out[name] = e / e.sum()
        return out

    def tag(self, vector: np.ndarray) -> dict[str, Any]:
        """The attributes for one image vector: {"colour": ["red"], "colour_confidence": 0.81, ...};
        an attribute whose best label is under min_confidence is left out."""
        out: dict[str, Any] = {}
        for name, p in self.confidences(vector).items():
            best = int(np.argmax(p))
            if p[best] >= self.config.min_confidence:
                out[name] = [self._labels[name][best]]
                out[name + self.config.confidence_suffix] = float(p[best])
        return out

    def merged(self, vector: np.ndarray, sent: Mapping[str, Any]) -> dict[str, Any]:
        """A product's attributes: ``sent`` (what the client sent) plus the
        tagged ones it does not set; a label the client set keeps the tagger's
        confidence out too, since it would describe another label."""
        out = dict(sent)
        for name, value in self.tag(vector).items():
            label = name.removesuffix(self.config.confidence_suffix) if name not in self._labels else name
            if label not in sent and name not in sent:
                out[name] = value
        return out


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
