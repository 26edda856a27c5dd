"""A long open-loop run at the seed's traffic (10M searches a day: ~116/s on
average, bursts at 5x) with upserts mixed in, watching the server's memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lookalike.client import Client
from lookalike.loadtest.runner import Arrivals, RunConfig, RunResult, run

SEED_AVERAGE_RATE = 10_000_000 / 86_400  # ~116/s


def bursty(average: float = SEED_AVERAGE_RATE, burst_factor: float = 5.0, burst_every: float = 60.0,
           burst_seconds: float = 6.0, poisson: bool = True) -> Arrivals:
    """Arrivals whose long-run mean is `average`: a base rate, and `burst_factor`
    times it for `burst_seconds` out of every `burst_every`."""
    busy = burst_seconds / burst_every
    base = average / (1 + (burst_factor - 1) * busy)
    return Arrivals(rate=base, poisson=poisson, burst_factor=burst_factor, burst_every=burst_every,
                    burst_seconds=burst_seconds)


class MemoryProbe:
    """The server's memory: its indexes' own accounting (Stats), and its resident
    set when it runs on this machine under a known pid."""

    def __init__(self, client: Client, server_pid: int | None = None) -> None:
        self.client, self.server_pid = client, server_pid

    def sample(self) -> dict:
        stats = self.client.stats()
        out = {"index_bytes": sum(s.memory_bytes for s in stats.spaces), "products": stats.products}
        if self.server_pid is not None:
            out["rss_bytes"] = _rss_bytes(self.server_pid)
        return out


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for process {pid}")


@dataclass
class SoakResult:
    run: RunResult
    memory: list[dict] = field(default_factory=list)   # samples, each with "t" (seconds from the start)

    def growth(self) -> dict[str, int]:
        """Last sample minus first, per measure."""
        if len(self.memory) < 2:
            return {}
        first, last = self.memory[0], self.memory[-1]
        return {k: last[k] - first[k] for k in first if k != "t"}


def soak(config: RunConfig, probe: MemoryProbe, sample_every: float = 10.0,
         progress: Callable[[dict], None] | None = None) -> SoakResult:
    samples = [{"t": 0.0, **probe.sample()}]
    last = time.monotonic()

    def watch(snapshot: dict) -> None:
        nonlocal last
        if time.monotonic() - last >= sample_every:
            last = time.monotonic()
            samples.append({"t": snapshot["elapsed"], **probe.sample()})
        if progress is not None:
            progress(snapshot)

    result = run(config, watch)
    samples.append({"t": result.elapsed, **probe.sample()})
    return SoakResult(result, samples)
