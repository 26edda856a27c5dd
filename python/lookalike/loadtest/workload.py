"""What the harness sends: a weighted mix of query kinds, a share of them
filtered, a share of upserts, with payloads generated to fit the server (vector
dimensions and attribute schema from its Stats).

The harness works on products of its own, ids from ``id_base`` on, that
``seed_products`` stores before a run: more-like-this queries name them, filters
match their attribute values, and upserts replace them, so a long run does not
grow the catalog and never touches anyone else's products.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from lookalike.client import Client, packed
from lookalike.v1 import filter_pb2, search_pb2

KINDS = ("vector", "text", "image", "hybrid", "more_like_this")
UPSERT = "upsert"
KEYWORDS = tuple(f"loadtest-{i}" for i in range(8))
WORDS = ("red", "black", "leather", "summer", "running", "floral", "wool", "denim", "silk", "vintage")
THINGS = ("dress", "shoes", "bag", "jacket", "hat", "scarf", "sneakers", "skirt", "coat", "watch")


def parse_mix(text: str) -> dict[str, float]:
    """'vector=3,text=1' -> {"vector": 3.0, "text": 1.0}."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition("=")
        if kind not in KINDS:
            raise ValueError(f"unknown query kind '{kind}' in the mix; kinds: {', '.join(KINDS)}")
        mix[kind] = float(weight or 1)
    if not mix or sum(mix.values()) <= 0 or min(mix.values()) < 0:
        raise ValueError(f"the mix '{text}' needs at least one kind with a positive weight")
    return mix


@dataclass(frozen=True)
class ServerShape:
    """What the workload needs to know of the server, from one Stats call."""

    dims: dict[str, int]                 # space -> dimension
    default_space: str
    text_space: str                      # a space that encodes texts and images ("" when none)
    image_space: bool                    # whether image queries work
    schema: dict[str, str]               # attribute -> kind

    @classmethod
    def from_stats(cls, stats: search_pb2.StatsResponse) -> ServerShape:
        spaces = {s.name: s for s in stats.spaces}
        default = stats.default_space or next(iter(spaces))
        both = [s.name for s in stats.spaces if s.has_text_encoder and s.has_image_encoder]
        text_space = default if default in both else (both[0] if both else "")
        return cls(dims={s.name: s.dim for s in stats.spaces}, default_space=default, text_space=text_space,
                   image_space=any(s.has_image_encoder for s in stats.spaces), schema=dict(stats.attribute_schema))

    def check_mix(self, mix: dict[str, float]) -> None:
        needs_text = {k for k in ("text", "hybrid") if mix.get(k)}
        if needs_text and not self.text_space:
            raise ValueError(f"the server has no space with text and image encoders for {sorted(needs_text)} queries")
        if mix.get("image") and not self.image_space:
            raise ValueError("the server has no image encoder for image queries")


@dataclass(frozen=True)
class WorkloadSpec:
    """Everything a worker process needs to generate requests (picklable)."""

    shape: ServerShape
    mix: dict[str, float] = field(default_factory=lambda: {"vector": 1.0})
    filtered_share: float = 0.0          # of searches, carrying a filter
    upsert_share: float = 0.0            # of all requests, upserting one product
    products: int = 200                  # the harness's own products (ids id_base ... id_base + products - 1)
    id_base: int = 1 << 40
    k: int = 10


class Workload:
    """Generates requests from pools made once per worker, so that making them
    costs little next to the calls being measured."""

    def __init__(self, spec: WorkloadSpec, seed: int) -> None:
        self.spec = spec
        self.rng = np.random.default_rng(seed)
        kinds = list(spec.mix)
        self._kinds = kinds
        self._weights = np.array([spec.mix[k] for k in kinds]) / sum(spec.mix.values())
        dim = spec.shape.dims[spec.shape.default_space]
        self._vectors = [packed(v) for v in _unit_vectors(self.rng, 64, dim)]
        self._texts = [f"{self.rng.choice(WORDS)} {self.rng.choice(WORDS)} {self.rng.choice(THINGS)}"
                       for _ in range(64)]
        needs_images = spec.mix.get("image") or spec.mix.get("hybrid")
        self._images = [product_photo(self.rng) for _ in range(16)] if needs_images else []

    def next(self) -> tuple[str, search_pb2.SearchRequest | search_pb2.UpsertRequest]:
        """(label, request): the label names the kind, "+filter" when filtered."""
        spec, rng = self.spec, self.rng
        if spec.upsert_share and rng.random() < spec.upsert_share:
            product = harness_product(spec, int(rng.integers(spec.products)), rng)
            return UPSERT, search_pb2.UpsertRequest(products=[product])
        kind = self._kinds[int(rng.choice(len(self._kinds), p=self._weights))]
        request = search_pb2.SearchRequest(query=self._query(kind), k=spec.k)
        if kind in ("text", "hybrid"):
            request.using = spec.shape.text_space
        if spec.filtered_share and rng.random() < spec.filtered_share:
            request.filter.CopyFrom(self._filter())
            return f"{kind}+filter", request
        return kind, request

    def _query(self, kind: str) -> search_pb2.Query:
        pick = self.rng.integers
        if kind == "vector":
            return search_pb2.Query(vector=self._vectors[pick(len(self._vectors))])
        if kind == "text":
            return search_pb2.Query(text=self._texts[pick(len(self._texts))])
        if kind == "image":
            return search_pb2.Query(image=self._images[pick(len(self._images))])
        if kind == "hybrid":
            return search_pb2.Query(hybrid=search_pb2.HybridQuery(
                image=self._images[pick(len(self._images))], text=self._texts[pick(len(self._texts))]))
        return search_pb2.Query(product_id=self.spec.id_base + int(pick(self.spec.products)))

    def _filter(self) -> filter_pb2.Filter:
        """One condition on an attribute of the schema that the harness's products
        carry; with no schema, a set of the harness's ids."""
        schema = self.spec.shape.schema
        if not schema:
            ids = self.spec.id_base + self.rng.choice(self.spec.products, min(50, self.spec.products), replace=False)
            return filter_pb2.Filter(must=[filter_pb2.Condition(has_id=filter_pb2.HasId(ids=ids.tolist()))])
        name = sorted(schema)[int(self.rng.integers(len(schema)))]
        return filter_pb2.Filter(must=[_condition(name, schema[name], self.rng)])


def _condition(name: str, kind: str, rng: np.random.Generator) -> filter_pb2.Condition:
    if kind == "keyword":
        return filter_pb2.Condition(match=filter_pb2.Match(attribute=name, value=str(rng.choice(KEYWORDS))))
    if kind == "bool":
        # `is` is a Python keyword, hence the dict
        return filter_pb2.Condition(**{"is": filter_pb2.IsTrue(attribute=name, value=True)})
    # numeric and timestamp: values of the harness's products lie in 0..100
    return filter_pb2.Condition(range=filter_pb2.Range(attribute=name, lt=float(rng.integers(10, 100))))


def _attribute(kind: str, rng: np.random.Generator) -> search_pb2.AttributeValue:
    if kind == "keyword":
        return search_pb2.AttributeValue(keywords=search_pb2.Keywords(values=[str(rng.choice(KEYWORDS))]))
    if kind == "bool":
        return search_pb2.AttributeValue(flag=bool(rng.random() < 0.8))
    if kind == "timestamp":
        return search_pb2.AttributeValue(timestamp=int(rng.integers(100)))
    return search_pb2.AttributeValue(number=float(rng.uniform(0, 100)))


def harness_product(spec: WorkloadSpec, i: int, rng: np.random.Generator) -> search_pb2.Product:
    """Product i of the harness: vectors for every space (no encoding on upsert)
    and a value for every attribute of the schema."""
    shape = spec.shape
    return search_pb2.Product(
        id=spec.id_base + i, title=f"loadtest product {i}",
        vectors={name: packed(_unit_vectors(rng, 1, dim)[0]) for name, dim in shape.dims.items()},
        attributes={name: _attribute(kind, rng) for name, kind in shape.schema.items()})


def seed_products(client: Client, spec: WorkloadSpec, seed: int = 0) -> None:
    """Stores the harness's products; raises if the server refuses any."""
    rng = np.random.default_rng(seed)
    reply = client.upsert((harness_product(spec, i, rng) for i in range(spec.products)), batch=64)
    failed = [r for r in reply.results if r.status_code]
    if failed:
        raise ValueError(f"seeding the harness's products: {len(failed)} refused, e.g. {failed[0].error}")


def product_photo(rng: np.random.Generator, size: tuple[int, int] = (320, 240)) -> bytes:
    """A small JPEG of coloured shapes on a plain ground: cheap to make, and
    decoded and resized like a real upload."""
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(150, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = int(rng.integers(0, size[0] - 40)), int(rng.integers(0, size[1] - 40))
        w, h = int(rng.integers(30, 160)), int(rng.integers(30, 160))
        draw.ellipse((x, y, x + w, y + h), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)
