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


def start_demo_server(bundle, data_dir, tls_root=None, **config):
    """An in-process server of the demo catalog (lookalike.demo: the sample
    photos and their crops, ids 1..24) encoded by ``bundle``, with the HTTP
    gateway on a loopback port; ``config`` overrides ServiceConfig fields.
    With TLS, ``tls_root`` is the CA to trust (the certificate names localhost)."""
    from lookalike.client import Client
    from lookalike.demo import SCHEMA, demo_products
    from lookalike.service.config import ServiceConfig
    from lookalike.service.server import Server

    keys = config.get("api_keys") or {}
    writer = next((key for key, scope in keys.items() if scope == "write"), None)
    server = Server(ServiceConfig(**{"address": "127.0.0.1:0", "http_address": "127.0.0.1:0", "data_dir": str(data_dir),
                                     "model": str(bundle), "schema": SCHEMA, **config}))
    server.start()
    try:
        address = f"localhost:{server.port}" if tls_root else server.address
        with Client(address, api_key=writer, tls_root=tls_root) as client:
            reply = client.upsert(demo_products())
        assert [r.error for r in reply.results] == [""] * len(reply.results)
    except BaseException:
        server.stop(grace=1)
        raise
    return server


@pytest.fixture(scope="session")
def demo_server(tiny_clip_bundle, tmp_path_factory):
    """The demo catalog served with the tiny CLIP bundle and small limits
    (photos up to 300 kB, k up to 50, 100 results deep)."""
    from lookalike.service.config import Limits

    server = start_demo_server(tiny_clip_bundle, tmp_path_factory.mktemp("demo"),
                               limits=Limits(max_k=50, max_results=100, max_image_bytes=300_000))
    yield server
    server.stop(grace=1)
