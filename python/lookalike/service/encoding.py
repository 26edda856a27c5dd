"""The service's side of the encoders: one model bundle turns query and product
images and texts into vectors of its spaces, with per-stage timings.

Each upload is decoded and preprocessed on the calling handler thread, so a
broken image fails its own call only (ValueError naming the problem); the ONNX
runs are micro-batched across concurrent calls (batching.py), which is where
batching pays. The images of one write (a message of products) are decoded on a
small pool at once (Pillow releases the GIL while it decodes and resizes) and
submitted to the batcher together, so one stream of products fills batches
alone. A full encoder queue raises Overloaded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from lookalike.encoders import Encoder, decode_for_tower, image_to_tensor
from lookalike.service.batching import MicroBatcher, Overloaded


@dataclass
class StageClock:
    """Seconds spent per encoding stage, added up over a request."""

    decode: float = 0.0
    preprocess: float = 0.0
    encode: float = 0.0


@dataclass(frozen=True)
class BatchingConfig:
    """How the encoder batches across calls (see MicroBatcher)."""

    max_batch: int = 16        # inputs per ONNX run
    max_wait_ms: float = 2.0   # how long a lone input waits for company
    max_queue: int = 256       # inputs waiting before new ones are refused (RESOURCE_EXHAUSTED)
    # ONNX runs of a tower at once. With encoder_threads = 1 and runners = the cores, the
    # batches of an ingest run side by side, each on one core, instead of one at a time
    # across them: less CPU a photo (no threads meeting inside each operator), while a
    # lone query waits for one core's run ("Ingest throughput" in docs/encoders-and-relevance.md).
    runners: int = 1


class ModelEncoder:
    def __init__(self, encoder: Encoder, batching: BatchingConfig = BatchingConfig()) -> None:
        self.encoder = encoder
        manifest = encoder.bundle.manifest
        self.model_id = f"{manifest.model_id}@{manifest.model_version}"
        image, text = manifest.towers.get("image"), manifest.towers.get("text")
        # The spaces each tower writes a vector into.
        self.image_spaces = frozenset(image.outputs.values()) if image else frozenset()
        self.text_spaces = frozenset(text.outputs.values()) if text else frozenset()
        self.image_query_space = manifest.image_query_space
        self._preprocess = image.preprocess if image else None
        max_wait = batching.max_wait_ms / 1e3
        self._batch = batching.max_batch
        self._images = MicroBatcher(self._run_images, max_batch=batching.max_batch, max_wait=max_wait,
                                    max_queue=batching.max_queue, runners=batching.runners, name="image-encoder")
        self._texts = MicroBatcher(self._run_texts, max_batch=batching.max_batch, max_wait=max_wait,
                                   max_queue=batching.max_queue, runners=batching.runners, name="text-encoder")
        self._decoders = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="image-decode")

    def image(self, data: bytes, clock: StageClock) -> dict[str, np.ndarray]:
        """One uploaded image -> {space: (dim,) vector} for every image space."""
        tensor = self._tensor(data, clock)
        t = time.perf_counter()
        vectors = self._images(tensor)
        clock.encode += time.perf_counter() - t
        return vectors

    def images(self, uploads: Sequence[bytes]) -> list[Future]:
        """Several uploaded images (one write's products) -> per image, a Future of
        its {space: (dim,) vector}, or of the ValueError or Overloaded that failed
        it alone. They are decoded on the pool and reach the batcher a full batch
        at a time, so they share its runs; stage timings are not kept (a write
        reports none)."""
        if self._preprocess is None:
            raise ValueError(f"model {self.model_id} has no image tower")
        decoding = [self._decoders.submit(self._tensor, data, StageClock()) for data in uploads]
        encoded = []
        for start in range(0, len(decoding), self._batch):  # a batch runs while the next one decodes
            batch = decoding[start:start + self._batch]
            wait(batch)
            for tensor in batch:
                try:
                    encoded.append(self._images.submit(tensor.result()))
                except (ValueError, Overloaded) as e:
                    encoded.append(_failed(e))
        return encoded

    def _tensor(self, data: bytes, clock: StageClock) -> np.ndarray:
        """An uploaded image decoded and preprocessed into the image tower's input."""
        if self._preprocess is None:
            raise ValueError(f"model {self.model_id} has no image tower")
        t0 = time.perf_counter()
        config = self.encoder.config
        picture = decode_for_tower(data, self._preprocess, config.max_pixels, config.max_aspect_ratio)
        t1 = time.perf_counter()
        tensor = image_to_tensor(picture, self._preprocess)
        clock.decode += t1 - t0
        clock.preprocess += time.perf_counter() - t1
        return tensor

    def text(self, text: str, clock: StageClock) -> dict[str, np.ndarray]:
        """One text -> {space: (dim,) vector} for every text space."""
        t = time.perf_counter()
        vectors = self.text_soon(text).result()
        clock.encode += time.perf_counter() - t
        return vectors

    def text_soon(self, text: str) -> Future:
        """A Future of one text's {space: (dim,) vector}: the text tower encodes it
        while the caller does other work (the image of a hybrid query)."""
        if not self.text_spaces:
            raise ValueError(f"model {self.model_id} has no text tower")
        if not text.strip():
            raise ValueError("the text is empty")
        return self._texts.submit(text)

    def queue_depths(self) -> dict[str, Callable[[], int]]:
        """Per tower, a function giving the inputs waiting for it (for metrics)."""
        return {"image": self._images.queued, "text": self._texts.queued}

    def close(self) -> None:
        self._decoders.shutdown()
        self._images.close()
        self._texts.close()

    def _run_images(self, tensors: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return _rows(self.encoder.encode_pixels(np.stack(tensors)), len(tensors))

    def _run_texts(self, texts: list[str]) -> list[dict[str, np.ndarray]]:
        return _rows(self.encoder.encode_texts(texts), len(texts))


def _failed(error: Exception) -> Future:
    future: Future = Future()
    future.set_exception(error)
    return future


def _rows(by_space: dict[str, np.ndarray], n: int) -> list[dict[str, np.ndarray]]:
    """{space: (n, dim)} -> n dicts {space: (dim,)}."""
    return [{space: matrix[i] for space, matrix in by_space.items()} for i in range(n)]
