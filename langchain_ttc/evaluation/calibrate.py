"""Calibrating a strategy table (``ttc calibrate``): run the candidates, bin by difficulty, pick per bin.

In: calibration problems (any dataset the evaluation harness reads), the engines, the budgets and
the candidate strategies. Out: one record per problem (see :mod:`.fit`), a
:class:`~langchain_ttc.strategies.routing.table.StrategyTable` fitted on all of them with the held-out
accuracy of the routing in its ``calibration`` section, and a plot of accuracy per bin per strategy.
With a :class:`~langchain_ttc.evaluation.fit.BudgetChoice` (``--max-budget``/``--tolerance``) the table
also chooses the budget: each bin's choice names the smallest budget within the tolerance of the
best at the maximum (:func:`~langchain_ttc.evaluation.fit.fit_budgets`), and ``calibration`` holds that
router's held-out accuracy and mean budget.

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
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from langchain_ttc.core.types import Candidate
from langchain_ttc.evaluation.datasets import EvalProblem
from langchain_ttc.evaluation.fit import (
    BudgetChoice,
    accuracy,
    fit_budgets,
    fit_choices,
    held_out_accuracy,
    held_out_budget_router,
)
from langchain_ttc.evaluation.records import RecordsFile, invoke_until, read_jsonl, run_problems
from langchain_ttc.evaluation.report import wilson
from langchain_ttc.evaluation.run import grade
from langchain_ttc.strategies.config import StrategyConfig, validated
from langchain_ttc.strategies.driver import run_calls
from langchain_ttc.strategies.generation import conversation_from_input, reaggregated
from langchain_ttc.strategies.routing.compute_optimal import draw_pilots, strategy_seed
from langchain_ttc.strategies.routing.difficulty import ESTIMATORS, estimate_difficulty
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

    def settings(self) -> dict[str, Any]:
        """What decides this calibration's records (see :func:`calibration_settings`)."""
        return calibration_settings(
            budgets=self.budgets, candidates=self.candidates, pilots=self.pilots, aggregation=self.aggregation,
            seed=self.seed, **self.options,
        )  # fmt: skip

    def run_problem(self, problem: EvalProblem, *, stop: threading.Event | None = None) -> dict[str, Any]:
        """Pilots, difficulty estimates, and every runnable candidate at every budget on one problem.

        Raises:
            Stopped: If ``stop`` is set before the problem is finished (checked between graph steps).

        """
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
                result = invoke_until(self.graphs[budget, "samples"], data, stop)["result"]
                samples = [Candidate.model_validate(c) for c in result["candidates"]]
            per: dict[str, bool] = {}
            for choice in self.candidates:
                vote = strategy_spec(choice.strategy).vote
                if vote is not None:
                    pool = reaggregated(samples, aggregation=choice.options.get("aggregation", self.aggregation))
                    chosen = vote(pool, key=config.answer_key()).chosen_index
                    per[choice.label()] = grade(None if chosen is None else pool[chosen].answer, problem.answer)
                elif (budget, choice.label()) in self.graphs:
                    answer = invoke_until(self.graphs[budget, choice.label()], data, stop)["answer"]
                    per[choice.label()] = grade(answer, problem.answer)
            correct[str(budget)] = per
        key = config.answer_key()
        difficulty = {name: estimate_difficulty(f, pilots, key=key) for name, (f, _) in ESTIMATORS.items()}
        return {"id": problem.id, "level": problem.level, "difficulty": difficulty, "correct": correct}

    def run(
        self,
        problems: Sequence[EvalProblem],
        *,
        concurrency: int = 1,
        progress: bool = True,
        records: RecordsFile | None = None,
    ) -> list[dict[str, Any]]:
        """Run every problem (``concurrency`` at a time); records in the problems' order.

        With ``progress``, a progress bar (tqdm) goes to stderr, a terminal or not. With ``records``
        (see :func:`calibration_records`), each record is appended to that file as its problem finishes,
        the problems already there are skipped, and once every problem is done the file is rewritten in
        the problems' order (the order the held-out folds are drawn in).

        Raises:
            RunInterrupted: On ``KeyboardInterrupt`` (SIGINT), once the problems in flight have stopped;
                with ``records``, every finished problem is in the file.

        """
        kept = [] if records is None else records.read()
        by_id = {r["id"]: r for r in kept}
        todo = [p for p in problems if p.id not in by_id]
        bar_format = "[{n_fmt}/{total_fmt}] calibrating, {elapsed} elapsed, ETA {remaining}"
        done = len(problems) - len(todo)
        with tqdm(
            total=len(problems), initial=done, file=sys.stderr, disable=not progress, bar_format=bar_format
        ) as bar:
            new = run_problems(
                lambda problem, stop: self.run_problem(problem, stop=stop), todo, records, total=len(problems),
                done=done, concurrency=concurrency, on_record=lambda _: bar.update(),
            )  # fmt: skip
        by_id |= {r["id"]: r for r in new}
        ordered = [by_id[p.id] for p in problems]
        if records is not None and [r["id"] for r in kept + new] != [r["id"] for r in ordered]:
            records.rewrite(ordered)
        return ordered


def calibration_settings(
    *,
    budgets: Sequence[int],
    candidates: Sequence[StrategyChoice],
    pilots: int,
    aggregation: str,
    seed: int,
    **options: Any,
) -> dict[str, Any]:
    """What decides a calibration's records, as JSON data: the arguments of :class:`Calibration`.

    Example:
        >>> settings = calibration_settings(budgets=[16, 4], candidates=[], pilots=2, aggregation="last", seed=0)
        >>> settings["budgets"], settings["options"]
        ([4, 16], {})

    """
    return {
        "budgets": sorted(budgets),
        "candidates": [c.model_dump(mode="json") for c in candidates],
        "pilots": pilots,
        "aggregation": aggregation,
        "seed": seed,
        "options": options,
    }


def calibration_records(path: Path, settings: dict[str, Any]) -> RecordsFile:
    """The records file of a calibration: every record carries a digest of ``settings`` (a rerun resumes it).

    ``settings`` are what decides the records: :meth:`Calibration.settings` and what the problems and
    models are (the dataset and its options, the policy, the PRM).
    """
    return RecordsFile(path, settings, option="--records", header=False)


def read_calibration_records(path: Path) -> list[dict[str, Any]]:
    """Records a calibration wrote (``--from-records``), whatever run they came from.

    A torn last line is dropped with a :class:`~langchain_ttc.evaluation.records.RecordsWarning`; a
    first line holding only a configuration is skipped.

    Raises:
        ValueError: If the file is missing, holds no records, or a line before the last is damaged.

    """
    if not path.is_file():
        raise ValueError(f"--from-records={str(path)!r} does not exist; pass the records file a calibration wrote.")
    rows = [r for r in read_jsonl(path) if set(r) != {"config"}]
    if not rows:
        raise ValueError(f"--from-records={str(path)!r} holds no records; calibrate first (without --from-records).")
    missing = [str(i) for i, r in enumerate(rows, start=1) if not {"id", "difficulty", "correct"} <= set(r)]
    if missing:
        raise ValueError(
            f"--from-records={str(path)!r}: record {', '.join(missing[:3])} lacks 'id', 'difficulty' or 'correct'; "
            "pass the records file ttc calibrate wrote."
        )
    return rows


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
    budget_choice: BudgetChoice | None = None,
) -> StrategyTable:
    """The table fitted on all ``records``, with held-out and per-strategy accuracy in ``calibration``.

    With an enabled ``budget_choice``, the table's budgets are the maximum budgets and each bin's
    choice names the budget it spends (see :func:`~langchain_ttc.evaluation.fit.fit_budgets`).
    """
    by_label = {c.label(): c for c in candidates}
    labels = list(by_label)
    fitted = fit_choices(records, estimator=estimator, bin_count=bin_count, labels=labels)
    held_out = held_out_accuracy(records, estimator=estimator, bin_count=bin_count, labels=labels, folds=folds)
    budgets = sorted(fitted.choices)
    table_budgets = {b: {name: by_label[label] for name, label in fitted.choices[b].items()} for b in budgets}
    chosen: dict[str, Any] = {}
    if budget_choice is not None and budget_choice.enabled:
        spend = fit_budgets(records, estimator=estimator, bin_count=bin_count, labels=labels, choice=budget_choice)
        table_budgets = {
            most: {name: by_label[label].model_copy(update={"budget": b}) for name, (b, label) in per_bin.items()}
            for most, per_bin in spend.choices.items()
        }
        router = held_out_budget_router(
            records, estimator=estimator, bin_count=bin_count, labels=labels, choice=budget_choice, folds=folds
        )
        chosen = {
            "budget_choice": {
                "max_budget": budget_choice.max_budget,
                "tolerance": budget_choice.slack,
                "held_out_router": {
                    str(m): {k: round(v, 4) for k, v in figures.items()} for m, figures in router.items()
                },
            }
        }
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
        budgets=table_budgets,
        calibration={
            **provenance,
            "problems": len(records),
            "folds": folds,
            "held_out_router_accuracy": {str(b): round(a, 4) for b, a in held_out.items()},
            "fixed_strategy_accuracy": fixed,
            **chosen,
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
    budgets = sorted(int(b) for b in records[0]["correct"])  # every calibrated budget, a table's or not
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
