"""The filter language of searches: a typed tree of clauses, never a string.

    Must(Match("category", "dresses"), Range("price", lt=50), Is("in_stock", True))
    Filter.from_dict({"must": [{"match": {"attr": "category", "value": "dresses"}},
                               {"range": {"attr": "price", "lt": 50}}]})

Clauses (each a small frozen dataclass):

- ``Must(*clauses)``: every clause matches; ``Should(*clauses)``: at least one
  does; ``MustNot(*clauses)``: none does. Nested to any depth.
- ``Match(attr, value)`` or ``Match(attr, values=[...])``: a keyword attribute
  holds the value, or one of the values.
- ``Range(attr, gt=, gte=, lt=, lte=)``: a numeric or timestamp attribute lies
  within the bounds (a ``datetime`` bound becomes whole seconds since the epoch).
- ``Is(attr, True | False)``: a bool attribute has that value.
- ``HasId(ids)``: the product's id is one of these.

A product without a value for an attribute matches no Match / Range / Is on it.
The shape of a clause is checked when it is built (ValueError / TypeError);
attribute names and types are checked when a store compiles it
(``AttributeStore.compile``): an unknown name is a KeyError, a clause on the
wrong type a TypeError, so a typo is never a silently empty result.
"""

from __future__ import annotations

import datetime as _dt
import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lookalike.index.arrays import as_ids

__all__ = ["Filter", "HasId", "Is", "Match", "Must", "MustNot", "Range", "Should"]


class Filter:
    """Base of every clause; ``Filter.from_dict`` parses the JSON-like form that
    ``to_dict`` writes (the shape the gRPC API maps onto)."""

    key: ClassVar[str]  # the clause's name in the dict form

    @staticmethod
    def from_dict(data: Any) -> Filter:
        """A clause from its dict form. Each dict holds one clause key
        (``must``, ``should``, ``must_not``, ``match``, ``range``, ``is``,
        ``has_id``), or several of ``must`` / ``should`` / ``must_not``, which
        must all hold. Unknown keys are a ValueError naming where they are."""
        return _parse(data, "filter")

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _native(self) -> tuple:
        """The nested tuples the native compiler reads."""
        raise NotImplementedError


# --- boolean combinations ------------------------------------------------------


@dataclass(frozen=True, init=False)
class _Combination(Filter):
    clauses: tuple[Filter, ...]

    def __init__(self, *clauses: Filter) -> None:
        if not clauses:
            raise ValueError(f"{type(self).__name__} needs at least one clause")
        for c in clauses:
            if not isinstance(c, Filter):
                raise TypeError(f"{type(self).__name__} takes filter clauses, got {type(c).__name__}")
        object.__setattr__(self, "clauses", tuple(clauses))

    def to_dict(self) -> dict[str, Any]:
        return {self.key: [c.to_dict() for c in self.clauses]}

    def _native(self) -> tuple:
        return (self.key, [c._native() for c in self.clauses])


class Must(_Combination):
    """Every clause matches."""

    key = "must"


class Should(_Combination):
    """At least one clause matches."""

    key = "should"


class MustNot(_Combination):
    """No clause matches."""

    key = "must_not"


# --- leaves ----------------------------------------------------------------------


def _check_attr(clause: str, attr: Any) -> None:
    if not isinstance(attr, str) or not attr:
        raise TypeError(f"{clause}: the attribute name must be a non-empty string, got {attr!r}")


@dataclass(frozen=True, init=False)
class Match(Filter):
    """A keyword attribute holds ``value``, or one of ``values``."""

    attr: str
    values: tuple[str, ...]
    key: ClassVar[str] = "match"

    def __init__(self, attr: str, value: str | None = None, *, values: Any = None) -> None:
        _check_attr("Match", attr)
        if (value is None) == (values is None):
            raise ValueError(f"Match on '{attr}': give exactly one of value or values")
        if values is None:
            values = (value,)
        elif isinstance(values, str) or not hasattr(values, "__iter__"):
            raise TypeError(f"Match on '{attr}': values must be a list of strings, got {type(values).__name__}")
        values = tuple(values)
        if not values:
            raise ValueError(f"Match on '{attr}': values must not be empty")
        for v in values:
            if not isinstance(v, str):
                raise TypeError(f"Match on '{attr}': values must be strings, got {v!r}")
        object.__setattr__(self, "attr", attr)
        object.__setattr__(self, "values", values)

    def to_dict(self) -> dict[str, Any]:
        if len(self.values) == 1:
            return {"match": {"attr": self.attr, "value": self.values[0]}}
        return {"match": {"attr": self.attr, "values": list(self.values)}}

    def _native(self) -> tuple:
        return ("match", self.attr, list(self.values))


def _bound(attr: str, name: str, value: Any) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return int(value.timestamp())
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"Range on '{attr}': {name} must be a number or a datetime, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if math.isnan(value):
        raise ValueError(f"Range on '{attr}': {name} is NaN")
    return float(value)


@dataclass(frozen=True, init=False)
class Range(Filter):
    """A numeric or timestamp attribute within the bounds (gt / gte below, lt / lte
    above; at least one; not both of a pair)."""

    attr: str
    gt: int | float | None
    gte: int | float | None
    lt: int | float | None
    lte: int | float | None
    key: ClassVar[str] = "range"

    def __init__(self, attr: str, *, gt: Any = None, gte: Any = None, lt: Any = None, lte: Any = None) -> None:
        _check_attr("Range", attr)
        bounds = {n: _bound(attr, n, v) for n, v in (("gt", gt), ("gte", gte), ("lt", lt), ("lte", lte))}
        if all(v is None for v in bounds.values()):
            raise ValueError(f"Range on '{attr}' needs at least one of gt, gte, lt, lte")
        for a, b in (("gt", "gte"), ("lt", "lte")):
            if bounds[a] is not None and bounds[b] is not None:
                raise ValueError(f"Range on '{attr}': give {a} or {b}, not both")
        object.__setattr__(self, "attr", attr)
        for n, v in bounds.items():
            object.__setattr__(self, n, v)

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"attr": self.attr}
        body.update({n: getattr(self, n) for n in ("gt", "gte", "lt", "lte") if getattr(self, n) is not None})
        return {"range": body}

    def _native(self) -> tuple:
        return ("range", self.attr, self.gt, self.gte, self.lt, self.lte)


@dataclass(frozen=True)
class Is(Filter):
    """A bool attribute has ``value``."""

    attr: str
    value: bool
    key: ClassVar[str] = "is"

    def __post_init__(self) -> None:
        _check_attr("Is", self.attr)
        if not isinstance(self.value, (bool, np.bool_)):
            raise TypeError(f"Is on '{self.attr}': value must be True or False, got {self.value!r}")
        object.__setattr__(self, "value", bool(self.value))

    def to_dict(self) -> dict[str, Any]:
        return {"is": {"attr": self.attr, "value": self.value}}

    def _native(self) -> tuple:
        return ("is", self.attr, self.value)


@dataclass(frozen=True, init=False)
class HasId(Filter):
    """The product's id is one of ``ids``."""

    ids: tuple[int, ...]
    key: ClassVar[str] = "has_id"

    def __init__(self, ids: Any) -> None:
        arr = as_ids(ids, "HasId ids")
        if arr.size == 0:
            raise ValueError("HasId needs at least one id")
        object.__setattr__(self, "ids", tuple(int(i) for i in arr))

    def to_dict(self) -> dict[str, Any]:
        return {"has_id": list(self.ids)}

    def _native(self) -> tuple:
        return ("has_id", np.asarray(self.ids, dtype=np.int64))


# --- parsing the dict form ---------------------------------------------------------

_COMBINATIONS = {c.key: c for c in (Must, Should, MustNot)}
_LEAF_FIELDS = {"match": {"attr", "value", "values"}, "range": {"attr", "gt", "gte", "lt", "lte"},
                "is": {"attr", "value"}}
_KEYS = (*_COMBINATIONS, *_LEAF_FIELDS, "has_id")


def _parse(data: Any, where: str) -> Filter:
    if isinstance(data, Filter):
        return data
    if not isinstance(data, dict) or not data:
        raise TypeError(f"{where}: expected a clause as a non-empty dict, got {data!r}")
    unknown = sorted(set(data) - set(_KEYS), key=str)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(_KEYS)})")
    if len(data) > 1:
        if not set(data) <= set(_COMBINATIONS):
            raise ValueError(f"{where}: a clause dict holds one clause, or several of must / should / must_not; "
                             f"got {', '.join(map(str, data))}")
        return Must(*(_parse({k: v}, where) for k, v in data.items()))
    (key, body), = data.items()
    at = f"{where}.{key}"
    if key in _COMBINATIONS:
        if not isinstance(body, (list, tuple)):
            raise TypeError(f"{at}: expected a list of clauses, got {type(body).__name__}")
        return _COMBINATIONS[key](*(_parse(c, f"{at}[{i}]") for i, c in enumerate(body)))
    if key == "has_id":
        return HasId(body)
    if not isinstance(body, dict):
        raise TypeError(f"{at}: expected a dict of fields, got {type(body).__name__}")
    extra = sorted(set(body) - _LEAF_FIELDS[key], key=str)
    if extra:
        raise ValueError(f"{at}: unknown field {extra[0]!r} (expected {', '.join(sorted(_LEAF_FIELDS[key]))})")
    if "attr" not in body:
        raise ValueError(f"{at}: missing field 'attr'")
    if key == "match":
        return Match(body["attr"], body.get("value"), values=body.get("values"))
    if key == "range":
        return Range(body["attr"], **{k: v for k, v in body.items() if k != "attr"})
    if "value" not in body:
        raise ValueError(f"{at}: missing field 'value'")
    return Is(body["attr"], body["value"])
