"""Running an evaluation: every problem through every strategy, graded, appended to a JSONL file.

In: an :class:`EvalConfig`, the problems and the engines. Out: one JSONL record per problem (its
predictions, grades and generated tokens for every strategy and budget, and the usage of every
run), appended and flushed as each problem finishes. The file's first line holds the configuration;
re-running the same configuration skips the problems already in the file, so an interrupted run
loses nothing (a torn last line is dropped with a warning; SIGINT stops the problems in flight at
their next step: :mod:`.records`). A progress bar on stderr (tqdm) shows the rate, the ETA and usage totals.

Sample-based strategies run once at ``n_max`` and are subsampled for n = 1, 2, 4, ..., ``n_max``;
beam search and DVTS run once per budget that ``beam_width`` divides (or per ``budgets``). The
same samples give the ceiling every selection rule approaches: ``pass@n`` (some sample among the
first n has the right answer) and, where an exact step checker exists (Arith), ``process_pass@n``
(some sample is right at every step), recorded under ``correct`` like a strategy.

Beside accuracy, every record holds what each strategy and budget cost (``cost``, see
:mod:`.compute`): the samples it ended with and its inference FLOPs, policy (generated and prompt
tokens) and verifier (tokens the PRM read). A subsampled rule at n is charged the first n samples'
tokens, the prompt once, and, when it reads scores, the PRM tokens of n of the samples (their share
of the scoring call); an adaptive strategy is charged what it drew before its stop.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from langchain_ttc.core.answers import answers_equivalent
from langchain_ttc.core.prompts import resolve_system_prompt
from langchain_ttc.core.types import Candidate, Usage
from langchain_ttc.evaluation.compute import UNKNOWN, ModelSizes, run_cost
from langchain_ttc.evaluation.datasets import EvalProblem, process_grade
from langchain_ttc.evaluation.records import RecordsFile, invoke_until, run_problems
from langchain_ttc.evaluation.scaling import (
    budgets,
    check_limits,
    check_power_of_two,
    sample_strategies,
    subsampled_answers,
)
from langchain_ttc.strategies.config import answer_key_named
from langchain_ttc.wiring import (
    DEFAULT_POLICY,
    DEFAULT_PRM,
    applicable,
    create_strategy_graph,
    sampler_for,
    strategy_spec,
)


@dataclass(kw_only=True)
class EvalConfig:
    """What an evaluation runs (also written as the first line of its JSONL file)."""

    dataset: str
    strategies: list[str]
    n_max: int = 16
    policy: str = DEFAULT_POLICY
    prm: str = DEFAULT_PRM
    aggregation: str = "last"
    temperature: float = 0.8
    max_tokens: int = 2048
    beam_width: int = 4
    seed: int = 0
    system_prompt: str | None = None
    budgets: list[int] | None = None
    answers: str = "math"
    dataset_options: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Validate before any model loads.

        Raises:
            ValueError: An unknown strategy, an empty strategy list, ``n_max`` not a power of two, a
                budget that is not one of the curve's, or a run over a limit (``TTC_MAX_N``, ...).

        """
        if not self.strategies:
            raise ValueError("--strategy is empty; pass one or more strategies.")
        self.system_prompt = resolve_system_prompt(self.system_prompt, parameter="--system-prompt")
        answer_key_named(self.answers, parameter="--answers", objects=False)
        for strategy in self.strategies:
            strategy_spec(strategy)
        check_power_of_two(self.n_max)
        for n in self.budgets or []:
            if n not in budgets(self.n_max):
                raise ValueError(f"--budgets={self.budgets} has {n}; pass powers of two up to --n-max={self.n_max}.")
        runs = [(s, self.n_max) for s in self.strategies if strategy_spec(s).vote is not None]
        runs += [(s, n) for s in self.strategies if strategy_spec(s).vote is None for n in self.run_budgets]
        check_limits(runs, max_tokens=self.max_tokens, options=self.common_options(), budget_flag="--n-max")

    @property
    def run_budgets(self) -> list[int]:
        """The budgets strategies other than the sample-then-select ones run at."""
        return self.budgets or budgets(self.n_max)

    def common_options(self) -> dict[str, Any]:
        """The options every strategy of the run gets (those its config has)."""
        return {
            "seed": self.seed,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "system_prompt": self.system_prompt,
            "aggregation": self.aggregation,
            "beam_width": self.beam_width,
            "answers": self.answers,
        }

    @property
    def needs_prm(self) -> bool:
        """Whether any strategy scores with a PRM."""
        return any(strategy_spec(s).needs_prm for s in self.strategies)


def grade(predicted: str | None, gold: str) -> bool:
    """Whether a prediction is mathematically equivalent to the gold answer (math-verify)."""
    return predicted is not None and answers_equivalent(gold, predicted)


def _graphs(config: EvalConfig, policy: Any, prm: Any) -> dict[str, Any]:
    """The graphs of an evaluation: one sample run at ``n_max``, and each other strategy at each budget.

    The sample run serves every sample-then-select strategy; every other strategy runs at each
    budget 1, 2, 4, ..., ``n_max`` (or each of ``config.budgets``) it accepts (beam width, chain
    length, a router's table budgets).
    """
    common = config.common_options()
    graphs: dict[str, Any] = {}
    sampler = sampler_for(config.strategies)
    if sampler is not None:  # the same samples serve every selection rule
        graphs[f"sampling@{config.n_max}"] = create_strategy_graph(
            sampler, policy, prm, n=config.n_max, **applicable(sampler, common)
        )
    for strategy in (s for s in config.strategies if strategy_spec(s).vote is None):
        for n in config.run_budgets:
            try:
                graph = create_strategy_graph(strategy, policy, prm, n=n, **applicable(strategy, common))
            except ValueError:
                continue  # a budget this strategy does not run at (beam width, chain length, table budgets)
            graphs[f"{strategy}@{n}"] = graph
    return graphs


def coverage(problem: EvalProblem, candidates: Sequence[Candidate], n_max: int) -> dict[str, bool]:
    """pass@n (some of the first n samples has the right answer) and, with an exact step checker, process pass@n.

    Example:
        >>> from langchain_ttc.core.types import Candidate
        >>> right = Candidate(text="", steps=["x"], answer="4", finish_reason="stop")
        >>> wrong = right.model_copy(update={"answer": "5"})
        >>> coverage(EvalProblem(id="0", problem="How much is 2+2?", answer="4", level="1"), [wrong, right], 2)
        {'pass@1': False, 'pass@2': True}

    """
    answers = [grade(c.answer, problem.answer) for c in candidates]
    processes = [process_grade(problem.problem, c.steps) for c in candidates]
    result = {}
    for n in budgets(n_max):
        result[f"pass@{n}"] = any(answers[:n])
        if processes and processes[0] is not None:
            result[f"process_pass@{n}"] = any(processes[:n])
    return result


def subsample_usage(usage: dict[str, Any], candidates: Sequence[Candidate], n: int, *, scored: bool) -> dict[str, Any]:
    """The tokens a rule reading the first ``n`` of ``candidates`` spends (``usage``: the sample run's).

    Their generated tokens, the prompt once (one request), and with ``scored`` the PRM tokens of
    ``n`` of the samples (their share of the one scoring call; none for a rule that reads no score).

    Example:
        >>> from langchain_ttc.core.types import Candidate
        >>> samples = [Candidate(text="", steps=[], answer=None, finish_reason="eos", num_tokens=t) for t in (3, 5)]
        >>> subsample_usage({"prompt_tokens": 7, "prm_tokens": 40}, samples, 1, scored=True)
        {'completion_tokens': 3, 'prompt_tokens': 7, 'prm_tokens': 20.0}

    """
    prm_tokens = usage.get("prm_tokens", 0) * n / len(candidates) if scored and candidates else 0
    return {
        "completion_tokens": sum(c.num_tokens for c in candidates[:n]),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "prm_tokens": prm_tokens,
    }


def evaluate_problem(
    problem: EvalProblem,
    config: EvalConfig,
    graphs: dict[str, Any],
    *,
    stop: threading.Event | None = None,
    sizes: ModelSizes = UNKNOWN,
) -> dict[str, Any]:
    """Run every graph on one problem; return its JSONL record (``sizes``: the models' parameter counts, for FLOPs).

    Raises:
        Stopped: If ``stop`` is set before the problem is finished (checked between graph steps).

    """
    predictions: dict[str, str | None] = {}
    usage: dict[str, dict[str, Any]] = {}
    tokens: dict[str, int] = {}
    cost: dict[str, dict[str, Any]] = {}
    routing: dict[str, Any] = {}
    ceiling: dict[str, bool] = {}
    sampled = [s for s in config.strategies if s in sample_strategies()]
    for run, graph in graphs.items():
        result = invoke_until(graph, {"problem": problem.problem}, stop)["result"]
        usage[run] = result["usage"]
        if run.startswith("sampling@"):
            candidates = [Candidate.model_validate(c) for c in result["candidates"]]
            subsampled = subsampled_answers(candidates, sampled, config.n_max, key=answer_key_named(config.answers))
            predictions |= subsampled
            ceiling = coverage(problem, candidates, config.n_max)
            for key in subsampled:  # the first n samples' tokens
                strategy, n = key.rsplit("@", 1)
                spent = subsample_usage(result["usage"], candidates, int(n), scored=strategy_spec(strategy).needs_prm)
                tokens[key] = spent["completion_tokens"]
                cost[key] = run_cost(spent, samples=min(int(n), len(candidates)), sizes=sizes)
        else:
            predictions[run] = result["answer"]
            tokens[run] = result["usage"]["completion_tokens"]
            cost[run] = run_cost(result["usage"], samples=len(result["candidates"]), sizes=sizes)
            if "routing" in result.get("metadata", {}):  # a router's decision
                routing[run] = result["metadata"]["routing"]
    return {
        "id": problem.id,
        "level": problem.level,
        "gold": problem.answer,
        "predictions": predictions,
        "correct": {key: grade(value, problem.answer) for key, value in predictions.items()} | ceiling,
        "tokens": tokens,
        "cost": cost,
        "usage": usage,
    } | ({"routing": routing} if routing else {})


class Progress:
    """A progress bar (tqdm) on a stream: done/total, rate, ETA and usage totals.

    Drawn on a stream that is not a terminal too, so the log of a long run shows how far it got;
    nothing is drawn when there is nothing to do.

    Example:
        >>> import io
        >>> progress = Progress(1, stream=io.StringIO())
        >>> progress.update({"usage": {"sampling@4": {"policy_calls": 1, "completion_tokens": 7}}})
        >>> progress.close()
        >>> progress.usage.completion_tokens
        7

    """

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.usage = Usage()
        self.bar = tqdm(
            total=total,
            file=stream,
            disable=total == 0,
            unit=" problems",
            bar_format="[{n_fmt}/{total_fmt}] {percentage:.0f}% {rate_fmt} ETA {remaining}{postfix}",
        )

    def update(self, record: dict[str, Any]) -> None:
        """Count a finished problem and its usage, and redraw."""
        for run in record["usage"].values():
            self.usage = self.usage + Usage.model_validate(run)
        u = self.usage
        self.bar.set_postfix_str(
            f"policy calls {u.policy_calls}, tokens {u.completion_tokens}, PRM calls {u.prm_calls}, "
            f"strategy time {u.wall_time_s:.0f}s",
            refresh=False,
        )
        self.bar.update()

    def close(self) -> None:
        """Draw the final state and end the line."""
        self.bar.close()


def read_records(path: Path, config: EvalConfig) -> list[dict[str, Any]]:
    """The records already in ``path`` (checking they were written by the same configuration).

    A torn last line (a run killed while writing it) is dropped with a
    :class:`~langchain_ttc.evaluation.records.RecordsWarning` and cut off the file.

    Raises:
        ValueError: If the file holds results of another configuration, or a line before the last is damaged.

    """
    return RecordsFile(path, asdict(config)).read()


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
    """Evaluate ``problems`` (skipping those already in ``output``) and return every record.

    Raises:
        RunInterrupted: On ``KeyboardInterrupt`` (SIGINT), once the problems in flight have stopped;
            every finished problem is in ``output`` (see :func:`~langchain_ttc.evaluation.records.run_problems`).

    """
    config.check()
    file = RecordsFile(output, asdict(config))
    records = file.read()
    done = {r["id"] for r in records}
    todo = [p for p in problems if p.id not in done]
    graphs = _graphs(config, policy, prm)
    sizes = ModelSizes.of(policy, prm)
    bar = progress(len(todo))
    try:
        records += run_problems(
            lambda problem, stop: evaluate_problem(problem, config, graphs, stop=stop, sizes=sizes), todo, file,
            total=len(problems), done=len(problems) - len(todo), concurrency=concurrency, on_record=bar.update,
        )  # fmt: skip
    finally:
        bar.close()
    return records
