"""The ``ttc calibrate`` command: run (or reload) calibration records, fit, write the table and plot.

In: the parsed command-line arguments. Out: the table (JSON), the per-problem records (JSONL) and
the accuracy-per-bin plot; the table's ``calibration`` section is printed. ``--from-records`` refits
from saved records without loading a model.

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
from langchain_ttc.evaluation.calibrate import Calibration, default_candidates, fit_table, plot_calibration
from langchain_ttc.evaluation.datasets import load_problems
from langchain_ttc.strategies.routing.table import load_table, save_table


def _run_calibration(
    args: argparse.Namespace, candidates: list[Any], difficulty: tuple[int, int], settings: EngineSettings
) -> list[Any]:
    """Run the candidates on the calibration problems (``ttc calibrate`` without ``--from-records``)."""
    from transformers.utils import logging as hf_logging

    from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM

    problems = load_problems(args.dataset, limit=args.limit, difficulty=difficulty, seed=args.seed, count=args.count)
    hf_logging.disable_progress_bar()
    settings.check()
    policy = MicroBatchingPolicy(settings.load_policy())
    prm = MicroBatchingPRM(settings.load_prm())
    calibration = Calibration(
        policy, prm, budgets=args.budgets, candidates=candidates, pilots=args.pilots, aggregation=args.aggregation,
        seed=args.seed, temperature=args.temperature, max_tokens=args.max_tokens,
    )  # fmt: skip
    return calibration.run(problems, concurrency=args.concurrency)


def calibrate_command(
    args: argparse.Namespace, *, parse_difficulty: Callable[[str], tuple[int, int]], settings: EngineSettings
) -> int:
    """Run ``ttc calibrate`` from parsed arguments; return the exit code. Inputs are checked before any model loads.

    ``settings`` are the policy and PRM (flags over environment over config file).
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
    # A refit keeps its records where they are, unless --records names a copy.
    records_path = args.records or args.from_records or args.output.with_suffix(".records.jsonl")
    plot_path = args.plot or args.output.with_suffix(".png")
    for path in (args.output, records_path, plot_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    if args.from_records is not None:
        records = [json.loads(line) for line in args.from_records.read_text().splitlines() if line.strip()]
        if args.from_records.resolve() != records_path.resolve():
            records_path.write_text(args.from_records.read_text())
    else:
        records = _run_calibration(args, candidates, difficulty, settings)
        records_path.write_text("".join(json.dumps(r) + "\n" for r in records))
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
        aggregation=args.aggregation, folds=args.folds, provenance=provenance,
    )  # fmt: skip
    save_table(table, args.output)
    load_table(args.output)  # what was written loads and passes the schema
    plot_calibration(records, table, [c.label() for c in candidates], plot_path)
    print(json.dumps(table.model_dump(mode="json")["calibration"], indent=2))
    print(f"table: {args.output}; records: {records_path}; plot: {plot_path}")
    return 0
