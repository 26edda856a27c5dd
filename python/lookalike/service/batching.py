"""Dynamic micro-batching: many callers, one batched model run.

Under load, encoding queries one by one wastes the encoder: a batch of 16 costs
far less than 16 runs of one. A MicroBatcher collects items from concurrent
callers until it holds `max_batch` of them or the oldest has waited `max_wait`
seconds, runs the batch function once on a worker thread, and hands each caller
its own row. At low load a lone item waits at most `max_wait`.

The queue is bounded: when `max_queue` items wait, submit() raises Overloaded at
once rather than letting callers queue behind work that cannot finish in time.
A failing batch fails each of its callers with the batch's exception.

`runners` worker threads each collect and run batches, so that that many
batches run at once when enough items wait (one at a time below that).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any


class Overloaded(RuntimeError):
    """The batcher's queue is full."""


class MicroBatcher:
    def __init__(self, run: Callable[[list[Any]], Sequence[Any]], *, max_batch: int = 16,
                 max_wait: float = 0.002, max_queue: int = 256, runners: int = 1, name: str = "batcher") -> None:
        """``run`` maps a list of items to a sequence of as many results; it
        is called from ``runners`` threads at once."""
        if max_batch < 1 or max_queue < 1 or runners < 1 or max_wait < 0:
            raise ValueError("max_batch, max_queue and runners must be >= 1, max_wait >= 0")
        self._run = run
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: queue.Queue[tuple[Any, Future] | None] = queue.Queue(max_queue)
        self._counting = threading.Lock()
        self.batches = 0  # batches run so far (for tests and metrics)
        self._workers = [threading.Thread(target=self._loop, name=f"{name}-{i}" if i else name, daemon=True)
                         for i in range(runners)]
        for worker in self._workers:
            worker.start()

    def submit(self, item: Any) -> Future:
        future: Future = Future()
        try:
            self._queue.put_nowait((item, future))
        except queue.Full:
            raise Overloaded("the encoder queue is full") from None
        return future

    def __call__(self, item: Any, timeout: float | None = None) -> Any:
        """Submits one item and waits for its result."""
        return self.submit(item).result(timeout)

    def queued(self) -> int:
        """Items waiting for a batch."""
        return self._queue.qsize()

    def close(self) -> None:
        """Finishes what is queued, then stops the workers."""
        for _ in self._workers:  # behind every queued item: each worker takes one once the items are gone
            self._queue.put(None)
        for worker in self._workers:
            worker.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self._max_wait
            stop = False
            while len(batch) < self._max_batch:
                remaining = deadline - time.monotonic()
                try:
                    entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is None:
                    stop = True
                    break
                batch.append(entry)
            self._run_batch(batch)
            if stop:
                return

    def _run_batch(self, batch: list[tuple[Any, Future]]) -> None:
        live = [(item, f) for item, f in batch if f.set_running_or_notify_cancel()]
        if not live:
            return
        with self._counting:
            self.batches += 1
        try:
            results = self._run([item for item, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(live)} items")
        except BaseException as e:  # every caller learns why its item failed
            for _, f in live:
                f.set_exception(e)
            return
        for (_, f), result in zip(live, results):
            f.set_result(result)
