"""The ``ttc calibrate`` command: run (or reload) calibration records, fit, write the table and plot.

In: the parsed command-line arguments. Out: the table (JSON), the per-problem records (JSONL,
appended as each problem finishes: a rerun of the same command resumes them) and the accuracy-per-bin
plot; the table's ``calibration`` section is printed. ``--from-records`` refits from saved records
without loading a model. ``--max-budget`` and/or ``--tolerance`` make the table choose the budget per
bin too (:class:`~langchain_ttc.evaluation.fit.BudgetChoice`).

Example::

    ttc calibrate --from-records benchmarks/results/calibration_records.jsonl --strategies majority_vote dvts \
        --output /tmp/table.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from collections.abc import Callable
from typing import Any

from langchain_ttc.engines.settings import EngineSettings
from langchain_ttc.evaluation.calibrate import (
    Calibration,
    calibration_records,
    calibration_settings,
    default_candidates,
    fit_table,
    plot_calibration,
    read_calibration_records,
)
from langchain_ttc.evaluation.datasets import load_problems
from langchain_ttc.evaluation.fit import budget_choice
from langchain_ttc.evaluation.records import RecordsFile
from langchain_ttc.evaluation.scaling import check_limits
from langchain_ttc.strategies.routing.table import load_table, save_table


def _run_calibration(
    args: argparse.Namespace,
    candidates: list[Any],
    problems: list[Any],
    records: RecordsFile,
    settings: EngineSettings,
) -> list[Any]:
    """Run the candidates on the calibration problems (``ttc calibrate`` without ``--from-records``)."""
    from transformers.utils import logging as hf_logging

    from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM

    hf_logging.disable_progress_bar()
    policy = MicroBatchingPolicy(settings.load_policy())
    prm = MicroBatchingPRM(settings.load_prm())
    calibration = Calibration(
        policy, prm, budgets=args.budgets, candidates=candidates, pilots=args.pilots, aggregation=args.aggregation,
        seed=args.seed, temperature=args.temperature, max_tokens=args.max_tokens,
    )  # fmt: skip
    return calibration.run(problems, concurrency=args.concurrency, records=records)


def _identity(args: argparse.Namespace, candidates: list[Any], difficulty: tuple[int, int]) -> dict[str, Any]:
    """What decides the records (a rerun must match it to resume them): the calibration's settings, data and models."""
    calibration = calibration_settings(
        budgets=args.budgets, candidates=candidates, pilots=args.pilots, aggregation=args.aggregation, seed=args.seed,
        temperature=args.temperature, max_tokens=args.max_tokens,
    )  # fmt: skip
    data = {"difficulty": list(difficulty), "count": args.count, "limit": args.limit}
    return {**calibration, "dataset": args.dataset, "dataset_options": data, "policy": args.policy, "prm": args.prm}


def calibrate_command(
    args: argparse.Namespace, *, parse_difficulty: Callable[[str], tuple[int, int]], settings: EngineSettings
) -> int:
    """Run ``ttc calibrate`` from parsed arguments; return the exit code. Inputs are checked before any model loads.

    ``settings`` are the policy and PRM (flags over environment over config file). The records are
    appended as each problem finishes; a rerun of the same command resumes them (a killed or
    interrupted run loses no finished problem and repeats none).
    """
    difficulty = parse_difficulty(args.difficulty)
    every = default_candidates(beam_width=args.beam_width, max_revisions=args.max_revisions, critic=args.critic)
    candidates = [c for c in every if c.strategy in args.strategies]
    if min(args.budgets) < args.pilots:
        raise ValueError(
            f"--budgets {args.budgets} has a budget below --pilots {args.pilots}; raise it or lower --pilots."
        )
    if args.folds < 2:
        raise ValueError(
            f"--folds={args.folds} must be at least 2 (each fold is routed by a table fitted on the others)."
        )
    choice = budget_choice(max_budget=args.max_budget, tolerance=args.tolerance)
    if args.from_records is None:  # a --max-budget off the calibrated budgets fails before any model loads
        choice.max_budgets(sorted(args.budgets))
    runs = [(c.strategy, n) for c in candidates for n in args.budgets]
    options = {"temperature": args.temperature, "aggregation": args.aggregation, "seed": args.seed}
    check_limits(runs, max_tokens=args.max_tokens, options=options, budget_flag="--budgets", listed=True)
    # A refit keeps its records where they are, unless --records names a copy.
    records_path = args.records or args.from_records or args.output.with_suffix(".records.jsonl")
    plot_path = args.plot or args.output.with_suffix(".png")
    for path in (args.output, records_path, plot_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    if args.from_records is not None:
        records = read_calibration_records(args.from_records)
        if args.from_records.resolve() != records_path.resolve():
            records_path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        problems = load_problems(
            args.dataset, limit=args.limit, difficulty=difficulty, seed=args.seed, count=args.count
        )
        settings.check()
        file = calibration_records(records_path, _identity(args, candidates, difficulty))
        file.read()  # another calibration's records are refused (a torn last line repaired) before any model loads
        args.kept = f"every finished problem is kept in {records_path}"
        records = _run_calibration(args, candidates, problems, file, settings)
    provenance = {
        "command": "ttc " + shlex.join(args.argv),
        "dataset": args.dataset,
        "dataset_options": {
            "difficulty": list(difficulty),
            "count": args.count,
            "limit": args.limit,
            "seed": args.seed,
        },
        "policy": args.policy,
        "prm": args.prm,
        "temperature": args.temperature,
        "max_tokens": args.max_tokens,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    table = fit_table(
        records, candidates=candidates, estimator=args.estimator, bin_count=args.bins, pilots=args.pilots,
        aggregation=args.aggregation, folds=args.folds, provenance=provenance, budget_choice=choice,
    )  # fmt: skip
    save_table(table, args.output)
    load_table(args.output)  # what was written loads and passes the schema
    plot_calibration(records, table, [c.label() for c in candidates], plot_path)
    print(json.dumps(table.model_dump(mode="json")["calibration"], indent=2))
    print(f"table: {args.output}; records: {records_path}; plot: {plot_path}")
    return 0
