"""The Python face of the native indexes."""

from lookalike._core import DuplicateIdError, IndexFileError, UnknownIdError
from lookalike.index.filters import IdFilter
from lookalike.index.hnsw import HnswIndex, SearchResult

__all__ = [
    "DuplicateIdError",
    "HnswIndex",
    "IdFilter",
    "IndexFileError",
    "SearchResult",
    "UnknownIdError",
]
