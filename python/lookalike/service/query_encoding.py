"""Images and texts of requests as vectors, with the statuses their failures get:
shared by a server's servicer and a router (which encodes once, then sends
vectors to its shards)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import grpc
import numpy as np

from lookalike.service.batching import Overloaded
from lookalike.service.config import Limits
from lookalike.service.encoding import ModelEncoder, StageClock
from lookalike.service.convert import check_length
from lookalike.service.errors import ServiceError, invalid
from lookalike.v1 import search_pb2


class QueryEncoder:
    def __init__(self, encoder: ModelEncoder | None, limits: Limits) -> None:
        """`encoder` None: a vectors-only service (image and text inputs get FAILED_PRECONDITION)."""
        self.encoder = encoder
        self._limits = limits

    def encode(self, kind: str, data: bytes | str, space: str, clock: StageClock, where: str) -> np.ndarray:
        """The vector of `space` for one image or text; every space the tower fills is
        computed by the same run, so encode_all serves products."""
        return self._of_space(self.encode_all(kind, data, clock, where), kind, space)

    @staticmethod
    def _of_space(vectors: dict[str, np.ndarray], kind: str, space: str) -> np.ndarray:
        if space not in vectors:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"space '{space}' has no {kind} encoder: query it with a vector or a product id"
                               + (f" (the model's {kind} tower fills: {', '.join(sorted(vectors))})" if vectors else ""))
        return vectors[space]

    def encode_all(self, kind: str, data: bytes | str, clock: StageClock, where: str) -> dict[str, np.ndarray]:
        """{space: vector} for every space the `kind` tower fills."""
        self._check(kind, data, where)
        with _statuses(where):
            return self.encoder.image(data, clock) if kind == "image" else self.encoder.text(data, clock)

    def product_images(self, products: Sequence[search_pb2.Product],
                       check: Callable[[search_pb2.Product, str], None],
                       passed: Callable[[int], None] = lambda i: None) -> list[dict[str, np.ndarray] | ServiceError]:
        """Per product of one write message: the ServiceError of `check` (what is
        checked before its image), else its image's {space: vector} ({} without
        an image) or the ServiceError encode_all would raise for it. The images
        are decoded in parallel and encoded in shared batches, and a bad one
        fails its own product alone. `passed(i)` is called for each product that
        passed the checks, before the images are encoded (work to overlap with them)."""
        outcomes: list[dict[str, np.ndarray] | ServiceError | None] = []
        for i, product in enumerate(products):
            try:
                check(product, f"products[{i}]")
                if product.image:
                    self._check("image", product.image, f"products[{i}].image")
                outcomes.append(None if product.image else {})
            except ServiceError as e:
                outcomes.append(e)
                continue
            passed(i)
        to_encode = [i for i, outcome in enumerate(outcomes) if outcome is None]
        pending = self.encoder.images([products[i].image for i in to_encode]) if to_encode else []
        for i, vectors in zip(to_encode, pending):
            try:
                with _statuses(f"products[{i}].image"):
                    outcomes[i] = vectors.result()
            except ServiceError as e:
                outcomes[i] = e
        return outcomes

    def _check(self, kind: str, data: bytes | str, where: str) -> None:
        """What is checked before an input reaches the encoder."""
        encoder = self.encoder
        spaces = (encoder.image_spaces if kind == "image" else encoder.text_spaces) if encoder else frozenset()
        if not spaces:
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"the server has no {kind} encoder: query it with a vector or a product id")
        if kind == "image" and len(data) > self._limits.max_image_bytes:
            raise invalid(f"{where}: the image is {len(data)} bytes, at most {self._limits.max_image_bytes}")
        if kind == "text":  # here, on the caller's thread: the text encoder's one thread never sees it
            check_length(data, self._limits.max_text_chars, where, "max_text_chars")

    def hybrid(self, h: search_pb2.HybridQuery, space: str, clock: StageClock) -> np.ndarray:
        """The weighted, normalised mix of an image and a text vector of `space`."""
        if not h.image or not h.text:
            raise invalid("query.hybrid: both image and text are required")
        if h.image_weight < 0 or h.text_weight < 0 or not np.isfinite([h.image_weight, h.text_weight]).all():
            raise invalid("query.hybrid: weights must be finite and >= 0")
        wi, wt = (h.image_weight, h.text_weight) if (h.image_weight or h.text_weight) else (0.5, 0.5)
        # Both towers at once: the text waits in the text tower's batcher while
        # this thread decodes the image and waits for the image tower.
        self._check("text", h.text, "query.hybrid.text")
        with _statuses("query.hybrid.text"):
            pending_text = self.encoder.text_soon(h.text)
        image = self.encode("image", h.image, space, clock, "query.hybrid.image")
        t = time.perf_counter()
        with _statuses("query.hybrid.text"):
            text_vectors = pending_text.result()
        clock.encode += time.perf_counter() - t
        text = self._of_space(text_vectors, "text", space)
        mixed = wi * image + wt * text
        norm = float(np.linalg.norm(mixed))
        if norm == 0.0:
            raise invalid("query.hybrid: the weighted image and text vectors cancel out")
        return mixed / norm

    def query(self, query: search_pb2.Query, space: str, clock: StageClock) -> np.ndarray | None:
        """The vector of an image, text or hybrid query; None for other kinds."""
        kind = query.WhichOneof("kind")
        if kind == "image":
            return self.encode("image", query.image, space, clock, "query.image")
        if kind == "text":
            return self.encode("text", query.text, space, clock, "query.text")
        if kind == "hybrid":
            return self.hybrid(query.hybrid, space, clock)
        return None


@contextmanager
def _statuses(where: str) -> Iterator[None]:
    """The encoder's failures as the statuses a caller gets."""
    try:
        yield
    except Overloaded:
        raise ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, "the encoder queue is full; retry after the "
                                                               "retry-after-ms trailer") from None
    except ValueError as e:  # an undecodable or oversized image, an empty text
        raise invalid(f"{where}: {e}") from None
