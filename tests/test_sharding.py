"""shard_of: the id -> shard rule the batch builder and the router must agree on."""

import numpy as np
import pytest

from lookalike.index.sharding import shard_of, splitmix64

# splitmix64 finaliser values worked out with Python's unbounded ints masked to
# 64 bits; 0xE220A8397B1DCDAF for 0 is the published first output of a
# splitmix64 generator seeded with 0.
PINNED = {
    0: 0xE220A8397B1DCDAF,
    1: 0x910A2DEC89025CC1,
    2: 0x975835DE1C9756CE,
    42: 0xBDD732262FEB6E95,
    123456789: 0x223C74D93DEB7679,
    -1: 0xE4D971771B652C20,
    2**63 - 1: 0x2A67D7552E039EA7,
    -(2**63): 0x481EC0A212A9F3DB,
}


def test_splitmix64_values_are_pinned():
    ids = np.array(list(PINNED), dtype=np.int64)
    assert splitmix64(ids).tolist() == list(PINNED.values())


def test_shard_of_is_the_hash_mod_n():
    ids = np.array(list(PINNED), dtype=np.int64)
    for n in (1, 7, 16):
        assert shard_of(ids, n).tolist() == [h % n for h in PINNED.values()]
    assert shard_of(ids, 7).tolist() == [2, 2, 4, 5, 5, 0, 2, 6]


def test_shard_of_types():
    shards = shard_of([5, 6, 7], 4)
    assert isinstance(shards, np.ndarray) and shards.dtype == np.int64
    scalar = shard_of(42, 7)
    assert type(scalar) is int and scalar == 5
    assert type(shard_of(np.int64(42), 7)) is int


def test_stable_across_calls_and_orders():
    ids = np.random.default_rng(0).integers(0, 2**62, 1000)
    first = shard_of(ids, 5)
    assert (shard_of(ids[::-1], 5)[::-1] == first).all()
    assert [shard_of(int(i), 5) for i in ids[:20]] == first[:20].tolist()


@pytest.mark.parametrize("ids", [np.arange(100_000), np.arange(0, 100_000 * 1024, 1024),
                                 np.random.default_rng(1).integers(0, 2**63 - 1, 100_000)],
                         ids=["dense", "stride-1024", "random"])
@pytest.mark.parametrize("n", [3, 8, 16])
def test_spreads_ids_evenly(ids, n):
    counts = np.bincount(shard_of(ids, n), minlength=n)
    expected = len(ids) / n
    # Chi-square against the uniform spread; 99.9% quantiles for n-1 degrees of freedom.
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < {3: 13.8, 8: 24.3, 16: 37.7}[n], counts


@pytest.mark.parametrize("bad", [0, -3, 2.0, True])
def test_shard_count_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="n_shards"):
        shard_of([1], bad)
