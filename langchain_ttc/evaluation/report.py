"""Evaluation reports: accuracy with Wilson intervals, mean samples and FLOPs, overall and per level.

In: the JSONL records ``ttc eval`` writes (one per problem). Out: a Markdown summary (and the same
rows as JSON data, :func:`summary_rows`) and a PNG plot (accuracy against N on a log2 axis, one line
per strategy, the coverage ceilings ``pass`` and ``process_pass`` dashed). Mean FLOPs per problem
read "n/a" where a model's size is unknown (a remote model), "-" for records written before costs were.
"""

from __future__ import annotations

import json
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


COSTS = ("samples", "policy_flops", "verifier_flops", "flops")
"""What a record's ``cost`` holds per run (see :mod:`langchain_ttc.evaluation.compute`)."""


def mean_cost(records: list[dict[str, Any]], key: str) -> dict[str, float | str]:
    """Mean samples and FLOPs per problem of the run ``key`` (``"<strategy>@<n>"``).

    A figure is ``"n/a"`` when some record has it unknown (a model of unknown size did work), ``"-"``
    when no record holds costs for ``key`` (older records, or a coverage ceiling).

    Example:
        >>> rows = [{"cost": {"a@2": {"samples": 2, "flops": 10.0}}}, {"cost": {"a@2": {"samples": 1, "flops": None}}}]
        >>> mean_cost(rows, "a@2")["samples"], mean_cost(rows, "a@2")["flops"]
        (1.5, 'n/a')

    """
    costs = [r["cost"][key] for r in records if key in r.get("cost", {})]
    means: dict[str, float | str] = {}
    for name in COSTS:
        values = [c.get(name) for c in costs]
        if not values:
            means[name] = "-"
        elif any(v is None for v in values):
            means[name] = "n/a"
        else:
            means[name] = sum(float(v) for v in values) / len(values)
    return means


def _figure(value: float | str, *, flops: bool) -> str:
    if isinstance(value, str):
        return value
    return f"{value:.3g}" if flops else f"{value:.1f}"


def summary_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary as JSON data: per strategy and budget, accuracy, its 95% interval, mean samples and FLOPs."""
    rows = []
    for strategy, by_n in sorted(accuracy_table(records).items()):
        for n, (hits, total) in sorted(by_n.items()):
            low, high = wilson(hits, total)
            row = {"strategy": strategy, "n": n, "correct": hits, "problems": total, "accuracy": hits / total}
            row |= {"ci_low": low, "ci_high": high, "ceiling": strategy in CEILINGS}
            rows.append(row | mean_cost(records, f"{strategy}@{n}"))
    return rows


def write_summary_rows(records: list[dict[str, Any]], path: Path) -> Path:
    """Write :func:`summary_rows` as indented JSON to ``path`` (``NaN``-free: unknown figures are strings)."""
    path.write_text(json.dumps(summary_rows(records), indent=2, allow_nan=False) + "\n")
    return path


def summary_markdown(records: list[dict[str, Any]], *, title: str) -> str:
    """The summary: accuracy per strategy and budget with 95% intervals and mean costs, per level, and usage totals."""
    lines = [
        f"# {title}",
        "",
        f"{len(records)} problems. Samples and FLOPs are means per problem; FLOPs = 2 x parameters x tokens "
        "(policy: generated + prompt tokens; verifier: tokens the PRM read).",
        "",
        "| strategy | N | accuracy | 95% CI | samples | FLOPs | policy FLOPs | verifier FLOPs |",
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in summary_rows(records):
        label = f"{row['strategy']} (ceiling)" if row["ceiling"] else row["strategy"]
        costs = [_figure(row[name], flops=name != "samples") for name in COSTS]
        costs = [costs[0], costs[3], costs[1], costs[2]]
        lines.append(
            f"| {label} | {row['n']} | {row['accuracy']:.1%} | {row['ci_low']:.1%}–{row['ci_high']:.1%} | "
            + " | ".join(costs)
            + " |"
        )
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
