"""Native filters a search can carry."""

from __future__ import annotations

import numpy.typing as npt

from lookalike import _core
from lookalike.index.arrays import as_ids


class IdFilter(_core.IdFilter):
    """Only these ids may be returned (or, with ``exclude=True``, never these).

    Evaluated natively inside the graph walk: filtered-out nodes are still walked
    through, so the graph stays connected, but never returned.
    """

    def __init__(self, ids: npt.ArrayLike, exclude: bool = False) -> None:
        super().__init__(as_ids(ids), bool(exclude))
