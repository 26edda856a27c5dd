"""Who serves which shard, in the JetStream KV bucket LK_<collection>_members.

Each replica keeps one key, ``<shard>.<replica id>``, whose value is a JSON
Member: its address, shard, model, applied_seq, caught_up_seq and snapshot
seq. It writes it every heartbeat_s and at once (at most every 50 ms) when its
caught_up_seq moves, so routers see progress without waiting a period. The
bucket's TTL (live_after_s) removes the key of a replica that stopped; a clean
stop deletes it.

Routers watch the bucket. A replica counts as live while its last heartbeat
arrived less than live_after_s before the latest one from any replica, by the
router's own clock (no clock agreement needed between machines; see live()).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass

import nats.errors
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KV_DEL, KV_PURGE

from lookalike.cluster.log import RETRIED
from lookalike.cluster.nats_link import NatsLink

log = logging.getLogger("lookalike.cluster")
_MIN_GAP_S = 0.05
STALE_LIMIT = 10


@dataclass(frozen=True)
class Member:
    replica: str
    address: str
    shard: int
    model: str = ""
    applied_seq: int = 0          # the last record of its shard it applied
    caught_up_seq: int = 0        # every record of its shard up to this one is applied
    snapshot_seq: int = 0         # its newest snapshot covers the stream up to here
    snapshot_unix: float = 0.0    # when it took that snapshot (0: none, or taken before a restart)
    skipped: int = 0              # records it passed over (they did not decode or apply)
    lag: int = 0                  # stream records it may still have to apply, as it last saw the stream
    beat_unix: float = 0.0        # when it wrote this heartbeat, by its own clock

    @property
    def key(self) -> str:
        return f"{self.shard}.{self.replica}"


def bucket_name(link: NatsLink) -> str:
    return f"{link.config.stream}_members"


async def open_bucket(link: NatsLink):
    config = link.config
    try:
        return await link.js.key_value(bucket_name(link))
    except nats.js.errors.BucketNotFoundError:
        return await link.js.create_key_value(KeyValueConfig(
            bucket=bucket_name(link), history=1, ttl=config.live_after_s, replicas=config.stream_replicas,
            storage=StorageType.FILE))


class Heartbeat:
    """A replica's key, kept fresh by a thread of its own."""

    def __init__(self, link: NatsLink, state) -> None:
        """``state()`` returns the Member to publish now."""
        self._link = link
        self._state = state
        self._poke = threading.Event()
        self._stop = threading.Event()
        self._kv = None
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()

    def poke(self) -> None:
        """Something changed: beat now rather than at the next period."""
        self._poke.set()

    def _run(self) -> None:
        period = self._link.config.heartbeat_s
        while not self._stop.is_set():
            self._poke.wait(period)
            self._poke.clear()
            if self._stop.is_set():
                return
            self._stop.wait(_MIN_GAP_S if self._beat() else period)

    def _beat(self) -> bool:
        member = self._state()
        try:
            if self._kv is None:
                self._kv = self._link.run(open_bucket(self._link), timeout=5)
            self._link.run(self._kv.put(member.key, json.dumps(asdict(member)).encode()), timeout=2)
            return True
        except (*RETRIED, nats.js.errors.Error, nats.errors.Error) as e:
            log.warning("heartbeat not written (%s); next period", type(e).__name__)
            return False

    def stop(self) -> None:
        """Stops beating and removes the key: routers stop reading from here at once."""
        self._stop.set()
        self._poke.set()
        self._thread.join(timeout=5)
        try:
            if self._kv is not None:
                self._link.run(self._kv.delete(self._state().key), timeout=2)
        except Exception as e:  # the TTL removes it anyway
            log.warning("heartbeat key not removed (%r); it expires by itself", e)


class Membership:
    """A router's view of the replicas, kept by a watch of the bucket."""

    def __init__(self, link: NatsLink) -> None:
        self._link = link
        self._live_after = link.config.live_after_s
        self._changed = threading.Condition()
        self._members: dict[str, tuple[Member, float]] = {}   # key -> (member, monotonic time heard)
        self._task = None
        self._listed = threading.Event()   # the watch has delivered the keys there were when it began

    def start(self, wait_s: float = 10.0) -> None:
        """Starts watching; returns once the current members are known (or
        after ``wait_s`` seconds, when NATS is slow to answer: they come later)."""
        self._task = self._link.spawn(self._watch())
        if not self._listed.wait(wait_s):
            log.warning("membership: the replicas were not listed within %.0f s; reads wait for them", wait_s)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _watch(self) -> None:
        while True:
            watcher = None
            try:
                kv = await open_bucket(self._link)
                watcher = await kv.watchall()
                while True:
                    # Silence past live_after_s means every replica is gone or the watch broke: watch anew.
                    entry = await watcher.updates(timeout=self._live_after)
                    if entry is None:  # the end of the keys there were when the watch began
                        self._listed.set()
                    else:
                        self._update(entry)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the watch must go on
                log.info("membership watch restarts (%s)", type(e).__name__)
                await asyncio.sleep(0.2)
            finally:
                if watcher is not None:
                    try:
                        await watcher.stop()
                    except Exception:  # noqa: BLE001 - its subscription may be gone with the connection
                        pass

    def _update(self, entry) -> None:
        with self._changed:
            if entry.operation in (KV_DEL, KV_PURGE):
                self._members.pop(entry.key, None)
            else:
                try:
                    self._members[entry.key] = (Member(**json.loads(entry.value)), time.monotonic())
                except (ValueError, TypeError) as e:
                    log.error("membership key %s is not a member (%s); ignored", entry.key, e)
            self._changed.notify_all()

    def live(self, shard: int | None = None) -> list[Member]:
        """The live replicas (of ``shard``), the least behind first: those heard
        within live_after_s of the latest heartbeat heard from any replica. While
        no heartbeat arrives at all (the KV bucket elects a leader after a NATS
        node died, or this watch reconnects) nobody is dropped for it, up to
        STALE_LIMIT x live_after_s; a replica that really died meanwhile fails
        its calls, and reads fail over to its peers."""
        now = time.monotonic()
        with self._changed:
            latest = max((heard for _, heard in self._members.values()), default=now)
            members = [m for m, heard in self._members.values()
                       if latest - heard < self._live_after and now - heard < STALE_LIMIT * self._live_after
                       and (shard is None or m.shard == shard)]
        return sorted(members, key=lambda m: (-m.caught_up_seq, m.replica))

    def wait(self, ready, timeout: float | None) -> bool:
        """Waits until ``ready()`` holds (checked at each membership change and
        every 100 ms); False when ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not ready():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(0.1 if remaining is None else min(0.1, remaining))
        return True
