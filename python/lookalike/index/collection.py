"""Collection: the products of a catalog as the search service sees them.

One or more named vector spaces (e.g. "clip" for photos and texts in one space,
"visual" for photo-to-photo), each an HnswIndex or an IVF-PQ index (IvfPqSpace,
which trains itself once it has buffered enough vectors), plus filterable
attributes (an AttributeStore), all keyed by the same int64 product ids. Every
product has a vector in every space.

    collection = Collection([SpaceConfig("clip", 512)], {"category": "keyword", "price": "numeric"})
    collection.upsert(ids, {"clip": vectors}, {"category": cats, "price": prices})
    hits = collection.search("clip", query, k=10, filter=Range("price", lt=50))

Scores are similarities, higher is closer: cosine similarity under cosine, the
inner product under ip, minus the squared distance under l2.

Writes check every input before changing anything, so a bad vector or attribute
leaves the collection as it was. Every method may be called from many threads.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from lookalike._core import StopToken
from lookalike.index.arrays import as_ids, as_vectors
from lookalike.index.attributes import AttributeStore
from lookalike.index.choose import IndexChoice, choose_index
from lookalike.index.filter import Filter
from lookalike.index.groups import DEFAULT_MIN_MEMBERS, GroupConfig, link_all, link_written
from lookalike.index.hnsw import HnswIndex
from lookalike.index.ivf_space import IvfPqSpace

_MANIFEST = "collection.json"
_FORMAT_VERSION = 1


INDEX_KINDS = ("hnsw", "ivf_pq")


@dataclass(frozen=True)
class SpaceConfig:
    """One vector space and the index that holds it: ``index="hnsw"`` (the
    default; see HnswIndex for what storage, rerank, M, ef_construction and
    ef_search trade) or ``"ivf_pq"`` (see IvfPqIndex for nlist, pq_m, nbits,
    nprobe, rerank_k, code, bound_sigmas and ex_bits; ``pq_m=0`` is dim / 8; under
    ``code="rabitq"`` pq_m and nbits do not apply). An IVF-PQ space trains itself on
    its first ``train_size`` vectors (0: 32 x nlist), scanned exactly until then
    (ivf_space.py). The default HNSW storage, int8 codes re-ranked on float16
    copies, was the fastest of our measured configurations at recall@10 0.95
    and holds less memory than float32 alone (README). ``for_size`` picks the
    kind and parameters by the number of vectors, as choose_index does."""

    name: str
    dim: int
    metric: str = "cosine"
    index: str = "hnsw"
    # HNSW
    storage: str = "int8"
    rerank: str | None = "float16"
    M: int = 16
    ef_construction: int = 200
    ef_search: int = 64
    # IVF-PQ
    nlist: int = 1024
    pq_m: int = 0
    nbits: int = 4
    nprobe: int = 16
    rerank_k: int = 100
    train_size: int = 0
    code: str = "pq"
    bound_sigmas: float = 2.0
    ex_bits: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"space names are identifiers such as 'clip', got {self.name!r}")
        if self.index not in INDEX_KINDS:
            raise ValueError(f"space '{self.name}': index must be one of {', '.join(INDEX_KINDS)}, got {self.index!r}")
        if self.rerank == "":  # how a config file (TOML has no null) says "no re-ranking copies"
            object.__setattr__(self, "rerank", None)
        if self.index == "ivf_pq" and self.code not in ("pq", "rabitq"):
            raise ValueError(f"space '{self.name}': code must be 'pq' or 'rabitq', got {self.code!r}")
        if self.index == "ivf_pq" and self.code == "rabitq":
            if self.nlist < 1 or self.train_size < 0 or not self.bound_sigmas > 0 or not 0 <= self.ex_bits <= 7:
                raise ValueError(f"space '{self.name}': RaBitQ needs nlist >= 1, train_size >= 0, bound_sigmas > 0, "
                                 f"ex_bits 0 to 7; got nlist={self.nlist}, train_size={self.train_size}, "
                                 f"bound_sigmas={self.bound_sigmas}, ex_bits={self.ex_bits}")
            if self.train_size and self.train_size < self.nlist:
                raise ValueError(f"space '{self.name}': train_size {self.train_size} is below nlist {self.nlist}")
        elif self.index == "ivf_pq":
            if self.ex_bits:
                raise ValueError(f"space '{self.name}': ex_bits applies to RaBitQ codes only (code='rabitq')")
            m = self.pq_m or 1
            if self.pq_m < 0 or self.dim % m or self.nbits not in (4, 8) or self.nlist < 1 or self.train_size < 0:
                raise ValueError(f"space '{self.name}': IVF-PQ needs pq_m dividing dim ({self.dim}), nbits 4 or 8, "
                                 f"nlist >= 1, train_size >= 0; got pq_m={self.pq_m}, nbits={self.nbits}, "
                                 f"nlist={self.nlist}, train_size={self.train_size}")
            if self.train_size and self.train_size < max(self.nlist, 2 ** self.nbits):
                raise ValueError(f"space '{self.name}': train_size {self.train_size} is below what training needs "
                                 f"(nlist {self.nlist} and 2^nbits {2 ** self.nbits} vectors at least)")

    @classmethod
    def for_size(cls, name: str, dim: int, n: int, metric: str = "cosine",
                 memory_budget: int | None = None) -> SpaceConfig:
        """The space choose_index recommends for n vectors (flat becomes a
        float32 HNSW: the collection may outgrow the scan)."""
        choice: IndexChoice = choose_index(n, dim, memory_budget)
        p = choice.params
        if choice.kind == "ivf_pq":
            return cls(name, dim, metric, index="ivf_pq", nlist=p["nlist"], pq_m=p["m"], nbits=p["nbits"],
                       nprobe=p["nprobe"], rerank_k=p["rerank_k"])
        if choice.kind == "ivf_rabitq":
            return cls(name, dim, metric, index="ivf_pq", nlist=p["nlist"], code="rabitq",
                       bound_sigmas=p["bound_sigmas"], nprobe=p["nprobe"], rerank_k=p["rerank_k"])
        return cls(name, dim, metric, storage=p.get("storage", "float32"), rerank=p.get("rerank"), M=p["M"])

    def new_index(self) -> HnswIndex | IvfPqSpace:
        if self.index == "ivf_pq":
            return IvfPqSpace(self)
        return HnswIndex(self.dim, self.metric, M=self.M, ef_construction=self.ef_construction,
                         ef_search=self.ef_search, storage=self.storage, rerank=self.rerank)


class Hits(NamedTuple):
    """Ids and scores of one search, best first (no padding), and the index's
    SearchStats (plan, estimate, ef, distance computations)."""

    ids: np.ndarray
    scores: np.ndarray
    stats: Any


class Collection:
    def __init__(self, spaces: Sequence[SpaceConfig], schema: Mapping[str, str] | None = None,
                 default_space: str | None = None, *, groups: Sequence[str] = (),
                 group_min_members: int = DEFAULT_MIN_MEMBERS) -> None:
        """``groups`` names keyword attributes of ``schema`` whose values get
        group graphs in every HNSW space once ``group_min_members`` products
        hold them (lookalike.index.groups): a filter requiring such a value
        (``Match("category", "c7")``, alone or under ``Must``) may walk the
        value's products only. Opt-in: a group costs 8M + 20 bytes a member
        (148 at M=16; more in groups of a few thousand) and about an insert's
        time per member linked;
        it pays for values many products hold whose filtered searches are
        frequent. ValueError for an attribute the schema lacks or that is not
        a keyword."""
        if not spaces:
            raise ValueError("a collection needs at least one vector space")
        names = [s.name for s in spaces]
        if len(set(names)) != len(names):
            raise ValueError(f"space names must be distinct, got {names}")
        self._configs = {s.name: s for s in spaces}
        self._indexes = {s.name: s.new_index() for s in spaces}
        self._attributes = AttributeStore(schema or {})
        self._groups = GroupConfig(groups, group_min_members)
        self._groups.check(self._attributes.schema)
        self._default = default_space or names[0]
        if self._default not in self._configs:
            raise ValueError(f"default space {self._default!r} is not one of {names}")
        # Writes of several parts (spaces, attributes) are serialised so that two
        # upserts of one id cannot interleave into a mix; searches never wait on it.
        self._write_lock = threading.Lock()

    # --- description ------------------------------------------------------------

    @property
    def spaces(self) -> dict[str, SpaceConfig]:
        return dict(self._configs)

    @property
    def default_space(self) -> str:
        return self._default

    @property
    def schema(self) -> dict[str, str]:
        return self._attributes.schema

    @property
    def groups(self) -> GroupConfig:
        """Which keyword attributes get group graphs, and from how many products."""
        return self._groups

    def space(self, name: str | None) -> SpaceConfig:
        """The config of a space by name ("" or None: the default); KeyError if unknown."""
        name = name or self._default
        if name not in self._configs:
            raise KeyError(f"unknown vector space {name!r} (the collection has: {', '.join(self._configs)})")
        return self._configs[name]

    def index(self, name: str | None) -> HnswIndex | IvfPqSpace:
        return self._indexes[self.space(name).name]

    def describe_index(self, name: str | None) -> str:
        """The index kind of a space in words (the service's Stats)."""
        config, index = self.space(name), self.index(name)
        if isinstance(index, IvfPqSpace):
            return index.describe()
        return f"hnsw {config.storage}" + (f" + {config.rerank} re-rank" if index.rerank else "") + f", M={config.M}"

    def __len__(self) -> int:
        return len(self._indexes[self._default])

    def __contains__(self, id: object) -> bool:
        return id in self._indexes[self._default]

    def memory_usage(self) -> dict[str, int]:
        usage = {f"space_{n}": ix.memory_usage()["total_bytes"] for n, ix in self._indexes.items()}
        usage["attributes"] = int(self._attributes.memory_usage()["total_bytes"])
        return usage

    # --- writes -------------------------------------------------------------------

    def upsert(self, ids: npt.ArrayLike, vectors: Mapping[str, npt.ArrayLike],
               attributes: Mapping[str, Sequence[Any]] | None = None, *,
               before_searchable: Callable[[], None] | None = None) -> None:
        """Adds products, or replaces them whole (their old attributes are
        cleared). ``vectors`` holds one (n, dim) array per space, every space
        included; ``attributes`` one value per id for each named attribute.
        ``before_searchable()`` runs once every input is checked and the
        attributes are in place, before any index makes the products
        searchable: where the caller puts what a hit is read with (the catalog
        row), so that no search finds a product without it."""
        ids, checked, columns = self._checked_upsert(ids, vectors, attributes)
        attributes = attributes or {}
        with self._write_lock:
            if columns:
                self._attributes.set_checked(ids, columns)
            # A replaced product keeps none of its old attributes.
            replaced = ids[np.fromiter((int(i) in self for i in ids), dtype=bool, count=len(ids))]
            unnamed = [name for name in self.schema if name not in attributes]
            if len(replaced) and unnamed:
                self._attributes.clear(replaced, unnamed)
            if before_searchable is not None:
                before_searchable()
            for name, v in checked.items():
                self._indexes[name].upsert(ids, v)
            # Upserted ids are new nodes (a replaced one too): each joins its values' groups.
            # Until it has, a search walking a group misses it, as one misses a product not yet added.
            if self._groups.attributes:
                for index in self._hnsw_indexes():
                    link_written(index, self._attributes, self._groups, ids, columns)

    def configure_groups(self, groups: Sequence[str], min_members: int = DEFAULT_MIN_MEMBERS) -> None:
        """Changes which attributes get group graphs (see __init__): groups of
        attributes no longer named are dropped, and every value now at the
        threshold gets its group at once (a large collection takes about
        what re-inserting those products on the bottom level takes)."""
        config = GroupConfig(groups, min_members)
        config.check(self.schema)
        with self._write_lock:
            self._groups = config
            for index in self._hnsw_indexes():
                link_all(index, self._attributes, config)

    def _hnsw_indexes(self) -> list[HnswIndex]:
        """The indexes that keep group graphs: HNSW spaces' (an IVF-PQ space has none)."""
        return [ix for ix in self._indexes.values() if isinstance(ix, HnswIndex)]

    def check_upsert(self, ids: npt.ArrayLike, vectors: Mapping[str, npt.ArrayLike],
                     attributes: Mapping[str, Sequence[Any]] | None = None) -> None:
        """Raises what upsert() of the same arguments would raise for its input
        (KeyError, ValueError, TypeError), changing nothing."""
        self._checked_upsert(ids, vectors, attributes)

    def _checked_upsert(self, ids: npt.ArrayLike, vectors: Mapping[str, npt.ArrayLike],
                        attributes: Mapping[str, Sequence[Any]] | None,
                        ) -> tuple[np.ndarray, dict[str, np.ndarray], list[tuple]]:
        ids = as_ids(ids)
        missing = set(self._configs) - set(vectors)
        unknown = set(vectors) - set(self._configs)
        if unknown:
            raise KeyError(f"unknown vector space(s) {sorted(unknown)} (the collection has: {', '.join(self._configs)})")
        if missing:
            raise ValueError(f"every product needs a vector in every space; missing: {sorted(missing)}")
        checked = {name: self._checked_vectors(name, v, len(ids)) for name, v in vectors.items()}
        return ids, checked, self._attributes.checked(ids, attributes or {})

    def train(self, space: str, sample: npt.ArrayLike, *, threads: int = 0) -> None:
        """Trains an IVF-PQ space on ``sample`` now (a batch build, before its
        adds) instead of on its first train_size vectors."""
        index = self.index(space)
        if not isinstance(index, IvfPqSpace):
            raise ValueError(f"space '{space}' is {self.space(space).index}: only ivf_pq spaces are trained")
        with self._write_lock:
            index.train(self._checked_vectors(self.space(space).name, sample, len(np.asarray(sample))),
                        threads=threads)

    def delete(self, ids: npt.ArrayLike) -> list[int]:
        """Deletes the products that exist and returns the ids that did not.
        The indexes hide them before their attributes go, so that no search
        finds a product without its attributes."""
        ids = as_ids(ids)
        with self._write_lock:
            present = np.fromiter((int(i) in self for i in ids), dtype=bool, count=len(ids))
            found = np.unique(ids[present])
            if len(found):
                for index in self._indexes.values():
                    index.delete(found)
                self._attributes.clear(found)
        return [int(i) for i in ids[~present]]

    def _checked_vectors(self, space: str, vectors: npt.ArrayLike, n: int) -> np.ndarray:
        config = self._configs[space]
        arr = as_vectors(vectors, config.dim, f"vectors of space '{space}'")
        if len(arr) != n:
            raise ValueError(f"space '{space}': got {len(arr)} vectors for {n} ids")
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            raise ValueError(f"space '{space}': vector {int(np.argmax(bad))} has a NaN or infinite value")
        if config.metric == "cosine":
            zero = ~arr.any(axis=1)
            if zero.any():
                raise ValueError(f"space '{space}': vector {int(np.argmax(zero))} is all zeros "
                                 "(cosine similarity is undefined for it)")
        return arr

    def deleted_fraction(self, space: str | None) -> float:
        """The share of a space's index slots held by deleted vectors."""
        index = self.index(space)
        deleted = index.deleted_count
        return deleted / (len(index) + deleted) if deleted else 0.0

    def compact(self, space: str | None, scratch: str | os.PathLike[str]) -> int:
        """Reclaims the slots of deleted vectors in one space, keeping its index
        kind and parameters; returns the bytes reclaimed. HnswIndex.compact()
        holds every search of its index while it runs (seconds for a large one),
        so an HNSW space (and an untrained IVF-PQ space's buffer) is replaced by
        a compacted copy, made through a file in the folder ``scratch``: searches
        go on against the original meanwhile, writes wait as they do for save(),
        and the space needs twice its memory while it runs. A trained IVF-PQ
        space drops its deleted codes in place (IvfPqSpace.compact says why)."""
        name = self.space(space).name
        scratch_file = Path(scratch) / f"compacting_{name}.lkl"
        with self._write_lock:
            original = self._indexes[name]
            before = original.memory_usage()["total_bytes"]
            if isinstance(original, IvfPqSpace):
                original.compact(scratch_file)
                compacted = original
            else:
                compacted = original.compacted_copy(scratch_file)
                self._indexes[name] = compacted  # searches in flight finish on the original
        return before - compacted.memory_usage()["total_bytes"]

    # --- reads --------------------------------------------------------------------

    def compile_filter(self, filter: Filter | Mapping[str, Any]):
        """The native predicate of a filter; KeyError / TypeError / ValueError name the problem."""
        return self._attributes.compile(filter)

    def search(self, space: str | None, query: npt.ArrayLike, k: int, *, filter: Filter | Any = None,
               ef: int | None = None, nprobe: int | None = None, rerank: bool = True, exact: bool = False,
               exclude: int | None = None, stop: StopToken | None = None) -> Hits:
        """The k best products for one query vector of ``space``. ``filter`` is a
        clause of lookalike.index.filter (or already compiled); ``exclude`` drops
        one id from the hits ("more like this" leaves out its own product).
        ``ef`` tunes an HNSW space, ``nprobe`` an IVF-PQ one; each is ignored by the other.
        ``stop`` (a StopToken) ends a search past its deadline or cancelled, with
        DeadlineExceeded or SearchCancelled."""
        config = self.space(space)
        native = self.compile_filter(filter) if isinstance(filter, (Filter, Mapping)) else filter
        want = k + (exclude is not None)
        index = self._indexes[config.name]
        tuning = {"nprobe": nprobe} if isinstance(index, IvfPqSpace) else {}
        ids, dists, stats = index.search(
            query, want, ef=ef, filter=native, rerank=rerank, exact=exact, return_stats=True, stop=stop, **tuning)
        keep = ids >= 0
        if exclude is not None:
            keep &= ids != exclude
        ids, dists = ids[keep][:k], dists[keep][:k]
        return Hits(ids, _scores(config.metric, dists), stats)

    def ids(self, filter: Filter | Any = None, stop: StopToken | None = None) -> np.ndarray:
        """Every product id (that ``filter`` allows), in no particular order: an
        exact filtered scan of the default space asked for all of them, which
        ``stop`` can end (as it does a search)."""
        n = len(self)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        probe = np.zeros(self.space(None).dim, dtype=np.float32)
        probe[0] = 1.0
        return self.search(None, probe, n, filter=filter, exact=True, stop=stop).ids

    def vectors(self, space: str | None, ids: npt.ArrayLike) -> np.ndarray:
        """Stored vectors of ids in ``space`` (normalised under cosine); UnknownIdError if absent."""
        return self._indexes[self.space(space).name].get(ids)

    def attributes(self, id: int) -> dict[str, Any]:
        return self._attributes.get(id)

    # --- persistence --------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Writes every part into ``directory`` (created if needed), each file
        atomically; the manifest goes last, so a crash mid-save leaves the old
        manifest naming complete files."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with self._write_lock:
            for name, index in self._indexes.items():
                index.save(directory / f"space_{name}.lkl")
            self._attributes.save(directory / "attributes.lka")
            trained = [n for n, ix in self._indexes.items() if isinstance(ix, IvfPqSpace) and ix.trained]
        manifest = {"format_version": _FORMAT_VERSION, "default_space": self._default,
                    "spaces": [asdict(c) for c in self._configs.values()], "schema": self.schema,
                    "trained_ivf_pq_spaces": trained, "groups": list(self._groups.attributes),
                    "group_min_members": self._groups.min_members}
        tmp = directory / (_MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, directory / _MANIFEST)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Collection:
        directory = Path(directory)
        path = directory / _MANIFEST
        if not path.is_file():
            raise FileNotFoundError(f"no collection at {directory} (missing {_MANIFEST})")
        try:
            manifest = json.loads(path.read_text())
            version = manifest["format_version"]
            configs = [SpaceConfig(**c) for c in manifest["spaces"]]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}: damaged collection manifest ({e})") from e
        if version != _FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported collection format version {version}")
        # Manifests written before group graphs name none.
        collection = cls(configs, manifest.get("schema", {}), manifest.get("default_space"),
                         groups=manifest.get("groups", ()),
                         group_min_members=manifest.get("group_min_members", DEFAULT_MIN_MEMBERS))
        trained = set(manifest.get("trained_ivf_pq_spaces", []))
        for c in configs:
            path = directory / f"space_{c.name}.lkl"
            collection._indexes[c.name] = (IvfPqSpace.load(path, c, c.name in trained) if c.index == "ivf_pq"
                                           else HnswIndex.load(path))
        collection._attributes = AttributeStore.load(directory / "attributes.lka")
        return collection

    @classmethod
    def exists(cls, directory: str | os.PathLike[str]) -> bool:
        return (Path(directory) / _MANIFEST).is_file()


def _scores(metric: str, distances: np.ndarray) -> np.ndarray:
    """The index's distances (smaller is closer) as similarities (higher is closer)."""
    return (1.0 - distances) if metric == "cosine" else -distances
