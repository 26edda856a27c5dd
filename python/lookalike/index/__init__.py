"""The Python face of the native indexes."""

from lookalike._core import (
    AttributeTypeError,
    CompiledFilter,
    DeadlineExceeded,
    DuplicateIdError,
    IndexFileError,
    SearchCancelled,
    SearchStats,
    SearchStopped,
    StopToken,
    UnknownAttributeError,
    UnknownIdError,
)
from lookalike.index.attributes import AttributeStore
from lookalike.index.filter import Filter, HasId, Is, Match, Must, MustNot, Range, Should
from lookalike.index.choose import IndexChoice, choose_index, estimate_memory
from lookalike.index.filters import IdFilter
from lookalike.index.hnsw import HnswIndex, SearchResult, SearchResultWithStats
from lookalike.index.ivf_pq import IvfPqIndex

__all__ = [
    "AttributeStore",
    "AttributeTypeError",
    "CompiledFilter",
    "DeadlineExceeded",
    "DuplicateIdError",
    "Filter",
    "HasId",
    "HnswIndex",
    "IdFilter",
    "IndexChoice",
    "IndexFileError",
    "Is",
    "IvfPqIndex",
    "Match",
    "Must",
    "MustNot",
    "Range",
    "SearchResult",
    "SearchCancelled",
    "SearchResultWithStats",
    "SearchStats",
    "SearchStopped",
    "Should",
    "StopToken",
    "UnknownAttributeError",
    "UnknownIdError",
    "choose_index",
    "estimate_memory",
]
