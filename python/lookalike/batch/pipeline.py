"""Batch (re-)indexing: a catalog source in, one published data directory per
shard out (shard_build.py), for shard servers to start from.

    report = build_shards(Path("catalog.csv"), Path("build-7"), n_shards=3, spaces=spaces,
                          schema=schema, bundle="models/default", runner="ray")

Two runners do the same work and give the same shards:

- ``ray``: a Ray Data pipeline. The driver reads the manifest (paths and
  attributes only); ``map_batches`` runs a pool of actors, each holding one
  RowEncoder (one onnxruntime session per tower), that read, decode and
  preprocess the photos of a batch and encode them together; then the rows are
  grouped by shard (``shard_of(id, n_shards)``) and each group builds and
  publishes its shard in a Ray task (IVF-PQ: trained on a sample, then the
  adds run on every core of the task's node). ``ray.init`` is called with
  ``address`` (a running cluster) or ``num_cpus`` (a local one) unless Ray is
  initialised already. On a cluster the photo paths must be readable from every
  node and ``out`` must be shared storage.
- ``local``: the same steps in this process, one batch after another.

A product that cannot be encoded fails alone and is reported; the others are
indexed. Every shard gets a directory, empty shards included.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.batch.shard_build import build_and_publish, shard_directory
from lookalike.batch.vectors import RowEncoder
from lookalike.catalog_source import CatalogRow, catalog_rows
from lookalike.index.collection import SpaceConfig
from lookalike.index.groups import GroupConfig
from lookalike.index.sharding import shard_of
from lookalike.store.catalog import ProductRecord

RUNNERS = ("local", "ray")


@dataclass
class BuildReport:
    shards: list[Path]                                    # the published directories, by shard
    products: list[int]                                   # products indexed, by shard
    failed: dict[int, str] = field(default_factory=dict)  # id -> why it was left out
    seconds: float = 0.0


@dataclass(frozen=True)
class BuildSettings:
    """What every shard's build needs to know (sent to the Ray workers whole)."""

    out: Path
    n_shards: int
    spaces: tuple[SpaceConfig, ...]
    schema: Mapping[str, str]
    auto_index: bool
    bundle: str | None
    encoder_threads: int = 1
    groups: GroupConfig = GroupConfig()


def build_shards(source: Path, out: Path, *, n_shards: int, spaces: Sequence[SpaceConfig],
                 schema: Mapping[str, str], bundle: str | Path | None = None, auto_index: bool = True,
                 groups: GroupConfig = GroupConfig(), runner: str = "local", batch_size: int = 32,
                 encoders: int = 1, encoder_threads: int = 1, ray_address: str | None = None, num_cpus: int | None = None, progress=sys.stderr) -> BuildReport:
    """Reads ``source`` (a folder, .csv or .jsonl, as `lookalike ingest`),
    encodes it, and publishes ``n_shards`` shard directories under ``out``.
    ``auto_index`` sizes each shard's spaces by choose_index (else ``spaces``
    as given); ``groups``: the group graphs each shard's collection keeps
    (Collection's groups); ``encoders`` is the number of Ray encoding actors."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}")
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}")
    taken = [shard_directory(out, i) for i in range(n_shards) if shard_directory(out, i).exists()]
    if taken:
        raise FileExistsError(f"{taken[0]} exists: build into a fresh output directory")
    started = time.monotonic()
    rows = list(catalog_rows(source, schema))
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        twice = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{source}: product id {twice} appears more than once")
    if any(i < 0 for i in ids):
        raise ValueError(f"{source}: product ids must be >= 0, got {min(ids)}")
    out.mkdir(parents=True, exist_ok=True)
    settings = BuildSettings(out, n_shards, tuple(spaces), dict(schema), auto_index,
                             None if bundle is None else str(bundle), encoder_threads, groups)
    print(f"{len(rows)} products from {source}; encoding and building {n_shards} shard(s) with {runner}",
          file=progress, flush=True)
    run = _run_ray if runner == "ray" else _run_local
    built = run(rows, settings, batch_size=batch_size, encoders=encoders, ray_address=ray_address,
                num_cpus=num_cpus)
    report = BuildReport(shards=[shard_directory(out, i) for i in range(n_shards)], products=[0] * n_shards)
    for shard, count, failed in built:
        report.products[shard] = count
        report.failed.update(failed)
    for shard in range(n_shards):  # shards no product hashed to
        if not report.shards[shard].exists():
            _build_group(settings, shard, None)
    report.seconds = time.monotonic() - started
    return report


# --- the rows as columns ------------------------------------------------------------------

def _items(rows: Sequence[CatalogRow]) -> list[dict[str, Any]]:
    """Rows as flat records (what Ray Data carries): JSON for the nested parts."""
    return [{"id": r.id, "image": "" if r.image is None else str(r.image.resolve()), "title": r.title,
             "image_uri": r.image_uri, "attributes": json.dumps(r.attributes), "vectors": json.dumps(r.vectors)}
            for r in rows]


def _columns(items: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    names = ("id", "image", "title", "image_uri", "attributes", "vectors")
    return {name: np.array([item[name] for item in items], dtype=np.int64 if name == "id" else object)
            for name in names}


class EncodeBatch:
    """A batch of rows (columns) -> the same rows with their shard, their
    error ("" if none) and one ``vector_<space>`` column per space."""

    def __init__(self, settings: BuildSettings) -> None:
        self.settings = settings
        self.encoder = RowEncoder(settings.spaces, settings.bundle, threads=settings.encoder_threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        given = [json.loads(v) for v in batch["vectors"]]
        vectors, errors = self.encoder(list(batch["image"]), list(batch["title"]), given)
        out = {name: batch[name] for name in ("id", "title", "image_uri", "attributes")}
        out["shard"] = np.asarray(shard_of(batch["id"], self.settings.n_shards), dtype=np.int64)
        out["error"] = np.array(errors, dtype=object)
        for name, matrix in vectors.items():
            out[f"vector_{name}"] = matrix
        return out


def _build_group(settings: BuildSettings, shard: int, group: dict[str, np.ndarray] | None
                 ) -> tuple[int, int, dict[int, str]]:
    """Builds and publishes one shard from its encoded rows (columns, as
    EncodeBatch gives them; None: no rows); returns (shard, products, failed)."""
    if group is None or len(group["id"]) == 0:
        empty = {s.name: np.zeros((0, s.dim), np.float32) for s in settings.spaces}
        build_and_publish(settings.out, shard, settings.n_shards, np.zeros(0, np.int64), empty, [], [],
                          settings.spaces, settings.schema, settings.auto_index, settings.groups)
        return shard, 0, {}
    ok = np.array([not e for e in group["error"]], dtype=bool)
    failed = {int(i): str(e) for i, e in zip(group["id"][~ok], group["error"][~ok])}
    ids = np.asarray(group["id"][ok], dtype=np.int64)
    vectors = {s.name: np.asarray(group[f"vector_{s.name}"])[ok] for s in settings.spaces}
    attributes = [json.loads(a) for a in group["attributes"][ok]]
    records = [ProductRecord(int(i), str(t), str(u))
               for i, t, u in zip(ids, group["title"][ok], group["image_uri"][ok])]
    build_and_publish(settings.out, shard, settings.n_shards, ids, vectors, attributes, records,
                      settings.spaces, settings.schema, settings.auto_index, settings.groups)
    return shard, len(ids), failed


# --- runners ------------------------------------------------------------------------------

def _run_local(rows, settings: BuildSettings, *, batch_size: int, **_: Any) -> list[tuple[int, int, dict[int, str]]]:
    encode = EncodeBatch(settings)
    batches = [encode(_columns(_items(rows[lo:lo + batch_size]))) for lo in range(0, len(rows), batch_size)]
    if not batches:
        return []
    merged = {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}
    results = []
    for shard in range(settings.n_shards):
        mine = merged["shard"] == shard
        if mine.any():
            results.append(_build_group(settings, shard, {name: column[mine] for name, column in merged.items()}))
    return results


def _run_ray(rows, settings: BuildSettings, *, batch_size: int, encoders: int, ray_address: str | None,
             num_cpus: int | None) -> list[tuple[int, int, dict[int, str]]]:
    try:
        import ray
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("Ray is not installed: pip install 'lookalike[ray]'", name="ray") from e
    if not rows:
        return []
    if not ray.is_initialized():
        ray.init(address=ray_address, num_cpus=None if ray_address else num_cpus, include_dashboard=False,
                 log_to_driver=False)
    dataset = ray.data.from_items(_items(rows))
    encoded = dataset.map_batches(EncodeBatch, fn_constructor_kwargs={"settings": settings}, batch_size=batch_size,
                                  batch_format="numpy", concurrency=encoders)

    def build(group: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        shard, count, failed = _build_group(settings, int(group["shard"][0]), group)
        return {"shard": np.array([shard]), "products": np.array([count]),
                "failed": np.array([json.dumps(failed)], dtype=object)}

    grouped = encoded.groupby("shard", num_partitions=settings.n_shards)
    done = grouped.map_groups(build, batch_format="numpy").take_all()
    return [(int(r["shard"]), int(r["products"]), {int(k): v for k, v in json.loads(r["failed"]).items()})
            for r in done]
