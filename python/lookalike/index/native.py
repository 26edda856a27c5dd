"""What the Python faces of the native indexes share: the wrapped core object and
its dimension, writes by id, persistence, introspection, and the checks of the
arguments every index takes. HnswIndex and IvfPqIndex add their own parameters
and search."""

from __future__ import annotations

import os
from typing import Any, ClassVar, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from lookalike import _core
from lookalike.index.arrays import as_ids, as_vectors

Self = TypeVar("Self", bound="NativeIndex")


class SearchResult(NamedTuple):
    """Ids and distances, nearest first. Rows are padded with id -1 and
    distance +inf when fewer than k ids match."""

    ids: np.ndarray
    distances: np.ndarray


class NativeIndex:
    _core_type: ClassVar[Any]  # the lookalike._core class a subclass wraps
    _core: Any
    _dim: int

    @classmethod
    def load(cls: type[Self], path: str | os.PathLike[str]) -> Self:
        """Loads a saved index. A truncated, damaged or foreign file raises
        IndexFileError naming what is wrong."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no index file at {path}")
        index = cls.__new__(cls)
        index._core = cls._core_type.load(path)
        index._dim = index._core.dim
        return index

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the index atomically: a crash leaves the old file or the new one.
        Writers wait while it runs; searches do not."""
        self._core.save(os.fspath(path))

    # --- writes ---------------------------------------------------------------

    def add(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        """Adds vectors under new ids (int64 >= 0). An id already present, or
        listed twice, raises DuplicateIdError; a NaN/inf or (for cosine) an all-zero
        vector raises ValueError. Nothing is added when anything is wrong.
        ``threads=0`` uses every core."""
        self._write(ids, vectors, replace=False, threads=threads)

    def upsert(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, threads: int = 0) -> None:
        """Adds vectors, replacing those of ids already present."""
        self._write(ids, vectors, replace=True, threads=threads)

    def _write(self, ids: npt.ArrayLike, vectors: npt.ArrayLike, *, replace: bool, threads: int) -> None:
        self._core.add(as_ids(ids), as_vectors(vectors, self._dim), replace, thread_count(threads))

    def delete(self, ids: npt.ArrayLike) -> None:
        """Deletes ids at once; they are never returned again. An unknown id raises
        UnknownIdError (a KeyError) and nothing is deleted."""
        self._core.remove(as_ids(ids))

    def compact(self) -> None:
        """Reclaims the space of deleted vectors."""
        self._core.compact()

    # --- reads ----------------------------------------------------------------

    def get(self, ids: npt.ArrayLike) -> np.ndarray:
        """The stored vectors of ids, shape (n, dim) (normalised under cosine).
        An unknown id raises UnknownIdError (a KeyError)."""
        return self._core.get(as_ids(ids))

    # --- introspection --------------------------------------------------------

    def __len__(self) -> int:
        return len(self._core)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, (int, np.integer)) and self._core.contains(int(id))

    def memory_usage(self) -> dict[str, int]:
        """Bytes held, by part and in all (``total_bytes``), with counts."""
        return self._core.memory_usage()

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def metric(self) -> str:
        return self._core.metric

    @property
    def deleted_count(self) -> int:
        """Deleted vectors still holding space (until compact())."""
        return self._core.deleted_count


def check_positive(name: str, value: object) -> None:
    if type(value) is bool or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def thread_count(threads: int) -> int:
    if type(threads) is bool or not isinstance(threads, (int, np.integer)) or threads < 0:
        raise ValueError(f"threads must be >= 0 (0: every core), got {threads!r}")
    return int(threads)


def check_filter(filter: object) -> None:
    """A search's filter must be a native one (IdFilter, or a compiled attribute filter)."""
    if filter is not None and not isinstance(filter, _core.Filter):
        raise TypeError(f"filter must be a lookalike filter such as IdFilter, got {type(filter).__name__}")
