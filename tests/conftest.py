import numpy as np
import pytest


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """Seeded, normalised vectors in anisotropic clusters: a small stand-in for
    embeddings, harder for a graph than uniform noise of the same size."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    scales = (1.0 / np.arange(1, dim + 1) ** 0.5).astype(np.float32)  # decaying spectrum
    x = centres[rng.integers(0, clusters, n)] * 0.6 + rng.standard_normal((n, dim)).astype(np.float32) * scales
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    """Row indices of the exact k nearest base vectors of each query."""
    if metric == "l2":
        d = (queries**2).sum(1)[:, None] - 2 * queries @ base.T + (base**2).sum(1)[None, :]
    elif metric == "cosine":
        d = -(queries @ base.T) / np.linalg.norm(base, axis=1)[None, :]  # query norms do not change the order
    else:
        d = -(queries @ base.T)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))


@pytest.fixture(scope="session")
def data_64d():
    vectors = clustered(4200, 64, seed=1)
    return vectors[:4000], vectors[4000:]  # queries from the same clusters



def reference_matches(clause, attrs: dict, id_: int) -> bool:
    """Whether a product with attributes `attrs` (as AttributeStore.get returns
    them) and id `id_` matches a filter clause: the language's meaning in plain
    Python, to check the native evaluation against."""
    from lookalike.index import HasId, Is, Match, Must, MustNot, Range, Should

    if isinstance(clause, Must):
        return all(reference_matches(c, attrs, id_) for c in clause.clauses)
    if isinstance(clause, Should):
        return any(reference_matches(c, attrs, id_) for c in clause.clauses)
    if isinstance(clause, MustNot):
        return not any(reference_matches(c, attrs, id_) for c in clause.clauses)
    if isinstance(clause, HasId):
        return id_ in clause.ids
    value = attrs.get(clause.attr)
    if value is None:
        return False
    if isinstance(clause, Match):
        return any(v in value for v in clause.values)
    if isinstance(clause, Is):
        return value == clause.value
    if isinstance(clause, Range):
        return ((clause.gt is None or value > clause.gt) and (clause.gte is None or value >= clause.gte)
                and (clause.lt is None or value < clause.lt) and (clause.lte is None or value <= clause.lte))
    raise TypeError(f"unknown clause {clause!r}")


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory):
    """A tiny random CLIP checkpoint folder (see tiny_clip.py)."""
    from tiny_clip import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip-checkpoint"))


@pytest.fixture(scope="session")
def tiny_clip_bundle(tiny_clip_checkpoint, tmp_path_factory):
    """That checkpoint exported to a bundle by lookalike's CLIP exporter."""
    from lookalike.encoders.export_clip import export_clip

    return export_clip(str(tiny_clip_checkpoint), tmp_path_factory.mktemp("tiny-clip-bundle"), model_id="tiny-clip")
