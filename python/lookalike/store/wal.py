"""The write-ahead log: every write the service acknowledges is first appended
here and made durable, so that a crash (kill -9, power loss) loses nothing that
was acknowledged. On start the service replays the records after its newest
snapshot (store/snapshots.py).

On disk: a directory of segment files ``wal-<first seq, 20 digits>.log``, each
a 24-byte header then records:

    segment header   magic "LKWAL\\0\\0\\0", u32 version, u64 first sequence number,
                     u32 crc32c of the 16 bytes before it
    record           u32 payload length, u64 sequence number, u32 crc32c of the
                     payload, u32 crc32c of the 16 header bytes before it, payload

Sequence numbers start at 1 and go up by one per record, across segments. The
header has its own checksum so that its length can be trusted: a record whose
header checks out but whose payload runs past the end of the last segment, or
whose payload checksum fails while it is the last record, was torn by a crash
and is cut off on open. Any other damage (a bad checksum with records after it,
damage in an older segment, a gap in the sequence numbers) is corruption: open
raises WalCorruption naming the file and the offset, and a person decides.

Group commit: appenders write their record under a short lock and then wait for
an fsync; the first waiter runs one fsync covering every record written so far,
the others queue behind it and usually find their record already covered. The
fsync policy trades durability for latency:

    always     each append returns once its record is fsync'ed (group commit)
    interval   a background thread fsyncs every interval_ms; an append returns
               once written to the OS, so a process crash loses nothing but a
               power loss may lose up to interval_ms of acknowledged writes
    never      no fsync at all (tests and throw-away data)

A failed write (ENOSPC, EIO) is cut back off the segment and raised as
WalWriteError, and the log keeps working once space returns. A failed fsync is
not retried (after a failed fsync the kernel may have dropped the dirty pages,
so a second fsync can succeed without the data being on disk): the log refuses
every later append until the process restarts and recovers from what is on disk.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lookalike._core import crc32c

log = logging.getLogger("lookalike.store")

MAGIC = b"LKWAL\0\0\0"
VERSION = 1
_SEGMENT_HEADER = struct.Struct("<8sIQ")      # magic, version, first sequence number; then its crc32c
SEGMENT_HEADER_BYTES = _SEGMENT_HEADER.size + 4
_RECORD_HEADER = struct.Struct("<IQI")        # payload length, sequence number, payload crc32c; then its crc32c
RECORD_HEADER_BYTES = _RECORD_HEADER.size + 4
MAX_RECORD_BYTES = 1 << 30                    # a bigger length is damage, not a record
FSYNC_POLICIES = ("always", "interval", "never")


class WalError(Exception):
    """The log cannot take a write; nothing of that write was acknowledged."""


class WalWriteError(WalError):
    """Writing a record failed (e.g. the disk is full); the record was cut back
    off and the log still works. ``errno`` is the OS error number."""

    def __init__(self, message: str, errno_: int | None) -> None:
        super().__init__(message)
        self.errno = errno_


class WalCorruption(WalError):
    """A damaged record that is not a torn tail; names the file and offset."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"write-ahead log {path} is damaged at offset {offset}: {reason}")
        self.path = path
        self.offset = offset


@dataclass(frozen=True)
class WalRecord:
    seq: int
    payload: bytes


def _segment_name(first_seq: int) -> str:
    return f"wal-{first_seq:020d}.log"


def _segment_header(first_seq: int) -> bytes:
    head = _SEGMENT_HEADER.pack(MAGIC, VERSION, first_seq)
    return head + struct.pack("<I", crc32c(head))


def encode_record(seq: int, payload: bytes) -> bytes:
    head = _RECORD_HEADER.pack(len(payload), seq, crc32c(payload))
    return head + struct.pack("<I", crc32c(head)) + payload


def fsync_directory(directory: Path) -> None:
    """Makes the creation, rename or removal of entries in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _Segment:
    path: Path
    first_seq: int


class WriteAheadLog:
    def __init__(self, directory: str | os.PathLike[str], *, fsync: str = "always", interval_ms: int = 100,
                 segment_bytes: int = 64 << 20, covered_seq: int = 0,
                 write: Callable[[int, bytes], int] = os.write) -> None:
        """Opens the log in ``directory`` (created if needed): checks every
        segment, cuts a torn tail off the last one and continues after its last
        record. Raises WalCorruption on any other damage.

        fsync: "always", "interval" or "never" (see the module docstring).
        segment_bytes: a segment that reaches this size is closed and a new one
            started, so that old segments can be removed once a snapshot covers them.
        covered_seq: the newest sequence number the caller's snapshot holds. When the
            log has nothing newer (a fresh directory; or the log was trimmed, or a
            power loss took unsynced records the snapshot had) its segments are
            removed and it starts afresh at covered_seq + 1, so that numbers are
            never reused for different writes.
        write: the function that writes bytes to a file descriptor (os.write);
            tests pass one that fails to inject ENOSPC.
        """
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {', '.join(FSYNC_POLICIES)}, got {fsync!r}")
        if interval_ms <= 0 or segment_bytes <= SEGMENT_HEADER_BYTES:
            raise ValueError("interval_ms must be > 0 and segment_bytes larger than a segment header")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._policy = fsync
        self._segment_bytes = segment_bytes
        self._write = write
        self._lock = threading.Lock()        # the tail: file, size, next sequence number
        self._sync_lock = threading.Lock()   # one fsync at a time; taken before _lock, never after
        self._failed: str | None = None      # why the log refuses appends (a failed fsync)
        self._closed = False

        segments = self.segments()
        last_seq = None
        for i, segment in enumerate(segments):
            if last_seq is not None and segment.first_seq != last_seq + 1:
                raise WalCorruption(segment.path, 0, f"starts at record {segment.first_seq} but the segment "
                                                     f"before it ends at {last_seq}: segments are missing")
            last_seq = segment.first_seq - 1
            for record in self._scan(segment, is_last=i == len(segments) - 1):
                last_seq = record.seq
        if last_seq is None or last_seq <= covered_seq:
            for segment in segments:
                segment.path.unlink()
            last_seq = covered_seq
            self._fd, self._path, self._size = self._start_segment(covered_seq + 1)
        else:
            self._open_tail(segments[-1])
        self._next_seq = last_seq + 1
        self._written_seq = last_seq         # every record up to here is in the OS
        self._durable_seq = last_seq         # every record up to here is fsync'ed

        self._interval_stop = threading.Event()
        self._interval_thread = None
        if fsync == "interval":
            self._interval_thread = threading.Thread(target=self._sync_every, args=(interval_ms / 1000,),
                                                     name="lookalike-wal-sync", daemon=True)
            self._interval_thread.start()

    # --- appending ------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest record written (0: none yet)."""
        return self._next_seq - 1

    def append(self, payload: bytes) -> int:
        """Writes one record and returns its sequence number once it is as
        durable as the policy promises: write() then commit()."""
        seq = self.write(payload)
        self.commit(seq)
        return seq

    def write(self, payload: bytes) -> int:
        """Writes one record to the OS (not yet fsync'ed) and returns its
        sequence number. Raises WalWriteError if the write failed (nothing was
        written, no number used) and WalError if the log refuses writes."""
        if len(payload) > MAX_RECORD_BYTES:
            raise ValueError(f"a log record holds at most {MAX_RECORD_BYTES} bytes, got {len(payload)}")
        if self._size >= self._segment_bytes:
            self._rotate()
        with self._lock:
            self._check_usable()
            seq = self._next_seq
            self._write_all(encode_record(seq, payload))
            self._next_seq = seq + 1
            self._written_seq = seq
        return seq

    def commit(self, seq: int) -> None:
        """Returns once record ``seq`` is as durable as the policy promises
        (always: fsync'ed, with whoever else is waiting; otherwise at once).
        Raises WalError if the fsync failed."""
        if self._policy == "always":
            self.sync(seq)

    def sync(self, seq: int | None = None) -> None:
        """Returns once record ``seq`` (default: every record written) is fsync'ed.
        One fsync covers every record written before it started."""
        with self._sync_lock:
            with self._lock:
                target = self._written_seq if seq is None else seq
                if self._durable_seq >= target:
                    return
                self._check_usable()
                fd, covered = self._fd, self._written_seq
            try:
                os.fsync(fd)
            except OSError as e:
                self._failed = f"fsync of {self._path} failed ({e.strerror}); restart the server to recover"
                log.error("write-ahead log: %s", self._failed)
                raise WalError(self._failed) from e
            self._durable_seq = covered

    def _write_all(self, data: bytes) -> None:
        """Appends ``data`` to the tail segment; on failure cuts the partial
        record back off so the segment still ends at a record boundary."""
        start = self._size
        try:
            done = 0
            while done < len(data):
                done += self._write(self._fd, data[done:])
        except OSError as e:
            try:
                os.ftruncate(self._fd, start)
                os.lseek(self._fd, start, os.SEEK_SET)
            except OSError as cut:
                self._failed = f"cannot cut a failed write off {self._path} ({cut.strerror})"
            what = "the disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else e.strerror
            raise WalWriteError(f"cannot write to the write-ahead log {self._path}: {what}", e.errno) from e
        self._size = start + len(data)

    def _check_usable(self) -> None:
        if self._closed:
            raise WalError("the write-ahead log is closed")
        if self._failed is not None:
            raise WalError(f"the write-ahead log refuses writes: {self._failed}")

    def _rotate(self) -> None:
        """Closes the full tail segment (fsync'ed, unless the policy is never)
        and starts the next one."""
        with self._sync_lock, self._lock:
            if self._size < self._segment_bytes:
                return  # another appender rotated first
            self._check_usable()
            if self._policy != "never":
                os.fsync(self._fd)
            self._durable_seq = self._written_seq
            try:
                segment = self._start_segment(self._next_seq)
            except OSError as e:  # the full segment stays the tail and takes the next records
                raise WalWriteError(f"cannot start a write-ahead log segment in {self.directory}: {e.strerror}",
                                    e.errno) from e
            os.close(self._fd)
            self._fd, self._path, self._size = segment

    def _start_segment(self, first_seq: int) -> tuple[int, Path, int]:
        """Creates the segment that starts at ``first_seq``: its fd, path and size."""
        path = self.directory / _segment_name(first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            header = _segment_header(first_seq)
            if self._write(fd, header) != len(header):
                raise OSError(errno.EIO, "short write of a segment header")
            os.fsync(fd)
            fsync_directory(self.directory)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        return fd, path, SEGMENT_HEADER_BYTES

    def _open_tail(self, segment: _Segment) -> None:
        self._fd = os.open(segment.path, os.O_WRONLY)
        self._path = segment.path
        self._size = os.lseek(self._fd, 0, os.SEEK_END)

    def _sync_every(self, seconds: float) -> None:
        while not self._interval_stop.wait(seconds):
            try:
                self.sync()
            except WalError:
                return  # logged by sync(); appends now fail

    # --- reading and trimming -------------------------------------------------------

    def segments(self) -> list[_Segment]:
        """The segment files, oldest first."""
        found = []
        for path in self.directory.glob("wal-*.log"):
            try:
                found.append(_Segment(path, int(path.stem[len("wal-"):])))
            except ValueError:
                continue  # not ours
        return sorted(found, key=lambda s: s.first_seq)

    def records(self, after: int = 0) -> Iterator[WalRecord]:
        """The records with a sequence number above ``after``, in order. Call
        before appending (on start, to replay)."""
        segments = self.segments()
        expected = after + 1
        for i, segment in enumerate(segments):
            if i + 1 < len(segments) and segments[i + 1].first_seq <= expected:
                continue  # every record of this segment is covered
            for record in self._scan(segment, is_last=i == len(segments) - 1, repair=False):
                if record.seq < expected:
                    continue
                if record.seq > expected:
                    raise WalError(f"the write-ahead log in {self.directory} starts at record {record.seq} but "
                                   f"records from {expected} are needed: segments were removed too early")
                yield record
                expected += 1

    def remove_before(self, seq: int) -> int:
        """Removes the segments whose records all have a sequence number below
        ``seq`` (the tail segment stays); returns how many."""
        segments = self.segments()
        removed = 0
        for segment, following in zip(segments, segments[1:]):
            if following.first_seq > seq:
                break
            segment.path.unlink()
            removed += 1
        if removed:
            fsync_directory(self.directory)
        return removed

    def _scan(self, segment: _Segment, *, is_last: bool, repair: bool = True) -> Iterator[WalRecord]:
        """The records of one segment, checked. In the last segment a torn record
        ends the scan (and is cut off when ``repair``); elsewhere damage raises."""
        path = segment.path
        data = path.read_bytes()
        expected_seq = segment.first_seq

        def torn(offset: int, reason: str) -> None:
            if not is_last:
                raise WalCorruption(path, offset, reason + " (in a segment that is not the last)")
            if repair:
                log.warning("write-ahead log %s: cutting a torn record at offset %d (%s)", path, offset, reason)
                with open(path, "r+b") as f:
                    f.truncate(offset)
                    os.fsync(f.fileno())

        if len(data) < SEGMENT_HEADER_BYTES:
            # Created, then torn before its header was whole: no record was ever in it.
            torn(0, "incomplete segment header")
            if repair:
                with open(path, "wb") as f:
                    f.write(_segment_header(segment.first_seq))
                    os.fsync(f.fileno())
            return
        magic, version, first_seq = _SEGMENT_HEADER.unpack_from(data)
        (header_crc,) = struct.unpack_from("<I", data, _SEGMENT_HEADER.size)
        if magic != MAGIC or header_crc != crc32c(data[:_SEGMENT_HEADER.size]):
            raise WalCorruption(path, 0, "not a lookalike write-ahead log segment (bad magic or header checksum)")
        if version != VERSION:
            raise WalCorruption(path, 0, f"unsupported segment version {version} (this build reads {VERSION})")
        if first_seq != segment.first_seq:
            raise WalCorruption(path, 0, f"the header says it starts at {first_seq}, the name says {segment.first_seq}")

        offset = SEGMENT_HEADER_BYTES
        while offset < len(data):
            if len(data) - offset < RECORD_HEADER_BYTES:
                return torn(offset, "incomplete record header")
            length, seq, payload_crc = _RECORD_HEADER.unpack_from(data, offset)
            (head_crc,) = struct.unpack_from("<I", data, offset + _RECORD_HEADER.size)
            if head_crc != crc32c(data[offset:offset + _RECORD_HEADER.size]):
                if not any(data[offset:]):
                    return torn(offset, "zero-filled tail")
                raise WalCorruption(path, offset, "bad record header checksum")
            end = offset + RECORD_HEADER_BYTES + length
            if length > MAX_RECORD_BYTES:
                raise WalCorruption(path, offset, f"record length {length} is beyond the limit")
            if end > len(data):
                return torn(offset, f"the record needs {end - len(data)} more bytes than the file holds")
            payload = data[offset + RECORD_HEADER_BYTES:end]
            if crc32c(payload) != payload_crc:
                if end == len(data):
                    return torn(offset, "bad payload checksum in the last record")
                raise WalCorruption(path, offset, f"bad payload checksum in record {seq}")
            if seq != expected_seq:
                raise WalCorruption(path, offset, f"sequence number {seq} where {expected_seq} was expected")
            yield WalRecord(seq, payload)
            expected_seq += 1
            offset = end

    # --- closing --------------------------------------------------------------------

    def close(self) -> None:
        """Makes every written record durable (unless the policy is never) and closes the tail."""
        self._interval_stop.set()
        if self._interval_thread is not None:
            self._interval_thread.join()
        if self._closed:
            return
        if self._policy != "never" and self._failed is None:
            self.sync()
        with self._lock:
            self._closed = True
            os.close(self._fd)
