"""Writing a collection's log: the JetStream stream LK_<collection>, one subject
per shard (<collection>.<shard>), and the object-store bucket of the products'
original images, keyed by their SHA-256.

A record is acknowledged when JetStream acknowledged its publish: the stream's
leader stored it on a quorum of its `stream_replicas` nodes. Each record names
the record before it on its subject (see publish()), so a replica checks the
chain and never passes one over. A publish that
gets no answer (a leader change, a node down, a reconnect) is sent again with
the same message id (Nats-Msg-Id) until `publish_timeout_s` passes: within the
stream's duplicate window JetStream stores a message id once and answers a
repeat with the first one's sequence, so a retried write is applied once.

A write that touches several shards publishes their records at once
(publish_all): its latency is one quorum round trip, not one a shard.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import nats.errors
import nats.js.errors
from nats.js.api import ObjectStoreConfig, RetentionPolicy, StorageType, StreamConfig

from lookalike.cluster.nats_link import NatsLink

log = logging.getLogger("lookalike.cluster")

# Failures that say "not now" rather than "never": the publish is sent again.
RETRIED = (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.errors.ConnectionReconnectingError,
           nats.errors.OutboundBufferLimitError, nats.errors.StaleConnectionError, nats.js.errors.NoStreamResponseError,
           nats.js.errors.ServiceUnavailableError, nats.js.errors.ServerError, TimeoutError)
DUPLICATE_WINDOW_S = 120.0
STARTUP_PATIENCE_S = 120.0  # how long a starting process waits for JetStream to answer (leader elections)
# The header naming the record before this one on its subject; JetStream refuses the message otherwise.
PREVIOUS = "Nats-Expected-Last-Subject-Sequence"
_WRONG_PREVIOUS = re.compile(r"wrong last sequence: (\d+)")
_WRONG_PREVIOUS_CODE = 10071


class LogUnavailable(Exception):
    """The log did not take a write in time: nothing of it may be acknowledged."""


def until_ready(link: NatsLink, call, what: str, patience_s: float | None = None):
    """``call()``'s coroutine run, retried while the cluster elects its leaders
    (a fresh or just-damaged cluster answers 'temporarily unavailable' or not
    at all for a few seconds, longer on a loaded machine) for ``patience_s``
    (default: publish_timeout_s, at least 10 s)."""
    deadline = time.monotonic() + (patience_s or max(link.config.publish_timeout_s, 10.0))
    while True:
        try:
            return link.run(call(), timeout=5)
        except RETRIED as e:
            if time.monotonic() > deadline:
                raise LogUnavailable(f"NATS JetStream did not answer for the {what}: {e!r}") from e
            time.sleep(0.2)


def object_bucket(link: NatsLink, name: str):
    """The object-store bucket ``name``, created (with the stream's replication) unless it exists."""
    config = ObjectStoreConfig(replicas=link.config.stream_replicas, storage=StorageType.FILE)
    return until_ready(link, lambda: link.js.create_object_store(name, config), f"bucket {name}", STARTUP_PATIENCE_S)


class CollectionLog:
    def __init__(self, link: NatsLink) -> None:
        self.link = link
        self.config = link.config
        self._images = None
        self._shard_locks = defaultdict(threading.Lock)
        self._previous: dict[int, int] = {}   # shard -> the last record of its subject, as far as known here
        # publish_all's threads: each waits on one shard's publish (a shard's lock keeps its records in order).
        self._publishers = ThreadPoolExecutor(max_workers=max(4, 2 * self.config.shards),
                                              thread_name_prefix="log-publish")

    def close(self) -> None:
        self._publishers.shutdown(wait=True)

    def ensure(self) -> None:
        """Creates the stream and the image bucket unless they exist (every
        writer and replica calls this; the first one creates them)."""
        config = self.config
        stream = StreamConfig(name=config.stream, subjects=[f"{config.collection}.*"],
                              num_replicas=config.stream_replicas, retention=RetentionPolicy.LIMITS,
                              storage=StorageType.FILE, max_age=config.max_age_s or None,
                              max_bytes=config.max_bytes, duplicate_window=DUPLICATE_WINDOW_S)
        until_ready(self.link, lambda: self.link.js.add_stream(stream), f"stream {config.stream}", STARTUP_PATIENCE_S)
        self._images = object_bucket(self.link, f"{config.stream}_images")

    def publish_all(self, records: dict[int, tuple[bytes, str]],
                    deadline: float | None = None) -> dict[int, int | LogUnavailable]:
        """publish() of each shard's (record, message_id), all at once: each
        shard's stream sequence, or the LogUnavailable its publish raised (the
        other shards' records are stored regardless)."""
        def one(shard: int, record: bytes, message_id: str) -> int | LogUnavailable:
            try:
                return self.publish(shard, record, message_id, deadline)
            except LogUnavailable as e:
                return e
        if len(records) == 1:
            return {shard: one(shard, *args) for shard, args in records.items()}
        futures = {shard: self._publishers.submit(one, shard, *args) for shard, args in records.items()}
        return {shard: future.result() for shard, future in futures.items()}

    def publish(self, shard: int, record: bytes, message_id: str, deadline: float | None = None) -> int:
        """Appends ``record`` to ``shard``'s subject; returns its stream sequence
        once JetStream stored it. Retries with the same ``message_id`` until
        ``deadline`` (monotonic; default publish_timeout_s from now), then raises
        LogUnavailable.

        Each record names the one before it on its subject (PREVIOUS: JetStream
        stores it only if that is so), so a replica can tell that it applied
        every record of its shard. Publishes to one shard go one at a time from
        here; another writer's record in between makes JetStream refuse, and
        the publish is sent again after it."""
        limit = time.monotonic() + self.config.publish_timeout_s
        deadline = limit if deadline is None else min(deadline, limit)
        subject = self.config.subject(shard)
        attempt = 0
        with self._shard_locks[shard]:
            while True:
                attempt += 1
                remaining = deadline - time.monotonic()
                previous = self._previous.get(shard)
                if previous is None:
                    previous = self._previous[shard] = self.last_of_shard(shard)
                try:
                    ack = self.link.run(self.link.js.publish(
                        subject, record, timeout=max(0.05, min(2.0, remaining)), stream=self.config.stream,
                        headers={"Nats-Msg-Id": message_id, PREVIOUS: str(previous)}),
                        timeout=max(0.1, min(2.5, remaining + 0.5)))
                except nats.js.errors.BadRequestError as e:
                    moved = _WRONG_PREVIOUS.search(e.description or "")
                    if e.err_code != _WRONG_PREVIOUS_CODE or moved is None:
                        raise
                    self._previous[shard] = int(moved.group(1))  # another writer's record came first
                    continue
                except RETRIED as e:
                    if time.monotonic() + 0.05 >= deadline:
                        raise LogUnavailable(f"the log did not store the write in time ({attempt} attempts; last: "
                                             f"{type(e).__name__}); it may still be stored and applied") from e
                    time.sleep(min(0.05 * attempt, 0.5))
                    continue
                if not ack.duplicate:
                    self._previous[shard] = ack.seq
                else:  # an earlier attempt was stored: what follows it is unknown here, ask again next time
                    self._previous.pop(shard, None)
                if attempt > 1:
                    log.info("publish %s: stored at seq %d after %d attempts%s", message_id, ack.seq, attempt,
                             " (a duplicate of an earlier attempt)" if ack.duplicate else "")
                return ack.seq

    def last_of_shard(self, shard: int) -> int:
        """The stream sequence of the shard's last record (0: none)."""
        subject = self.config.subject(shard)

        async def last() -> int:
            try:
                return (await self.link.js.get_last_msg(self.config.stream, subject)).seq
            except nats.js.errors.NotFoundError:
                return 0

        return until_ready(self.link, last, f"last record of {subject}")

    def put_image(self, image: bytes) -> str:
        """Stores the image in the bucket (unless there already) and returns its
        SHA-256, the name it is kept under."""
        digest = hashlib.sha256(image).hexdigest()

        async def put() -> None:
            try:
                await self._images.get_info(digest)
            except nats.js.errors.ObjectNotFoundError:
                await self._images.put(digest, image)

        until_ready(self.link, put, f"image {digest}")
        return digest

    def get_image(self, digest: str) -> bytes:
        async def get() -> bytes:
            return (await self._images.get(digest)).data

        return self.link.run(get(), timeout=30)

    def last_seq(self) -> int:
        """The stream's last sequence now."""
        return self.link.run(self.link.js.stream_info(self.config.stream), timeout=5).state.last_seq
