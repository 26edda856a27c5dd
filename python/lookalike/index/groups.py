"""Group graphs kept whole: which keyword attributes get them, and the upkeep.

A group graph (HnswIndex.link_group) links the nodes sharing one value of an
attribute, ``"category=c7"``; a search whose filter requires the value may walk
it instead of the whole graph, so it must hold every live node with the value
(a member that later loses it, or is deleted, is harmless: the filter rejects
it). A value gets its group once ``min_members`` products hold it: below ~4,000
members a scan of any filter's matches in the group costs less than its walk (at
512-d), so the planner would not walk a smaller one. Each value of a
multi-valued attribute (a category path ``["c3", "c3/1"]``) gets its own group.

Cost: up to 2M links of 4 bytes a member, plus its slot and a lookup entry
(8M + 20 bytes: 148 at M=16 in a large group; 243 measured in groups of 5,000,
whose links are allocated 4,096 members at a time), and linking a member costs
nearly what inserting its vector costs (20k x 64 vectors, each product in one
group, took 1.8x as long to upsert, on a loaded 2-core VM).
Measured on bench/filters.py's 10% conjunction (200k x 512): the group's walk
ran at ~0.5-0.74x the unfiltered search's QPS, the filtered walk of the whole
graph at ~0.16x.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from lookalike.index.attributes import AttributeStore
from lookalike.index.hnsw import HnswIndex

DEFAULT_MIN_MEMBERS = 4_000


@dataclass(frozen=True)
class GroupConfig:
    """The keyword ``attributes`` whose values get group graphs, once a value
    has ``min_members`` products."""

    attributes: tuple[str, ...] = ()
    min_members: int = DEFAULT_MIN_MEMBERS

    def __post_init__(self) -> None:
        if isinstance(self.attributes, str):  # "category" would read as its letters
            object.__setattr__(self, "attributes", (self.attributes,))
        object.__setattr__(self, "attributes", tuple(self.attributes))
        if isinstance(self.min_members, bool) or not isinstance(self.min_members, int) or self.min_members < 1:
            raise ValueError(f"groups: min_members must be a positive integer, got {self.min_members!r}")

    def check(self, schema: Mapping[str, str]) -> None:
        """ValueError naming an attribute the schema lacks or that is not a keyword."""
        for name in self.attributes:
            if name not in schema:
                known = ", ".join(schema) or "nothing"
                raise ValueError(f"groups: unknown attribute {name!r} (the schema has: {known})")
            if schema[name] != "keyword":
                raise ValueError(f"groups: attribute {name!r} is {schema[name]}; group graphs are kept for "
                                 "keyword attributes only")


def group_key(attribute: str, value: str) -> str:
    """The key of a value's group: what a compiled filter requiring it names."""
    return f"{attribute}={value}"


def link_written(index: HnswIndex, store: AttributeStore, config: GroupConfig, ids: np.ndarray,
                 columns: Iterable[tuple]) -> None:
    """Links the products just written (``ids``, with the attribute ``columns``
    AttributeStore.checked converted) into the groups of their values: the
    value's group when the index has it, else, once the store holds
    min_members products with the value, a new group of all of them."""
    grouped = {name: values for name, values, _present in columns if name in config.attributes}
    existing = index.groups
    for attribute, values in grouped.items():
        holders: dict[str, list[int]] = {}
        for id_, words in zip(ids.tolist(), values):
            for word in words:
                holders.setdefault(word, []).append(id_)
        for word, members in holders.items():
            key = group_key(attribute, word)
            if key in existing:
                index.link_group(key, np.asarray(members, dtype=np.int64))
            elif store.count_with(attribute, word) >= config.min_members:
                index.link_group(key, store.ids_with(attribute, word))


def link_all(index: HnswIndex, store: AttributeStore, config: GroupConfig) -> None:
    """Makes the index's groups what ``config`` asks of the store's values: the
    groups of attributes no longer grouped are dropped; every value with
    min_members products, or with a group already, gets its group whole (a
    group there links only the holders it lacks)."""
    prefixes = tuple(group_key(a, "") for a in config.attributes)
    for key in index.groups:
        if not key.startswith(prefixes):
            index.drop_group(key)
    existing = index.groups
    for attribute in config.attributes:
        for word, count in store.value_counts(attribute).items():
            key = group_key(attribute, word)
            if count >= config.min_members or key in existing:
                index.link_group(key, store.ids_with(attribute, word))
