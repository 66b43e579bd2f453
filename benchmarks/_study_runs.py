"""The study's runs: models, problems, and one resumable JSONL records file per (verifier, strategy, N).

In: the frozen design (``benchmarks/study.py``), the checkpoints, an output directory. Out, under
``<out>/study_records/``:

- ``design.json``: the design the records were made under (a rerun under another design is refused);
  ``models.json``: each model's path and parameter count; ``problems.json``: the band thresholds and
  the test and router-calibration problems; ``timings.jsonl``: seconds per stage (the time estimate);
- ``policy/``: ``small_greedy@1``, ``large_greedy@1``, the sample pool ``pool`` (whole solutions at
  temperature 0.8 shared by every verifier: one pool per problem, its first N used), and the ceilings
  ``pass@N`` and ``process_pass@N`` derived from it;
- ``<verifier>/``: ``scores`` (the verifier's aggregated score and tokens read for every pool sample),
  ``<strategy>@<N>`` for every strategy (the samplers' derived from the pool and the scores), and
  ``router/`` (the calibration records, the fitted table and its plot).

Every outcome record is ``{"id", "band", "answer", "correct", "process", "usage"}`` (``usage``: the
run's prompt, completion and verifier tokens and calls); records are appended and fsynced as each
problem finishes (:mod:`langchain_ttc.evaluation.records`), so a rerun skips finished problems.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _bands import BAND_NAMES, band_thresholds, problems_by_band
from tqdm import tqdm

from langchain_ttc.arith.problems import solution_is_correct
from langchain_ttc.core.aggregation import aggregate
from langchain_ttc.core.seeds import derive_seed
from langchain_ttc.core.types import Candidate, Completion, GenerationRequest, ScoreRequest
from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM
from langchain_ttc.engines.transformers_policy import TransformersPolicy
from langchain_ttc.engines.transformers_prm import MathShepherdPRM
from langchain_ttc.evaluation.calibrate import (
    Calibration,
    calibration_records,
    default_candidates,
    fit_table,
    plot_calibration,
)
from langchain_ttc.evaluation.datasets import EvalProblem
from langchain_ttc.evaluation.records import RecordsFile, Stopped, config_digest, read_jsonl, run_problems
from langchain_ttc.evaluation.run import grade
from langchain_ttc.strategies.context import TTCContext
from langchain_ttc.strategies.generation import candidate_from_completion
from langchain_ttc.strategies.routing.table import StrategyChoice, save_table
from langchain_ttc.wiring import applicable, create_strategy_graph

USAGE_KEYS = ("prompt_tokens", "completion_tokens", "prm_tokens", "policy_calls", "prm_calls", "wall_time_s")
Record = dict[str, Any]
Work = Callable[["StudyProblem", threading.Event], Record]


@dataclass(frozen=True)
class StudyProblem:
    """One problem of the study: its band (by the small policy's exact pass@1) and its rank in draw order."""

    id: str
    band: str
    rank: int
    problem: str
    answer: str
    solution: str
    steps: int
    pass_at_1: float

    def eval_problem(self) -> EvalProblem:
        return EvalProblem(id=self.id, problem=self.problem, answer=self.answer, level=self.band)


class Models:
    """The checkpoints by name (``small``, ``large``, each verifier), loaded once, with their parameter counts."""

    def __init__(self, paths: dict[str, Path], records: Path) -> None:
        self.paths, self.file = paths, records / "models.json"
        self._engines: dict[str, Any] = {}

    def _loaded(self, name: str, engine: Any) -> Any:
        self._engines[name] = engine
        known = json.loads(self.file.read_text()) if self.file.exists() else {}
        known[name] = {"path": str(self.paths[name]), "parameters": sum(p.numel() for p in engine.model.parameters())}
        self.file.write_text(json.dumps(known, indent=2) + "\n")
        return engine

    def raw_policy(self, name: str) -> TransformersPolicy:
        if name not in self._engines:
            self._loaded(name, TransformersPolicy.from_pretrained(self.paths[name]))
        return self._engines[name]

    def policy(self, name: str) -> MicroBatchingPolicy:
        """A policy that merges the calls of concurrent problems into one batch."""
        key = f"{name}:batched"
        if key not in self._engines:
            self._engines[key] = MicroBatchingPolicy(self.raw_policy(name))
        return self._engines[key]

    def verifier(self, name: str) -> MicroBatchingPRM:
        key = f"{name}:batched"
        if key not in self._engines:
            # No prefix cache: every part of the study scores with full passes, as its first parts did
            # (the cache changes scores by rounding only; its speed is benchmarks/prm_reuse.py's subject).
            prm = self._loaded(
                name, MathShepherdPRM.from_pretrained(self.paths[name], batch_size=64, prefix_cache_mib=0)
            )
            self._engines[key] = MicroBatchingPRM(prm)
        return self._engines[key]


def draw_problems(
    policy: TransformersPolicy, per_band: int, *, seed: int, thresholds: list[float], prefix: str, exclude: set[str]
) -> list[StudyProblem]:
    """``per_band`` distinct problems per band, none in ``exclude``, drawn with ``_bands.problems_by_band``.

    ``problems_by_band`` draws in order from ``seed``; repeats (short chains recur) and excluded
    problems are dropped, drawing a larger pool (deterministically) until every band is full.
    """
    extra = max(4, per_band // 4)
    while True:
        bands = problems_by_band(policy, per_band + extra, seed=seed, thresholds=thresholds)
        kept: dict[str, list[StudyProblem]] = {}
        for band in BAND_NAMES:
            seen, found = set(exclude), []
            for problem, p in bands[band]:
                if problem.problem in seen or len(found) == per_band:
                    continue
                seen.add(problem.problem)
                found.append(
                    StudyProblem(
                        id=f"{prefix}{band}-{len(found):03d}",
                        band=band,
                        rank=len(found),
                        problem=problem.problem,
                        answer=problem.answer,
                        solution=problem.solution,
                        steps=problem.difficulty,
                        pass_at_1=p,
                    )
                )
            kept[band] = found
        if all(len(found) == per_band for found in kept.values()):
            return [p for band in BAND_NAMES for p in kept[band]]
        extra *= 2


def load_or_draw(
    models: Models, records: Path, *, design: dict[str, Any]
) -> tuple[list[float], list[StudyProblem], list[StudyProblem]]:
    """The band thresholds, the test problems and the router's calibration problems (drawn once, then read)."""
    path = records / "problems.json"
    if path.exists():
        saved = json.loads(path.read_text())
        return (
            saved["thresholds"],
            [StudyProblem(**p) for p in saved["test"]],
            [StudyProblem(**p) for p in saved["calibration"]],
        )
    small = models.raw_policy("small")
    thresholds = band_thresholds(small)  # the quartiles, fixed before any test problem is drawn
    test = draw_problems(
        small, design["per_band"], seed=design["test_seed"], thresholds=thresholds, prefix="", exclude=set()
    )
    calibration = draw_problems(
        small,
        design["calibration_per_band"],
        seed=design["router_seed"],
        thresholds=thresholds,
        prefix="cal-",
        exclude={p.problem for p in test},
    )
    saved = {
        "thresholds": thresholds,
        "test": [asdict(p) for p in test],
        "calibration": [asdict(p) for p in calibration],
    }
    path.write_text(json.dumps(saved, indent=1) + "\n")
    return thresholds, test, calibration


def _differences(saved: dict[str, Any], design: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Changed design entries, and strategy options the library added since with the value ``None`` (no effect)."""
    changed = sorted(k for k in set(saved) | set(design) if k != "strategies" and saved.get(k) != design.get(k))
    added = []
    old, new = saved.get("strategies", {}), design.get("strategies", {})
    for strategy in sorted(set(old) | set(new)):
        before, after = old.get(strategy, {}), new.get(strategy, {})
        for option in sorted(set(before) | set(after)):
            if option not in before and after.get(option) is None:
                added.append(f"{strategy}.{option}")
            elif before.get(option, "missing") != after.get(option, "missing"):
                changed.append(f"strategies.{strategy}.{option}")
    return changed, added


def check_design(records: Path, design: dict[str, Any]) -> str:
    """Write the design on the first run; refuse records made under another one. Returns its digest.

    A strategy option the library added later with the value ``None`` (off) does not change what the
    records mean: it is reported and the saved design kept.
    """
    records.mkdir(parents=True, exist_ok=True)
    path = records / "design.json"
    if not path.exists():
        path.write_text(json.dumps(design, indent=2) + "\n")
        return config_digest(design)
    saved = json.loads(path.read_text())
    changed, added = _differences(saved, design)
    if changed:
        raise SystemExit(
            f"{path} was written under another design (changed: {', '.join(changed)}); pass another --out to "
            "start a new study, or the same options and code to resume this one."
        )
    if added:
        print(f"note: options added since the design was frozen, all off: {', '.join(added)}", file=sys.stderr)
    return config_digest(saved)


def read_outcomes(path: Path) -> dict[str, Record]:
    """The records of one file by problem id (its configuration line skipped); empty when missing."""
    return {r["id"]: r for r in read_jsonl(path) if "id" in r}


def outcome(problem: StudyProblem, answer: str | None, usage: dict[str, Any], **extra: Any) -> Record:
    return {
        "id": problem.id,
        "band": problem.band,
        "answer": answer,
        "correct": grade(answer, problem.answer),
        "usage": {k: usage.get(k, 0) for k in USAGE_KEYS},
        **extra,
    }


def process_right(problem: StudyProblem, candidate: Candidate | dict[str, Any] | None) -> bool:
    """Whether a solution is finished and right at every step (the exact checker)."""
    if candidate is None:
        return False
    c = Candidate.model_validate(candidate) if isinstance(candidate, dict) else candidate
    return c.finished and solution_is_correct(problem.problem, c.steps)


def user(problem: StudyProblem) -> list[dict[str, str]]:
    return [{"role": "user", "content": problem.problem}]


class Runner:
    """Runs stages into ``<out>/study_records/``, one resumable records file per (verifier, strategy, N)."""

    def __init__(self, records: Path, digest: str, *, concurrency: int) -> None:
        self.records, self.digest, self.concurrency = records, digest, concurrency

    def path(self, group: str, key: str) -> Path:
        return self.records / group / f"{key}.jsonl"

    def run(self, group: str, key: str, problems: Sequence[StudyProblem], work: Work) -> dict[str, Record]:
        """Run ``work`` on the problems not yet in ``<group>/<key>.jsonl``; every record by problem id."""
        file = RecordsFile(self.path(group, key), {"records": f"{group}/{key}", "design": self.digest})
        kept = file.read()
        done = {r["id"] for r in kept}
        todo = [p for p in problems if p.id not in done]
        started = time.time()
        with tqdm(
            total=len(problems),
            initial=len(problems) - len(todo),
            desc=f"{group}/{key}",
            file=sys.stderr,
            disable=not todo,
        ) as bar:
            new = run_problems(
                work,
                todo,
                file,
                total=len(problems),
                done=len(problems) - len(todo),
                concurrency=self.concurrency,
                on_record=lambda _: bar.update(),
            )
        if new:
            timing = {
                "group": group,
                "key": key,
                "problems": len(new),
                "seconds": time.time() - started,
                "concurrency": self.concurrency,
            }
            with (self.records / "timings.jsonl").open("a") as f:
                f.write(json.dumps(timing) + "\n")
        return {r["id"]: r for r in kept + new}

    def rewrite(self, group: str, key: str, rows: Sequence[Record]) -> None:
        """Replace a derived records file (the samplers' and the ceilings', recomputed from the pool)."""
        path = self.path(group, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        RecordsFile(path, {"records": f"{group}/{key}", "design": self.digest, "derived": True}).rewrite(rows)


def invoke(graph: Any, problem: StudyProblem, context: TTCContext, stop: threading.Event) -> dict[str, Any]:
    """A graph's result on one problem, stopping between graph steps once ``stop`` is set."""
    output: dict[str, Any] = {}
    for chunk in graph.stream({"problem": problem.problem}, stream_mode="values", context=context):
        if stop.is_set():
            raise Stopped
        output = chunk
    return output["result"]


def greedy_work(policy: MicroBatchingPolicy, *, max_tokens: int, delimiter: str) -> Work:
    def work(problem: StudyProblem, stop: threading.Event) -> Record:
        request = GenerationRequest(messages=user(problem), temperature=0, max_tokens=max_tokens)
        (result,) = policy.invoke([request])
        candidate = candidate_from_completion(result.completions[0], delimiter=delimiter)
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": candidate.num_tokens, "policy_calls": 1}
        return outcome(problem, candidate.answer, usage, process=process_right(problem, candidate))

    return work


def pool_work(policy: MicroBatchingPolicy, sizes: dict[str, int], *, seed: int, **sampling: Any) -> Work:
    """Each problem's sample pool: ``sizes[id]`` whole solutions in one request, seeded per problem."""

    def work(problem: StudyProblem, stop: threading.Event) -> Record:
        request = GenerationRequest(
            messages=user(problem), n=sizes[problem.id], seed=derive_seed(seed, "pool", problem.id), **sampling
        )
        (result,) = policy.invoke([request])
        samples = [[c.text, c.num_tokens, c.finish_reason] for c in result.completions]
        return {"id": problem.id, "band": problem.band, "prompt_tokens": result.prompt_tokens, "samples": samples}

    return work


def pool_candidates(line: Record, delimiter: str) -> list[Candidate]:
    """The pool's samples as candidates, built as the sampling graphs build them."""
    return [
        candidate_from_completion(Completion(text=t, num_tokens=k, finish_reason=f), delimiter=delimiter)
        for t, k, f in line["samples"]
    ]


def scores_work(prm: MicroBatchingPRM, pool: dict[str, Record], *, aggregation: str, delimiter: str) -> Work:
    """A verifier's aggregated score and tokens read for every sample of a problem's pool (one batched call)."""

    def work(problem: StudyProblem, stop: threading.Event) -> Record:
        candidates = pool_candidates(pool[problem.id], delimiter)
        todo = [i for i, c in enumerate(candidates) if c.steps]
        results = prm.invoke([ScoreRequest(problem=problem.problem, steps=candidates[i].steps) for i in todo])
        scores: list[float | None] = [None] * len(candidates)
        tokens = [0] * len(candidates)
        for i, result in zip(todo, results, strict=True):
            scores[i], tokens[i] = aggregate(result.scores, aggregation), result.num_tokens
        return {"id": problem.id, "band": problem.band, "scores": scores, "prm_tokens": tokens}

    return work


def graph_work(graph: Any, *, seed: int) -> Work:
    """A strategy graph's outcome (the chosen solution's process grade and any routing decision kept)."""

    def work(problem: StudyProblem, stop: threading.Event) -> Record:
        result = invoke(graph, problem, TTCContext(seed=derive_seed(seed, "strategy", problem.id)), stop)
        chosen = result.get("chosen_index")
        candidate = result["candidates"][chosen] if chosen is not None else None
        extra = {"routing": result["metadata"]["routing"]} if "routing" in result.get("metadata", {}) else {}
        return outcome(problem, result["answer"], result["usage"], process=process_right(problem, candidate), **extra)

    return work


def strategy_graph(strategy: str, policy: Any, prm: Any, n: int, options: dict[str, Any]) -> Any:
    """A strategy's graph at budget ``n`` with the design's options (those its config has)."""
    return create_strategy_graph(strategy, policy, prm, n=n, **applicable(strategy, options))


def router_candidates(strategies: Sequence[str], beam_width: int) -> list[StrategyChoice]:
    """The router's candidates: the fixed strategies, in the design's tie order (ties go to the first)."""
    every = {c.strategy: c for c in default_candidates(beam_width=beam_width)}
    return [every[s] for s in strategies]


def calibrate_router(
    models: Models,
    verifier: str,
    problems: Sequence[StudyProblem],
    *,
    directory: Path,
    digest: str,
    concurrency: int,
    budgets: Sequence[int],
    candidates: Sequence[StrategyChoice],
    router: dict[str, Any],
    sampling: dict[str, Any],
) -> tuple[Path, list[Record]]:
    """Calibrate the router for one verifier as ``ttc calibrate`` does; returns the table's path and the records.

    The records (one per calibration problem, resumable) go to ``calibration_records.jsonl``, the table
    fitted on all of them to ``table.json`` and its accuracy-per-bin plot to ``table.png``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    calibration = Calibration(
        models.policy("small"),
        models.verifier(verifier),
        budgets=budgets,
        candidates=candidates,
        pilots=router["pilots"],
        aggregation=sampling["aggregation"],
        seed=router["seed"],
        temperature=sampling["temperature"],
        max_tokens=sampling["max_tokens"],
    )
    settings = {
        **calibration.settings(),
        "dataset": "arith study bands",
        "problems": config_digest({"ids": [asdict(p) for p in problems]}),
        "policy": str(models.paths["small"]),
        "prm": str(models.paths[verifier]),
        "design": digest,
    }
    path = directory / "calibration_records.jsonl"
    file = calibration_records(path, settings)
    todo = len(problems) - len(file.read())
    started = time.time()
    records = calibration.run([p.eval_problem() for p in problems], concurrency=concurrency, records=file)
    if todo:
        timing = {
            "group": verifier,
            "key": "router_calibration",
            "problems": todo,
            "seconds": time.time() - started,
            "concurrency": concurrency,
        }
        with (directory.parents[1] / "timings.jsonl").open("a") as f:
            f.write(json.dumps(timing) + "\n")
    table = fit_table(
        records,
        candidates=candidates,
        estimator=router["estimator"],
        bin_count=router["bins"],
        pilots=router["pilots"],
        aggregation=sampling["aggregation"],
        folds=router["folds"],
        provenance={
            "command": "benchmarks/study.py (router calibration)",
            "verifier": verifier,
            "policy": str(models.paths["small"]),
            "prm": str(models.paths[verifier]),
            "problems": len(problems),
            "seed": router["seed"],
            **sampling,
        },
    )
    table_path = directory / "table.json"
    save_table(table, table_path)
    plot_calibration(records, table, [c.label() for c in candidates], directory / "table.png")
    return table_path, records
