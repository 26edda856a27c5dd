"""Save and load: identical results after a round trip; damaged files are refused."""

import os

import numpy as np
import pytest

from conftest import clustered
from lookalike.index import HnswIndex, IndexFileError


@pytest.fixture(scope="module")
def vectors():
    return clustered(3100, 48, seed=21)


@pytest.mark.parametrize(
    "storage, rerank", [("float32", None), ("float16", None), ("int8", "float32"), ("int8", "float16")]
)
def test_round_trip_gives_identical_results(tmp_path, vectors, storage, rerank):
    base, queries = vectors[:3000], vectors[3000:]
    index = HnswIndex(48, "cosine", M=12, storage=storage, rerank=rerank, ef_search=40)
    index.add(np.arange(3000) + 100, base)
    index.delete(np.arange(100, 400))
    index.upsert([500], -base[0])
    path = tmp_path / "index.lkl"
    index.save(path)
    loaded = HnswIndex.load(path)
    assert (len(loaded), loaded.deleted_count) == (len(index), index.deleted_count)
    assert (loaded.storage, loaded.M, loaded.ef_search, loaded.rerank) == (storage, 12, 40, rerank)
    for exact in (False, True):
        a, b = index.search(queries, 10, exact=exact), loaded.search(queries, 10, exact=exact)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.distances, b.distances)
    # The loaded index keeps working: writes, deletes and compaction.
    loaded.add([99999], base[1])
    loaded.delete([500])
    loaded.compact()
    assert loaded.search(base[1], 1).ids[0] in (99999, 101)
    assert 500 not in loaded and len(loaded) == len(index)


def test_save_is_atomic_and_leaves_no_temporary(tmp_path, vectors):
    index = HnswIndex(48)
    index.add(np.arange(50), vectors[:50])
    path = tmp_path / "index.lkl"
    index.save(path)
    index.add(np.arange(50, 60), vectors[50:60])
    index.save(path)  # overwrites in place
    assert sorted(os.listdir(tmp_path)) == ["index.lkl"]
    assert len(HnswIndex.load(path)) == 60


def test_save_into_a_missing_directory_fails_clearly(tmp_path, vectors):
    index = HnswIndex(48)
    index.add([1], vectors[:1])
    with pytest.raises(RuntimeError, match="missing"):
        index.save(tmp_path / "missing" / "index.lkl")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, vectors):
    index = HnswIndex(48, storage="int8", rerank=True)
    index.add(np.arange(500), vectors[:500])
    path = tmp_path_factory.mktemp("saved") / "index.lkl"
    index.save(path)
    return path.read_bytes()


def write(tmp_path, data: bytes):
    path = tmp_path / "damaged.lkl"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("keep", [0, 1, 7, 63, 64, 100, 200, 4096, -4096, -1])
def test_truncated_files_are_refused(tmp_path, saved, keep):
    with pytest.raises(IndexFileError, match="truncated|not a lookalike file"):
        HnswIndex.load(write(tmp_path, saved[:keep] if keep >= 0 else saved[: len(saved) + keep]))


# Header (0-63), section table entries (64-191), then the sections from byte
# 2112 on (the writer reserves table room for 64 sections; that unused room and
# the alignment padding carry no data and no checksum).
@pytest.mark.parametrize("where", [0, 10, 40, 70, 100, 150, 2112 + 8, 2300, 50_000, -10])
def test_a_flipped_byte_anywhere_is_refused(tmp_path, saved, where):
    data = bytearray(saved)
    data[where] ^= 0x40
    with pytest.raises(IndexFileError, match="damaged|checksum|not a lookalike file"):
        HnswIndex.load(write(tmp_path, bytes(data)))


def test_a_file_that_is_not_an_index(tmp_path):
    with pytest.raises(IndexFileError, match="not a lookalike file"):
        HnswIndex.load(write(tmp_path, b"PK\x03\x04" + b"\0" * 200))


def test_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.lkl"):
        HnswIndex.load(tmp_path / "nope.lkl")


def test_damage_is_named_with_the_path(tmp_path, saved):
    path = write(tmp_path, saved[:-100])
    with pytest.raises(IndexFileError, match="damaged.lkl"):
        HnswIndex.load(path)
