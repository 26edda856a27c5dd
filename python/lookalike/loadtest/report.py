"""Results for machines (JSON) and for people (text, PNG plots, a live progress
line). Latencies are reported in milliseconds."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from lookalike.loadtest.histogram import Histogram
from lookalike.loadtest.ramp import RampResult
from lookalike.loadtest.runner import RunResult
from lookalike.loadtest.soak import SoakResult


def machine() -> dict:
    """Where the numbers came from (a shared machine's load average included)."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def run_summary(result: RunResult) -> dict:
    return {
        "config": result.config,
        "offered_rate": result.offered_rate,
        "achieved_rate": result.achieved_rate,
        "elapsed_s": result.elapsed,
        "sent": result.sent,
        "ok": result.ok,
        "errors": result.errors,
        "latency_ms": {"all": result.overall().summary_ms(),
                       **{label: h.summary_ms() for label, h in sorted(result.latency.items())}},
        "stages_ms": {label: {stage: h.summary_ms() for stage, h in stages.items()}
                      for label, stages in sorted(result.stages.items())},
        "timeline": [{"t": window * result.config["timeline_step"], **_brief(h),
                      "errors": result.timeline_errors.get(window, 0)}
                     for window, h in sorted(result.timeline.items())],
        # The merged histogram itself, so that runs can be combined later.
        "histogram_us": result.overall().to_json(),
    }


def ramp_summary(ramp: RampResult) -> dict:
    return {"slo": vars(ramp.slo), "best_rate": ramp.best_rate,
            "steps": [{"rate": rate, "verdict": verdict or "ok", **run_summary(result)}
                      for rate, result, verdict in ramp.steps]}


def soak_summary(soak: SoakResult) -> dict:
    return {**run_summary(soak.run), "memory": soak.memory, "memory_growth": soak.growth()}


def _brief(h: Histogram) -> dict:
    s = h.summary_ms()
    return {"count": s["count"], "p50": s["p50"], "p99": s["p99"], "max": s["max"]}


def write_json(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **data}, indent=2, default=float))


def format_run(result: RunResult) -> str:
    """A table of latency by label, the rates and the errors."""
    offered = f"offered {result.offered_rate:g}/s, " if result.offered_rate else ""
    lines = [f"{offered}achieved {result.achieved_rate:.1f}/s over {result.elapsed:.1f} s; "
             f"{result.ok} ok, errors {result.errors or 'none'}",
             f"{'label':<22}{'count':>8}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}  (ms)"]
    rows = [("all", result.overall()), *sorted(result.latency.items())]
    for label, h in rows:
        s = h.summary_ms()
        lines.append(f"{label:<22}{s['count']:>8}" + "".join(f"{s[q]:>9.2f}" for q in ("p50", "p90", "p99",
                                                                                       "p99.9", "max")))
    return "\n".join(lines)


def progress_printer(stream: TextIO = sys.stderr) -> Callable[[dict], None]:
    """A progress line, rewritten in place on a terminal, once every 5 s otherwise."""
    live = stream.isatty()
    last = [0.0]

    def show(s: dict) -> None:
        if not live and time.monotonic() - last[0] < 5:
            return
        last[0] = time.monotonic()
        elapsed = max(s["elapsed"], 1e-9)
        line = (f"{min(s['elapsed'], s['duration']):6.1f}/{s['duration']:g} s  sent {s['sent']}  done {s['done']}"
                f"  {s['done'] / elapsed:.1f}/s  in flight {s['sent'] - s['done']}  errors {s['errors']}")
        stream.write(f"\r{line:<100}" if live else line + "\n")
        stream.flush()

    return show


# --- plots -----------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_timeline(result: RunResult, path: Path, title: str = "") -> None:
    """Latency over time (by intended send time), and errors."""
    plt = _pyplot()
    step = result.config["timeline_step"]
    windows = sorted(result.timeline)
    t = [w * step for w in windows]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for q in (50, 99, 99.9):
        ax.plot(t, [result.timeline[w].percentile(q) / 1e3 for w in windows], label=f"p{q:g}")
    ax.plot(t, [result.timeline[w].max / 1e3 for w in windows], ":", label="max")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the start (intended send time)")
    ax.set_ylabel("latency, ms")
    errors = sorted(result.timeline_errors)
    if errors:
        twin = ax.twinx()
        twin.bar([w * step for w in errors], [result.timeline_errors[w] for w in errors], width=step,
                 color="red", alpha=0.3, label="errors")
        twin.set_ylabel("errors per window")
    ax.legend(loc="upper left")
    ax.set_title(title or f"latency over time ({result.config['mode']} loop)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ramp(ramp: RampResult, path: Path, title: str = "") -> None:
    """Latency percentiles against the offered rate, with the SLO."""
    plt = _pyplot()
    steps = sorted(ramp.steps, key=lambda s: s[0])
    rates = [rate for rate, _, _ in steps]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for q in (50, 90, 99, 99.9):
        ax.plot(rates, [r.overall().percentile(q) / 1e3 for _, r, _ in steps], "o-", label=f"p{q:g}")
    ax.axhline(ramp.slo.p99_ms, color="grey", linestyle="--", label=f"SLO p99 {ramp.slo.p99_ms:g} ms")
    if ramp.best_rate:
        ax.axvline(ramp.best_rate, color="green", linestyle=":", label=f"best {ramp.best_rate:.0f}/s")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate, calls/s")
    ax.set_ylabel("latency, ms")
    ax.legend()
    ax.set_title(title or "latency vs offered rate (open loop)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
