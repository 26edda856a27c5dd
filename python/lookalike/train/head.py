"""A projection head trained on frozen embeddings: z = L2norm(x W), with
triplet loss and semi-hard negative mining (FaceNet, Schroff et al. 2015) or
a contrastive loss (Hadsell et al. 2006).

Labels are categories: two vectors of one category are a positive pair, of
two categories a negative one. W starts as the identity (or, for a smaller
output, the first coordinates after a seeded random rotation), so an
untrained head keeps the encoder's ranking and training only moves from it.

torch is imported here: build time only (the ``build`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LOSSES = ("triplet", "contrastive")


@dataclass(frozen=True)
class HeadConfig:
    """How a head is trained.

    - ``loss``: ``triplet`` (semi-hard negatives) or ``contrastive``.
    - ``margin``: on squared distances between unit vectors (0 to 4).
    - ``out_dim``: the head's output dimension (None: the input's).
    - ``classes_per_batch`` x ``per_class``: the P x K sampling of a batch, so
      every anchor has positives and negatives beside it.
    - ``steps``, ``lr`` and ``weight_decay`` (decay pulls W toward the identity
      it started from, not toward zero: the prior is the encoder's own space).
    """

    loss: str = "triplet"
    margin: float = 0.2
    out_dim: int | None = None
    classes_per_batch: int = 8
    per_class: int = 8
    steps: int = 300
    lr: float = 1e-3
    weight_decay: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if not 0 < self.margin <= 4:
            raise ValueError(f"margin must be in (0, 4] (squared distance of unit vectors), got {self.margin}")
        for name in ("classes_per_batch", "per_class", "steps"):
            if getattr(self, name) < (2 if name != "steps" else 1):
                raise ValueError(f"{name} is too small: {getattr(self, name)}")
        if self.out_dim is not None and self.out_dim < 1:
            raise ValueError(f"out_dim must be >= 1, got {self.out_dim}")


def squared_distances(z: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances of unit rows: 2 - 2 cos."""
    return (2.0 - 2.0 * z @ z.T).clamp(min=0.0)


def semi_hard_triplet_loss(z: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over every anchor-positive pair of max(0, d(a,p) - d(a,n) + margin),
    with n the semi-hard negative of the pair: the closest negative that is
    still farther than the positive. A pair with none takes the anchor's
    farthest negative (the easiest; the hardest one early in training tends
    to collapse the embedding)."""
    d = squared_distances(z)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    positive_pairs = same & ~eye
    negatives = ~same
    if not positive_pairs.any() or not negatives.any():
        raise ValueError("a batch needs two labels with two vectors each at least")
    a, p = positive_pairs.nonzero(as_tuple=True)
    d_ap = d[a, p]
    d_an = d[a]  # (pairs, n): anchor's distance to every vector
    semi = negatives[a] & (d_an > d_ap[:, None])
    inf = torch.tensor(float("inf"), device=z.device)
    closest_semi = torch.where(semi, d_an, inf).min(dim=1).values
    farthest = torch.where(negatives[a], d_an, -inf).max(dim=1).values
    d_neg = torch.where(semi.any(dim=1), closest_semi, farthest)
    return torch.relu(d_ap - d_neg + margin).mean()


def contrastive_loss(z: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Positive pairs pulled together (d), negative pairs pushed past the
    margin (max(0, margin - d)), each part averaged over its pairs."""
    d = squared_distances(z)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=z.device)
    positive, negative = same & ~eye, ~same
    if not positive.any() or not negative.any():
        raise ValueError("a batch needs two labels with two vectors each at least")
    return d[positive].mean() + torch.relu(margin - d[negative]).mean()


def initial_weight(in_dim: int, out_dim: int, seed: int) -> np.ndarray:
    """The identity, or a seeded random rotation's first ``out_dim`` columns."""
    if out_dim == in_dim:
        return np.eye(in_dim, dtype=np.float32)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((in_dim, in_dim)))
    return q[:, :out_dim].astype(np.float32)


def apply_head(weight: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """L2norm(vectors W), as the exported graph computes it."""
    z = vectors.astype(np.float32) @ weight
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def train_head(vectors: np.ndarray, labels: np.ndarray, config: HeadConfig = HeadConfig(),
               progress=None) -> np.ndarray:
    """Trains W on ``vectors`` (n, dim), one integer label per row, and returns
    it as a float32 (dim, out_dim) array. Seeded: the same input and config
    give the same W."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    usable = classes[counts >= 2]
    if len(usable) < 2:
        raise ValueError("training needs at least two categories with two vectors each")
    in_dim = vectors.shape[1]
    init = torch.from_numpy(initial_weight(in_dim, config.out_dim or in_dim, config.seed))
    weight = torch.nn.Parameter(init.clone())
    optimiser = torch.optim.Adam([weight], lr=config.lr)
    loss_fn = semi_hard_triplet_loss if config.loss == "triplet" else contrastive_loss
    rng = np.random.default_rng(config.seed)
    rows_of = {c: np.flatnonzero(labels == c) for c in usable}
    x_all, y_all = torch.from_numpy(vectors), torch.from_numpy(labels.astype(np.int64))
    for step in range(config.steps):
        chosen = rng.choice(usable, size=min(config.classes_per_batch, len(usable)), replace=False)
        rows = np.concatenate([rng.choice(rows_of[c], size=config.per_class, replace=len(rows_of[c]) < config.per_class)
                               for c in chosen])
        z = torch.nn.functional.normalize(x_all[rows] @ weight, dim=1)
        loss = loss_fn(z, y_all[rows], config.margin) + config.weight_decay * ((weight - init) ** 2).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if progress and (step + 1) % 50 == 0:
            progress(f"step {step + 1}/{config.steps}: loss {loss.item():.4f}")
    return weight.detach().numpy().astype(np.float32)
