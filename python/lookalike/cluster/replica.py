"""The apply loop of a shard replica: a durable pull consumer of its shard's
subject, whose records it applies in stream order to its ReplicaStore.

- On start (and after any trouble) the consumer is created anew at the
  record after the store's applied_seq: the replica's own state, not the
  consumer's acknowledgements, says where it is, so a replica that crashed
  after acknowledging records its snapshot does not hold gets them again.
- Deliveries are checked to be consecutive (the consumer's own sequence), and
  each record to follow the last one applied (it names the record before it
  on its subject, log.py): a gap, as when a fetch's answer was lost while a
  NATS node went down, starts the consumer again from applied_seq + 1, so no
  record is ever passed over.
- A record that does not decode or does not apply is logged, counted
  (``skipped``) and passed over: every replica of the shard passes over the
  same ones, and the shard goes on. Consecutive upserts of a fetched batch are
  applied as one write (ReplicaStore.apply_run), so a replica that fell behind
  catches up faster than single-product writes came.
- ``caught_up_seq``: every record of this shard up to it is applied. It is the
  last applied record, or more: the stream's last sequence read before a fetch
  that brought nothing, once the shard's last record is applied (a shard with
  no recent writes is caught up with the writes of the other shards). Routers read it from the
  heartbeat to serve `min_seq` reads.
- Catching up costs one round trip to NATS a batch, and not on the apply
  path: after a full fetch (more records wait) the next batch is fetched while
  this one is applied (a fetch started on a consumer that is then replaced is
  dropped unread). The stream's last sequence is read only when the replica
  may have run out of records (the last fetch was not full) or every
  STREAM_LAST_EVERY_S for the lag it reports, and a batch is acknowledged by
  its last record (AckPolicy.ALL).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
import time
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from lookalike.cluster import log_records
from lookalike.cluster.log import PREVIOUS, RETRIED, STARTUP_PATIENCE_S, CollectionLog, until_ready
from lookalike.cluster.nats_link import NatsLink
from lookalike.cluster.replica_store import ReplicaStore
from lookalike.store.records import UpsertBatch

log = logging.getLogger("lookalike.cluster")

STREAM_LAST_EVERY_S = 0.5  # how stale the stream's last sequence may be while records keep coming


class ReplicaGapError(Exception):
    """The stream no longer holds the records after this replica's state."""


def consumer_name(collection: str, shard: int, replica_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{collection}-s{shard}-{replica_id}")


class ShardReplica:
    def __init__(self, link: NatsLink, shard: int, store: ReplicaStore, replica_id: str,
                 on_progress: Callable[[], None] = lambda: None, on_snapshot: Callable[[int], None] = lambda seq: None,
                 batch: int = 256, idle_wait_s: float = 0.2) -> None:
        """``on_progress()`` after caught_up_seq moved; ``on_snapshot(seq)`` right
        after a snapshot at seq, before the next record is applied."""
        self.shard = shard
        self.store = store
        self._link = link
        self._log = CollectionLog(link)
        self._config = link.config
        self._durable = consumer_name(self._config.collection, shard, replica_id)
        self._on_progress, self._on_snapshot = on_progress, on_snapshot
        self._batch, self._idle_wait_s = batch, idle_wait_s
        self._sub = None
        self._ahead = None  # _fetch() of the next batch, started while one is applied
        self._next_delivery = 1
        self._caught_up = threading.Condition()
        self._caught_up_seq = store.applied_seq
        self.skipped = 0           # records passed over because they did not decode or apply
        self.stream_last = 0       # the stream's last sequence when the loop last looked
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"replica-shard-{shard}", daemon=True)

    def start(self) -> None:
        """Checks the stream still holds what this replica lacks, then applies in the background."""
        self._log.ensure()
        first = until_ready(self._link, lambda: self._link.js.stream_info(self._config.stream), "stream info",
                            STARTUP_PATIENCE_S).state.first_seq
        applied = self.store.applied_seq
        if first > applied + 1:
            raise ReplicaGapError(f"shard {self.shard}: this replica holds the stream up to seq {applied}, but the "
                                  f"stream keeps records from seq {first} on (retention removed the ones between): "
                                  "start it with an empty data directory from a newer snapshot")
        self._thread.start()

    @property
    def caught_up_seq(self) -> int:
        with self._caught_up:
            return self._caught_up_seq

    @property
    def lag(self) -> int:
        """Records of the stream this replica may still have to apply (an upper
        bound: some belong to other shards), as of the loop's last look."""
        return max(0, self.stream_last - self.caught_up_seq)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    # --- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        looked_at, behind = 0.0, False
        while not self._stop.is_set():
            try:
                if self._sub is None:
                    self._drop_ahead()  # a fetch from the consumer being replaced
                    self._subscribe()
                if self._ahead is not None:
                    ahead, self._ahead = self._ahead, None
                    messages = self._link.result(*ahead)
                else:
                    if not behind or time.monotonic() - looked_at >= STREAM_LAST_EVERY_S:
                        # Read before the fetch, as _idle needs; an older read serves it as well.
                        self.stream_last, looked_at = self._log.last_seq(), time.monotonic()
                    messages = self._link.result(*self._fetch())
                behind = len(messages) == self._batch
                if behind:  # more wait: fetch them while these are applied
                    if time.monotonic() - looked_at >= STREAM_LAST_EVERY_S:
                        self.stream_last, looked_at = self._log.last_seq(), time.monotonic()
                    self._ahead = self._fetch()
                if not messages:
                    self._idle(self.stream_last)
                else:
                    self._apply(messages)
                if self.store.snapshot_due():
                    self._on_snapshot(self.store.snapshot())
            except RETRIED as e:
                log.warning("shard %d: the log did not answer (%s); consuming again from seq %d", self.shard,
                            type(e).__name__, self.store.applied_seq + 1)
                self._sub = None
                self._stop.wait(0.2)
            except Exception:  # noqa: BLE001 - the loop must go on; the log says what broke
                log.exception("shard %d: the apply loop failed; consuming again from seq %d", self.shard,
                              self.store.applied_seq + 1)
                self._sub = None
                self._stop.wait(1.0)
        self._drop_ahead()
        try:
            self.store.snapshot()
        except Exception:
            log.exception("shard %d: the last snapshot failed (the stream still holds everything)", self.shard)

    def _subscribe(self) -> None:
        js, stream = self._link.js, self._config.stream
        start = self.store.applied_seq + 1

        async def subscribe():
            try:
                await js.delete_consumer(stream, self._durable)
            except nats.js.errors.NotFoundError:
                pass
            await js.add_consumer(stream, ConsumerConfig(
                durable_name=self._durable, deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                filter_subject=self._config.subject(self.shard), ack_policy=AckPolicy.ALL, ack_wait=60,
                max_ack_pending=-1))
            return await js.pull_subscribe_bind(durable=self._durable, stream=stream)

        old, self._sub = self._sub, None
        if old is not None:
            self._link.spawn(old.unsubscribe())
        self._sub = self._link.run(subscribe(), timeout=10)
        self._next_delivery = 1
        log.info("shard %d: consuming the stream from seq %d (consumer %s)", self.shard, start, self._durable)

    def _fetch(self) -> tuple[concurrent.futures.Future[list], float]:
        """Starts a fetch of the next batch; returns its future and how long to
        wait for it (NatsLink.result)."""
        subscription, batch, wait = self._sub, self._batch, self._idle_wait_s

        async def fetch() -> list:
            try:
                return await subscription.fetch(batch, timeout=wait)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nothing came within the wait
                return []

        return self._link.spawn(fetch()), wait + 5

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            self._ahead[0].cancel()
            self._ahead = None

    def _apply(self, messages: list) -> None:
        applied, ready = [], []  # messages to acknowledge; (seq, data) of the records to apply
        last = self.store.applied_seq  # the last record applied or ready to be
        for message in messages:
            meta = message.metadata
            if meta.sequence.consumer != self._next_delivery:
                log.warning("shard %d: delivery %d where %d was due; consuming again from seq %d", self.shard,
                            meta.sequence.consumer, self._next_delivery, last + 1)
                self._sub = None
                break
            self._next_delivery += 1
            seq = meta.sequence.stream
            if seq > last:
                previous = (message.headers or {}).get(PREVIOUS)
                if previous is not None and int(previous) > last:
                    log.warning("shard %d: the record at seq %d follows seq %s, but this replica applied up to %d; "
                                "consuming again from seq %d", self.shard, seq, previous, last, last + 1)
                    self._sub = None
                    break
                ready.append((seq, message.data))
                last = seq
            applied.append(message)
        self._apply_records(ready)
        if applied:
            self._link.run(applied[-1].ack(), timeout=10)  # AckPolicy.ALL: and every one before it
            # Only the records applied: a message's own num_pending dates from its delivery, which
            # may precede stream_last (a pull answered late), so it proves nothing about stream_last.
            self._note_caught_up(applied[-1].metadata.sequence.stream)

    def _idle(self, stream_last: int) -> None:
        """A fetch brought nothing. That proves nothing by itself (a pull lost
        with a NATS node looks the same, and the consumer's own counts can be
        wrong after its leader moved), so the stream is asked for the shard's
        last record: applied, then every record of the shard stored before
        ``stream_last`` was read is applied; stored before that read but not
        applied, the consumer is created again; stored after it, the next fetch
        brings it."""
        last_of_shard = self._log.last_of_shard(self.shard)
        applied = self.store.applied_seq
        if last_of_shard <= applied:
            self._note_caught_up(stream_last)
        elif last_of_shard <= stream_last:
            log.warning("shard %d: a fetch brought nothing while the shard's records up to seq %d wait; consuming "
                        "again from seq %d", self.shard, last_of_shard, applied + 1)
            self._sub = None

    def _apply_records(self, ready: list[tuple[int, bytes]]) -> None:
        """Applies the records in stream order, consecutive upserts as one run
        (ReplicaStore.apply_run); a run that does not apply as one is applied
        record by record, so that only a bad record is passed over."""
        run: list[tuple[int, UpsertBatch]] = []
        for seq, data in ready:
            try:
                record = log_records.decode(data)
            except log_records.RecordError as e:
                self._apply_each(run)
                run = []
                self._skip(seq, e)
                continue
            if isinstance(record, UpsertBatch):
                run.append((seq, record))
                continue
            self._apply_each(run)
            run = []
            self._apply_one(seq, record)
        self._apply_each(run)

    def _apply_each(self, run: list[tuple[int, UpsertBatch]]) -> None:
        if len(run) > 1:
            try:
                self.store.apply_run(run)
                return
            except (ValueError, KeyError, TypeError):  # one of them is bad: find which, alone
                pass
        for seq, record in run:
            self._apply_one(seq, record)

    def _apply_one(self, seq: int, record: log_records.Record) -> None:
        try:
            self.store.apply(seq, record)
        except (ValueError, KeyError, TypeError) as e:
            self._skip(seq, e)

    def _skip(self, seq: int, error: Exception) -> None:
        self.skipped += 1
        self.store.skip(seq)
        log.error("shard %d: record at stream seq %d skipped (%d so far): %s", self.shard, seq, self.skipped, error)

    def _note_caught_up(self, seq: int) -> None:
        seq = max(seq, self.store.applied_seq)
        with self._caught_up:
            if seq <= self._caught_up_seq:
                return
            self._caught_up_seq = seq
            self._caught_up.notify_all()
        self._on_progress()

