"""Evaluation reports: accuracy with Wilson intervals, overall and per level, as a table and a plot.

In: the JSONL records ``ttc eval`` writes (one per problem). Out: a Markdown summary and a PNG plot
(accuracy against N on a log2 axis, one line per strategy, the coverage ceilings ``pass`` and
``process_pass`` dashed).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

CEILINGS = ("pass", "process_pass")
"""Not strategies: the share of problems some sample answers right (or gets right at every step)."""


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion.

    Example:
        >>> tuple(round(x, 3) for x in wilson(8, 10))
        (0.49, 0.943)

    """
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy_table(records: list[dict[str, Any]]) -> dict[str, dict[int, tuple[int, int]]]:
    """Per strategy, per budget: (correct, total)."""
    table: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for record in records:
        for key, correct in record["correct"].items():
            strategy, n = key.rsplit("@", 1)
            hits, total = table[strategy].get(int(n), (0, 0))
            table[strategy][int(n)] = (hits + int(correct), total + 1)
    return dict(table)


def summary_markdown(records: list[dict[str, Any]], *, title: str) -> str:
    """The summary: accuracy per strategy and budget with 95% intervals, per level, and usage totals."""
    lines = [
        f"# {title}",
        "",
        f"{len(records)} problems.",
        "",
        "| strategy | N | accuracy | 95% CI |",
        "| --- | ---: | ---: | --- |",
    ]
    for strategy, by_n in sorted(accuracy_table(records).items()):
        label = f"{strategy} (ceiling)" if strategy in CEILINGS else strategy
        for n, (hits, total) in sorted(by_n.items()):
            low, high = wilson(hits, total)
            lines.append(f"| {label} | {n} | {hits / total:.1%} | {low:.1%}–{high:.1%} |")
    levels = sorted({r["level"] for r in records}, key=lambda level: (len(level), level))
    if len(levels) > 1:
        lines += ["", "Accuracy per level at the largest N:", "", "| strategy | " + " | ".join(levels) + " |"]
        lines.append("| --- |" + " ---: |" * len(levels))
        for strategy, by_n in sorted(accuracy_table(records).items()):
            n = max(by_n)
            cells = []
            for level in levels:
                subset = [r for r in records if r["level"] == level]
                hits = sum(int(r["correct"][f"{strategy}@{n}"]) for r in subset if f"{strategy}@{n}" in r["correct"])
                cells.append(f"{hits / len(subset):.0%}" if subset else "-")
            lines.append(f"| {strategy}@{n} | " + " | ".join(cells) + " |")
    usage: dict[str, float] = defaultdict(float)
    for record in records:
        for run in record["usage"].values():
            for name, value in run.items():
                usage[name] += value
    lines += ["", "Usage: " + ", ".join(f"{name} {value:.0f}" for name, value in usage.items())]
    return "\n".join(lines) + "\n"


def plot(records: list[dict[str, Any]], path: Path, *, title: str) -> Path:
    """Accuracy against N (log2 axis), one line per strategy, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for strategy, by_n in sorted(accuracy_table(records).items()):
        ns = sorted(by_n)
        style = {"linestyle": "--", "marker": None} if strategy in CEILINGS else {"marker": "o"}
        axis.plot(ns, [by_n[n][0] / by_n[n][1] for n in ns], label=strategy, **style)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("N (samples or beams)")
    axis.set_ylabel("accuracy")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
