"""One shard's index, built from its encoded products and published as the data
directory a shard server (`lookalike serve` with data_dir pointing at it) starts
from:

    <out>/shard-<i>/snapshots/<seq 0>/   the Collection, as DurableCollection's snapshots
    <out>/shard-<i>/catalog.sqlite3      titles and image URIs
    <out>/shard-<i>/SHARD.json           which shard of how many, and how ids were hashed

The directory is filled under ``<out>/.tmp-shard-<i>`` and renamed into place,
so a shard directory is whole or absent. Products go in ascending id order, and
an IVF-PQ space is trained first on an evenly spaced sample of them (up to its
train_size), so the same products give the same index whichever machine or
pipeline built it. A shard with fewer products than IVF-PQ training needs keeps
the space's exact buffer, which trains itself once the shard grows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.index.collection import Collection, SpaceConfig
from lookalike.index.groups import GroupConfig
from lookalike.index.ivf_space import TRAIN_VECTORS_PER_CELL
from lookalike.store.catalog import Catalog, ProductRecord
from lookalike.store.snapshots import Snapshots
from lookalike.store.wal import fsync_directory

SHARD_MARKER = "SHARD.json"
_CHUNK = 10_000  # products per Collection.upsert


def shard_directory(out: Path, shard: int) -> Path:
    return out / f"shard-{shard:03d}"


def shard_spaces(spaces: Sequence[SpaceConfig], n: int, auto_index: bool) -> list[SpaceConfig]:
    """The spaces of a shard of n products: as configured, or (auto_index) the
    kind and parameters choose_index gives n vectors of each space's dimension."""
    if not auto_index:
        return list(spaces)
    return [SpaceConfig.for_size(s.name, s.dim, n, s.metric) for s in spaces]


def build_collection(ids: np.ndarray, vectors: Mapping[str, np.ndarray], attributes: Sequence[Mapping[str, Any]],
                     spaces: Sequence[SpaceConfig], schema: Mapping[str, str], threads: int = 0,
                     groups: GroupConfig = GroupConfig()) -> Collection:
    """A Collection of these products (any order in; built in id order), with
    the group graphs ``groups`` asks for."""
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    vectors = {name: np.ascontiguousarray(v[order], dtype=np.float32) for name, v in vectors.items()}
    attributes = [attributes[i] for i in order]
    collection = Collection(spaces, schema, groups=groups.attributes, group_min_members=groups.min_members)
    for space in spaces:
        # A shard too small to train keeps the space's exact buffer (ivf_space.py).
        if space.index == "ivf_pq" and len(ids) >= max(space.nlist, 2 ** space.nbits):
            want = space.train_size or TRAIN_VECTORS_PER_CELL * space.nlist
            sample = np.linspace(0, len(ids) - 1, min(want, len(ids))).astype(np.int64)
            collection.train(space.name, vectors[space.name][sample], threads=threads)
    names = sorted({name for row in attributes for name in row})
    for lo in range(0, len(ids), _CHUNK):
        hi = min(lo + _CHUNK, len(ids))
        collection.upsert(ids[lo:hi], {name: v[lo:hi] for name, v in vectors.items()},
                          {name: [row.get(name) for row in attributes[lo:hi]] for name in names})
    return collection


def publish_shard(out: Path, shard: int, n_shards: int, collection: Collection,
                  records: Sequence[ProductRecord]) -> Path:
    """Writes the shard's data directory atomically; refuses to replace one."""
    final = shard_directory(out, shard)
    if final.exists():
        raise FileExistsError(f"{final} exists: publish a build into a fresh output directory "
                              "(shard servers switch to it on their next start)")
    tmp = out / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        Snapshots(tmp / "snapshots").write(0, collection.save)
        catalog = Catalog(tmp / "catalog.sqlite3")
        try:
            catalog.upsert(records)
            catalog.checkpoint()
        finally:
            catalog.close()
        marker = {"shard": shard, "n_shards": n_shards, "products": len(collection),
                  "hash": "splitmix64(id) mod n_shards (lookalike.index.sharding.shard_of)"}
        (tmp / SHARD_MARKER).write_text(json.dumps(marker, indent=2))
        for path in (tmp / SHARD_MARKER, tmp / "catalog.sqlite3"):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        fsync_directory(tmp)
        os.rename(tmp, final)
        fsync_directory(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def build_and_publish(out: Path, shard: int, n_shards: int, ids: np.ndarray, vectors: Mapping[str, np.ndarray],
                      attributes: Sequence[Mapping[str, Any]], records: Sequence[ProductRecord],
                      spaces: Sequence[SpaceConfig], schema: Mapping[str, str], auto_index: bool,
                      groups: GroupConfig = GroupConfig(), threads: int = 0) -> Path:
    """One shard, from its products to its published directory."""
    collection = build_collection(ids, vectors, attributes, shard_spaces(spaces, len(ids), auto_index), schema,
                                  threads, groups)
    return publish_shard(out, shard, n_shards, collection, records)
