"""The shard of a product id: splitmix64 of the id, modulo the number of shards.
Its values are pinned (routing must never change under a running cluster), and
it spreads dense and strided ids evenly."""

import numpy as np
import pytest

from lookalike.index.sharding import shard_of, splitmix64


def test_splitmix64_matches_the_published_sequence():
    """SplitMix64 seeded with 0 outputs mix(gamma), mix(2 gamma), ...: the first two
    outputs of the reference generator are these."""
    gamma = 0x9E3779B97F4A7C15 - (1 << 64)  # the same bits as an int64
    assert splitmix64([gamma, 2 * gamma + (1 << 64)]).tolist() == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]


def test_pinned_values():
    ids = [0, 1, 2, 3, 42, 12345, 2**31, 2**63 - 1]
    assert splitmix64(ids).tolist() == [0x0, 0x5692161D100B05E5, 0xDBD238973A2B148A, 0x1E535EEDE31428F0,
                                        0xA759EA27D4727622, 0xF36CF1164265DD51, 0xEC105BF588587C9F,
                                        0x5A682AFE7965DEBD]
    assert shard_of(ids, 3).tolist() == [0, 1, 1, 2, 2, 0, 0, 1]
    assert shard_of(ids, 7).tolist() == [0, 6, 1, 4, 3, 6, 2, 3]
    assert shard_of(ids, 1).tolist() == [0] * len(ids)


def test_types_and_shapes():
    many = shard_of(np.arange(10, dtype=np.int64), 4)
    assert many.dtype == np.int64 and many.shape == (10,)
    one = shard_of(42, 3)
    assert isinstance(one, np.int64) and one == 2
    assert shard_of([], 3).shape == (0,)
    with pytest.raises(ValueError, match="n_shards"):
        shard_of([1], 0)


def test_stable_across_calls_and_orders():
    ids = np.random.default_rng(0).integers(0, 2**62, 1000)
    first = shard_of(ids, 5)
    assert (shard_of(ids[::-1], 5)[::-1] == first).all()
    assert [int(shard_of(int(i), 5)) for i in ids[:20]] == first[:20].tolist()


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
