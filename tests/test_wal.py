"""The write-ahead log: records survive reopening, torn tails are cut, damage in
the middle is a loud error naming file and offset, group commit shares fsyncs,
a full disk fails the write without losing what was written before."""

import errno
import os
import threading
import time

import numpy as np
import pytest

from lookalike.store import records
from lookalike.store.wal import (RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES, WalCorruption, WalError,
                                 WalWriteError, WriteAheadLog)


def payloads(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.bytes(int(rng.integers(0, 200))) for _ in range(n)]


def reopen(directory, **kwargs):
    wal = WriteAheadLog(directory, fsync="never", **kwargs)
    got = [(r.seq, r.payload) for r in wal.records()]
    return wal, got


def test_records_survive_reopening_across_segments(tmp_path):
    data = payloads(300)
    wal = WriteAheadLog(tmp_path, fsync="always", segment_bytes=2000)
    assert [wal.append(p) for p in data] == list(range(1, 301))
    wal.close()
    assert len(wal.segments()) > 5
    wal, got = reopen(tmp_path, segment_bytes=2000)
    assert got == list(enumerate(data, start=1))
    assert wal.append(b"next") == 301
    assert [r.seq for r in wal.records(after=295)] == [296, 297, 298, 299, 300, 301]
    wal.close()


def test_removing_covered_segments_keeps_what_comes_after(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="never", segment_bytes=1000)
    data = payloads(100)
    for p in data:
        wal.append(p)
    before = len(wal.segments())
    assert wal.remove_before(60) > 0
    assert len(wal.segments()) < before
    assert [r.payload for r in wal.records(after=59)] == data[59:]
    with pytest.raises(WalError, match="segments were removed too early"):
        list(wal.records(after=0))
    wal.close()


def last_segment(tmp_path):
    return sorted(tmp_path.glob("wal-*.log"))[-1]


@pytest.mark.parametrize("cut", [1, RECORD_HEADER_BYTES - 1, RECORD_HEADER_BYTES + 3])
def test_a_torn_tail_is_cut_and_the_log_continues(tmp_path, cut):
    data = payloads(20, seed=1)
    wal = WriteAheadLog(tmp_path, fsync="never")
    for p in data:
        wal.append(p)
    wal.append(b"x" * 50)
    wal.close()
    path = last_segment(tmp_path)
    size = path.stat().st_size
    os.truncate(path, size - (RECORD_HEADER_BYTES + 50) + cut)
    wal, got = reopen(tmp_path)
    assert got == list(enumerate(data, start=1))
    assert path.stat().st_size == size - RECORD_HEADER_BYTES - 50
    assert wal.append(b"after") == 21
    wal.close()
    assert reopen(tmp_path)[1][-1] == (21, b"after")


def test_a_bad_checksum_in_the_last_record_is_a_torn_tail(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="never")
    wal.append(b"first")
    wal.append(b"second")
    wal.close()
    path = last_segment(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(raw)
    assert reopen(tmp_path)[1] == [(1, b"first")]


def test_a_zero_filled_tail_is_cut(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="never")
    wal.append(b"kept")
    wal.close()
    path = last_segment(tmp_path)
    with open(path, "ab") as f:
        f.write(bytes(4096))
    assert reopen(tmp_path)[1] == [(1, b"kept")]


def test_damage_in_the_middle_names_the_file_and_offset(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="never")
    for p in (b"a" * 10, b"b" * 10, b"c" * 10):
        wal.append(p)
    wal.close()
    path = last_segment(tmp_path)
    raw = bytearray(path.read_bytes())
    second = SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + 10
    raw[second + RECORD_HEADER_BYTES + 2] ^= 0x01  # a payload byte of record 2 of 3
    path.write_bytes(raw)
    with pytest.raises(WalCorruption) as caught:
        WriteAheadLog(tmp_path, fsync="never")
    assert caught.value.path == path and caught.value.offset == second
    assert str(path) in str(caught.value) and f"offset {second}" in str(caught.value)
    assert path.stat().st_size == len(raw)  # nothing was cut


def test_damage_in_an_older_segment_is_never_taken_for_a_torn_tail(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="never", segment_bytes=200)
    for p in payloads(30, seed=2):
        wal.append(p)
    wal.close()
    first = sorted(tmp_path.glob("wal-*.log"))[0]
    os.truncate(first, first.stat().st_size - 3)
    with pytest.raises(WalCorruption, match="not the last"):
        WriteAheadLog(tmp_path, fsync="never", segment_bytes=200)


def test_a_log_older_than_the_snapshot_starts_afresh_after_it(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="never")
    wal.append(b"old")
    wal.close()
    wal = WriteAheadLog(tmp_path, fsync="never", covered_seq=10)
    assert wal.append(b"new") == 11
    assert [(r.seq, r.payload) for r in wal.records(after=10)] == [(11, b"new")]
    wal.close()


def test_group_commit_shares_fsyncs_between_concurrent_writers(tmp_path, monkeypatch):
    fsyncs = []
    real = os.fsync

    def slow_fsync(fd):  # as slow as a disk, so that writers pile up behind it
        fsyncs.append(fd)
        time.sleep(0.005)
        real(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    wal = WriteAheadLog(tmp_path, fsync="always")
    fsyncs.clear()
    start = threading.Barrier(8)

    def writer(i):
        start.wait()
        for j in range(25):
            wal.append(f"{i}-{j}".encode())

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    wal.close()
    assert wal.last_seq == 200
    assert 0 < len(fsyncs) < 150  # fewer fsyncs than appends: each one covered every record written before it
    assert sorted(payload for _, payload in reopen(tmp_path)[1]) == sorted(f"{i}-{j}".encode() for i in range(8)
                                                                    for j in range(25))


def test_a_full_disk_fails_the_write_and_keeps_what_was_written(tmp_path):
    full = threading.Event()

    def write(fd, data):
        if full.is_set():
            os.write(fd, data[:7])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    wal = WriteAheadLog(tmp_path, fsync="always", write=write)
    assert wal.append(b"one") == 1
    full.set()
    with pytest.raises(WalWriteError, match="the disk is full") as caught:
        wal.append(b"two")
    assert caught.value.errno == errno.ENOSPC
    full.clear()
    assert wal.append(b"three") == 2
    wal.close()
    assert reopen(tmp_path)[1] == [(1, b"one"), (2, b"three")]


def test_a_failed_fsync_refuses_later_writes(tmp_path, monkeypatch):
    wal = WriteAheadLog(tmp_path, fsync="always")
    wal.append(b"durable")

    def broken(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(WalError, match="fsync"):
        wal.append(b"lost")
    with pytest.raises(WalError, match="refuses writes"):
        wal.append(b"refused")
    monkeypatch.undo()
    wal.close()
    assert reopen(tmp_path)[1][0] == (1, b"durable")


def test_an_unknown_fsync_policy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="always, interval, never"):
        WriteAheadLog(tmp_path, fsync="sometimes")


def test_the_interval_policy_syncs_in_the_background(tmp_path):
    wal = WriteAheadLog(tmp_path, fsync="interval", interval_ms=10)
    wal.append(b"soon durable")
    wal.close()
    assert reopen(tmp_path)[1] == [(1, b"soon durable")]


def test_write_batches_round_trip_through_bytes():
    upsert = records.UpsertBatch(
        ids=np.array([3, 1 << 40], dtype=np.int64),
        vectors={"clip": np.arange(8, dtype=np.float32).reshape(2, 4), "visual": np.ones((2, 2), np.float32)},
        attributes={"category": [["shoes"], None], "price": [9.5, 1e-300]},
        titles=["a shoe", "ünïcode"], image_uris=["s3://x", ""])
    back = records.decode(records.encode(upsert))
    assert back.ids.tolist() == upsert.ids.tolist()
    assert back.vectors.keys() == upsert.vectors.keys()
    for name in upsert.vectors:
        np.testing.assert_array_equal(back.vectors[name], upsert.vectors[name])
    assert (back.attributes, back.titles, back.image_uris) == (upsert.attributes, upsert.titles, upsert.image_uris)
    delete = records.decode(records.encode(records.DeleteBatch(np.array([5, 7]))))
    assert delete.ids.tolist() == [5, 7]
    with pytest.raises(ValueError, match="not a write batch|unknown record kind"):
        records.decode(b"\x09\x00")
