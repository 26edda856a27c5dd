"""The Python face of the native indexes."""

from lookalike._core import DuplicateIdError, IndexFileError, UnknownIdError
from lookalike.index.choose import IndexChoice, choose_index, estimate_memory
from lookalike.index.filters import IdFilter
from lookalike.index.hnsw import HnswIndex, SearchResult
from lookalike.index.ivf_pq import IvfPqIndex

__all__ = [
    "DuplicateIdError",
    "HnswIndex",
    "IdFilter",
    "IndexChoice",
    "IndexFileError",
    "IvfPqIndex",
    "SearchResult",
    "UnknownIdError",
    "choose_index",
    "estimate_memory",
]
