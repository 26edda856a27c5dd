"""Calls that wait for an index's lock wait without the GIL: IVF-PQ training
holds its index for seconds, and a Stats-like call (size, deleted count,
memory) or a parameter change meanwhile must not stop every other Python
thread of the process (the service's handlers, its health check)."""

import threading
import time

import numpy as np

from conftest import clustered
from lookalike.index import IvfPqIndex


def test_calls_waiting_for_a_training_index_let_other_threads_run():
    vectors = clustered(20_000, 32, seed=1)
    index = IvfPqIndex(32, nlist=256, m=8, nbits=8)
    trainer = threading.Thread(target=index.train, args=(vectors,), kwargs={"threads": 1})
    started = time.perf_counter()
    trainer.start()
    time.sleep(0.05)  # training holds the index now
    waiters = [threading.Thread(target=call) for call in (
        lambda: len(index), lambda: 7 in index, lambda: index.deleted_count, lambda: index.memory_usage(),
        lambda: setattr(index, "nprobe", 4))]
    ticks = [time.perf_counter()]
    for w in waiters:
        w.start()
    while trainer.is_alive():  # this thread needs the GIL for every tick
        time.sleep(0.005)
        ticks.append(time.perf_counter())
    training = time.perf_counter() - started
    for w in waiters:
        w.join()
    # A waiter holding the GIL would stop the ticks for the rest of the training.
    assert max(np.diff(ticks)) < training / 3, (max(np.diff(ticks)), training)
    assert index.nprobe == 4
