"""Writing a collection's log: the JetStream stream LK_<collection>, one subject
per shard (<collection>.<shard>), and the object-store bucket of the products'
original images, keyed by their SHA-256.

A record is acknowledged when JetStream acknowledged its publish: the stream's
leader stored it on a quorum of its `stream_replicas` nodes. A publish that
gets no answer (a leader change, a node down, a reconnect) is sent again with
the same message id (Nats-Msg-Id) until `publish_timeout_s` passes: within the
stream's duplicate window JetStream stores a message id once and answers a
repeat with the first one's sequence, so a retried write is applied once.
"""

from __future__ import annotations

import hashlib
import logging
import time

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


class LogUnavailable(Exception):
    """The log did not take a write in time: nothing of it may be acknowledged."""


def until_ready(link: NatsLink, call, what: str):
    """``call()``'s coroutine run, retried while the cluster elects its leaders
    (a fresh or just-damaged cluster answers 'temporarily unavailable' or not
    at all for a few seconds)."""
    deadline = time.monotonic() + max(link.config.publish_timeout_s, 10.0)
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
    return until_ready(link, lambda: link.js.create_object_store(name, config), f"bucket {name}")


class CollectionLog:
    def __init__(self, link: NatsLink) -> None:
        self.link = link
        self.config = link.config
        self._images = None

    def ensure(self) -> None:
        """Creates the stream and the image bucket unless they exist (every
        writer and replica calls this; the first one creates them)."""
        config = self.config
        stream = StreamConfig(name=config.stream, subjects=[f"{config.collection}.*"],
                              num_replicas=config.stream_replicas, retention=RetentionPolicy.LIMITS,
                              storage=StorageType.FILE, max_age=config.max_age_s or None,
                              max_bytes=config.max_bytes, duplicate_window=DUPLICATE_WINDOW_S)
        until_ready(self.link, lambda: self.link.js.add_stream(stream), f"stream {config.stream}")
        self._images = object_bucket(self.link, f"{config.stream}_images")

    def publish(self, shard: int, record: bytes, message_id: str, deadline: float | None = None) -> int:
        """Appends ``record`` to ``shard``'s subject; returns its stream sequence
        once JetStream stored it. Retries with the same ``message_id`` until
        ``deadline`` (monotonic; default publish_timeout_s from now), then raises
        LogUnavailable."""
        limit = time.monotonic() + self.config.publish_timeout_s
        deadline = limit if deadline is None else min(deadline, limit)
        subject = self.config.subject(shard)
        headers = {"Nats-Msg-Id": message_id}
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                ack = self.link.run(self.link.js.publish(subject, record, timeout=max(0.05, min(2.0, remaining)),
                                                         stream=self.config.stream, headers=dict(headers)),
                                    timeout=max(0.1, min(2.5, remaining + 0.5)))
                if attempt > 1:
                    log.info("publish %s: stored at seq %d after %d attempts%s", message_id, ack.seq, attempt,
                             " (a duplicate of an earlier attempt)" if ack.duplicate else "")
                return ack.seq
            except RETRIED as e:
                if time.monotonic() + 0.05 >= deadline:
                    raise LogUnavailable(f"the log did not store the write in time ({attempt} attempts; last: "
                                         f"{type(e).__name__}); it may still be stored and applied") from e
                time.sleep(min(0.05 * attempt, 0.5))

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
