"""The search side of "same style, any colour" (SearchRequest.ignore_colour):
the query loses its components along the space's colour directions
(encoders/colour.py) before the index sees it.

The directions of a space come from the model bundle (``source = "bundle"``,
or ``"auto"`` when the bundle has them for the space), or are estimated on
first use with the model's own encoders (``swatches``: sixty generated images;
``prompts``: a dozen texts; about a second on a CPU) and kept for the server's
life.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import grpc
import numpy as np

from lookalike.encoders.colour import SOURCES, load_directions, prompt_basis, swatch_basis, without_directions
from lookalike.service.encoding import ModelEncoder
from lookalike.service.errors import ServiceError, invalid


@dataclass(frozen=True)
class SameStyleConfig:
    """The `[same_style]` table of the service's config."""

    # auto: the bundle's directions where it has them, else swatches; bundle: only the
    # bundle's; swatches: estimated from tinted textures; prompts: from colour prompts
    source: str = "auto"
    rank: int = 8             # colour directions removed when estimated here (swatches, prompts)

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"same_style.source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.rank < 1:
            raise ValueError(f"same_style.rank must be >= 1, got {self.rank}")


class ColourFree:
    def __init__(self, encoder: ModelEncoder | None, config: SameStyleConfig = SameStyleConfig()) -> None:
        self._encoder = encoder
        self._config = config
        self._lock = threading.Lock()
        shipped = load_directions(encoder.encoder.bundle) if encoder is not None else {}
        self._bases: dict[str, np.ndarray] = shipped if config.source in ("auto", "bundle") else {}

    def apply(self, space: str, query: np.ndarray) -> np.ndarray:
        """The query without its colour directions; FAILED_PRECONDITION when the
        space has no encoder to estimate them with."""
        try:
            return without_directions(query, self.basis(space))
        except ValueError as e:
            raise invalid(f"ignore_colour: {e}") from None

    def basis(self, space: str) -> np.ndarray:
        with self._lock:
            if space not in self._bases:
                self._bases[space] = self._estimate(space)
            return self._bases[space]

    def _estimate(self, space: str) -> np.ndarray:
        encoder = self._encoder
        source = "swatches" if self._config.source == "auto" else self._config.source
        if source == "bundle":
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"ignore_colour: the model bundle has no colour directions for space '{space}' "
                               "(lookalike train colour-directions; same_style.source = bundle)")
        spaces = frozenset() if encoder is None else (encoder.image_spaces if source == "swatches"
                                                      else encoder.text_spaces)
        if space not in spaces:
            tower = "image" if source == "swatches" else "text"
            raise ServiceError(grpc.StatusCode.FAILED_PRECONDITION,
                               f"ignore_colour needs the model's {tower} tower in space '{space}' "
                               f"(same_style.source = {self._config.source}) to find the colour directions")
        if source == "swatches":
            return swatch_basis(lambda images: encoder.encoder.encode_images(images)[space], self._config.rank)
        return prompt_basis(lambda texts: encoder.encoder.encode_texts(texts)[space], self._config.rank)
