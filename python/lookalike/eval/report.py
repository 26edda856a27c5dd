"""An offline evaluation (eval/offline.py) as a table, JSON, and a plot of each
metric against K."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lookalike.eval.offline import EvalReport

_METRICS = ("precision", "recall", "ndcg")


def table(report: EvalReport, detail: bool = True) -> str:
    """Per kind and K: the index's metrics, the exact scan's (in brackets) and the
    ANN recall; then one line per query (at the largest K)."""
    lines = [f"{'kind':<7} {'n':>4} {'K':>3}  {'precision':>15}  {'recall':>15}  {'nDCG':>15}  {'MRR':>15}  "
             f"{'ANN recall':>10}"]
    for kind, s in report.by_kind.items():
        for k in report.ks:
            cells = [_pair(s.metrics[f"{m}@{k}"], s.exact_metrics[f"{m}@{k}"]) for m in _METRICS]
            cells.append(_pair(s.metrics["mrr"], s.exact_metrics["mrr"]))
            lines.append(f"{kind:<7} {s.queries:>4} {k:>3}  " + "  ".join(f"{c:>15}" for c in cells)
                         + f"  {s.ann_recall[f'ann_recall@{k}']:>10.3f}")
    lines.append("index (exact scan); ANN recall: the index's top K against the exact top K")
    if detail:
        k = report.ks[-1]
        lines.append("")
        lines.append(f"{'query':<16} {'kind':<7} {'line':>5} {'relevant':>8}  {'first hit':>9}  {f'P@{k}':>6}  "
                     f"{f'R@{k}':>6}  {f'nDCG@{k}':>7}  {f'ANN@{k}':>6}")
        for r in report.results:
            first = next((rank for rank, i in enumerate(r.ranked, 1) if i in r.relevant), None)
            lines.append(f"{r.query.id[:16]:<16} {r.query.kind:<7} {r.query.line:>5} {len(r.relevant):>8}  "
                         f"{first if first else '-':>9}  {r.metrics[f'precision@{k}']:>6.3f}  "
                         f"{r.metrics[f'recall@{k}']:>6.3f}  {r.metrics[f'ndcg@{k}']:>7.3f}  "
                         f"{r.ann_recall[f'ann_recall@{k}']:>6.3f}")
    return "\n".join(lines)


def _pair(index: float, exact: float) -> str:
    return f"{index:.3f} ({exact:.3f})"


def write_json(report: EvalReport, path: str | os.PathLike[str]) -> None:
    Path(path).write_text(json.dumps(report.as_dict(), indent=2))


def plot(report: EvalReport, path: str | os.PathLike[str]) -> None:
    """A PNG: one panel per metric (and ANN recall), a line per query kind,
    solid for the index and dashed for the exact scan."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    panels = (*_METRICS, "ann_recall")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), sharey=True)
    ks = list(report.ks)
    for ax, metric in zip(axes, panels):
        for n, (kind, s) in enumerate(report.by_kind.items()):
            colour = f"C{n}"
            if metric == "ann_recall":
                ax.plot(ks, [s.ann_recall[f"ann_recall@{k}"] for k in ks], "o-", color=colour, label=kind)
                continue
            ax.plot(ks, [s.metrics[f"{metric}@{k}"] for k in ks], "o-", color=colour, label=f"{kind} index")
            ax.plot(ks, [s.exact_metrics[f"{metric}@{k}"] for k in ks], "x--", color=colour, label=f"{kind} exact")
        ax.set_title("ANN recall" if metric == "ann_recall" else f"{metric}@K")
        ax.set_xlabel("K")
        ax.set_xticks(ks)
        ax.set_ylim(0, 1.05)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
