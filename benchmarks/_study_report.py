"""The study's records as tables and plots: accuracy by band and N, FLOPs, the gap to pass@N.

In: the records directory ``benchmarks/study.py`` writes. Out: :class:`StudyData` (every outcome by
group, key and problem), Markdown tables and matplotlib figures. Pure reading: no models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _report import wilson
from _stats import Flops, flops, share_closed
from _study_runs import read_outcomes

POLICY = "policy"
"""The records group of the policies' own runs (greedy answers, the pool's ceilings)."""


@dataclass
class StudyData:
    """Everything the report reads: design, problems, models, outcomes[group][key][id], timings."""

    design: dict[str, Any]
    thresholds: list[float]
    problems: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]
    outcomes: dict[str, dict[str, dict[str, dict[str, Any]]]]
    timings: list[dict[str, Any]]

    def band_of(self, problem_id: str) -> str:
        return self._bands[problem_id]

    def __post_init__(self) -> None:
        self._bands = {p["id"]: p["band"] for p in self.problems}

    def records(self, group: str, key: str) -> dict[str, dict[str, Any]]:
        return self.outcomes.get(group, {}).get(key, {})

    @property
    def nested(self) -> set[str]:
        """The problems every (verifier, N) runs on: the first ``per_band_other`` of each band."""
        return {p["id"] for p in self.problems if p["rank"] < self.design["per_band_other"]}

    def correct(
        self, group: str, key: str, bands: Iterable[str] | None = None, ids: set[str] | None = None
    ) -> dict[str, bool]:
        """Problem id -> right, for the problems of ``bands`` (all when ``None``) among ``ids`` (all when ``None``)."""
        keep = None if bands is None else set(bands)
        return {
            i: bool(r["correct"])
            for i, r in self.records(group, key).items()
            if (keep is None or r["band"] in keep) and (ids is None or i in ids)
        }

    def keys(self, group: str) -> list[str]:
        return sorted(self.outcomes.get(group, {}), key=lambda k: (k.rsplit("@", 1)[0], int(k.rsplit("@", 1)[1])))

    def parameters(self, name: str) -> int:
        return int(self.models.get(name, {}).get("parameters", 0))

    def flops(self, group: str, key: str, ids: Iterable[str] | None = None) -> Flops | None:
        """Mean FLOPs per problem of a run (over ``ids`` when given): every model it involved."""
        rows = self.records(group, key)
        chosen = [rows[i] for i in (ids if ids is not None else rows) if i in rows]
        if not chosen:
            return None
        policy = self.parameters("large" if key.startswith("large_greedy") else "small")
        verifier = self.parameters(group) if group != POLICY else 0
        parts = [flops(r["usage"], policy_parameters=policy, verifier_parameters=verifier) for r in chosen]
        return Flops(
            policy_generated=sum(p.policy_generated for p in parts) / len(parts),
            policy_prompt=sum(p.policy_prompt for p in parts) / len(parts),
            verifier=sum(p.verifier for p in parts) / len(parts),
        )


def load(records: Path) -> StudyData:
    """Read every outcome file under ``records`` (the pool and the scores are inputs, not outcomes)."""
    saved = json.loads((records / "problems.json").read_text())
    outcomes: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for path in sorted(records.glob("*/*@*.jsonl")):
        outcomes.setdefault(path.parent.name, {})[path.stem] = read_outcomes(path)
    timings = (
        [json.loads(line) for line in (records / "timings.jsonl").read_text().splitlines()]
        if (records / "timings.jsonl").exists()
        else []
    )
    models = json.loads((records / "models.json").read_text()) if (records / "models.json").exists() else {}
    return StudyData(
        design=json.loads((records / "design.json").read_text()),
        thresholds=saved["thresholds"],
        problems=saved["test"],
        models=models,
        outcomes=outcomes,
        timings=timings,
    )


def pct(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1%}"


def cell(hits: dict[str, bool]) -> str:
    """Accuracy with its 95% Wilson interval and the count, or empty when not run."""
    if not hits:
        return ""
    low, high = wilson(sum(hits.values()), len(hits))
    return f"{sum(hits.values()) / len(hits):.1%} ({low:.0%}–{high:.0%}, n={len(hits)})"


def accuracy_table(
    data: StudyData,
    group: str,
    strategies: Sequence[str],
    budgets: Sequence[int],
    bands: Sequence[str] | None,
    ids: set[str] | None = None,
) -> list[str]:
    """Rows: strategies and the ceilings; columns: N; cells: accuracy (interval, problems), on ``ids`` if given."""
    lines = ["| strategy | " + " | ".join(f"N={n}" for n in budgets) + " |", "| --- |" + " ---: |" * len(budgets)]
    for strategy in strategies:
        source = POLICY if strategy in ("pass", "process_pass") else group
        row = [cell(data.correct(source, f"{strategy}@{n}", bands, ids)) for n in budgets]
        if any(row):
            lines.append(f"| {strategy} | " + " | ".join(row) + " |")
    for name in ("small_greedy", "large_greedy"):
        greedy = cell(data.correct(POLICY, f"{name}@1", bands, ids))
        lines.append(f"| {name} | {greedy} |" + " |" * (len(budgets) - 1))
    return [*lines, ""]


def flops_table(data: StudyData, group: str, strategies: Sequence[str], budgets: Sequence[int]) -> list[str]:
    """Mean FLOPs per problem of every run, all models and the policy alone, beside its accuracy."""
    lines = [
        "| run | FLOPs, all models | policy (generated + prompt) | verifier | vs large greedy | accuracy |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    large = data.flops(POLICY, "large_greedy@1")
    rows = [(POLICY, "large_greedy@1"), (POLICY, "small_greedy@1")]
    rows += [(group, f"{s}@{n}") for s in strategies for n in budgets]
    for source, key in rows:
        f = data.flops(source, key)
        if f is None:
            continue
        ratio = f"{f.total / large.total:.2f}x" if large and large.total else ""
        lines.append(
            f"| {key} | {f.total:.3g} | {f.policy:.3g} | {f.verifier:.3g} | {ratio} | "
            f"{cell(data.correct(source, key))} |"
        )
    return [*lines, ""]


def gap_table(data: StudyData, group: str, strategies: Sequence[str], budgets: Sequence[int]) -> list[str]:
    """The gap to pass@N on the same problems, and the share of the small greedy → pass@N gap closed."""
    lines = [
        "| N | strategy | accuracy | pass@N | gap (points) | share of greedy → pass@N closed | process pass@N |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in budgets:
        ceiling, process = data.correct(POLICY, f"pass@{n}"), data.correct(POLICY, f"process_pass@{n}")
        greedy = data.correct(POLICY, "small_greedy@1")
        for strategy in strategies:
            hits = data.correct(group, f"{strategy}@{n}")
            ids = [i for i in hits if i in ceiling and i in greedy]
            if not ids:
                continue
            acc = sum(hits[i] for i in ids) / len(ids)
            top = sum(ceiling[i] for i in ids) / len(ids)
            base = sum(greedy[i] for i in ids) / len(ids)
            proc = sum(process.get(i, False) for i in ids) / len(ids)
            lines.append(
                f"| {n} | {strategy} | {acc:.1%} | {top:.1%} | {(top - acc) * 100:.1f} | "
                f"{pct(share_closed(acc, base, top))} | {proc:.1%} |"
            )
    return [*lines, ""]


def _rate(hits: dict[str, bool]) -> float:
    return sum(hits.values()) / len(hits) if hits else math.nan


def plot_accuracy(data: StudyData, group: str, strategies: Sequence[str], bands: Sequence[str], path: Path) -> None:
    """Accuracy against N, all problems and each band (one panel each), the greedy answers as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("all problems", None), *((band, [band]) for band in bands)]
    figure, axes = plt.subplots(2, 3, figsize=(15, 9))
    for axis, (title, subset) in zip(axes.flat, panels, strict=False):
        for strategy in [*strategies, "pass", "process_pass"]:
            source = POLICY if "pass" in strategy else group
            ns = sorted({int(k.rsplit("@", 1)[1]) for k in data.keys(source) if k.rsplit("@", 1)[0] == strategy})
            values = [_rate(data.correct(source, f"{strategy}@{n}", subset, data.nested)) for n in ns]
            style = (
                {"linestyle": "--", "color": "grey" if strategy == "pass" else "black"}
                if "pass" in strategy
                else {"marker": "o"}
            )
            if ns:
                axis.plot(ns, values, label=strategy, **style)
        for name, color in (("large_greedy", "tab:red"), ("small_greedy", "tab:grey")):
            value = _rate(data.correct(POLICY, f"{name}@1", subset, data.nested))
            if not math.isnan(value):
                axis.axhline(value, color=color, linestyle=":", label=name.replace("_", " "))
        axis.set_xscale("log", base=2)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("N (samples, beams or particles)")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{title} (nested set: the same problems at every N)")
        axis.grid(alpha=0.3)
    axes.flat[-1].axis("off")
    axes.flat[0].legend(fontsize=7, loc="lower right")
    figure.suptitle(f"Arith world v3: small policy + verifier `{group}` against the large policy")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_flops(data: StudyData, group: str, strategies: Sequence[str], bands: Sequence[str], path: Path) -> None:
    """Accuracy against mean FLOPs per problem (every model), all problems and the hardest band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for axis, (title, subset) in zip(axes, (("all problems", None), (bands[-1], [bands[-1]])), strict=True):
        for strategy in strategies:
            points = []
            for key in (k for k in data.keys(group) if k.rsplit("@", 1)[0] == strategy):
                hits = data.correct(group, key, subset, data.nested)
                f = data.flops(group, key, hits)
                if f is not None:
                    points.append((f.total, _rate(hits)))
            if points:
                axis.plot(*zip(*sorted(points), strict=True), marker="o", label=strategy)
        for name, color in (("large_greedy", "tab:red"), ("small_greedy", "tab:grey")):
            hits = data.correct(POLICY, f"{name}@1", subset, data.nested)
            f = data.flops(POLICY, f"{name}@1", hits)
            if f is not None:
                axis.plot(
                    [f.total],
                    [_rate(hits)],
                    marker="*",
                    markersize=14,
                    linestyle="",
                    color=color,
                    label=name.replace("_", " "),
                )
        axis.set_xscale("log")
        axis.set_xlabel("mean inference FLOPs per problem (2 x parameters x tokens, policy and verifier)")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{title} (nested set)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
