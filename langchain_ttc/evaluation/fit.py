"""Fitting a strategy table from calibration records (pure; no models).

In: one record per calibration problem: its difficulty estimates and, per budget, whether each
candidate strategy (with the pilots reused, as the router runs it) got it right::

    {"id": "arith-7-0", "level": "3", "difficulty": {"prm_score": 0.21, "agreement": 0.0},
     "correct": {"16": {"majority_vote": true, "beam_search": false, ...}, ...}}

Out: the bins (quantiles of the estimates), the best strategy per bin and budget (ties go to the
strategy more accurate over all the records, then to the simpler one: the order of the candidates),
and the held-out estimate of the router's accuracy:
with ``folds`` folds, each fold is routed by a table fitted on the others, as in the DeepMind
paper's two-fold cross-validation.

Example:
    >>> records = [{"id": str(i), "difficulty": {"agreement": i / 10}, "correct": {"4": {"a": i < 5, "b": i >= 5}}}
    ...            for i in range(10)]
    >>> fitted = fit_choices(records, estimator="agreement", bin_count=2, labels=["a", "b"])
    >>> fitted.choices[4]
    {'easy': 'a', 'hard': 'b'}

"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BIN_NAMES = {
    1: ["all"],
    2: ["easy", "hard"],
    3: ["easy", "medium", "hard"],
    4: ["easiest", "easy", "hard", "hardest"],
    5: ["level_1", "level_2", "level_3", "level_4", "level_5"],
}


def quantile_thresholds(values: list[float], count: int) -> list[float]:
    """``count - 1`` thresholds that split ``values`` into ``count`` bins of near-equal size (no repeats)."""
    ordered = sorted(values)
    thresholds: list[float] = []
    for k in range(1, count):
        position = k * len(ordered) / count
        value = ordered[min(len(ordered) - 1, math.ceil(position) - 1)] if ordered else 0.0
        cut = math.nextafter(value, math.inf)  # a bin holds values below its upper bound
        if not thresholds or cut > thresholds[-1]:
            thresholds.append(cut)
    return thresholds


def bin_names(count: int) -> list[str]:
    """Readable names for ``count`` bins, easiest first."""
    return BIN_NAMES.get(count, [f"bin_{i + 1}" for i in range(count)])


@dataclass(frozen=True)
class FittedChoices:
    """Bins and the chosen strategy label per budget and bin (see :func:`fit_choices`)."""

    thresholds: list[float]
    names: list[str]
    choices: dict[int, dict[str, str]]

    def bin_of(self, difficulty: float) -> str:
        """The bin a difficulty estimate falls in."""
        for name, upper in zip(self.names, self.thresholds, strict=False):
            if difficulty < upper:
                return name
        return self.names[-1]


def accuracy(records: Sequence[dict[str, Any]], budget: int, label: str) -> float:
    """The share of ``records`` the strategy ``label`` got right at ``budget`` (0 when empty)."""
    if not records:
        return 0.0
    return sum(bool(r["correct"][str(budget)][label]) for r in records) / len(records)


def fit_choices(
    records: Sequence[dict[str, Any]], *, estimator: str, bin_count: int, labels: Sequence[str]
) -> FittedChoices:
    """Bins from quantiles of the estimates; per budget and bin, the most accurate label.

    Ties within a bin go to the label more accurate on all the records at that budget (a bin holds few
    problems: a strategy that merely ties there on luck is told apart by the rest), then to the first in
    ``labels``.

    Raises:
        ValueError: If there are no records, or a record lacks a label at one of the budgets.

    """
    if not records:
        raise ValueError("no calibration records; calibrate on at least one problem.")
    thresholds = quantile_thresholds([r["difficulty"][estimator] for r in records], bin_count)
    names = bin_names(len(thresholds) + 1)
    fitted = FittedChoices(thresholds=thresholds, names=names, choices={})
    budgets = sorted(int(b) for b in records[0]["correct"])
    for budget in budgets:
        available = [label for label in labels if all(label in r["correct"][str(budget)] for r in records)]
        if not available:
            raise ValueError(f"budget {budget}: no strategy was run on every calibration problem.")
        per_bin: dict[str, str] = {}
        for name in names:
            members = [r for r in records if fitted.bin_of(r["difficulty"][estimator]) == name]
            per_bin[name] = max(
                available,
                key=lambda label: (
                    accuracy(members, budget, label),
                    accuracy(records, budget, label),
                    -labels.index(label),
                ),
            )
        fitted.choices[budget] = per_bin
    return fitted


def held_out_accuracy(
    records: Sequence[dict[str, Any]],
    *,
    estimator: str,
    bin_count: int,
    labels: Sequence[str],
    folds: int,
    seed: int = 0,
) -> dict[int, float]:
    """Per budget, the router's accuracy on each fold when fitted on the other folds (pooled over folds).

    Raises:
        ValueError: If ``folds`` < 2 or exceeds the number of records.

    """
    if not 2 <= folds <= len(records):
        raise ValueError(f"folds={folds} must be between 2 and the number of records ({len(records)}).")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    hits: dict[int, int] = {}
    for fold in range(folds):
        test = [records[i] for i in order[fold::folds]]
        train = [records[i] for k, i in enumerate(order) if k % folds != fold]
        fitted = fit_choices(train, estimator=estimator, bin_count=bin_count, labels=labels)
        for budget, per_bin in fitted.choices.items():
            hits[budget] = hits.get(budget, 0) + sum(
                bool(r["correct"][str(budget)][per_bin[fitted.bin_of(r["difficulty"][estimator])]]) for r in test
            )
    return {budget: count / len(records) for budget, count in sorted(hits.items())}
