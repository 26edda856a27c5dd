"""Micro-batching: concurrent callers share batched runs, each gets its own row,
errors reach every caller of the batch, a full queue is refused at once."""

import threading
import time

import pytest

from lookalike.service.batching import MicroBatcher, Overloaded


def test_concurrent_items_are_run_together_and_answered_in_order():
    sizes = []

    def double(items):
        sizes.append(len(items))
        time.sleep(0.01)  # a model run: callers arriving meanwhile form the next batch
        return [2 * x for x in items]

    batcher = MicroBatcher(double, max_batch=8, max_wait=0.05)
    results = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, batcher(i, timeout=10))) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    assert results == {i: 2 * i for i in range(32)}
    assert max(sizes) > 1 and sum(sizes) == 32 and max(sizes) <= 8
    assert batcher.batches == len(sizes) < 32


def test_a_lone_item_waits_at_most_max_wait():
    batcher = MicroBatcher(lambda items: items, max_batch=64, max_wait=0.02)
    start = time.perf_counter()
    assert batcher("x", timeout=5) == "x"
    assert time.perf_counter() - start < 0.5
    batcher.close()


def test_a_failing_batch_fails_each_of_its_callers():
    def broken(items):
        raise ValueError("cannot decode image")

    batcher = MicroBatcher(broken, max_batch=4, max_wait=0.01)
    futures = [batcher.submit(i) for i in range(3)]
    for f in futures:
        with pytest.raises(ValueError, match="cannot decode image"):
            f.result(5)
    batcher.close()


def test_a_full_queue_is_refused_at_once():
    gate = threading.Event()
    batcher = MicroBatcher(lambda items: (gate.wait(5), items)[1], max_batch=1, max_wait=0, max_queue=2)
    first = batcher.submit(0)  # taken by the worker, blocked on the gate
    time.sleep(0.05)
    queued = [batcher.submit(1), batcher.submit(2)]
    with pytest.raises(Overloaded):
        batcher.submit(3)
    gate.set()
    assert [f.result(5) for f in [first, *queued]] == [0, 1, 2]
    batcher.close()


def test_a_wrong_result_count_is_an_error():
    batcher = MicroBatcher(lambda items: items[:-1], max_batch=2, max_wait=0.01)
    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        batcher("a", timeout=5)
    batcher.close()


def test_runners_run_batches_side_by_side():
    meet = threading.Barrier(2, timeout=5)  # passed only by two batches running at once

    def run(items):
        meet.wait()
        return items

    batcher = MicroBatcher(run, max_batch=1, max_wait=0, runners=2)
    assert [f.result(10) for f in [batcher.submit("a"), batcher.submit("b")]] == ["a", "b"]
    assert batcher.batches == 2
    batcher.close()


def test_close_finishes_what_is_queued_with_several_runners():
    batcher = MicroBatcher(lambda items: (time.sleep(0.005), [x + 1 for x in items])[1], max_batch=3, max_wait=0,
                           runners=3)
    futures = [batcher.submit(i) for i in range(20)]
    batcher.close()
    assert all(f.done() for f in futures) and [f.result() for f in futures] == list(range(1, 21))


def test_runners_must_be_at_least_one():
    with pytest.raises(ValueError, match="runners"):
        MicroBatcher(lambda items: items, runners=0)
