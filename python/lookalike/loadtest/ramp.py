"""The highest open-loop rate a server sustains within a latency SLO: rates grow
by `factor` until a step fails, then the gap between the last good and the
first bad rate is halved `refine` times."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from lookalike.loadtest.runner import RunConfig, RunResult, run


@dataclass(frozen=True)
class Slo:
    p99_ms: float
    max_error_share: float = 0.01        # more failed calls than this fails the step
    min_achieved_share: float = 0.9      # the server must keep up with this much of the offered rate

    def verdict(self, result: RunResult) -> str:
        """"" when the step meets the SLO, else why not."""
        rate = result.offered_rate
        calls = result.ok + result.error_count
        p99 = result.overall().percentile(99) / 1e3
        if calls == 0:
            return "no call completed"
        if result.error_count / calls > self.max_error_share:
            return f"{result.error_count} of {calls} calls failed"
        if p99 > self.p99_ms:
            return f"p99 {p99:.1f} ms > {self.p99_ms:g} ms"
        if result.achieved_rate < self.min_achieved_share * rate:
            return f"achieved {result.achieved_rate:.1f}/s of {rate:g}/s offered"
        return ""


@dataclass
class RampResult:
    slo: Slo
    steps: list[tuple[float, RunResult, str]]   # offered rate, its run, verdict ("" = met)

    @property
    def best_rate(self) -> float | None:
        good = [rate for rate, _, verdict in self.steps if not verdict]
        return max(good) if good else None


def ramp(base: RunConfig, slo: Slo, start_rate: float, max_rate: float, factor: float = 1.5, refine: int = 2,
         step_seconds: float = 5.0, on_step: Callable[[float, RunResult, str], None] | None = None,
         progress: Callable[[dict], None] | None = None) -> RampResult:
    if base.arrivals is None or start_rate <= 0 or factor <= 1 or max_rate < start_rate:
        raise ValueError("a ramp needs an open-loop config, start_rate > 0, factor > 1 and max_rate >= start_rate")
    out = RampResult(slo, [])

    def step(rate: float) -> bool:
        config = replace(base, arrivals=replace(base.arrivals, rate=rate), duration=step_seconds,
                         max_requests=min(base.max_requests, int(rate * step_seconds * 1.1) + 10))
        result = run(config, progress)
        verdict = slo.verdict(result)
        out.steps.append((rate, result, verdict))
        if on_step is not None:
            on_step(rate, result, verdict)
        return not verdict

    good, bad, rate = None, None, start_rate
    while rate <= max_rate:
        if not step(rate):
            bad = rate
            break
        good, rate = rate, rate * factor
    if good is not None and bad is not None:
        for _ in range(refine):
            middle = (good + bad) / 2
            if step(middle):
                good = middle
            else:
                bad = middle
    return out
