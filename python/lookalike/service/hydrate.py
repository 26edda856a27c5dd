"""The metadata of search hits (catalog row and attributes), read so that a hit
never comes back without it while writes go on.

A search and the reads of its hits' metadata are not one snapshot: a product a
search found may be deleted, or deleted and added again, before its row and
attributes are read. The writes are ordered for this (DurableCollection._apply):
an upsert puts the attributes, then the catalog row, in place before the index
makes the product searchable; a delete hides the product in the index before
its attributes and row go. So a reader takes, per hit: the row with the log
record that wrote it, then the attributes, then whether the product is still
in the collection, then the row's record again. Still in the collection, with
the same record both times: the row and attributes were read whole (a delete
had not started, or a later upsert had put both before the row was read).
Not in the collection: deleted since the search, and left out. Anything else
(a delete and re-add in between) is read again, a few times at most, then left
out: a hit comes back with its metadata or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from lookalike.index.collection import Collection
from lookalike.store.catalog import Catalog, ProductRecord

_ATTEMPTS = 3


class Metadata(NamedTuple):
    record: ProductRecord
    attributes: dict[str, Any]


def read_metadata(catalog: Catalog, collection: Collection, ids: Sequence[int]) -> dict[int, Metadata]:
    """The metadata of the ids still in ``collection``, each read whole; the
    ids deleted meanwhile (or without a catalog row) are not in the answer."""
    found: dict[int, Metadata] = {}
    pending = list(dict.fromkeys(int(i) for i in ids))
    for _ in range(_ATTEMPTS):
        if not pending:
            break
        rows = catalog.get_with_seq(pending)
        attributes = {id_: collection.attributes(id_) for id_ in rows}
        present = [id_ for id_ in pending if id_ in collection]  # the others were deleted since the search
        again = catalog.seqs([id_ for id_ in present if id_ in rows])
        pending = []
        for id_ in present:
            if id_ in again and again[id_] == rows[id_][1]:
                found[id_] = Metadata(rows[id_][0], attributes[id_])
            else:
                pending.append(id_)
    return found
