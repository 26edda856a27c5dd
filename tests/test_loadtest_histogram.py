"""The harness's latency histogram against numpy's exact percentiles."""

import pickle

import numpy as np
import pytest

from lookalike.loadtest.histogram import MAX_VALUE, Histogram, bucket_of

QUANTILES = (1, 10, 50, 90, 99, 99.9, 100)


def lognormal_micros(seed, n=50_000):
    return np.random.default_rng(seed).lognormal(mean=8, sigma=1.5, size=n).astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_percentiles_are_within_one_percent_of_numpys(seed):
    samples = lognormal_micros(seed)
    h = Histogram()
    h.record_many(samples)
    for q in QUANTILES:
        exact = np.percentile(samples, q, method="inverted_cdf")
        assert h.percentile(q) == pytest.approx(exact, rel=1 / 128, abs=0.5), q
    assert h.total == len(samples) and h.max == samples.max() and h.min == samples.min()
    assert h.mean() == pytest.approx(samples.mean())


def test_small_values_are_exact_and_buckets_are_monotonic():
    values = np.arange(0, 1 << 20, dtype=np.int64)
    buckets = bucket_of(values)
    assert (np.diff(buckets) >= 0).all()
    assert (buckets[:128] == values[:128]).all()
    h = Histogram()
    h.record_many(np.array([3, 3, 7, 100]))
    assert [h.percentile(q) for q in (25, 50, 75, 100)] == [3, 3, 7, 100]


def test_merging_equals_recording_everything_in_one():
    a, b = lognormal_micros(3, 10_000), lognormal_micros(4, 7_000)
    one, left, right = Histogram(), Histogram(), Histogram()
    one.record_many(np.concatenate([a, b]))
    left.record_many(a)
    right.record_many(b)
    merged = left.merge(pickle.loads(pickle.dumps(right)))  # as it travels between processes
    assert (merged.counts == one.counts).all()
    assert (merged.min, merged.max, merged.sum) == (one.min, one.max, one.sum)
    assert Histogram.from_json(one.to_json()).percentile(99) == one.percentile(99)


def test_huge_values_are_clamped_and_an_empty_histogram_has_no_percentiles():
    h = Histogram()
    assert np.isnan(h.percentile(50))
    h.record(MAX_VALUE * 4)
    assert h.max == MAX_VALUE and h.percentile(100) == MAX_VALUE
