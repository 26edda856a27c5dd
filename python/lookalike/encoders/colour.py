"""Colour directions of a vector space, and their removal from a query: "the
same style, any colour".

A product recoloured moves its vector mostly within a few directions. They are
estimated per space, in one of three ways:

- ``bundle``: from photos, at training time (``lookalike train
  colour-directions``): each photo is hue-rotated through the colour wheel
  (every 30 degrees) and encoded; the differences between the rotations of one
  photo (each minus the photo's mean over rotations) span the directions. They
  are saved in the bundle (``extras.colour_directions``, an .npz with one
  (rank, dim) array per space). The only way that measurably works with the
  default bundle (README);
- ``swatches`` (any space an image tower fills, at the server's start): the
  same with neutral textures (stripes, checks, dots, a gradient) tinted with
  each of a dozen colours;
- ``prompts`` (a space a text tower fills): the differences between the text
  vectors of "a photo of a <colour> product" for each colour.

The top ``rank`` principal directions of those differences form an orthonormal
basis B; a query q becomes (q - B^T B q) / |q - B^T B q|. Searching with it
ignores where a product sits along those directions, so its other colourways
come closer (README, "Same style, any colour", measured).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from lookalike.encoders.bundle import Bundle
from lookalike.encoders.errors import BundleError
from lookalike.encoders.zero_shot import COLOURS

# RGB of the tints the swatches are painted with.
SWATCH_RGB = {"red": (200, 30, 30), "orange": (235, 130, 20), "yellow": (230, 210, 40), "green": (40, 150, 50),
              "blue": (30, 60, 200), "purple": (120, 40, 160), "pink": (240, 130, 180), "brown": (120, 75, 35),
              "black": (25, 25, 25), "white": (245, 245, 245), "grey": (128, 128, 128), "teal": (20, 140, 140)}
SOURCES = ("auto", "bundle", "swatches", "prompts")
HUE_STEPS = tuple(range(0, 360, 30))
DIRECTIONS_FILE = "colour_directions.npz"


def hue_rotated(image: Image.Image, degrees: float) -> Image.Image:
    """The image with every hue turned by ``degrees`` (saturation and brightness kept)."""
    h, s, v = image.convert("HSV").split()
    shift = int(round(degrees / 360 * 256))
    h = h.point(lambda x: (x + shift) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def textures(size: int = 128) -> list[np.ndarray]:
    """Neutral luminance patterns in [0.25, 1] (2-D float arrays), each a different "style"."""
    y, x = np.mgrid[0:size, 0:size] / size
    patterns = [
        (np.sin(x * 2 * np.pi * 6) > 0),                              # vertical stripes
        ((np.floor(x * 8) + np.floor(y * 8)) % 2 == 0),               # checks
        ((((x * 6) % 1 - 0.5) ** 2 + ((y * 6) % 1 - 0.5) ** 2) < 0.09),  # dots
        (x + y) / 2,                                                  # a gradient
        (np.sin((x + y) * 2 * np.pi * 4) > 0),                        # diagonal stripes
    ]
    return [0.25 + 0.75 * np.asarray(p, dtype=np.float64) for p in patterns]


def tinted(texture: np.ndarray, rgb: tuple[int, int, int]) -> Image.Image:
    """The texture painted in one colour: bright parts take the colour, dark parts stay dark."""
    pixels = texture[..., None] * np.asarray(rgb, dtype=np.float64)[None, None, :]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def basis_from_variants(groups: Sequence[np.ndarray], rank: int) -> np.ndarray:
    """The top ``rank`` principal directions of the within-group differences:
    each group is (variants, dim), the same thing in different colours."""
    diffs = np.concatenate([g - g.mean(axis=0, keepdims=True) for g in groups])
    _, s, vt = np.linalg.svd(diffs, full_matrices=False)
    keep = min(rank, int((s > s[0] * 1e-6).sum()))
    return vt[:keep].astype(np.float32)


def swatch_basis(encode_images: Callable[[list[Image.Image]], np.ndarray], rank: int,
                 colours: Sequence[str] = tuple(SWATCH_RGB)) -> np.ndarray:
    """Colour directions of an image space from tinted textures (see the module doc)."""
    groups = [np.asarray(encode_images([tinted(t, SWATCH_RGB[c]) for c in colours]), dtype=np.float64)
              for t in textures()]
    return basis_from_variants(groups, rank)


def photo_bases(encode_images: Callable[[list[Image.Image]], dict[str, np.ndarray]], photos: Sequence[Image.Image],
                spaces: Sequence[str], rank: int, steps: Sequence[float] = HUE_STEPS) -> dict[str, np.ndarray]:
    """Colour directions of image spaces from hue rotations of photos;
    ``encode_images`` gives {space: (n, dim)} as Encoder.encode_images does."""
    variants = [hue_rotated(p, a) for p in photos for a in steps]
    vectors = encode_images(variants)
    n = len(steps)
    return {space: basis_from_variants([np.asarray(vectors[space][i:i + n], np.float64)
                                        for i in range(0, len(variants), n)], rank) for space in spaces}


def save_directions(bundle: Bundle, bases: dict[str, np.ndarray]) -> Bundle:
    """Stores per-space directions in the bundle (extras.colour_directions)."""
    for space, basis in bases.items():
        _check_basis(bundle, space, basis, "directions to save")

    def write(path):
        buffer = io.BytesIO()
        np.savez(buffer, **{space: basis.astype(np.float32) for space, basis in bases.items()})
        path.write_bytes(buffer.getvalue())

    return bundle.with_extra("colour_directions", DIRECTIONS_FILE, write)


def load_directions(bundle: Bundle) -> dict[str, np.ndarray]:
    """The bundle's per-space directions ({} when it has none); BundleError
    names a damaged file, an unknown space or a basis of the wrong shape."""
    path = bundle.extra("colour_directions")
    if path is None:
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            bases = {space: np.asarray(data[space], dtype=np.float32) for space in data.files}
    except (OSError, ValueError) as e:
        raise BundleError(f"{path}: the colour directions are unreadable ({e})") from None
    for space, basis in bases.items():
        _check_basis(bundle, space, basis, str(path))
    return bases


def _check_basis(bundle: Bundle, space: str, basis: np.ndarray, where: str) -> None:
    spaces = bundle.manifest.spaces
    if space not in spaces:
        raise BundleError(f"{where}: space {space!r} is not a space of the bundle ({', '.join(spaces)})")
    dim = spaces[space].dim
    if basis.ndim != 2 or basis.shape[1] != dim or not 1 <= basis.shape[0] < dim:
        raise BundleError(f"{where}: {space}: expected (rank, {dim}) with 1 <= rank < {dim}, got {basis.shape}")
    gram = basis.astype(np.float64) @ basis.T.astype(np.float64)
    if not np.isfinite(gram).all() or np.abs(gram - np.eye(len(basis))).max() > 1e-3:
        raise BundleError(f"{where}: {space}: the directions are not orthonormal")


def prompt_basis(encode_texts: Callable[[list[str]], np.ndarray], rank: int,
                 colours: Sequence[str] = COLOURS, template: str = "a photo of a {} product") -> np.ndarray:
    """Colour directions of a text space from colour prompts."""
    return basis_from_variants([np.asarray(encode_texts([template.format(c) for c in colours]), np.float64)], rank)


def without_directions(query: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """The query with its components along the (orthonormal) rows of ``basis``
    removed, renormalised. ValueError when nothing is left."""
    q = np.asarray(query, dtype=np.float32)
    rest = q - basis.T @ (basis @ q)
    norm = float(np.linalg.norm(rest))
    if norm < 1e-6 * max(float(np.linalg.norm(q)), 1e-12):
        raise ValueError("the query lies entirely in the colour directions; nothing is left to search with")
    return (rest / norm).astype(np.float32)
