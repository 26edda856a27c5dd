"""Aligning an image space with the text tower's space: a linear map W from an
image feature space (the default bundle's ``visual``, 1280-d) into the space
the text tower writes (``joint``), z = L2norm(x W), trained so that an image
lands next to the words for its category. The text tower stays as it is
(locked; LiT, Zhai et al. 2022, locks the image tower instead and tunes the
text one).

The loss is a softmax over category prototypes: each category's prototype is
the normalised mean of the text vectors labelled with it (the training half's
text queries), and an image of category c is trained to be closer to c's
prototype than to any other, at a temperature. Unlike a projection head of
lookalike.train.head, which regroups one space's own vectors, this gives the
text tower a new image-side vector to meet: where the untuned one came from
ImageNet class names (ConSE), this one comes from the visual features, trained
on the catalog's own categories.

Its trade-off: it knows only the categories it was trained on. Words near one
of them in the text space find that category's images; words for something
else fall between prototypes.

torch is imported here: build time only (the ``build`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class AlignConfig:
    """How W is trained: ``steps`` batches of ``batch`` images drawn at random,
    Adam at ``lr`` with decoupled ``weight_decay``, logits divided by
    ``temperature`` (lower: a harder softmax), W seeded small and random."""

    steps: int = 500
    batch: int = 256
    lr: float = 1e-2
    weight_decay: float = 1e-2
    temperature: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.temperature > 0 or not self.lr > 0:
            raise ValueError(f"temperature and lr must be > 0, got {self.temperature} and {self.lr}")


def category_prototypes(text_vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(categories, prototypes): per category, the normalised mean of its text vectors."""
    labels = np.asarray(labels)
    categories = np.unique(labels)
    means = np.stack([text_vectors[labels == c].mean(axis=0) for c in categories]).astype(np.float32)
    return categories, means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def train_alignment(image_vectors: np.ndarray, image_labels: np.ndarray, text_vectors: np.ndarray,
                    text_labels: np.ndarray, config: AlignConfig = AlignConfig(), progress=None) -> np.ndarray:
    """W (image dim, text dim), float32, trained on the labelled image vectors
    against the prototypes of the labelled text vectors. Every image label
    needs texts of its own: an image of a category nobody named has nothing to
    be pulled toward. Seeded: the same input and config give the same W."""
    image_labels, text_labels = np.asarray(image_labels), np.asarray(text_labels)
    categories, prototypes = category_prototypes(text_vectors, text_labels)
    unnamed = sorted(set(image_labels.tolist()) - set(categories.tolist()))
    if unnamed:
        raise ValueError(f"no text names the categories {unnamed[:5]} of some training images")
    if len(categories) < 2:
        raise ValueError("aligning needs texts of at least two categories")
    target = torch.from_numpy(np.searchsorted(categories, image_labels).astype(np.int64))
    x = torch.from_numpy(np.ascontiguousarray(image_vectors, dtype=np.float32))
    p = torch.from_numpy(prototypes)
    generator = torch.Generator().manual_seed(config.seed)
    weight = torch.nn.Parameter(torch.randn(x.shape[1], p.shape[1], generator=generator) * 0.01)
    optimiser = torch.optim.AdamW([weight], lr=config.lr, weight_decay=config.weight_decay)
    for step in range(config.steps):
        rows = torch.randint(0, len(x), (config.batch,), generator=generator)
        z = torch.nn.functional.normalize(x[rows] @ weight, dim=1)
        loss = torch.nn.functional.cross_entropy(z @ p.T / config.temperature, target[rows])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress and (step + 1) % 100 == 0:
            progress(f"step {step + 1}/{config.steps}: loss {loss.item():.4f}")
    return weight.detach().numpy().astype(np.float32)

