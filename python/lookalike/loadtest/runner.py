"""Drives a server from several worker processes, each with its own gRPC channel.

Open loop: each worker sends at intended times drawn from the arrival process
(fixed spacing or Poisson) whatever the server is doing, and a call's latency runs
from its *intended* send time. A server that stalls therefore shows its queue in
the latencies instead of slowing the sender down and hiding it (the "coordinated
omission" of closed-loop testers). Closed loop: N callers, each sending its next
call when the last one returns; latency runs from the actual send.

Every run is bounded by a duration and a request count; after the last send a
worker waits at most the call timeout for the calls still in flight.
"""

from __future__ import annotations

import ipaddress
import multiprocessing as mp
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import grpc
import numpy as np

from lookalike.client import Client
from lookalike.loadtest.histogram import Histogram
from lookalike.loadtest.workload import UPSERT, Workload, WorkloadSpec
from lookalike.v1 import search_pb2

# Server-side stages from StageTimings, plus "outside": client latency minus the
# server's total (network, gRPC queueing, and in open loop the wait for a sender).
STAGES = ("decode", "preprocess", "encode", "search", "hydrate", "total", "outside")


@dataclass(frozen=True)
class Arrivals:
    """When an open-loop run sends: `rate` calls/s over all workers, evenly spaced
    or Poisson; optionally `burst_factor` times that for `burst_seconds` out of
    every `burst_every` seconds."""

    rate: float
    poisson: bool = False
    burst_factor: float = 1.0
    burst_every: float = 0.0
    burst_seconds: float = 0.0

    def rate_at(self, t: float) -> float:
        bursting = self.burst_every > 0 and (t % self.burst_every) < self.burst_seconds
        return self.rate * (self.burst_factor if bursting else 1.0)

    def offsets(self, share: float, phase: float, rng: np.random.Generator) -> Iterator[float]:
        """Intended send times (seconds from the start) of a worker carrying
        `share` of the rate; `phase` in [0, 1) staggers evenly spaced workers."""
        t = phase / max(self.rate_at(0.0) * share, 1e-9)
        while True:
            yield t
            gap = 1.0 / (self.rate_at(t) * share)
            t += rng.exponential(gap) if self.poisson else gap


@dataclass(frozen=True)
class RunConfig:
    address: str
    workload: WorkloadSpec
    mode: str = "open"                   # "open" or "closed"
    arrivals: Arrivals | None = None     # open loop only
    concurrency: int = 1                 # closed loop: calls in flight over all workers
    duration: float = 10.0               # seconds of sending
    max_requests: int = 100_000          # and at most this many calls
    processes: int = 2
    timeout: float = 10.0                # deadline of each call, seconds
    max_outstanding: int = 2000          # open loop, per worker: beyond it the sender waits (still measured)
    timeline_step: float = 1.0           # seconds per point of the latency-over-time series
    api_key: str | None = None
    seed: int = 0
    allow_remote: bool = False           # the address may be another machine's

    def __post_init__(self) -> None:
        check_address(self.address, self.allow_remote)
        if self.mode not in ("open", "closed"):
            raise ValueError(f"mode must be open or closed, got {self.mode!r}")
        if self.mode == "open" and (self.arrivals is None or self.arrivals.rate <= 0):
            raise ValueError("an open-loop run needs an arrival rate > 0")
        if self.duration <= 0 or self.max_requests <= 0:
            raise ValueError("a run needs a duration > 0 and max_requests > 0")


def check_address(address: str, allow_remote: bool) -> None:
    """Refuses to load anything but this machine unless told to: a load test
    pointed at the wrong host is an outage."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if allow_remote:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"{address} is not a loopback address; pass allow_remote (--allow-remote) to load it")


class Recorder:
    """One worker's measurements; calls complete on gRPC threads, hence the lock."""

    def __init__(self, t0: float, step: float) -> None:
        self.t0, self.step = t0, step
        self.latency: dict[str, Histogram] = defaultdict(Histogram)
        self.stages: dict[str, dict[str, Histogram]] = defaultdict(lambda: defaultdict(Histogram))
        self.errors: Counter[str] = Counter()
        self.timeline: dict[int, Histogram] = defaultdict(Histogram)   # by window of the intended send time
        self.timeline_errors: Counter[int] = Counter()
        self.last_done = t0
        self._lock = threading.Lock()

    def done(self, label: str, intended: float, response: object = None, code: str = "OK") -> None:
        finished = time.monotonic()
        micros = int((finished - intended) * 1e6)
        window = int((intended - self.t0) / self.step)
        if code == "OK" and isinstance(response, search_pb2.UpsertResponse):  # refused products count as errors
            code = next((_CODE_NAMES[r.status_code] for r in response.results if r.status_code), "OK")
        with self._lock:
            self.last_done = max(self.last_done, finished)
            if code != "OK":
                self.errors[code] += 1
                self.timeline_errors[window] += 1
                return
            self.latency[label].record(micros)
            self.timeline[window].record(micros)
            if isinstance(response, search_pb2.SearchResponse):
                t = response.timings
                stages = self.stages[label]
                for name in STAGES[:-1]:
                    stages[name].record(getattr(t, f"{name}_us"))
                stages["outside"].record(max(micros - t.total_us, 0))

    def result(self) -> dict:
        return {"latency": dict(self.latency), "stages": {k: dict(v) for k, v in self.stages.items()},
                "errors": dict(self.errors), "timeline": dict(self.timeline),
                "timeline_errors": dict(self.timeline_errors), "last_done": self.last_done}


_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


@dataclass
class RunResult:
    config: dict
    elapsed: float                        # from the start to the last completion, seconds
    sent: int
    latency: dict[str, Histogram]         # by label (kind, "+filter"), successful calls only
    stages: dict[str, dict[str, Histogram]]
    errors: dict[str, int]                # by status code name
    timeline: dict[int, Histogram] = field(default_factory=dict)
    timeline_errors: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return sum(h.total for h in self.latency.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def achieved_rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def offered_rate(self) -> float | None:
        arrivals = self.config.get("arrivals")
        return arrivals["rate"] if arrivals else None

    def overall(self, searches_only: bool = False) -> Histogram:
        merged = Histogram()
        for label, h in self.latency.items():
            if not (searches_only and label == UPSERT):
                merged.merge(h)
        return merged


def run(config: RunConfig, progress: Callable[[dict], None] | None = None, tick: float = 0.5) -> RunResult:
    """Runs the load, calling `progress` with counters every `tick` seconds."""
    ctx = mp.get_context("spawn")  # gRPC's threads do not survive fork
    processes = config.processes if config.mode == "open" else min(config.processes, config.concurrency)
    counters = ctx.Array("q", 3 * processes, lock=False)   # per worker: sent, done, errors
    start_at = ctx.Value("d", 0.0, lock=False)
    go, ready, results = ctx.Event(), ctx.Queue(), ctx.Queue()
    workers = start_ready(ctx, _worker, [(i, processes, config, start_at, go, ready, results, counters)
                                         for i in range(processes)], ready, "lookalike-load")
    with running(workers):
        t0 = time.monotonic() + 0.2
        start_at.value = t0
        go.set()
        parts = []
        hard_stop = t0 + config.duration + config.timeout + 30
        while len(parts) < processes:
            try:
                parts.append(results.get(timeout=tick))
            except queue.Empty:
                if time.monotonic() > hard_stop or not any(w.is_alive() for w in workers):
                    raise RuntimeError("load workers stopped without reporting") from None
            if progress is not None:
                c = np.frombuffer(counters, dtype=np.int64).reshape(processes, 3).sum(axis=0)
                progress({"elapsed": time.monotonic() - t0, "sent": int(c[0]), "done": int(c[1]),
                          "errors": int(c[2]), "duration": config.duration})
    for part in parts:
        if "failure" in part:
            raise RuntimeError(part["failure"])
    return _merge(config, t0, parts)


def start_ready(ctx, target: Callable, arguments: list[tuple], ready, name: str) -> list:
    """Starts a daemon process of ``target`` per tuple of ``arguments`` and waits
    until each has put something on ``ready``: its index once connected, or a
    string saying why it could not, which stops them all and is raised."""
    processes = [ctx.Process(target=target, args=args, daemon=True, name=f"{name}-{i}")
                 for i, args in enumerate(arguments)]
    for p in processes:
        p.start()
    try:
        for _ in processes:
            item = ready.get(timeout=120)
            if isinstance(item, str):
                raise RuntimeError(item)
    except BaseException:
        for p in processes:
            p.terminate()
        raise
    return processes


@contextmanager
def running(processes: list) -> Iterator[list]:
    """Joins the processes (10 s each at most) when the block ends normally, and
    terminates any still alive however it ends."""
    try:
        yield processes
        for p in processes:
            p.join(timeout=10)
    finally:
        for p in processes:
            if p.is_alive():
                p.terminate()


def _merge(config: RunConfig, t0: float, parts: list[dict]) -> RunResult:
    latency: dict[str, Histogram] = defaultdict(Histogram)
    stages: dict[str, dict[str, Histogram]] = defaultdict(lambda: defaultdict(Histogram))
    errors: Counter[str] = Counter()
    timeline: dict[int, Histogram] = defaultdict(Histogram)
    timeline_errors: Counter[int] = Counter()
    for part in parts:
        for label, h in part["latency"].items():
            latency[label].merge(h)
        for label, by_stage in part["stages"].items():
            for stage, h in by_stage.items():
                stages[label][stage].merge(h)
        errors.update(part["errors"])
        for window, h in part["timeline"].items():
            timeline[window].merge(h)
        timeline_errors.update(part["timeline_errors"])
    description = asdict(config)
    description.pop("api_key")
    return RunResult(config=description, elapsed=max(p["last_done"] for p in parts) - t0,
                     sent=sum(p["sent"] for p in parts), latency=dict(latency),
                     stages={k: dict(v) for k, v in stages.items()}, errors=dict(errors),
                     timeline=dict(timeline), timeline_errors=dict(timeline_errors))


def _share(total: int, index: int, parts: int) -> int:
    return total // parts + (index < total % parts)


def _worker(index: int, processes: int, config: RunConfig, start_at, go, ready, results, counters) -> None:
    try:
        client = Client(config.address, timeout=config.timeout, api_key=config.api_key)
        workload = Workload(config.workload, seed=config.seed * 1000 + index)
        client.stats()  # connected before the clock starts
    except Exception as e:  # reported to the parent, which stops the run
        ready.put(f"load worker {index}: {type(e).__name__}: {e}")
        return
    ready.put(index)
    go.wait(timeout=300)
    t0 = start_at.value
    recorder = Recorder(t0, config.timeline_step)
    sender = _Sender(client, workload, recorder, counters, index, config.timeout)
    budget = _share(config.max_requests, index, processes)
    end = t0 + config.duration
    try:
        if config.mode == "open":
            rng = np.random.default_rng(config.seed * 1000 + 500 + index)
            offsets = config.arrivals.offsets(1.0 / processes, index / processes, rng)
            sender.open_loop(t0, end, budget, offsets, config.max_outstanding)
        else:
            sender.closed_loop(t0, end, budget, _share(config.concurrency, index, processes))
        part = recorder.result()
        part["sent"] = sender.sent
    except Exception as e:
        part = {"failure": f"load worker {index}: {type(e).__name__}: {e}"}
    client.close()
    results.put(part)


class _Sender:
    """Sends one worker's calls and hands each outcome to the recorder."""

    def __init__(self, client: Client, workload: Workload, recorder: Recorder, counters, index: int,
                 timeout: float) -> None:
        self.stub, self.workload, self.recorder = client.stub, workload, recorder
        self.counters, self.slot, self.timeout = counters, 3 * index, timeout
        self.sent = 0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)

    def _count(self, offset: int) -> None:
        self.counters[self.slot + offset] += 1  # this worker's own slot: no other writer

    def open_loop(self, t0: float, end: float, budget: int, offsets: Iterator[float], max_outstanding: int) -> None:
        for offset in offsets:
            intended = t0 + offset
            if intended >= end or self.sent >= budget:
                break
            delay = intended - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self._idle:
                # Too many calls in flight: wait; the wait still counts, from `intended`.
                self._idle.wait_for(lambda: self._in_flight < max_outstanding)
                self._in_flight += 1
            label, request = self.workload.next()
            call = self.stub.Upsert if label == UPSERT else self.stub.Search
            future = call.future(iter([request]) if label == UPSERT else request, timeout=self.timeout)
            self.sent += 1
            with self._lock:
                self._count(0)
            future.add_done_callback(lambda f, label=label, intended=intended: self._finished(f, label, intended))
        with self._idle:
            self._idle.wait_for(lambda: self._in_flight == 0, timeout=self.timeout + 5)

    def _finished(self, future: grpc.Future, label: str, intended: float) -> None:
        code = future.code()
        self.recorder.done(label, intended, future.result() if code == grpc.StatusCode.OK else None, code.name)
        with self._idle:
            self._in_flight -= 1
            self._count(1)
            if code != grpc.StatusCode.OK:
                self._count(2)
            self._idle.notify_all()

    def closed_loop(self, t0: float, end: float, budget: int, callers: int) -> None:
        def caller() -> None:
            while time.monotonic() < end:
                with self._lock:  # the workload's generator is not thread-safe either
                    if self.sent >= budget:
                        return
                    self.sent += 1
                    self._count(0)
                    label, request = self.workload.next()
                started = time.monotonic()
                try:
                    if label == UPSERT:
                        response = self.stub.Upsert(iter([request]), timeout=self.timeout)
                    else:
                        response = self.stub.Search(request, timeout=self.timeout)
                    code = "OK"
                except grpc.RpcError as e:
                    response, code = None, e.code().name
                self.recorder.done(label, started, response, code)
                with self._lock:
                    self._count(1)
                    if code != "OK":
                        self._count(2)

        delay = t0 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        threads = [threading.Thread(target=caller) for _ in range(callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
