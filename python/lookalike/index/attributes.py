"""AttributeStore: per-product attributes that searches filter on, held natively.

    store = AttributeStore({"category": "keyword", "price": "numeric",
                            "in_stock": "bool", "listed_at": "timestamp"})
    store.set(ids, {"category": [["women", "women/dresses"], ...], "price": prices,
                    "in_stock": flags})
    index.search(query, 10, filter=store.compile(Must(Match("category", "women/dresses"),
                                                      Range("price", lt=50))))

Types and what a value may be (``None`` for an id clears that attribute):

- ``keyword``: a string or a list of strings (category path, colours); stored
  dictionary-encoded, 4 bytes a value.
- ``numeric``: a finite number (price, rating), stored as float64.
- ``bool``: True / False (in stock).
- ``timestamp``: an int (the unit is yours; seconds since the epoch suggested)
  or a ``datetime`` (stored as whole seconds).

Attributes are keyed by the same int64 ids as the index, and are independent of
it: a deleted product never comes back from a search even if its attributes
remain; clear them to reclaim the space. Writes may run while searches do, and
never wait for a whole search: a search sees one state of the store between its
checkpoints, where it lets a waiting write in (hnsw/search_stop.h).
Every write checks all of its input first: bad input raises and changes nothing.
"""

from __future__ import annotations

import datetime as _dt
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from lookalike import _core
from lookalike.index.arrays import as_ids
from lookalike.index.filter import Filter

TYPES = ("keyword", "numeric", "bool", "timestamp")


class AttributeStore:
    def __init__(self, schema: Mapping[str, str]) -> None:
        """``schema`` maps each attribute name to its type (one of TYPES)."""
        if not isinstance(schema, Mapping):
            raise TypeError(f"schema must be a mapping of name -> type, got {type(schema).__name__}")
        for name, type_ in schema.items():
            if not isinstance(name, str) or not name:
                raise TypeError(f"attribute names must be non-empty strings, got {name!r}")
            if type_ not in TYPES:
                raise ValueError(f"attribute '{name}': unknown type {type_!r} (expected one of {', '.join(TYPES)})")
        self._core = _core.AttributeStore(list(schema.items()))
        self._schema = dict(schema)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AttributeStore:
        """Loads a saved store; a damaged or foreign file raises IndexFileError."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no attribute file at {path}")
        store = cls.__new__(cls)
        store._core = _core.AttributeStore.load(path)
        store._schema = dict(store._core.schema)
        return store

    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the store atomically (a crash leaves the old file or the new one)."""
        self._core.save(os.fspath(path))

    @property
    def schema(self) -> dict[str, str]:
        return dict(self._schema)

    def set(self, ids: npt.ArrayLike, values: Mapping[str, Sequence[Any]]) -> None:
        """Sets attributes of ``ids``: ``values`` maps a name to one value per id
        (``None`` clears it for that id). Attributes not named keep their values."""
        ids = as_ids(ids)
        self.set_checked(ids, self.checked(ids, values))

    def checked(self, ids: np.ndarray, values: Mapping[str, Sequence[Any]]) -> list[tuple]:
        """``values`` for set_checked(ids, ...), converted; raises what set()
        raises on bad input. Lets a caller check a write before it changes anything."""
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a mapping of name -> values, got {type(values).__name__}")
        return [self._column(name, column, len(ids)) for name, column in values.items()]

    def set_checked(self, ids: np.ndarray, columns: list[tuple]) -> None:
        """set() with values that checked() converted (``ids`` as given to it)."""
        self._core.set(ids, columns)

    def clear(self, ids: npt.ArrayLike, names: Sequence[str] | None = None) -> None:
        """Clears the named attributes of ``ids``, or all of them (the ids are then
        forgotten). Ids without attributes are skipped."""
        if names is not None:
            names = [names] if isinstance(names, str) else list(names)
            for name in names:
                self._type_of(name)
        self._core.clear(as_ids(ids), names or [])

    def get(self, id: int) -> dict[str, Any]:
        """The attributes ``id`` has (an empty dict for an id without any)."""
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, numbers.Integral):
            raise TypeError(f"id must be an integer, got {id!r}")
        return dict(self._core.get(int(id)))

    def ids_with(self, name: str, value: str) -> np.ndarray:
        """The ids whose keyword attribute ``name`` holds ``value`` (read from
        its posting list, no scan), in no particular order. KeyError for an
        unknown attribute, TypeError for one that is not a keyword."""
        self._keyword_name(name)
        return self._core.ids_with(name, value)

    def count_with(self, name: str, value: str) -> int:
        """How many ids ids_with(name, value) lists, without listing them."""
        self._keyword_name(name)
        return self._core.count_with(name, value)

    def value_counts(self, name: str) -> dict[str, int]:
        """Every value some id holds in the keyword attribute ``name``, with
        count_with's count."""
        self._keyword_name(name)
        return dict(self._core.word_counts(name))

    def compile(self, filter: Filter | Mapping[str, Any]) -> _core.CompiledFilter:
        """The native predicate of a filter (a clause, or its dict form) for
        ``HnswIndex.search(filter=...)``. Unknown attribute: KeyError; a clause on
        the wrong type: TypeError. Compile once per query: keyword values the
        store has never seen at compile time match nothing."""
        clause = filter if isinstance(filter, Filter) else Filter.from_dict(filter)
        return self._core.compile(clause._native())

    def memory_usage(self) -> dict[str, Any]:
        """Bytes held: the id map, each column (values and index), and the total."""
        return self._core.memory_usage()

    def __len__(self) -> int:
        return len(self._core)

    def __repr__(self) -> str:
        return f"AttributeStore({self._schema!r}, size={len(self)})"

    # --- input conversion ------------------------------------------------------

    def _type_of(self, name: str) -> str:
        if name not in self._schema:
            known = ", ".join(self._schema) or "nothing"
            raise KeyError(f"unknown attribute {name!r} (the schema has: {known})")
        return self._schema[name]

    def _keyword_name(self, name: str) -> None:
        if self._type_of(name) != "keyword":
            raise TypeError(f"attribute '{name}' is {self._schema[name]}, not keyword")

    def _column(self, name: str, column: Any, n: int) -> tuple:
        """(name, values, present mask or None), as the native store takes them."""
        type_ = self._type_of(name)
        if isinstance(column, (str, bytes)) or not hasattr(column, "__len__"):
            raise TypeError(f"attribute '{name}': expected one value per id, got {type(column).__name__}")
        if len(column) != n:
            raise ValueError(f"attribute '{name}': got {len(column)} values for {n} ids")
        if type_ != "keyword" and isinstance(column, np.ndarray) and column.dtype != object:
            return (name, _typed_array(name, type_, column), None)
        present = np.array([v is not None for v in column], dtype=np.uint8)
        convert = _CONVERTERS[type_]
        values = [convert(name, v) for v in column]
        if type_ != "keyword":
            values = np.asarray(values, dtype=_DTYPES[type_])
        return (name, values, None if present.all() else present)


_DTYPES = {"numeric": np.float64, "bool": np.uint8, "timestamp": np.int64}


def _typed_array(name: str, type_: str, column: np.ndarray) -> np.ndarray:
    """A numpy column of the right kind, checked without a per-value loop."""
    kinds = {"numeric": "fiu", "bool": "b", "timestamp": "iu"}[type_]
    if column.ndim != 1 or column.dtype.kind not in kinds:
        raise TypeError(f"attribute '{name}' is {type_}: got an array of dtype {column.dtype} "
                        f"and shape {column.shape}")
    if type_ == "numeric" and not np.isfinite(column).all():
        raise ValueError(f"attribute '{name}': values must be finite numbers")
    return np.ascontiguousarray(column, dtype=_DTYPES[type_])


def _keyword(name: str, v: Any) -> list[str]:
    if v is None:
        return []
    values = [v] if isinstance(v, str) else v
    if not isinstance(values, (list, tuple)) or not all(isinstance(w, str) for w in values):
        raise TypeError(f"attribute '{name}' is keyword: a value must be a string or a list of strings, got {v!r}")
    return list(values)


def _numeric(name: str, v: Any) -> float:
    if v is None:
        return 0.0
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise TypeError(f"attribute '{name}' is numeric: got {v!r}")
    if not np.isfinite(v):
        raise ValueError(f"attribute '{name}': {v!r} is not a finite number")
    return float(v)


def _bool(name: str, v: Any) -> int:
    if v is None:
        return 0
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"attribute '{name}' is bool: got {v!r}")
    return int(v)


def _timestamp(name: str, v: Any) -> int:
    if v is None:
        return 0
    if isinstance(v, _dt.datetime):
        return int(v.timestamp())
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise TypeError(f"attribute '{name}' is timestamp: expected an int or a datetime, got {v!r}")
    return int(v)


_CONVERTERS = {"keyword": _keyword, "numeric": _numeric, "bool": _bool, "timestamp": _timestamp}
