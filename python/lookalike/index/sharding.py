"""Which shard owns a product id: the one rule the batch builder and the router share.

The hash is the splitmix64 finaliser of the id's 64 bits, so neighbouring ids
(catalogs often number products sequentially) spread evenly over the shards,
and the mapping is the same on every machine, Python version and process (the
built-in ``hash`` is not). Changing it moves products between shards, so its
values are pinned by a test.
"""

from __future__ import annotations

import numpy as np

_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def splitmix64(ids) -> np.ndarray:
    """The splitmix64 finaliser of each int64 id viewed as uint64 (wrap-around arithmetic)."""
    x = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = x + _GOLDEN_GAMMA
        x = (x ^ (x >> np.uint64(30))) * _MIX_1
        x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


def shard_of(ids, n_shards: int):
    """The shard (0 .. n_shards-1) of each id: an int64 array, or an int for a scalar id."""
    if isinstance(n_shards, bool) or not isinstance(n_shards, (int, np.integer)) or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}")
    shards = (splitmix64(ids) % np.uint64(n_shards)).astype(np.int64)
    if shards.ndim == 0:
        return int(shards)
    return shards
