"""Seeded CLIP-like embedding generator and exact ground truth for the ANN bench.

Model (all parameters derive from one seed, so the output is deterministic):

* a shared "mean direction" (CLIP embeddings are far from centred: unrelated
  images still have cosine ~0.3-0.5);
* a few thousand cluster centres with Zipf-like sizes, living mostly in a
  lower-dimensional subspace (with a decaying spectrum inside it);
* anisotropic within-cluster noise: per-coordinate power-law spectrum, turned by
  one of a few random rotations (clusters share rotation groups), with a
  log-normal per-cluster spread;
* finally every vector is L2-normalised (cosine == inner product).

Base and query vectors are drawn from the same model with independent random
streams, so queries are never copies of base points. Generation runs in chunks,
each seeded by (seed, stream, chunk index), so memory stays bounded and the
result does not depend on anything but the spec.
"""
from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CHUNK = 32_768
CACHE_DIR = Path(__file__).resolve().parent / "results" / "cache"

_BASE, _QUERIES, _MODEL = 1, 2, 0


@dataclass(frozen=True)
class ClipLikeSpec:
    n: int = 200_000
    dim: int = 512
    n_queries: int = 1000
    seed: int = 0
    n_clusters: int = 0        # 0 -> clip(n // 64, 16, 4000)
    subspace_dim: int = 0      # 0 -> dim // 4: where the cluster centres mostly live
    zipf_s: float = 0.8        # cluster size ~ rank ** -zipf_s
    centre_decay: float = 0.6  # centre spectrum in the subspace ~ i ** -centre_decay
    noise_decay: float = 0.5   # within-cluster spectrum ~ i ** -noise_decay (i = 1..dim)
    noise_scale: float = 1.0   # within-cluster spread relative to the centre spread
    mean_weight: float = 0.9   # weight of the shared mean direction
    rotation_groups: int = 4   # distinct noise orientations shared by the clusters

    def resolved(self) -> "ClipLikeSpec":
        d = asdict(self)
        d["n_clusters"] = self.n_clusters or int(np.clip(self.n // 64, 16, 4000))
        d["subspace_dim"] = self.subspace_dim or max(8, self.dim // 4)
        return ClipLikeSpec(**d)

    def key(self) -> str:
        blob = json.dumps(asdict(self.resolved()), sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:16]


def _orthonormal(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    """`rows` orthonormal row vectors in R^dim (Haar-ish via QR)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, rows)))
    return (q * np.sign(np.diag(r))).T.astype(np.float32)


def _power_spectrum(count: int, decay: float) -> np.ndarray:
    """Per-axis standard deviations with variance ~ i**-decay, total variance 1."""
    var = np.arange(1, count + 1, dtype=np.float64) ** -decay
    return np.sqrt(var / var.sum()).astype(np.float32)


class _Model:
    """Everything shared by base and queries: centres, weights, noise shapes."""

    def __init__(self, spec: ClipLikeSpec):
        s = spec.resolved()
        rng = np.random.default_rng([s.seed, _MODEL])
        self.spec = s
        mean_dir = rng.standard_normal(s.dim).astype(np.float32)
        self.mean = s.mean_weight * mean_dir / np.linalg.norm(mean_dir)

        basis = _orthonormal(rng, s.subspace_dim, s.dim)
        coeffs = rng.standard_normal((s.n_clusters, s.subspace_dim)).astype(np.float32)
        centres = (coeffs * _power_spectrum(s.subspace_dim, s.centre_decay)) @ basis
        # a little energy outside the subspace, so centres are not exactly low-rank
        centres += 0.15 * rng.standard_normal((s.n_clusters, s.dim)).astype(np.float32) / np.sqrt(s.dim)
        self.centres = centres.astype(np.float32)

        ranks = rng.permutation(s.n_clusters) + 1.0
        weights = ranks ** -s.zipf_s
        self.cum_weights = np.cumsum(weights / weights.sum())

        self.noise_std = _power_spectrum(s.dim, s.noise_decay)
        self.rotations = [_orthonormal(rng, s.dim, s.dim) for _ in range(s.rotation_groups)]
        self.spread = (s.noise_scale * rng.lognormal(0.0, 0.25, s.n_clusters)).astype(np.float32)
        self.group = rng.integers(0, s.rotation_groups, s.n_clusters)

    def sample(self, count: int, stream: int) -> np.ndarray:
        s = self.spec
        out = np.empty((count, s.dim), dtype=np.float32)
        for chunk, start in enumerate(range(0, count, CHUNK)):
            stop = min(start + CHUNK, count)
            rng = np.random.default_rng([s.seed, stream, chunk])
            cluster = np.searchsorted(self.cum_weights, rng.random(stop - start), side="right")
            cluster = np.minimum(cluster, s.n_clusters - 1)
            z = rng.standard_normal((stop - start, s.dim), dtype=np.float32)
            z *= self.noise_std
            noise = np.empty_like(z)
            for g, rot in enumerate(self.rotations):
                rows = self.group[cluster] == g
                noise[rows] = z[rows] @ rot
            block = self.mean + self.centres[cluster] + noise * self.spread[cluster, None]
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start:stop] = block
        return out


def clip_like(spec: ClipLikeSpec) -> tuple[np.ndarray, np.ndarray]:
    """Return (base (n, dim), queries (n_queries, dim)), float32, unit-norm rows."""
    model = _Model(spec)
    return model.sample(spec.n, _BASE), model.sample(spec.n_queries, _QUERIES)


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, block: int = 65_536):
    """Exact top-k by inner product. Returns (ids int64 (q, k), sims float32 (q, k)), best first."""
    nq = len(queries)
    best_ids = np.empty((nq, 0), dtype=np.int64)
    best_sim = np.empty((nq, 0), dtype=np.float32)
    for start in range(0, len(base), block):
        sims = queries @ base[start:start + block].T
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        best_ids = np.hstack([best_ids, part + start])
        best_sim = np.hstack([best_sim, np.take_along_axis(sims, part, axis=1)])
        if best_ids.shape[1] > k:
            keep = np.argpartition(-best_sim, k - 1, axis=1)[:, :k]
            best_ids = np.take_along_axis(best_ids, keep, axis=1)
            best_sim = np.take_along_axis(best_sim, keep, axis=1)
    order = np.argsort(-best_sim, axis=1, kind="stable")
    return np.take_along_axis(best_ids, order, axis=1), np.take_along_axis(best_sim, order, axis=1)


def ground_truth(spec: ClipLikeSpec, base: np.ndarray, queries: np.ndarray, k: int,
                 cache_dir: Path | None = CACHE_DIR):
    """Exact top-k, cached under cache_dir keyed by the data spec and k."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"gt_{spec.key()}_k{k}.npz"
        if path.exists():
            with np.load(path) as f:
                return f["ids"], f["sims"]
    ids, sims = exact_topk(base, queries, k)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, ids=ids, sims=sims)
    return ids, sims


def describe(base: np.ndarray, queries: np.ndarray, gt_sims: np.ndarray, seed: int = 0) -> dict:
    """A few realism indicators: neighbour / random-pair cosine, local intrinsic dimension."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, len(base), (2, 2000))
    dist = np.sqrt(np.maximum(2.0 - 2.0 * gt_sims.astype(np.float64), 1e-12))
    # MLE of local intrinsic dimensionality (Levina-Bickel), from the k-NN distances
    lid = -1.0 / np.mean(np.log(dist[:, :-1] / dist[:, -1:]), axis=1)
    sv = np.linalg.svd(base[rng.choice(len(base), min(len(base), 20_000), replace=False)],
                       compute_uv=False) ** 2
    return {
        "cos_nn1_mean": float(gt_sims[:, 0].mean()),
        "cos_nnk_mean": float(gt_sims[:, -1].mean()),
        "cos_random_pair_mean": float(np.einsum("ij,ij->i", base[a], base[b]).mean()),
        "lid_mle_median": float(np.median(lid)),
        "pca_dims_for_90pct_var": int(np.searchsorted(np.cumsum(sv) / sv.sum(), 0.9) + 1),
    }


if __name__ == "__main__":  # quick look: python bench/datasets.py [n] [dim]
    import time
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    dim = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    spec = ClipLikeSpec(n=n, dim=dim)
    t = time.perf_counter()
    base, queries = clip_like(spec)
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    _, sims = ground_truth(spec, base, queries, 100, cache_dir=None)
    print(f"generate {t_gen:.1f}s, ground truth {time.perf_counter() - t:.1f}s")
    print(json.dumps(describe(base, queries, sims), indent=2))
