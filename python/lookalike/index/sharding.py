"""Which shard owns a product: a stable hash of its id, modulo the number of shards.

The hash is the splitmix64 finaliser (Steele, Lea and Flood's SplitMix64 output
mix) of the id read as an unsigned 64-bit integer. Product ids are often dense
or sequential; the finaliser spreads neighbouring ids over the whole 64-bit
range, so `hash % n` is even for any n, and it is a fixed function of the id
alone: the same id lands on the same shard on every machine, in every process
and in every version, which the routing of writes depends on.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def splitmix64(ids: npt.ArrayLike) -> np.ndarray:
    """The splitmix64 finaliser of int64 ids, as uint64 (wrapping arithmetic)."""
    x = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _MIX1
        x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def shard_of(ids: npt.ArrayLike, n_shards: int) -> np.ndarray | np.int64:
    """The shard (0..n_shards-1) of each id, as int64: an array for an array of
    ids, a scalar for one id."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    shards = (splitmix64(ids) % np.uint64(n_shards)).astype(np.int64)
    return shards[()] if shards.ndim == 0 else shards
