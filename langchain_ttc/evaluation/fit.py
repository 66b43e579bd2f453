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

Choosing the budget too (:func:`fit_budgets`, a :class:`BudgetChoice`): for every maximum budget
``M`` and every bin, the smallest calibrated budget ``N <= M`` whose best strategy is within
``tolerance`` (an accuracy gap: 0.01 is one point) of the best strategy at ``M`` in that bin, and that
strategy. Easy bins then spend little, hard ones the maximum. Its held-out estimate
(:func:`held_out_budget_router`) gives the accuracy and the mean budget spent, each fold routed by a
fit on the others.

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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from langchain_ttc.core.errors import format_validation_error

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
            per_bin[name] = _best(members, records, budget, available, labels)
        fitted.choices[budget] = per_bin
    return fitted


def _best(
    members: Sequence[dict[str, Any]], records: Sequence[dict[str, Any]], budget: int, available: Sequence[str],
    labels: Sequence[str],
) -> str:  # fmt: skip
    """The most accurate label on ``members`` (ties: more accurate on all ``records``, then the earlier label)."""
    return max(
        available,
        key=lambda label: (accuracy(members, budget, label), accuracy(records, budget, label), -labels.index(label)),
    )


DEFAULT_TOLERANCE = 0.01
"""The tolerance when only a maximum budget is given: one accuracy point."""


class BudgetChoice(BaseModel):
    """How ``ttc calibrate`` chooses the budget per bin: a maximum budget, a tolerance, or both.

    Neither set: no budget is chosen (the table routes strategies only, at the user's N). Either set:
    every bin gets the smallest budget within ``tolerance`` of the best at each maximum budget.

    Example:
        >>> BudgetChoice(max_budget=64).slack, BudgetChoice(tolerance=0.0).enabled, BudgetChoice().enabled
        (0.01, True, False)

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_budget: int | None = Field(
        None,
        ge=1,
        description="The most a problem may spend (pilots included), one of the calibrated budgets; a table "
        "entry is fitted for every calibrated budget up to it. None: the largest calibrated budget.",
    )
    tolerance: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="How far below the best accuracy at the maximum budget a bin's smaller budget may be, as a "
        "share in [0, 1) (0.01: one point; 0: only a budget as accurate as the best). None: 0.01 when "
        "max_budget is set.",
    )

    @property
    def enabled(self) -> bool:
        """Whether a budget is chosen per bin (a maximum budget or a tolerance was stated)."""
        return self.max_budget is not None or self.tolerance is not None

    @property
    def slack(self) -> float:
        """The tolerance used: ``tolerance``, or one point."""
        return DEFAULT_TOLERANCE if self.tolerance is None else self.tolerance

    def max_budgets(self, budgets: Sequence[int]) -> list[int]:
        """The maximum budgets a table gets entries for: each calibrated budget up to ``max_budget``.

        Raises:
            ValueError: If ``max_budget`` is not one of ``budgets``.

        """
        if self.max_budget is not None and self.max_budget not in budgets:
            raise ValueError(
                f"--max-budget={self.max_budget} is not a calibrated budget (--budgets {' '.join(map(str, budgets))}); "
                f"pass one of them, or add it to --budgets."
            )
        return sorted(b for b in budgets if self.max_budget is None or b <= self.max_budget)


def budget_choice(*, max_budget: int | None = None, tolerance: float | None = None) -> BudgetChoice:
    """A checked :class:`BudgetChoice`; a bad option raises a ``ValueError`` naming its flag, value and fix.

    Example:
        >>> budget_choice(tolerance=1.0)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: --tolerance=1.0 is invalid: input should be less than 1 (How far below the best ...).

    """
    try:
        return BudgetChoice(max_budget=max_budget, tolerance=tolerance)
    except ValidationError as error:
        names = {"max_budget": "--max-budget", "tolerance": "--tolerance"}
        raise ValueError(format_validation_error(error, BudgetChoice, names=names)) from None


@dataclass(frozen=True)
class FittedBudgets:
    """Bins and, per maximum budget and bin, the chosen (budget, strategy label) (see :func:`fit_budgets`)."""

    thresholds: list[float]
    names: list[str]
    choices: dict[int, dict[str, tuple[int, str]]]

    def bin_of(self, difficulty: float) -> str:
        """The bin a difficulty estimate falls in."""
        return FittedChoices(self.thresholds, self.names, {}).bin_of(difficulty)


def fit_budgets(
    records: Sequence[dict[str, Any]],
    *,
    estimator: str,
    bin_count: int,
    labels: Sequence[str],
    choice: BudgetChoice,
) -> FittedBudgets:
    """Per maximum budget ``M`` and bin: the smallest budget whose best label is within the tolerance of ``M``'s best.

    The best label at a budget is :func:`fit_choices`' pick (ties: more accurate on all records, then
    the earlier label); a budget qualifies when that label's accuracy in the bin is at least the best
    accuracy at ``M`` in the bin minus the tolerance (``M`` itself always does). A tolerance of 0 keeps
    a smaller budget only when it is as accurate as the best at ``M``.

    Raises:
        ValueError: As :func:`fit_choices`, or if ``choice.max_budget`` is not a calibrated budget.

    Example:
        >>> records = [{"id": str(i), "difficulty": {"agreement": i / 4},
        ...             "correct": {"4": {"a": i < 2}, "16": {"a": True}}} for i in range(4)]
        >>> fit_budgets(records, estimator="agreement", bin_count=2, labels=["a"], choice=BudgetChoice()).choices[16]
        {'easy': (4, 'a'), 'hard': (16, 'a')}

    """
    by_budget = fit_choices(records, estimator=estimator, bin_count=bin_count, labels=labels)
    budgets = sorted(by_budget.choices)
    chosen: dict[int, dict[str, tuple[int, str]]] = {}
    for most in choice.max_budgets(budgets):
        per_bin: dict[str, tuple[int, str]] = {}
        for name in by_budget.names:
            members = [r for r in records if by_budget.bin_of(r["difficulty"][estimator]) == name]
            best = accuracy(members, most, by_budget.choices[most][name])
            per_bin[name] = next(
                (b, by_budget.choices[b][name])
                for b in budgets
                if b <= most and accuracy(members, b, by_budget.choices[b][name]) >= best - choice.slack - 1e-12
            )
        chosen[most] = per_bin
    return FittedBudgets(thresholds=by_budget.thresholds, names=by_budget.names, choices=chosen)


def _folds(
    records: Sequence[dict[str, Any]], folds: int, seed: int
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Each fold's (train, test) records: a seeded shuffle dealt into ``folds`` parts.

    Raises:
        ValueError: If ``folds`` < 2 or exceeds the number of records.

    """
    if not 2 <= folds <= len(records):
        raise ValueError(f"folds={folds} must be between 2 and the number of records ({len(records)}).")
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    for fold in range(folds):
        test = [records[i] for i in order[fold::folds]]
        train = [records[i] for k, i in enumerate(order) if k % folds != fold]
        yield train, test


def held_out_budget_router(
    records: Sequence[dict[str, Any]],
    *,
    estimator: str,
    bin_count: int,
    labels: Sequence[str],
    choice: BudgetChoice,
    folds: int,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """Per maximum budget: the held-out accuracy of the budget-choosing router and the mean budget it spends.

    Each fold is routed by :func:`fit_budgets` on the other folds (the folds of :func:`held_out_accuracy`).

    Raises:
        ValueError: If ``folds`` < 2 or exceeds the number of records.

    """
    hits: dict[int, int] = {}
    spent: dict[int, int] = {}
    for train, test in _folds(records, folds, seed):
        fitted = fit_budgets(train, estimator=estimator, bin_count=bin_count, labels=labels, choice=choice)
        for most, per_bin in fitted.choices.items():
            for record in test:
                budget, label = per_bin[fitted.bin_of(record["difficulty"][estimator])]
                hits[most] = hits.get(most, 0) + bool(record["correct"][str(budget)][label])
                spent[most] = spent.get(most, 0) + budget
    return {
        most: {"accuracy": hits[most] / len(records), "mean_budget": spent[most] / len(records)}
        for most in sorted(hits)
    }


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
    hits: dict[int, int] = {}
    for train, test in _folds(records, folds, seed):
        fitted = fit_choices(train, estimator=estimator, bin_count=bin_count, labels=labels)
        for budget, per_bin in fitted.choices.items():
            hits[budget] = hits.get(budget, 0) + sum(
                bool(r["correct"][str(budget)][per_bin[fitted.bin_of(r["difficulty"][estimator])]]) for r in test
            )
    return {budget: count / len(records) for budget, count in sorted(hits.items())}
