"""Real photos without a download: the sample images that matplotlib and
scikit-learn ship (a portrait, a gift box, a temple, a flower), and random
square crops of them, which the generated test and training sets are made of.
matplotlib and scikit-learn come with the ``build`` and ``test`` extras."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def sample_photos() -> list[Path]:
    import matplotlib
    import sklearn.datasets

    mpl = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
    skl = Path(sklearn.datasets.__file__).parent / "images"
    return [mpl / "grace_hopper.jpg", mpl / "Minduka_Present_Blue_Pack.png", skl / "china.jpg", skl / "flower.jpg"]


def open_photos(paths: Sequence[Path]) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in paths]


def random_crop(photo: Image.Image, rng: np.random.Generator, size: int, low: float = 0.4,
                high: float = 0.7) -> Image.Image:
    """A square of low..high of the photo's shorter side, at a random place, resized to size x size."""
    side = int(min(photo.size) * rng.uniform(low, high))
    left, top = rng.integers(0, photo.width - side + 1), rng.integers(0, photo.height - side + 1)
    return photo.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BICUBIC)
