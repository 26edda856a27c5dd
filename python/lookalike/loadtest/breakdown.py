"""Where a query's time goes, per kind, alone (one caller) and under load (many
callers), set against the seed's budget. bench/latency.py runs it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from lookalike.loadtest.runner import RunConfig, RunResult, run

# The seed's budget, ms. Decoding counts against "preprocess": both turn upload
# bytes into the encoder's input.
BUDGET_MS = {"preprocess": 5.0, "encode": 20.0, "search": 5.0, "end_to_end": 200.0}
# The parts of a bar, bottom to top; "server other" is total minus the stages
# (parsing, filter compilation, the servicer), "outside" is network and gRPC.
PARTS = ("decode", "preprocess", "encode", "search", "hydrate", "server other", "outside")


@dataclass
class Row:
    kind: str
    callers: int
    parts_ms: dict[str, float]      # mean per part
    mean_ms: float                  # end to end, at the client
    p50_ms: float
    p99_ms: float
    calls: int
    errors: dict[str, int]

    def over_budget(self) -> list[str]:
        p = self.parts_ms
        checks = {"preprocess": p["decode"] + p["preprocess"], "encode": p["encode"], "search": p["search"],
                  "end_to_end": self.p99_ms}
        return [name for name, value in checks.items() if value > BUDGET_MS[name]]


def row_of(kind: str, callers: int, result: RunResult) -> Row:
    stages = result.stages.get(kind, {})

    def mean_ms(stage: str) -> float:
        return stages[stage].mean() / 1e3 if stage in stages else 0.0

    parts = {stage: mean_ms(stage) for stage in ("decode", "preprocess", "encode", "search", "hydrate", "outside")}
    inside = sum(parts[s] for s in ("decode", "preprocess", "encode", "search", "hydrate"))
    parts["server other"] = max(mean_ms("total") - inside, 0.0)
    overall = result.overall()
    return Row(kind, callers, {p: parts[p] for p in PARTS}, overall.mean() / 1e3, overall.percentile(50) / 1e3,
               overall.percentile(99) / 1e3, overall.total, result.errors)


def measure(base: RunConfig, kinds: list[str], callers: tuple[int, ...], seconds: float) -> list[Row]:
    """A closed-loop run per kind and number of callers."""
    rows = []
    for kind in kinds:
        for n in callers:
            workload = replace(base.workload, mix={kind: 1.0}, filtered_share=0.0, upsert_share=0.0)
            config = replace(base, workload=workload, mode="closed", arrivals=None, concurrency=n, duration=seconds)
            rows.append(row_of(kind, n, run(config)))
    return rows


def format_table(rows: list[Row]) -> str:
    head = (f"| kind | callers | {' | '.join(PARTS)} | p50 | p99 | calls | budget |\n"
            f"|{' --- |' * (len(PARTS) + 6)}")
    lines = [head]
    for r in rows:
        misses = r.over_budget()
        verdict = "within" if not misses else "over: " + ", ".join(misses)
        if r.errors:
            verdict += f"; errors {r.errors}"
        lines.append(f"| {r.kind} | {r.callers} | " + " | ".join(f"{r.parts_ms[p]:.2f}" for p in PARTS)
                     + f" | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.calls} | {verdict} |")
    budget = ", ".join(f"{k} {v:g} ms" for k, v in BUDGET_MS.items())
    return "\n".join(lines) + f"\n\nmean ms per stage; p50/p99 end to end at the client. Budget: {budget} " \
                              "(decode + preprocess against preprocess; p99 against end to end)."


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows) + 2), 5))
    labels = [f"{r.kind}\n{r.callers} caller{'s' if r.callers > 1 else ''}" for r in rows]
    bottom = [0.0] * len(rows)
    for part in PARTS:
        heights = [r.parts_ms[part] for r in rows]
        ax.bar(labels, heights, bottom=bottom, label=part)
        bottom = [b + h for b, h in zip(bottom, heights)]
    ax.scatter(labels, [r.p99_ms for r in rows], marker="_", s=400, color="black", label="p99 end to end", zorder=3)
    for name, colour in (("search", "tab:red"), ("encode", "tab:purple")):
        ax.axhline(BUDGET_MS[name], color=colour, linestyle=":", linewidth=1, label=f"{name} budget")
    ax.set_ylabel("mean ms per stage")
    ax.set_title("where a query's time goes (seed budget: end to end < 200 ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
