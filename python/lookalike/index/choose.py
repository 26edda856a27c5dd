"""Which index for a collection: the default by size, and memory estimates.

The rule of thumb (measured in bench/; see the README's projection to 100M):

- below 10k vectors, "flat": an exact scan (an HnswIndex searched with
  ``exact=True``, which ``IndexChoice.search_params`` says): recall 1.0 and
  nothing to tune, at ~4 ms a query for 10k x 512 on one (contended) core of
  the 2-core bench machine, against ~1 ms for the graph walk. Its memory is
  that of HNSW float32 (the graph is kept, so that the collection can outgrow
  the scan without a rebuild);
- below ~10M vectors, HNSW: the best recall per query-second, and its memory
  (about 2.2 KB a 512-d vector in float32, 1.6 KB as int8 + float16 copies)
  still fits one machine;
- from ~10M up, the IVF index with re-rank from disk, the float vectors in a
  memory-mapped file: with RaBitQ codes ("ivf_rabitq", dim / 8 + 3 bytes of
  code and ~10 of ids a vector: 77 at 512-d) up to 1024 dimensions, measured
  faster than 4-bit PQ at recall@10 0.95 on 200k x 512 and reaching 0.99,
  which PQ at m = dim / 8 does not (bench/compressed.py); else IVF-PQ (~42
  bytes a vector: 4-bit PQ, m = dim / 8, plus ids).

With a ``memory_budget`` (bytes of RAM for the index), the first kind in the
order flat (below 10k vectors only), HNSW float32, float16, int8 + float16
copies, IVF-RaBitQ, IVF-PQ whose estimate fits is chosen. The estimates count what each index keeps in RAM: codes, vectors,
links, ids and id maps; not the page cache of IVF-PQ's vectors file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FLAT_MAX_VECTORS = 10_000
HNSW_MAX_VECTORS = 10_000_000
KINDS = ("flat", "hnsw", "hnsw-float16", "hnsw-int8", "ivf_rabitq", "ivf_pq")
IVF_KINDS = ("ivf_rabitq", "ivf_pq")
RABITQ_MAX_DIM = 1024  # its 4-bit groups' fast-scan sums stay within uint16
_HNSW_M = 16
_ID_MAP_BYTES = 56  # HnswIndex's std::unordered_map, per id
# slot -> id (4 bytes while ids fit in 32 bits), list slot numbers (runs after a
# bulk load, 16-bit offsets for a trickle of adds: ~1), id map (4-byte buckets
# 0.85-0.9 full); cpp/pq/ivf_pq.h
_IVF_ID_BYTES = 4 + 1 + 5


@dataclass(frozen=True)
class IndexChoice:
    kind: str                      # one of KINDS
    params: dict = field(default_factory=dict)  # keyword arguments for the index class
    memory_bytes: int = 0          # estimated RAM of the index
    search_params: dict = field(default_factory=dict)  # keyword arguments for every search

    @property
    def index_class(self) -> str:
        return "IvfPqIndex" if self.kind in IVF_KINDS else "HnswIndex"


def default_nlist(n: int) -> int:
    """~4 sqrt(n) cells, a power of two in [16, 65536]."""
    return int(min(65536, max(16, 2 ** round(math.log2(4 * math.sqrt(max(n, 1)))))))


def default_pq_m(dim: int) -> int:
    """dim / 8 sub-spaces (4-bit codes of dim / 16 bytes), kept a divisor of dim."""
    m = max(1, dim // 8)
    while dim % m:
        m -= 1
    return m


def estimate_memory(kind: str, n: int, dim: int) -> int:
    """Estimated bytes of RAM an index of `kind` holds for n vectors of dim."""
    links = 2 * _HNSW_M * 4 + 16 + _ID_MAP_BYTES  # level-0 links, node header, id map
    if kind in ("flat", "hnsw"):
        return n * (4 * dim + links)
    if kind == "hnsw-float16":
        return n * (2 * dim + links)
    if kind == "hnsw-int8":
        return n * (dim + 2 * dim + links)  # int8 codes + float16 re-ranking copies
    if kind == "ivf_pq":
        m, nlist = default_pq_m(dim), default_nlist(n)
        return n * (m // 2 + _IVF_ID_BYTES) + 4 * dim * (nlist + 16)
    if kind == "ivf_rabitq":
        padded = 1 << max(2, (dim - 1).bit_length())  # the rotation pads to a power of two
        return n * (padded // 8 + 3 + _IVF_ID_BYTES) + 4 * padded * default_nlist(n)
    raise ValueError(f"unknown index kind {kind!r} (expected one of {', '.join(KINDS)})")


def _params(kind: str, n: int, dim: int) -> dict:
    if kind in ("flat", "hnsw"):
        return {"M": _HNSW_M}
    if kind == "hnsw-float16":
        return {"M": _HNSW_M, "storage": "float16"}
    if kind == "hnsw-int8":
        return {"M": _HNSW_M, "storage": "int8", "rerank": "float16"}
    if kind == "ivf_rabitq":
        # rerank_k only caps the reads; the bound (2 sigmas) decides them.
        return {"nlist": default_nlist(n), "code": "rabitq", "bound_sigmas": 2.0, "nprobe": 16, "rerank_k": 1000}
    return {"nlist": default_nlist(n), "m": default_pq_m(dim), "nbits": 4, "nprobe": 16, "rerank_k": 100}


def choose_index(n: int, dim: int, memory_budget: int | None = None) -> IndexChoice:
    """The index kind, its parameters and estimated RAM for n vectors of dim."""
    if n < 0 or dim < 1:
        raise ValueError(f"need n >= 0 and dim >= 1, got n={n}, dim={dim}")
    ivf = IVF_KINDS if dim <= RABITQ_MAX_DIM else ("ivf_pq",)
    if memory_budget is None:
        kind = "flat" if n < FLAT_MAX_VECTORS else "hnsw" if n < HNSW_MAX_VECTORS else ivf[0]
    else:
        candidates = [k for k in (KINDS if n < FLAT_MAX_VECTORS else KINDS[1:]) if k not in IVF_KINDS or k in ivf]
        fits = [k for k in candidates if estimate_memory(k, n, dim) <= memory_budget]
        if n >= HNSW_MAX_VECTORS and any(k in fits for k in ivf):
            fits = [k for k in fits if k in ivf]
        if not fits:
            need = estimate_memory("ivf_pq", n, dim)
            raise ValueError(f"no index fits {memory_budget:,} bytes for {n:,} x {dim}: IVF-PQ needs ~{need:,}")
        kind = fits[0]
    search = {"exact": True} if kind == "flat" else {}
    return IndexChoice(kind, _params(kind, n, dim), estimate_memory(kind, n, dim), search)
