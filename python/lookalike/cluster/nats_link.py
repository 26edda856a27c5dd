"""One connection to NATS for threaded code: nats-py is asyncio, the service is
threads (gRPC handlers, the replica's apply loop), so the connection lives on an
event loop of its own thread and callers hand it coroutines with run().

The client reconnects by itself (to any server of `urls`) for as long as the
process runs; a call made meanwhile waits or times out, and its caller retries.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.js import JetStreamContext

from lookalike.cluster.config import ClusterConfig

log = logging.getLogger("lookalike.cluster")
T = TypeVar("T")


class NatsLink:
    def __init__(self, config: ClusterConfig, name: str, connect_timeout: float = 10.0) -> None:
        """Connects to the servers of ``config`` (ConnectionError naming them when
        none answers within ``connect_timeout`` seconds)."""
        self.config = config
        self._closing = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"nats-{name}", daemon=True)
        self._thread.start()
        try:
            self.nc = self.run(self._connect(name), timeout=connect_timeout + 1)
        except Exception as e:
            self._stop_loop()
            raise ConnectionError(f"cannot reach NATS at {', '.join(config.urls)}: {e!r}") from e
        self.js: JetStreamContext = self.nc.jetstream()

    async def _connect(self, name: str) -> nats.NATS:
        async def disconnected() -> None:
            if not self._closing:
                log.warning("NATS: disconnected, reconnecting")

        async def reconnected() -> None:
            log.info("NATS: reconnected to %s", self.nc.connected_url.netloc if self.nc.connected_url else "?")

        async def error(e: Exception) -> None:
            log.debug("NATS: %r", e)

        return await nats.connect(name=name, allow_reconnect=True, max_reconnect_attempts=-1,
                                  reconnect_time_wait=0.2, connect_timeout=2, disconnected_cb=disconnected,
                                  reconnected_cb=reconnected, error_cb=error, **self.config.connect_options())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Runs ``coro`` on the connection's loop and returns its result
        (TimeoutError after ``timeout`` seconds, the coroutine cancelled)."""
        return self.result(self.spawn(coro), timeout)

    @staticmethod
    def result(future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
        """The result of a coroutine started with spawn(), as run() returns it."""
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Starts ``coro`` on the loop without waiting for it (a watcher, or a
        call whose result() is wanted later)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def close(self) -> None:
        self._closing = True
        try:
            self.run(self.nc.close(), timeout=5)
        except Exception:  # closing anyway
            log.exception("NATS: close failed")
        self._stop_loop()

    def _stop_loop(self) -> None:
        async def cancel_the_rest() -> None:  # watchers and the client's own timers
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(cancel_the_rest(), timeout=5)
        except Exception:  # stopping anyway
            log.exception("NATS: tasks not cancelled")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
