"""A latency histogram in the manner of HdrHistogram: log-linear buckets with a
bounded relative error, a fixed small size whatever the number of samples, and
merged across processes by adding counts.

Values are whole microseconds. Below 2**SUB_BITS every value has its own bucket;
above, each power-of-two range is cut into 2**(SUB_BITS - 1) equal buckets, so a
bucket is never wider than 1/64 of the values in it and the midpoint a
percentile reports is within 1/128 (0.8%) of any value recorded there.
"""

from __future__ import annotations

import numpy as np

SUB_BITS = 7
HALF = 1 << (SUB_BITS - 1)
MAX_VALUE = (1 << 36) - 1  # ~19 hours in microseconds; larger values are clamped to it
BUCKETS = (MAX_VALUE.bit_length() - SUB_BITS + 2) * HALF


def bucket_of(values: np.ndarray) -> np.ndarray:
    """The bucket index of each value (non-negative int64 microseconds)."""
    v = np.clip(values.astype(np.int64), 0, MAX_VALUE)
    # frexp's exponent is the bit length, exactly, for ints below 2**53.
    bits = np.frexp(v.astype(np.float64))[1].astype(np.int64)
    shift = np.maximum(bits - SUB_BITS, 0)
    return np.where(shift == 0, v, shift * HALF + (v >> shift))


def _bucket_bounds(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The lowest value of each bucket and its width."""
    index = np.asarray(index, dtype=np.int64)
    shift = np.maximum(index // HALF - 1, 0)
    low = np.where(index < 2 * HALF, index, (index - shift * HALF) << shift)
    return low, np.int64(1) << shift


class Histogram:
    def __init__(self) -> None:
        self.counts = np.zeros(BUCKETS, dtype=np.int64)
        self.min = MAX_VALUE
        self.max = 0
        self.sum = 0  # exact, for the mean

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def record(self, micros: int) -> None:
        self.record_many(np.array([micros], dtype=np.int64))

    def record_many(self, micros: np.ndarray) -> None:
        micros = np.clip(np.asarray(micros, dtype=np.int64), 0, MAX_VALUE)
        if micros.size == 0:
            return
        np.add.at(self.counts, bucket_of(micros), 1)
        self.min = min(self.min, int(micros.min()))
        self.max = max(self.max, int(micros.max()))
        self.sum += int(micros.sum())

    def merge(self, other: Histogram) -> Histogram:
        self.counts += other.counts
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sum += other.sum
        return self

    def percentile(self, q: float) -> float:
        """The value below which q percent of the samples lie (the sample of rank
        ceil(q/100 * total), as numpy's "inverted_cdf"), in microseconds: the
        middle of its bucket, kept within the exact min and max."""
        total = self.total
        if total == 0:
            return float("nan")
        rank = max(1, int(np.ceil(q / 100.0 * total)))
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        low, width = _bucket_bounds(index)
        middle = float(low) + (float(width) - 1) / 2
        return min(max(middle, float(self.min)), float(self.max))

    def mean(self) -> float:
        return self.sum / self.total if self.total else float("nan")

    def summary_ms(self) -> dict[str, float | int]:
        """Count, mean and the usual percentiles, in milliseconds."""
        out: dict[str, float | int] = {"count": self.total, "mean": self.mean() / 1e3}
        for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)):
            out[name] = self.percentile(q) / 1e3
        out["max"] = self.max / 1e3 if self.total else float("nan")
        return out

    # Sparse form for JSON files and for sending between processes.
    def to_json(self) -> dict:
        nonzero = np.flatnonzero(self.counts)
        return {"buckets": nonzero.tolist(), "counts": self.counts[nonzero].tolist(),
                "min": self.min, "max": self.max, "sum": self.sum}

    @classmethod
    def from_json(cls, data: dict) -> Histogram:
        h = cls()
        h.counts[np.array(data["buckets"], dtype=np.int64)] = data["counts"]
        h.min, h.max, h.sum = data["min"], data["max"], data["sum"]
        return h

    def __getstate__(self) -> dict:
        return self.to_json()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(Histogram.from_json(state).__dict__)
