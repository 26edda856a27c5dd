"""Open-loop load on any search system from several client processes, and the
highest rate whose p99 stays under a bound (bench/service_peers.py).

Each process sends at evenly spaced intended times whatever the server is doing;
a pool of threads makes the (blocking) calls, and a call's latency runs from its
*intended* send time, so a server that falls behind shows its queue in the
latencies instead of slowing the sender down (no coordinated omission). Every run
is bounded by a duration and a count; calls still waiting when the run ends are
counted as failures to keep up, not dropped.

A system is reached through ``open_searcher(spec)`` (bench/peer_systems.py): the
spec is a picklable description (kind, address, settings), since each client
process opens its own connection.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from peer_systems import open_searcher  # bench/ is on sys.path here, and spawn hands it to the clients

from lookalike.loadtest.runner import running, start_ready


@dataclass(frozen=True)
class Load:
    rate: float               # calls/s over all processes
    seconds: float            # of sending
    processes: int = 2
    threads: int = 8          # per process: calls in flight at most
    max_calls: int = 20_000   # over all processes
    timeout: float = 10.0     # after the last send, wait at most this for calls in flight


@dataclass(frozen=True)
class Outcome:
    rate: float               # offered, calls/s
    achieved: float           # completed calls / s of the run
    sent: int
    ok: int
    failed: int               # errors, and calls that never completed
    p50_ms: float
    p99_ms: float

    def within(self, p99_ms: float) -> bool:
        return self.failed == 0 and self.ok > 0 and self.p99_ms < p99_ms


def _client(index: int, spec: dict, queries: np.ndarray, k: int, filters: list, load: Load,
            start_at, ready, results) -> None:
    try:
        searcher = open_searcher(spec)
        searcher.search(queries[0], k, filters[0])  # connected (and warm) before the clock starts
    except Exception as e:  # reported to the parent, which stops the run
        ready.put(f"client {index}: {type(e).__name__}: {e}")
        return
    ready.put(index)
    while start_at.value == 0.0:
        time.sleep(0.005)
    t0 = start_at.value
    gap = load.processes / load.rate
    budget = load.max_calls // load.processes
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()

    def call(i: int, intended: float) -> None:
        try:
            searcher.search(queries[i % len(queries)], k, filters[i % len(filters)])
            done = time.monotonic()
            with lock:
                latencies.append(done - intended)
        except Exception:
            with lock:
                failures[0] += 1

    sent = 0
    pool = ThreadPoolExecutor(load.threads)
    intended = t0 + gap * index / load.processes
    end = t0 + load.seconds
    while intended < end and sent < budget:
        delay = intended - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        pool.submit(call, index + sent * load.processes, intended)
        sent += 1
        intended += gap
    deadline = time.monotonic() + load.timeout
    while time.monotonic() < deadline:
        with lock:
            if len(latencies) + failures[0] >= sent:
                break
        time.sleep(0.01)
    pool.shutdown(wait=False, cancel_futures=True)  # calls still queued now count as failed
    with lock:
        results.put({"sent": sent, "latencies": list(latencies), "failed": sent - len(latencies),
                     "last": time.monotonic() - t0})
    searcher.close()


def run(spec: dict, queries: np.ndarray, k: int, filters: list, load: Load) -> Outcome:
    """One open-loop run of ``load``: query i is ``queries[i % len]`` with ``filters[i % len]``."""
    ctx = mp.get_context("spawn")
    start_at = ctx.Value("d", 0.0, lock=False)
    ready, results = ctx.Queue(), ctx.Queue()
    clients = start_ready(ctx, _client, [(i, spec, queries, k, filters, load, start_at, ready, results)
                                         for i in range(load.processes)], ready, "open-loop-client")
    with running(clients):
        start_at.value = time.monotonic() + 0.2
        parts = []
        for _ in clients:
            try:
                parts.append(results.get(timeout=load.seconds + load.timeout + 60))
            except queue.Empty:
                raise RuntimeError("a client process stopped without reporting") from None
    latencies = np.concatenate([np.asarray(p["latencies"], dtype=np.float64) for p in parts]) * 1e3
    sent = sum(p["sent"] for p in parts)
    failed = sum(p["failed"] for p in parts)
    elapsed = max(max(p["last"] for p in parts), 1e-9)
    ok = len(latencies)
    return Outcome(rate=load.rate, achieved=ok / elapsed, sent=sent, ok=ok, failed=failed,
                   p50_ms=float(np.percentile(latencies, 50)) if ok else float("inf"),
                   p99_ms=float(np.percentile(latencies, 99)) if ok else float("inf"))


def highest_rate(spec: dict, queries: np.ndarray, k: int, filters: list, base: Load, p99_ms: float,
                 start: float, most: float, steps: int, log) -> tuple[Outcome | None, list[Outcome]]:
    """The highest offered rate whose run keeps p99 under ``p99_ms`` with no
    failures: rates grow by half from ``start`` until one misses (or ``most``),
    then the gap to the first miss is halved for the remaining ``steps``.
    Returns (best passing outcome or None, every run)."""
    runs: list[Outcome] = []
    best, miss, rate = None, None, start
    for _ in range(steps):
        load = Load(**{**base.__dict__, "rate": rate, "max_calls": int(rate * base.seconds) + base.processes})
        outcome = run(spec, queries, k, filters, load)
        runs.append(outcome)
        log(f"  {rate:8.0f}/s offered: {outcome.achieved:8.0f}/s done, p50 {outcome.p50_ms:6.2f} ms, "
            f"p99 {outcome.p99_ms:7.2f} ms, {outcome.failed} failed")
        if outcome.within(p99_ms):
            best = outcome
            rate = rate * 1.5 if miss is None else (rate + miss) / 2
            if rate > most:
                break
        else:
            miss = rate
            if best is None:
                rate = rate / 2
                if rate < 1:
                    break
            else:
                rate = (best.rate + miss) / 2
        if best is not None and miss is not None and miss / best.rate < 1.1:
            break
    return best, runs
