"""Running an evaluation: every problem through every strategy, graded, appended to a JSONL file.

In: an :class:`EvalConfig`, the problems and the engines. Out: one JSONL record per problem (its
predictions and grades for every strategy and budget, and the usage of every run), appended and
flushed as each problem finishes. The file's first line holds the configuration; re-running the same
configuration skips the problems already in the file, so an interrupted run loses nothing. A
progress line on stderr shows the rate, the ETA and usage totals.

Sample-based strategies run once at ``n_max`` and are subsampled for n = 1, 2, 4, ..., ``n_max``;
beam search and DVTS run once per budget that ``beam_width`` divides.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from langchain_ttc.core.answers import answers_equivalent
from langchain_ttc.core.types import Candidate, Usage
from langchain_ttc.evaluation.datasets import EvalProblem
from langchain_ttc.evaluation.scaling import SAMPLE_STRATEGIES, budgets, check_power_of_two, subsampled_answers
from langchain_ttc.strategies.registry import STEP_LEVEL_STRATEGIES, check_strategy, create_strategy_graph


@dataclass(kw_only=True)
class EvalConfig:
    """What an evaluation runs (also written as the first line of its JSONL file)."""

    dataset: str
    strategies: list[str]
    n_max: int = 16
    policy: str = "arith:small"
    prm: str = "arith:prm"
    aggregation: str = "last"
    temperature: float = 0.8
    max_tokens: int = 2048
    beam_width: int = 4
    seed: int = 0
    system_prompt: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Validate before any model loads.

        Raises:
            ValueError: An unknown strategy, an empty strategy list, or ``n_max`` not a power of two.

        """
        if not self.strategies:
            raise ValueError("--strategy is empty; pass one or more strategies.")
        for strategy in self.strategies:
            check_strategy(strategy)
        check_power_of_two(self.n_max)

    @property
    def needs_prm(self) -> bool:
        """Whether any strategy scores with a PRM."""
        return any(s != "majority_vote" for s in self.strategies)


def grade(predicted: str | None, gold: str) -> bool:
    """Whether a prediction is mathematically equivalent to the gold answer (math-verify)."""
    return predicted is not None and answers_equivalent(gold, predicted)


def _graphs(config: EvalConfig, policy: Any, prm: Any) -> dict[str, Any]:
    common: dict[str, Any] = {
        "seed": config.seed,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "system_prompt": config.system_prompt,
    }
    graphs: dict[str, Any] = {}
    sample_strategies = [s for s in config.strategies if s in SAMPLE_STRATEGIES]
    if sample_strategies:
        scored = config.needs_prm and any(s != "majority_vote" for s in sample_strategies)
        name = "best_of_n" if scored else "majority_vote"
        options = {**common, "aggregation": config.aggregation} if scored else common
        graphs[f"sampling@{config.n_max}"] = create_strategy_graph(name, policy, prm, n=config.n_max, **options)
    if "compute_optimal" in config.strategies:  # the shipped table's budgets up to n_max
        from langchain_ttc.strategies.routing.table import load_table

        for n in sorted(load_table().budgets):
            if n <= config.n_max:
                graphs[f"compute_optimal@{n}"] = create_strategy_graph("compute_optimal", policy, prm, n=n, **common)
    if "self_refine" in config.strategies:  # N // 3 chains of up to 2 revisions; the policy verifies itself
        for n in budgets(config.n_max):
            if n >= 3:
                graphs[f"self_refine@{n}"] = create_strategy_graph("self_refine", policy, prm, n=n, **common)
    for strategy in (s for s in config.strategies if s in STEP_LEVEL_STRATEGIES):
        for n in budgets(config.n_max):
            if n >= config.beam_width and n % config.beam_width == 0:
                graphs[f"{strategy}@{n}"] = create_strategy_graph(
                    strategy, policy, prm, n=n, beam_width=config.beam_width, aggregation=config.aggregation, **common
                )
    return graphs


def evaluate_problem(problem: EvalProblem, config: EvalConfig, graphs: dict[str, Any]) -> dict[str, Any]:
    """Run every graph on one problem; return its JSONL record."""
    predictions: dict[str, str | None] = {}
    usage: dict[str, dict[str, Any]] = {}
    sample_strategies = [s for s in config.strategies if s in SAMPLE_STRATEGIES]
    for run, graph in graphs.items():
        result = graph.invoke({"problem": problem.problem})["result"]
        usage[run] = result["usage"]
        if run.startswith("sampling@"):
            candidates = [Candidate.model_validate(c) for c in result["candidates"]]
            predictions |= subsampled_answers(candidates, sample_strategies, config.n_max)
        else:
            predictions[run] = result["answer"]
    return {
        "id": problem.id,
        "level": problem.level,
        "gold": problem.answer,
        "predictions": predictions,
        "correct": {key: grade(value, problem.answer) for key, value in predictions.items()},
        "usage": usage,
    }


class Progress:
    """A progress line on a stream: done/total, rate, ETA and usage totals."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.done = 0
        self.usage = Usage()
        self.started = time.time()
        self.stream = stream

    def update(self, record: dict[str, Any]) -> None:
        """Count a finished problem and redraw."""
        self.done += 1
        for run in record["usage"].values():
            self.usage = self.usage + Usage.model_validate(run)
        elapsed = time.time() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        u = self.usage
        self.stream.write(
            f"\r[{self.done}/{self.total}] {self.done / max(1, self.total):.0%} {rate:.2f} problems/s "
            f"ETA {eta:.0f}s | policy calls {u.policy_calls}, tokens {u.completion_tokens}, "
            f"PRM calls {u.prm_calls}, strategy time {u.wall_time_s:.0f}s"
        )
        self.stream.flush()


def read_records(path: Path, config: EvalConfig) -> list[dict[str, Any]]:
    """The records already in ``path`` (checking they were written by the same configuration)."""
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        return []
    if lines[0].get("config") != asdict(config):
        raise ValueError(
            f"--output={str(path)!r} holds results of another configuration ({lines[0].get('config')}); pass another "
            "--output, or delete the file to start over."
        )
    return lines[1:]


def run_evaluation(
    config: EvalConfig,
    problems: Sequence[EvalProblem],
    output: Path,
    *,
    policy: Any,
    prm: Any,
    concurrency: int = 1,
    progress: Callable[[int], Progress] = Progress,
) -> list[dict[str, Any]]:
    """Evaluate ``problems`` (skipping those already in ``output``) and return every record."""
    config.check()
    records = read_records(output, config)
    done = {r["id"] for r in records}
    todo = [p for p in problems if p.id not in done]
    output.parent.mkdir(parents=True, exist_ok=True)
    graphs = _graphs(config, policy, prm)
    lock = threading.Lock()
    bar = progress(len(todo))
    with output.open("a") as file:
        if not records:
            file.write(json.dumps({"config": asdict(config)}) + "\n")
            file.flush()
        failure: BaseException | None = None
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = [pool.submit(evaluate_problem, p, config, graphs) for p in todo]
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Exception as error:  # keep every finished problem; stop starting new ones
                    failure = failure or error
                    for pending in futures:
                        pending.cancel()
                    continue
                with lock:
                    file.write(json.dumps(record) + "\n")
                    file.flush()
                    os.fsync(file.fileno())
                    records.append(record)
                    bar.update(record)
    if todo:
        bar.stream.write("\n")
    if failure is not None:
        failure.add_note(
            f"{len(records)} of {len(problems)} problems are finished and saved in {str(output)!r}; run the same "
            "command again to resume from there."
        )
        raise failure
    return records
