"""Calibrating a strategy table (``ttc calibrate``): run the candidates, bin by difficulty, pick per bin.

In: calibration problems (any dataset the evaluation harness reads), the engines, the budgets and
the candidate strategies. Out: one record per problem (see :mod:`.fit`), a
:class:`~langchain_ttc.strategies.routing.table.StrategyTable` fitted on all of them with the held-out
accuracy of the routing in its ``calibration`` section, and a plot of accuracy per bin per strategy.

Each problem is run the way the compute-optimal graph runs it: ``pilots`` samples seeded with the
seed (the graph's own :func:`~langchain_ttc.strategies.routing.compute_optimal.draw_pilots`), their
difficulty under every estimator, then each candidate at each budget with the pilots reused
(strategies seeded with seed + 1). The three sample-then-select rules share one sample set per
budget (the same samples each of their graphs would draw with the same seed).

Example:
    >>> calibration = Calibration(policy, prm, budgets=[4, 16], candidates=default_candidates())  # doctest: +SKIP
    >>> records = calibration.run(problems, concurrency=8)  # doctest: +SKIP

"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from tqdm import tqdm

from langchain_ttc.core.types import Candidate
from langchain_ttc.evaluation.datasets import EvalProblem
from langchain_ttc.evaluation.fit import accuracy, fit_choices, held_out_accuracy
from langchain_ttc.evaluation.report import wilson
from langchain_ttc.evaluation.run import grade
from langchain_ttc.strategies.config import StrategyConfig, validated
from langchain_ttc.strategies.driver import run_calls
from langchain_ttc.strategies.generation import conversation_from_input, reaggregated
from langchain_ttc.strategies.routing.compute_optimal import draw_pilots, strategy_seed
from langchain_ttc.strategies.routing.difficulty import ESTIMATORS
from langchain_ttc.strategies.routing.table import (
    DifficultyBin,
    StrategyChoice,
    StrategyTable,
    choice_options,
    routable_strategies,
)
from langchain_ttc.wiring import applicable, create_strategy_graph, sampler_for, strategy_spec


def default_candidates(**options: Any) -> list[StrategyChoice]:
    """Every routable strategy, each with the ``options`` its config has (e.g. ``beam_width=4``, ``critic="prm"``)."""
    return [
        StrategyChoice(strategy=s, options={k: v for k, v in options.items() if k in choice_options(s)})
        for s in routable_strategies()
    ]


class Calibration:
    """The graphs and settings of one calibration run (built once, shared by every problem).

    Args:
        policy: The policy engine.
        prm: The PRM engine.
        budgets: The budgets to calibrate.
        candidates: The strategies to choose from (ties go to the earlier one).
        pilots: Pilot samples per problem (they count against every budget).
        aggregation: How step scores become one score.
        seed: The run's seed (pilots and strategies draw from seeds derived from it, as the compute-optimal
            graph's do).
        options: Sampling options for every strategy (``temperature``, ``max_tokens``, ...).

    """

    def __init__(
        self,
        policy: Any,
        prm: Any,
        *,
        budgets: Sequence[int],
        candidates: Sequence[StrategyChoice],
        pilots: int = 4,
        aggregation: str = "last",
        seed: int = 0,
        **options: Any,
    ) -> None:
        if not budgets or min(budgets) < pilots:
            raise ValueError(f"--budgets {list(budgets)} must be non-empty and each >= --pilots {pilots}.")
        self.policy, self.prm = policy, prm
        self.budgets = sorted(budgets)
        self.candidates = list(candidates)
        self.pilots, self.aggregation, self.seed = pilots, aggregation, seed
        self.options = options
        common = {**options, "aggregation": aggregation, "seed": strategy_seed(seed)}
        self.graphs: dict[tuple[int, str], Any] = {}
        sampler = sampler_for([c.strategy for c in self.candidates])
        for budget in self.budgets:
            if sampler is not None and budget > pilots:
                self.graphs[budget, "samples"] = create_strategy_graph(
                    sampler, policy, prm, n=budget, **applicable(sampler, common)
                )
            for choice in self.candidates:
                n = choice.n(budget, pilots)  # 0: it does not fit after the pilots
                if strategy_spec(choice.strategy).vote is None and n >= 1:
                    options = applicable(choice.strategy, {**common, **choice.options})
                    self.graphs[budget, choice.label()] = create_strategy_graph(choice.strategy, policy, prm, n=n,
                                                                                **options)  # fmt: skip

    def run_problem(self, problem: EvalProblem) -> dict[str, Any]:
        """Pilots, difficulty estimates, and every runnable candidate at every budget on one problem."""
        config = validated(StrategyConfig, n=self.pilots, seed=self.seed, **applicable_to_all(self.options))
        _, conversation = conversation_from_input({"problem": problem.problem}, system_prompt=config.system_prompt)
        draw = draw_pilots(
            self.policy, self.prm, problem.problem, conversation, count=self.pilots, config=config,
            aggregation=self.aggregation,
        )  # fmt: skip
        pilots, _ = run_calls(draw)
        data = {"problem": problem.problem, "pilots": [c.model_dump() for c in pilots]}
        correct: dict[str, dict[str, bool]] = {}
        for budget in self.budgets:
            samples = pilots
            if (budget, "samples") in self.graphs:
                result = self.graphs[budget, "samples"].invoke(data)["result"]
                samples = [Candidate.model_validate(c) for c in result["candidates"]]
            per: dict[str, bool] = {}
            for choice in self.candidates:
                vote = strategy_spec(choice.strategy).vote
                if vote is not None:
                    pool = reaggregated(samples, aggregation=choice.options.get("aggregation", self.aggregation))
                    chosen = vote(pool).chosen_index
                    per[choice.label()] = grade(None if chosen is None else pool[chosen].answer, problem.answer)
                elif (budget, choice.label()) in self.graphs:
                    answer = self.graphs[budget, choice.label()].invoke(data)["answer"]
                    per[choice.label()] = grade(answer, problem.answer)
            correct[str(budget)] = per
        difficulty = {name: function(pilots) for name, (function, _) in ESTIMATORS.items()}
        return {"id": problem.id, "level": problem.level, "difficulty": difficulty, "correct": correct}

    def run(
        self, problems: Sequence[EvalProblem], *, concurrency: int = 1, progress: bool = True
    ) -> list[dict[str, Any]]:
        """Run every problem (``concurrency`` at a time); records in the problems' order.

        With ``progress``, a progress bar (tqdm) goes to stderr, a terminal or not.
        """
        records: dict[str, dict[str, Any]] = {}
        bar_format = "[{n_fmt}/{total_fmt}] calibrating, {elapsed} elapsed, ETA {remaining}"
        with (
            ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool,
            tqdm(total=len(problems), file=sys.stderr, disable=not progress, bar_format=bar_format) as bar,
        ):
            futures = [pool.submit(self.run_problem, p) for p in problems]
            for future in as_completed(futures):
                record = future.result()
                records[record["id"]] = record
                bar.update()
        return [records[p.id] for p in problems]


def fit_table(
    records: Sequence[dict[str, Any]],
    *,
    candidates: Sequence[StrategyChoice],
    estimator: str,
    bin_count: int,
    pilots: int,
    aggregation: str,
    folds: int,
    provenance: dict[str, Any],
) -> StrategyTable:
    """The table fitted on all ``records``, with held-out and per-strategy accuracy in ``calibration``."""
    by_label = {c.label(): c for c in candidates}
    labels = list(by_label)
    fitted = fit_choices(records, estimator=estimator, bin_count=bin_count, labels=labels)
    held_out = held_out_accuracy(records, estimator=estimator, bin_count=bin_count, labels=labels, folds=folds)
    budgets = sorted(fitted.choices)
    fixed = {
        str(b): {
            label: round(accuracy(records, b, label), 4) for label in labels if label in records[0]["correct"][str(b)]
        }
        for b in budgets
    }
    bins = [DifficultyBin(name=name, upper=upper) for name, upper in zip(fitted.names, fitted.thresholds, strict=False)]
    bins.append(DifficultyBin(name=fitted.names[-1]))
    return StrategyTable(
        estimator=estimator,
        pilots=pilots,
        aggregation=aggregation,
        bins=bins,
        budgets={b: {name: by_label[label] for name, label in fitted.choices[b].items()} for b in budgets},
        calibration={
            **provenance,
            "problems": len(records),
            "folds": folds,
            "held_out_router_accuracy": {str(b): round(a, 4) for b, a in held_out.items()},
            "fixed_strategy_accuracy": fixed,
        },
    )


def plot_calibration(
    records: Sequence[dict[str, Any]], table: StrategyTable, labels: Sequence[str], path: Path
) -> Path:
    """Accuracy per difficulty bin for each strategy, one panel per budget, with 95% Wilson intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [b.name for b in table.bins]
    budgets = sorted(table.budgets)
    figure, axes = plt.subplots(1, len(budgets), figsize=(4.5 * len(budgets), 3.8), sharey=True, squeeze=False)
    for axis, budget in zip(axes[0], budgets, strict=True):
        for offset, label in enumerate(labels):
            points = []
            for index, name in enumerate(names):
                members = [r for r in records if table.bin_of(r["difficulty"][table.estimator]) == name]
                hits = [bool(r["correct"][str(budget)][label]) for r in members if label in r["correct"][str(budget)]]
                if hits:
                    low, high = wilson(sum(hits), len(hits))
                    mean = sum(hits) / len(hits)
                    points.append((index + (offset - len(labels) / 2) * 0.05, mean, mean - low, high - mean))
            if points:
                xs, ys, lows, highs = zip(*points, strict=True)
                axis.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=2, label=label)
        axis.set_xticks(range(len(names)), names)
        axis.set_title(f"N = {budget}")
        axis.set_xlabel(f"difficulty bin ({table.estimator})")
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def applicable_to_all(options: dict[str, Any]) -> dict[str, Any]:
    """The settings every strategy has (sampling, system prompt, step delimiter) among ``options``."""
    return {k: v for k, v in options.items() if k in StrategyConfig.model_fields and k not in ("n", "seed")}
