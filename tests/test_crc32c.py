"""CRC32C, the checksum of every lookalike file: the crc32 instruction and the
table-driven version agree, on the standard check value and on chained calls."""

import numpy as np
import pytest

from lookalike import _core


@pytest.mark.parametrize("portable", [False, True])
def test_the_standard_check_value(portable):
    assert _core.crc32c(b"123456789", portable=portable) == 0xE3069283
    assert _core.crc32c(b"", portable=portable) == 0


@pytest.mark.parametrize("size", [1, 7, 8, 9, 63, 64, 1000, 4099])
def test_both_versions_agree_and_chain(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    whole = _core.crc32c(data)
    assert whole == _core.crc32c(data, portable=True)
    cut = size // 3
    assert _core.crc32c(data[cut:], _core.crc32c(data[:cut])) == whole
