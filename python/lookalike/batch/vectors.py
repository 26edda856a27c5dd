"""Catalog rows to vectors, as the service fills a product's spaces: a vector
the row gives, else the image tower's (when the row has a photo and the tower
writes the space), else the text tower's from the title. A row that cannot be
filled (an undecodable photo, a wrong dimension, no source for a space) fails
alone, with a message naming the problem, as an Upsert item would.

One RowEncoder holds one onnxruntime session per tower: a Ray actor makes one
and feeds it batches; the in-process build makes one too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lookalike.index.collection import SpaceConfig


class RowEncoder:
    def __init__(self, spaces: Sequence[SpaceConfig], bundle: str | os.PathLike[str] | None = None,
                 threads: int = 1) -> None:
        """``threads``: onnxruntime threads per operator (a Ray actor's share of its node)."""
        self.spaces = list(spaces)
        self.encoder = None
        self.image_spaces: frozenset[str] = frozenset()
        self.text_spaces: frozenset[str] = frozenset()
        if bundle is not None:
            from lookalike.encoders import Encoder, RuntimeConfig  # onnxruntime: only with a model

            self.encoder = Encoder(bundle, RuntimeConfig(device="cpu", intra_op_threads=threads))
            towers = self.encoder.bundle.manifest.towers
            self.image_spaces = frozenset(towers["image"].outputs.values()) if "image" in towers else frozenset()
            self.text_spaces = frozenset(towers["text"].outputs.values()) if "text" in towers else frozenset()

    def __call__(self, images: Sequence[str], titles: Sequence[str],
                 given: Sequence[dict[str, list[float]]]) -> tuple[dict[str, np.ndarray], list[str]]:
        """Per space an (n, dim) float32 matrix (rows of failed products are
        zeros), and per row its error ("" when it succeeded). ``images`` are
        file paths ("" for none)."""
        n = len(images)
        errors = [""] * n
        vectors = {s.name: np.zeros((n, s.dim), dtype=np.float32) for s in self.spaces}
        from_image = self._encode_images(images, errors)
        need_text = [i for i in range(n) if not errors[i] and titles[i]
                     and any(s.name not in given[i] and s.name not in from_image.get(i, {}) for s in self.spaces)]
        from_text = self._encode_texts([titles[i] for i in need_text])
        for i in range(n):
            if errors[i]:
                continue
            for space in self.spaces:
                vector = given[i].get(space.name)
                if vector is None:
                    vector = from_image.get(i, {}).get(space.name)
                if vector is None and i in need_text and space.name in from_text:
                    vector = from_text[space.name][need_text.index(i)]
                errors[i] = _check(space, vector, self._how_to_fill(space.name))
                if errors[i]:
                    break
                vectors[space.name][i] = vector
        return vectors, errors

    def _encode_images(self, images: Sequence[str], errors: list[str]) -> dict[int, dict[str, np.ndarray]]:
        """Row -> {space: vector} for the rows with a photo; a bad photo sets its row's error."""
        wanted = [i for i, path in enumerate(images) if path]
        if not wanted:
            return {}
        if self.encoder is None or not self.image_spaces:
            for i in wanted:
                errors[i] = "the row has a photo but the build has no image encoder"
            return {}
        from lookalike.encoders import decode_for_tower, image_to_tensor

        spec = self.encoder.bundle.manifest.towers["image"].preprocess
        tensors, rows = [], []
        for i in wanted:
            try:
                picture = decode_for_tower(Path(images[i]).read_bytes(), spec, self.encoder.config.max_pixels,
                                       self.encoder.config.max_aspect_ratio)
                tensors.append(image_to_tensor(picture, spec))
                rows.append(i)
            except (ValueError, OSError) as e:
                errors[i] = f"image {images[i]}: {e}"
        if not rows:
            return {}
        encoded = self.encoder.encode_pixels(np.stack(tensors))
        return {i: {space: matrix[j] for space, matrix in encoded.items()} for j, i in enumerate(rows)}

    def _encode_texts(self, titles: list[str]) -> dict[str, np.ndarray]:
        if not titles or self.encoder is None or not self.text_spaces:
            return {}
        return self.encoder.encode_texts(titles)

    def _how_to_fill(self, space: str) -> str:
        ways = [what for what, spaces in (("an image", self.image_spaces), ("a title", self.text_spaces))
                if space in spaces]
        return f" or {' or '.join(ways)}" if ways else ""


def _check(space: SpaceConfig, vector: np.ndarray | list[float] | None, how: str) -> str:
    """Why a vector cannot go into ``space``, or "" when it can."""
    if vector is None:
        return f"no vector for space '{space.name}': give vectors['{space.name}']{how}"
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (space.dim,):
        return f"vectors['{space.name}'] has {array.size} values, the space has dimension {space.dim}"
    if not np.isfinite(array).all():
        return f"vectors['{space.name}'] has a NaN or infinite value"
    if space.metric == "cosine" and not array.any():
        return f"vectors['{space.name}']: an all-zero vector has no direction"
    return ""
