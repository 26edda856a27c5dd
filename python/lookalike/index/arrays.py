"""Checks and conversions of the arrays callers hand to an index.

The native core takes exactly int64 ids and C-contiguous float32 vectors; these
helpers turn what a caller reasonably passes (lists, float64 arrays, a single
vector) into that, and reject the rest with a message that names the problem.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def as_ids(ids: npt.ArrayLike, name: str = "ids") -> np.ndarray:
    """1-D C-contiguous int64 array of ids; rejects non-integer input."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must be integers, got dtype {arr.dtype}")
    if arr.size and np.issubdtype(arr.dtype, np.unsignedinteger) and arr.max() > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit in int64")
    return np.ascontiguousarray(arr, dtype=np.int64)


def as_vectors(vectors: npt.ArrayLike, dim: int, name: str = "vectors", *, allow_1d: bool = False) -> np.ndarray:
    """C-contiguous float32 array of shape (n, dim), or (dim,) for one vector when
    ``allow_1d``; otherwise a single vector becomes one row. On the search path
    of every query, so the common case (float32, contiguous) does no work."""
    arr = vectors if isinstance(vectors, np.ndarray) else np.asarray(vectors)
    if arr.dtype != np.float32:
        if arr.dtype.kind not in "fiu":  # floats and integers; not bool, complex, text or objects
            raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float32)
    if arr.ndim == 1 and not allow_1d:
        arr = arr.reshape(1, -1)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name} must be one vector or a 2-D array of vectors, got shape {arr.shape}")
    if arr.shape[-1] != dim:
        raise ValueError(f"{name} have dimension {arr.shape[-1]}, the index has dimension {dim}")
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
