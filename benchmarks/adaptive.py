"""Adaptive stopping and the budget-choosing router against fixed budgets, per difficulty band (issue 29).

In the Arith world (the shipped small policy and PRM, ``langchain_ttc/arith/models``), on fresh problems
of 1-9 steps in the four difficulty bands of :mod:`_bands` (the small policy's exact process pass@1,
quartiles of a calibration pool), each problem is run by:

- ``majority_vote`` and ``weighted_best_of_n`` at a fixed N = 64 (one scored sample set serves both);
- ``adaptive_majority_vote`` and ``adaptive_weighted_best_of_n`` with a maximum budget of 64 (waves of
  4, the Dirichlet rule at 0.95: the defaults);
- the strategy-only router (``compute_optimal`` at N = 64, a table choosing the strategy per bin) and
  the budget-choosing router (the same candidates, a table that also chooses each bin's budget up to
  64 within a tolerance of one accuracy point), both calibrated by ``ttc calibrate``'s own code on a
  disjoint set of problems drawn from the same bands.

Per band and overall: accuracy, mean samples and mean FLOPs per problem (2 x parameters x tokens:
generated and prompt tokens of the policy, tokens the PRM read), and the paired exact McNemar test
of each adaptive run against its fixed counterpart. The goals (issue 29): an adaptive strategy within
1 point of fixed N = 64 at <= 50% of its FLOPs; the budget router at least as accurate as the
strategy-only router at <= 60% of its FLOPs.

With ``--its-hub``, its_hub 1.2.0's ``BetaSelfConsistency`` (threshold 0.95) and
``AdaptiveSelfConsistency`` (threshold 0.75) run on the same test problems with the same maximum budget,
temperature and token limit, sampling from the same small policy behind a vLLM CPU server (its_hub calls
an OpenAI-compatible server; its own environment, ``benchmarks/_its_hub.py`` says how to build it, started
through ``benchmarks/peers.py``'s runner), and the report sets their accuracy and samples beside
``adaptive_majority_vote``'s, paired by problem.

Records (one JSON line per problem: every run's answer, correctness, samples, usage and FLOPs) go to
``benchmarks/results/adaptive.jsonl`` as each chunk of problems finishes, the calibration records to
``adaptive_calibration.jsonl``, its_hub's to ``adaptive_its_hub.jsonl``; a rerun with the same settings
resumes from them.

    nice -n 10 python benchmarks/adaptive.py [--per-band 8] [--calibration-per-band 10] [--its-hub]

Writes ``benchmarks/results/adaptive.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _bands import BAND_NAMES, band_thresholds, problems_by_band
from _report import RESULTS, header, wilson, write
from _stats import compare

from langchain_ttc import create_strategy_graph
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.core.answers import answers_equivalent
from langchain_ttc.core.types import Candidate
from langchain_ttc.core.voting import majority_vote
from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM
from langchain_ttc.engines.transformers_policy import TransformersPolicy
from langchain_ttc.engines.transformers_prm import MathShepherdPRM
from langchain_ttc.evaluation.calibrate import Calibration, calibration_records, default_candidates, fit_table
from langchain_ttc.evaluation.compute import ModelSizes, run_cost
from langchain_ttc.evaluation.datasets import EvalProblem
from langchain_ttc.evaluation.fit import BudgetChoice
from langchain_ttc.evaluation.run import subsample_usage
from langchain_ttc.strategies.routing.compute_optimal import create_compute_optimal_graph
from langchain_ttc.strategies.routing.table import StrategyTable

TEST_SEED = 29_000_001
CALIBRATION_SEED = 29_500_003  # drawn apart from the test problems (and from _bands' pool)
MAX_BUDGET = 64
CALIBRATED_BUDGETS = [4, 8, 16, 64]
PILOTS = 4
BINS = 3
TOLERANCE = 0.01
ROUTED = ("majority_vote", "best_of_n", "weighted_best_of_n")
MAX_TOKENS = 256
CHUNK = 32
PAIRS = [
    ("adaptive_majority_vote", "majority_vote@64"),
    ("adaptive_weighted_best_of_n", "weighted_best_of_n@64"),
    ("budget_router", "strategy_router"),
]
GOALS = {"adaptive_majority_vote": 0.5, "adaptive_weighted_best_of_n": 0.5, "budget_router": 0.6}
"""The most FLOPs each run may spend, as a share of its counterpart's (issue 29)."""
ITS_HUB = {"beta_self_consistency": 0.95, "adaptive_self_consistency": 0.75}
"""its_hub's adaptive self-consistency algorithms and their stopping thresholds (its_hub's defaults)."""
ITS_HUB_RECORDS = "adaptive_its_hub.jsonl"


def right(answer: str | None, gold: str) -> bool:
    return answer is not None and answers_equivalent(answer, gold)


def read_done(path: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a run with these settings (a file of other settings is refused)."""
    if not path.exists():
        path.write_text(json.dumps({"config": settings}) + "\n")
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if lines[0].get("config") != settings:
        raise SystemExit(f"{path} holds another configuration; move it away to start over.")
    return lines[1:]


def run_chunk(
    problems: list[tuple[EvalProblem, str, float]], graphs: dict[str, Any], sizes: ModelSizes, concurrency: int
) -> list[dict[str, Any]]:
    """Every run on a chunk of problems: one record per problem."""
    inputs = [{"problem": p.problem} for p, _, _ in problems]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:  # every run at once: the micro-batches fill up
        futures = {name: [pool.submit(graph.invoke, i) for i in inputs] for name, graph in graphs.items()}
        outputs = {name: [f.result() for f in done] for name, done in futures.items()}
    records = []
    for i, (problem, band, pass_at_1) in enumerate(problems):
        runs: dict[str, dict[str, Any]] = {}
        fixed = outputs["fixed"][i]["result"]
        candidates = [Candidate.model_validate(c) for c in fixed["candidates"]]
        for name, scored in (("majority_vote@64", False), ("weighted_best_of_n@64", True)):
            if scored:
                answer = fixed["answer"]
            else:
                chosen = majority_vote(candidates).chosen_index
                answer = None if chosen is None else candidates[chosen].answer
            spent = subsample_usage(fixed["usage"], candidates, len(candidates), scored=scored)
            runs[name] = {"answer": answer, "correct": right(answer, problem.answer)}
            runs[name] |= run_cost(spent, samples=len(candidates), sizes=sizes)
        for name in graphs:
            if name == "fixed":
                continue
            result = outputs[name][i]["result"]
            runs[name] = {"answer": result["answer"], "correct": right(result["answer"], problem.answer)}
            runs[name] |= run_cost(result["usage"], samples=len(result["candidates"]), sizes=sizes)
            if "routing" in result["metadata"]:
                routing = result["metadata"]["routing"]
                runs[name]["routing"] = {k: routing[k] for k in ("bin", "strategy", "chosen_budget", "difficulty")}
            if "stop" in result["metadata"]:
                runs[name]["stop"] = result["metadata"]["stop"]["reason"]
        records.append({"id": problem.id, "band": band, "pass_at_1": pass_at_1, "gold": problem.answer, "runs": runs})
    return records


def as_eval_problems(bands: dict[str, list[Any]], prefix: str) -> list[tuple[EvalProblem, str, float]]:
    """The band problems as evaluation problems (id, gold answer, band as level), bands interleaved."""
    rows = []
    for band in BAND_NAMES:
        for k, (problem, pass_at_1) in enumerate(bands[band]):
            rows.append(
                (EvalProblem(id=f"{prefix}-{band}-{k}", problem=problem.problem, answer=problem.answer, level=band),
                 band, pass_at_1)
            )  # fmt: skip
    return rows


def tables(records: list[dict[str, Any]]) -> tuple[StrategyTable, StrategyTable]:
    """The strategy-only and the budget-choosing tables, fitted on the calibration records."""
    candidates = [c for c in default_candidates() if c.strategy in ROUTED]
    common = {"candidates": candidates, "estimator": "prm_score", "bin_count": BINS, "pilots": PILOTS}
    common |= {"aggregation": "last", "folds": 2, "provenance": {"command": "python benchmarks/adaptive.py"}}
    strategy_only = fit_table(records, **common)
    budget = fit_table(records, **common, budget_choice=BudgetChoice(max_budget=MAX_BUDGET, tolerance=TOLERANCE))
    return strategy_only, budget


def summarize(records: list[dict[str, Any]], name: str) -> dict[str, float]:
    hits = sum(r["runs"][name]["correct"] for r in records)
    return {
        "hits": hits,
        "n": len(records),
        "samples": sum(r["runs"][name]["samples"] for r in records) / len(records),
        "flops": sum(r["runs"][name]["flops"] for r in records) / len(records),
        "policy": sum(r["runs"][name]["policy_flops"] for r in records) / len(records),
        "verifier": sum(r["runs"][name]["verifier_flops"] for r in records) / len(records),
    }


def report(
    records: list[dict[str, Any]], calibration: list[dict[str, Any]], thresholds: list[float],
    pair_tables: tuple[StrategyTable, StrategyTable], sizes: ModelSizes, seconds: dict[str, float],
    args: argparse.Namespace, its_hub: list[dict[str, Any]],
) -> list[str]:  # fmt: skip
    strategy_only, budget = pair_tables
    lines = header("Adaptive stopping and the budget-choosing router (Arith, per difficulty band)", __file__)
    lines += [
        f"- problems: {len(records)} test problems of 1-9 steps, {args.per_band} per band (seed {TEST_SEED}); "
        f"{len(calibration)} calibration problems for the routers, {args.calibration_per_band} per band (seed "
        f"{CALIBRATION_SEED}), disjoint from them",
        "- bands: benchmarks/_bands.py (the small policy's exact process pass@1 at temperature 0.8; quartiles of a "
        f"400-problem pool): easy >= {thresholds[0]:.3g} > medium >= {thresholds[1]:.3g} > hard >= "
        f"{thresholds[2]:.3g} > hardest",
        f"- models: the shipped Arith small policy ({sizes.policy:,} parameters) and PRM ({sizes.verifier:,} "
        f"parameters); temperature 0.8, max_tokens {MAX_TOKENS}, aggregation last, seed 0",
        "- FLOPs: 2 x parameters x tokens, per problem: policy (generated + prompt tokens) + verifier (tokens the "
        "PRM read); means over the problems",
        f"- adaptive: waves of 4, Dirichlet rule at 0.95 (the defaults), at most {MAX_BUDGET} samples",
        f"- routers: candidates {', '.join(ROUTED)}; {PILOTS} pilots scored by the PRM (estimator prm_score), "
        f"{BINS} bins; the strategy-only router runs at N = {MAX_BUDGET}; the budget router's table chooses per "
        f"bin the smallest of budgets {CALIBRATED_BUDGETS} within {TOLERANCE:.0%} accuracy of the best at "
        f"{MAX_BUDGET} (`ttc calibrate --max-budget {MAX_BUDGET} --tolerance {TOLERANCE}`)",
        "- wall time, summed over the invocations (shared machine: 2 cores, a training run and other jobs on them; "
        "FLOPs and accuracy do not depend on it): " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()),
        "",
        "## Paired comparisons",
        "",
        "![accuracy against FLOPs per problem, each run; arrows from each fixed run to its adaptive one](adaptive.png)",
        "",
        "(The strategy-only router chose weighted best-of-N at 64 in every bin, so its point sits on "
        "`weighted_best_of_n@64`'s.)"
        if strategy_only_is_weighted(strategy_only)
        else "",
        "",
        "Accuracy (correct/problems), mean samples and mean FLOPs per problem; discordant pairs b (the first "
        "right, the second wrong) and c; exact two-sided McNemar p.",
        "",
        "| run | against | band | accuracy | against | difference | samples | against | FLOPs | against | "
        "FLOPs ratio | b | c | p | goal |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, other in PAIRS:
        for band in (*BAND_NAMES, "all"):
            subset = [r for r in records if band in ("all", r["band"])]
            if not subset:
                continue
            mine, theirs = summarize(subset, name), summarize(subset, other)
            paired = compare({r["id"]: r["runs"][name]["correct"] for r in subset},
                             {r["id"]: r["runs"][other]["correct"] for r in subset}, name, other)  # fmt: skip
            ratio = mine["flops"] / theirs["flops"]
            goal = "-"
            if band == "all":
                accurate = paired.difference >= -0.01 if name != "budget_router" else paired.difference >= 0
                goal = "met" if accurate and ratio <= GOALS[name] else "not met"
                goal += f" (accuracy {'ok' if accurate else 'short'}, FLOPs {'ok' if ratio <= GOALS[name] else 'over'})"
            lines.append(
                f"| {name} | {other} | {band} | {mine['hits']}/{mine['n']} ({mine['hits'] / mine['n']:.1%}) | "
                f"{theirs['hits'] / theirs['n']:.1%} | {paired.difference * 100:+.1f} pt | {mine['samples']:.1f} | "
                f"{theirs['samples']:.1f} | {mine['flops']:.3g} | {theirs['flops']:.3g} | {ratio:.0%} | "
                f"{paired.a_only} | {paired.b_only} | {paired.p:.3g} | {goal} |"
            )
    lines += [
        "",
        f"Goals: an adaptive strategy within 1 point of its fixed N = {MAX_BUDGET} counterpart at <= 50% of its "
        "FLOPs; the budget router at least as accurate as the strategy-only router at <= 60% of its FLOPs.",
        "",
        "## Every run",
        "",
        "| run | band | accuracy | 95% CI | samples | FLOPs | policy FLOPs | verifier FLOPs |",
        "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    names = list(records[0]["runs"])
    for name in names:
        for band in (*BAND_NAMES, "all"):
            subset = [r for r in records if band in ("all", r["band"])]
            s = summarize(subset, name)
            low, high = wilson(int(s["hits"]), int(s["n"]))
            lines.append(
                f"| {name} | {band} | {s['hits'] / s['n']:.1%} | {low:.1%}–{high:.1%} | {s['samples']:.1f} | "
                f"{s['flops']:.3g} | {s['policy']:.3g} | {s['verifier']:.3g} |"
            )
    lines += ["", "## The routers' tables (fitted on the calibration problems)", ""]
    lines += ["| bin | upper (prm_score) | strategy-only at 64 | budget router: strategy, budget |",
              "| --- | ---: | --- | --- |"]  # fmt: skip
    for bin_ in strategy_only.bins:
        plain, chosen = strategy_only.budgets[MAX_BUDGET][bin_.name], budget.budgets[MAX_BUDGET][bin_.name]
        upper = "-" if bin_.upper is None else f"{bin_.upper:.3g}"
        lines.append(f"| {bin_.name} | {upper} | {plain.label()} | {chosen.label()}, {chosen.spends(MAX_BUDGET)} |")
    held = budget.calibration["budget_choice"]["held_out_router"][str(MAX_BUDGET)]
    lines += [
        "",
        f"Held out on the calibration problems (2 folds): strategy-only router "
        f"{strategy_only.calibration['held_out_router_accuracy'][str(MAX_BUDGET)]:.1%} at {MAX_BUDGET}; budget "
        f"router {held['accuracy']:.1%} at a mean budget of {held['mean_budget']:.1f}.",
        "",
        "Test problems per router bin (budget router): "
        + ", ".join(
            f"{b.name} {sum(r['runs']['budget_router']['routing']['bin'] == b.name for r in records)}"
            for b in budget.bins
        ),
        "",
    ]
    return lines + its_hub_section(records, its_hub)


def strategy_only_is_weighted(table: StrategyTable) -> bool:
    """Whether the strategy-only table routes every bin at the maximum budget to weighted best-of-N."""
    return all(c.strategy == "weighted_best_of_n" for c in table.budgets[MAX_BUDGET].values())


def stage_seconds(path: Path, now: dict[str, float]) -> dict[str, float]:
    """Each stage's wall time summed over the invocations that did work in it (a resumed stage adds ~0)."""
    total = json.loads(path.read_text()) if path.exists() else {}
    for stage, spent in now.items():
        total[stage] = total.get(stage, 0.0) + spent
    path.write_text(json.dumps(total, indent=1) + "\n")
    return total


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against mean FLOPs per problem (policy and verifier), every run, all problems and the hardest band.

    An arrow joins each adaptive run (and the budget router) to its fixed counterpart.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for axis, band in zip(axes, ("all", BAND_NAMES[-1]), strict=True):
        subset = [r for r in records if band in ("all", r["band"])]
        points = {}
        for name in records[0]["runs"]:
            s = summarize(subset, name)
            points[name] = (s["flops"], s["hits"] / s["n"])
            marker, size = ("o", 110) if "@" in name else ("s", 50) if name == "strategy_router" else ("*", 170)
            axis.scatter(*points[name], marker=marker, s=size, label=name, zorder=3, alpha=0.85)
        for name, other in PAIRS:
            axis.annotate("", xy=points[name], xytext=points[other],
                          arrowprops={"arrowstyle": "->", "color": "grey", "alpha": 0.6})  # fmt: skip
        axis.set_xscale("log")
        axis.set_ylim(0, 1.05)
        axis.set_xlabel("mean FLOPs per problem (policy + verifier)")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{'all problems' if band == 'all' else band + ' band'} ({len(subset)} problems)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    figure.suptitle(f"Adaptive stopping and the budget router against fixed N = {MAX_BUDGET} (arrows: to adaptive)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def its_hub_section(records: list[dict[str, Any]], its_hub: list[dict[str, Any]]) -> list[str]:
    """its_hub's adaptive algorithms beside ``adaptive_majority_vote``, paired by problem (or why there is none)."""
    lines = ["", "## its_hub 1.2.0's adaptive self-consistency on the same problems", ""]
    by_run: dict[str, dict[str, dict[str, Any]]] = {}
    for row in its_hub:
        by_run.setdefault(row["run"], {})[row["id"]] = row
    if not by_run:
        return [*lines, "Not run (`--its-hub`)."]
    lines += [
        f"its_hub's algorithms sample from the same small policy behind a vLLM CPU server (its OpenAI-compatible "
        f"client, one request per sample), at most {MAX_BUDGET} samples, temperature 0.8, max_tokens {MAX_TOKENS}; "
        "ours in process. No PRM in either. Paired with `adaptive_majority_vote` by problem: b = its_hub right "
        "and ours wrong, c = the reverse; exact two-sided McNemar p.",
        "",
        "`BetaSelfConsistency` sends all its requests at once and cancels those still running when it stops; "
        "its samples are the responses it kept, those that finished after the stop included (its_hub keeps "
        "them). `AdaptiveSelfConsistency` samples in doubling rounds until a 75% majority.",
        "",
        "| its_hub algorithm | threshold | band | accuracy | adaptive_majority_vote | samples | ours: samples "
        "| b | c | p |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for algorithm, threshold in ITS_HUB.items():
        rows = by_run.get(f"its_hub/{algorithm}@{MAX_BUDGET}", {})
        for band in (*BAND_NAMES, "all"):
            subset = [r for r in records if band in ("all", r["band"]) and r["id"] in rows]
            if not subset:
                continue
            theirs = {r["id"]: bool(rows[r["id"]]["correct"]) for r in subset}
            ours = {r["id"]: r["runs"]["adaptive_majority_vote"]["correct"] for r in subset}
            paired = compare(theirs, ours, algorithm, "adaptive_majority_vote")
            mine = summarize(subset, "adaptive_majority_vote")
            samples = sum(rows[r["id"]]["samples"] for r in subset) / len(subset)
            lines.append(
                f"| `{algorithm}` | {threshold} | {band} | {sum(theirs.values())}/{len(subset)} "
                f"({sum(theirs.values()) / len(subset):.1%}) | {mine['hits'] / mine['n']:.1%} | {samples:.1f} | "
                f"{mine['samples']:.1f} | {paired.a_only} | {paired.b_only} | {paired.p:.3g} |"
            )
    return lines


def run_its_hub(test: list[tuple[EvalProblem, str, float]], path: Path, its_python: Path) -> list[dict[str, Any]]:
    """its_hub's adaptive algorithms on the test problems (``peers.py``'s runner and vLLM server); their records."""
    import peers

    problems = [{"id": p.id, "problem": p.problem, "answer": p.answer, "difficulty": band} for p, band, _ in test]
    with peers.policy_server(None) as url:
        for algorithm, threshold in ITS_HUB.items():
            arguments = ["--algorithm", algorithm, "--n", str(MAX_BUDGET), "--threshold", str(threshold),
                         "--temperature", "0.8", "--max-tokens", str(MAX_TOKENS), "--in-flight", "8"]  # fmt: skip
            peers.run_its_hub(its_python, url, f"its_hub/{algorithm}@{MAX_BUDGET}", arguments, problems, path)
            print(f"its_hub {algorithm} done", flush=True)
    return read_its_hub(path)


def read_its_hub(path: Path) -> list[dict[str, Any]]:
    """its_hub's per-problem records (segment lines left out)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") != "segment"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-band", type=int, default=8, help="Test problems per band.")
    parser.add_argument("--calibration-per-band", type=int, default=10, help="Calibration problems per band.")
    parser.add_argument("--concurrency", type=int, default=16, help="Runs in flight at once.")
    parser.add_argument("--results", type=Path, default=RESULTS, help="Where the records and the report go.")
    parser.add_argument("--its-hub", action="store_true", help="Run its_hub's adaptive algorithms too (vLLM).")
    parser.add_argument("--its-python", type=Path, default=Path("/work/its-venv/bin/python"),
                        help="The Python of the environment with its_hub (benchmarks/_its_hub.py).")  # fmt: skip
    args = parser.parse_args()
    if args.its_hub and not args.its_python.exists():
        parser.error(f"--its-python {args.its_python} does not exist; build it as benchmarks/_its_hub.py says")
    args.results.mkdir(parents=True, exist_ok=True)
    output, calibration_path = args.results / "adaptive.jsonl", args.results / "adaptive_calibration.jsonl"
    started = time.time()
    raw_policy = TransformersPolicy.from_pretrained(arith_checkpoint("small"), batch_size=128)
    raw_prm = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"), batch_size=64)
    sizes = ModelSizes.of(raw_policy, raw_prm)
    policy, prm = MicroBatchingPolicy(raw_policy), MicroBatchingPRM(raw_prm)
    thresholds = band_thresholds(raw_policy)
    test = as_eval_problems(problems_by_band(raw_policy, args.per_band, seed=TEST_SEED, thresholds=thresholds), "t")
    cal = as_eval_problems(
        problems_by_band(raw_policy, args.calibration_per_band, seed=CALIBRATION_SEED, thresholds=thresholds), "c"
    )
    overlap = {p.problem for p, _, _ in test} & {p.problem for p, _, _ in cal}
    cal = [row for row in cal if row[0].problem not in overlap]
    seconds = {"models and bands": time.time() - started}

    started = time.time()
    candidates = [c for c in default_candidates() if c.strategy in ROUTED]
    calibration = Calibration(policy, prm, budgets=CALIBRATED_BUDGETS, candidates=candidates, pilots=PILOTS,
                              seed=CALIBRATION_SEED, temperature=0.8, max_tokens=MAX_TOKENS)  # fmt: skip
    settings = {**calibration.settings(), "problems": [p.id for p, _, _ in cal], "thresholds": thresholds}
    cal_records = calibration.run(
        [p for p, _, _ in cal], concurrency=args.concurrency, records=calibration_records(calibration_path, settings)
    )
    seconds["calibration"] = time.time() - started
    strategy_only, budget = tables(cal_records)

    common = {"seed": 0, "max_tokens": MAX_TOKENS}
    graphs = {
        "fixed": create_strategy_graph("weighted_best_of_n", policy, prm, n=MAX_BUDGET, aggregation="last", **common),
        "adaptive_majority_vote": create_strategy_graph("adaptive_majority_vote", policy, None, n=MAX_BUDGET, **common),
        "adaptive_weighted_best_of_n": create_strategy_graph(
            "adaptive_weighted_best_of_n", policy, prm, n=MAX_BUDGET, aggregation="last", **common
        ),
        "strategy_router": create_compute_optimal_graph(policy, prm, budget=MAX_BUDGET, table=strategy_only, **common),
        "budget_router": create_compute_optimal_graph(policy, prm, budget=MAX_BUDGET, table=budget, **common),
    }
    run_settings = {
        "problems": [p.id for p, _, _ in test], "thresholds": thresholds, "max_tokens": MAX_TOKENS, "seed": 0,
        "tables": [strategy_only.model_dump(mode="json")["budgets"], budget.model_dump(mode="json")["budgets"]],
    }  # fmt: skip
    records = read_done(output, run_settings)
    done = {r["id"] for r in records}
    todo = [row for row in test if row[0].id not in done]
    started = time.time()
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        new = run_chunk(chunk, graphs, sizes, args.concurrency)
        with output.open("a") as file:
            file.writelines(json.dumps(r) + "\n" for r in new)
        records += new
        print(f"{len(records)}/{len(test)} test problems, {time.time() - started:.0f} s", flush=True)
    seconds["test runs"] = time.time() - started
    order = {p.id: k for k, (p, _, _) in enumerate(test)}
    records.sort(key=lambda r: order[r["id"]])
    its_hub_path = args.results / ITS_HUB_RECORDS
    if args.its_hub:
        started = time.time()
        run_its_hub(test, its_hub_path, args.its_python)
        seconds["its_hub"] = time.time() - started
    its_hub = [r for r in read_its_hub(its_hub_path) if r["id"] in order]
    seconds = stage_seconds(args.results / "adaptive_seconds.json", seconds)
    lines = report(records, cal_records, thresholds, (strategy_only, budget), sizes, seconds, args, its_hub)
    plot(records, args.results / "adaptive.png")
    if args.results == RESULTS:
        write("adaptive.md", lines)
    else:  # a trial run elsewhere
        (args.results / "adaptive.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
