"""The study in miniature: does a small policy that thinks longer beat a policy four times its size.

One run on held-out Arith problems of every difficulty (none in the router's calibration set),
small policy + Arith PRM (aggregation ``last``, temperature 0.8), reproducing the figures of
Snell et al. (2024) and the search-and-learn blog post:

- accuracy against N for majority vote, best-of-N and weighted best-of-N (one pool of 256 samples
  per problem, its first N used, N = 1 to 256), beam search and DVTS (beam width 4), particle
  filtering and the compute-optimal router (the shipped table) at N = 4, 16, 64; the small and the large policy's
  greedy accuracy, and the ceilings pass@N (some sample answers right) and process pass@N (some
  sample is right at every step, by the exact checker);
- the same per difficulty band (easy: 1-2 steps, medium: 3-5, hard: 6-8);
- accuracy against inference compute, 2 x parameters x generated tokens (the policy's; the PRM's
  reading is not counted), where the large policy's greedy answer is one point;
- the findings F1-F6, each met or not met with its numbers.

    python benchmarks/study.py [--per-difficulty 12] [--concurrency 8] [--seed S]

Writes ``benchmarks/results/study.md``, ``study.png`` (overall and per band), ``study_flops.png``
and the raw ``study_*.jsonl`` records (resumable with ``--resume``; the router's are in
``study_router.jsonl``: delete it and resume to re-run the router alone on a recalibrated table).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from _report import RESULTS, header, wilson, write

from langchain_ttc import make_problems
from langchain_ttc.core.answers import extract_boxed
from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM
from langchain_ttc.engines.loading import load_policy, load_prm
from langchain_ttc.evaluation.datasets import EvalProblem, load_problems
from langchain_ttc.evaluation.fit import accuracy, fit_choices, held_out_accuracy
from langchain_ttc.evaluation.run import EvalConfig, grade, run_evaluation
from langchain_ttc.strategies.routing.table import StrategyTable, load_table

SEED = 11_000_000
BANDS = {"easy": (1, 2), "medium": (3, 4, 5), "hard": (6, 7, 8)}
SAMPLERS = ("majority_vote", "best_of_n", "weighted_best_of_n")
SEARCHES = ("beam_search", "dvts", "particle_filtering", "compute_optimal")
PRM_STRATEGIES = ("best_of_n", "weighted_best_of_n", "beam_search", "dvts", "particle_filtering", "compute_optimal")
MAX_TOKENS = 256
Rows = list[dict[str, Any]]


def held_out_problems(per_difficulty: int, table: StrategyTable, seed: int = SEED) -> list[EvalProblem]:
    """``per_difficulty`` problems at each difficulty 1-8, none of them in the table's calibration set."""
    options = table.calibration["dataset_options"]
    calibration = {p.problem for p in load_problems("arith", count=options["count"], seed=options["seed"])}
    problems = []
    for d in range(1, 9):
        fresh = [p for p in make_problems(per_difficulty * 3, d, seed=seed + d) if p.problem not in calibration]
        problems += [
            EvalProblem(id=f"d{d}-{i}", problem=p.problem, answer=p.answer, level=str(d))
            for i, p in enumerate(fresh[:per_difficulty])
        ]
    return problems


def greedy(policy: Any, problems: list[EvalProblem]) -> dict[str, tuple[bool, int]]:
    """Each problem's greedy grade and generated tokens."""
    results = policy.invoke(
        [
            GenerationRequest(messages=[{"role": "user", "content": p.problem}], temperature=0, max_tokens=MAX_TOKENS)
            for p in problems
        ]
    )
    return {
        p.id: (grade(extract_boxed(r.completions[0].text), p.answer), r.completions[0].num_tokens)
        for p, r in zip(problems, results, strict=True)
    }


def run(args: argparse.Namespace, problems: list[EvalProblem]) -> tuple[Rows, dict[str, int]]:
    """Every strategy on every problem; one merged record per problem, and the policies' parameter counts."""
    small = load_policy("arith:small")
    policy = MicroBatchingPolicy(small)
    prm = MicroBatchingPRM(load_prm("arith:prm"))
    configs = {
        "study_sampling.jsonl": EvalConfig(
            dataset="arith-study", strategies=list(SAMPLERS), n_max=args.pool, max_tokens=MAX_TOKENS, seed=args.seed
        ),
        **{
            # The router's records apart: they depend on the shipped table, the others on the checkpoints only.
            records: EvalConfig(
                dataset="arith-study",
                strategies=strategies,
                n_max=max(args.budgets),
                budgets=args.budgets,
                max_tokens=MAX_TOKENS,
                seed=args.seed,
            )
            for records, strategies in (
                ("study_search.jsonl", [s for s in SEARCHES if s != "compute_optimal"]),
                ("study_router.jsonl", ["compute_optimal"]),
            )
        },
    }
    merged: dict[str, dict[str, Any]] = {}
    for name, config in configs.items():
        if not args.resume:  # records of an earlier run were made by earlier code: never mix them in
            (RESULTS / name).unlink(missing_ok=True)
        for record in run_evaluation(
            config, problems, RESULTS / name, policy=policy, prm=prm, concurrency=args.concurrency
        ):
            entry = merged.setdefault(record["id"], {**record, "correct": {}, "tokens": {}, "usage": {}})
            for part in ("correct", "tokens", "usage"):
                entry[part] |= record[part]
            entry.setdefault("routing", {}).update(record.get("routing", {}))
    large = load_policy("arith:large")
    for name, engine in (("small_greedy", small), ("large_greedy", large)):
        for problem_id, (correct, tokens) in greedy(engine, problems).items():
            merged[problem_id]["correct"][f"{name}@1"] = correct
            merged[problem_id]["tokens"][f"{name}@1"] = tokens
    sizes = {
        name: sum(p.numel() for p in engine.model.parameters())  # type: ignore[attr-defined]
        for name, engine in (("small", small), ("large", large))
    }
    return list(merged.values()), sizes


def band_of(row: dict[str, Any]) -> str:
    return next(name for name, levels in BANDS.items() if int(row["level"]) in levels)


def rate(rows: Rows, key: str) -> tuple[float, float, float, int]:
    """Accuracy of ``key`` over the rows that have it, with its 95% Wilson interval and the count."""
    hits = [bool(r["correct"][key]) for r in rows if key in r["correct"]]
    if not hits:
        return (float("nan"), float("nan"), float("nan"), 0)
    low, high = wilson(sum(hits), len(hits))
    return (sum(hits) / len(hits), low, high, len(hits))


def cell(rows: Rows, key: str) -> str:
    value, low, high, count = rate(rows, key)
    return f"{value:.1%} ({low:.0%}–{high:.0%})" if count else ""


def budgets_of(rows: Rows, strategy: str) -> list[int]:
    keys = {k for r in rows for k in r["correct"]}
    return sorted(int(k.rsplit("@", 1)[1]) for k in keys if k.rsplit("@", 1)[0] == strategy)


def curve_strategies() -> list[str]:
    return [*SAMPLERS, *SEARCHES, "pass", "process_pass"]


def accuracy_table(rows: Rows, title: str) -> list[str]:
    ns = budgets_of(rows, "majority_vote")
    lines = [title, "", "| strategy | " + " | ".join(f"N={n}" for n in ns) + " |", "| --- |" + " ---: |" * len(ns)]
    for strategy in curve_strategies():
        lines.append(f"| {strategy} | " + " | ".join(cell(rows, f"{strategy}@{n}") for n in ns) + " |")
    for name in ("small_greedy", "large_greedy"):
        lines.append(f"| {name} | {cell(rows, f'{name}@1')} |" + " |" * (len(ns) - 1))
    return [*lines, ""]


def plot_accuracy(rows: Rows) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        "all problems": rows,
        **{f"{b} ({BANDS[b][0]}-{BANDS[b][-1]} steps)": [r for r in rows if band_of(r) == b] for b in BANDS},
    }
    figure, axes = plt.subplots(2, 2, figsize=(12, 9))
    for axis, (title, subset) in zip(axes.flat, groups.items(), strict=True):
        for strategy in curve_strategies():
            ns = budgets_of(subset, strategy)
            values = [rate(subset, f"{strategy}@{n}")[0] for n in ns]
            style = (
                {"linestyle": "--", "color": "grey" if strategy == "pass" else "black"}
                if "pass" in strategy
                else {"marker": "o"}
            )
            axis.plot(ns, values, label=strategy, **style)
        for name, color in (("large_greedy", "tab:red"), ("small_greedy", "tab:grey")):
            axis.axhline(rate(subset, f"{name}@1")[0], color=color, linestyle=":", label=name.replace("_", " "))
        axis.set_xscale("log", base=2)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("N (samples or beams)")
        axis.set_ylabel("accuracy")
        axis.set_title(f"{title}, {len(subset)} problems")
        axis.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    figure.suptitle("Arith world v2: small policy + PRM against the large policy")
    figure.tight_layout()
    figure.savefig(RESULTS / "study.png", dpi=110)
    plt.close(figure)


def flops(rows: Rows, key: str, parameters: int) -> float:
    """Mean inference FLOPs per problem of a run: 2 x parameters x generated tokens."""
    values = [r["tokens"][key] for r in rows if key in r["tokens"]]
    return 2 * parameters * sum(values) / len(values)


def plot_flops(rows: Rows, sizes: dict[str, int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, (title, subset) in zip(
        axes, (("all problems", rows), ("hard (6-8 steps)", [r for r in rows if band_of(r) == "hard"])), strict=True
    ):
        for strategy in (*SAMPLERS, *SEARCHES):
            ns = budgets_of(subset, strategy)
            axis.plot(
                [flops(subset, f"{strategy}@{n}", sizes["small"]) for n in ns],
                [rate(subset, f"{strategy}@{n}")[0] for n in ns],
                marker="o",
                label=strategy,
            )
        for name, size, color in (
            ("large_greedy", sizes["large"], "tab:red"),
            ("small_greedy", sizes["small"], "tab:grey"),
        ):
            axis.plot(
                [flops(subset, f"{name}@1", size)],
                [rate(subset, f"{name}@1")[0]],
                marker="*",
                markersize=14,
                linestyle="",
                color=color,
                label=name.replace("_", " "),
            )
        axis.set_xscale("log")
        axis.set_xlabel("inference FLOPs per problem (2 x parameters x generated tokens, policy only)")
        axis.set_ylabel("accuracy")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(RESULTS / "study_flops.png", dpi=110)
    plt.close(figure)


def best(rows: Rows, strategies: tuple[str, ...], ns: list[int]) -> tuple[str, float]:
    """The best of ``strategies`` at any of ``ns`` on ``rows``: its key and accuracy."""
    keys = [f"{s}@{n}" for s in strategies for n in ns if rate(rows, f"{s}@{n}")[3]]
    key = max(keys, key=lambda k: rate(rows, k)[0])
    return key, rate(rows, key)[0]


FIXED = ("majority_vote", *(s for s in PRM_STRATEGIES if s != "compute_optimal"))


def cross_fitted(rows: Rows, n: int, group: Callable[[dict[str, Any]], str]) -> tuple[float, dict[str, str]]:
    """A fixed strategy per group of problems at ``n``, chosen on held-out problems: (accuracy, choices).

    The problems are split in two folds; each fold runs, per group, the strategy most accurate on
    that group in the other fold (ties: the more accurate over the other fold, then ``FIXED``'s
    order). With the band as the group this is a router that knows each problem's difficulty for
    free (the study does not charge the difficulty estimate; ours pays its pilots); with one group
    it is the best fixed strategy chosen fairly, where the best in hindsight is a maximum over the
    very problems it is scored on. The choices returned are fitted on all problems.
    """

    def choose(train: Rows) -> dict[str, str]:
        keys = [s for s in FIXED if rate(train, f"{s}@{n}")[3]]
        return {
            name: max(
                keys,
                key=lambda s: (
                    rate([r for r in train if group(r) == name], f"{s}@{n}")[0],
                    rate(train, f"{s}@{n}")[0],
                    -keys.index(s),
                ),
            )
            for name in sorted({group(r) for r in rows})
        }

    ordered = sorted(rows, key=lambda r: r["id"])
    folds = [ordered[0::2], ordered[1::2]]
    hits = []
    for held_out, train in ((folds[0], folds[1]), (folds[1], folds[0])):
        choices = choose(train)
        hits += [bool(r["correct"][f"{choices[group(r)]}@{n}"]) for r in held_out]
    return sum(hits) / len(hits), choose(rows)


def one_group(row: dict[str, Any]) -> str:
    return "all"


def fixed_baselines(rows: Rows, n: int) -> tuple[str, float, float, float, dict[str, str]]:
    """The router's baselines at ``n``.

    The best fixed strategy in hindsight (key, accuracy), the best fixed strategy chosen on held-out
    problems (accuracy), and per band with the difficulty known and free (accuracy, choices).
    """
    fixed_key, fixed = best(rows, FIXED, [n])
    oracle, choices = cross_fitted(rows, n, band_of)
    return fixed_key, fixed, cross_fitted(rows, n, one_group)[0], oracle, choices


CLAIMS = {
    "F1": "small policy + PRM search at some N ≤ 64 ≥ the large policy's greedy, overall and on hard problems",
    "F2": "majority voting plateaus (N=16 → 64 gains under 2 points) while weighted best-of-N keeps rising",
    "F3": "beam search ≥ best-of-N at equal N ≤ 16 on hard problems, and within 3 points of best-of-N at 4N (or above)",
    "F4": "DVTS ≥ beam search at N = 64 on easy and medium problems",
    "F5": "the router ≥ the best fixed strategy at each N (within its interval) and > best-of-N at 4N",
    "F6": "weighted best-of-N closes at least 80% of the gap between greedy and pass@N at N = 16",
}


def _pct(value: float) -> str:
    return f"{value:.1%}"


def findings(rows: Rows) -> list[tuple[str, str, bool, str]]:
    """F1-F6: (id, claim, met, the numbers)."""
    band = {b: [r for r in rows if band_of(r) == b] for b in BANDS}

    def acc(subset: Rows, key: str) -> float:
        return rate(subset, key)[0]

    met: dict[str, bool] = {}
    numbers: dict[str, str] = {}

    ns = [1, 2, 4, 8, 16, 32, 64]
    overall_key, overall = best(rows, PRM_STRATEGIES, ns)
    hard_key, hard = best(band["hard"], PRM_STRATEGIES, ns)
    large, large_hard = acc(rows, "large_greedy@1"), acc(band["hard"], "large_greedy@1")
    met["F1"] = overall >= large and hard >= large_hard
    numbers["F1"] = (
        f"overall: best {overall_key} {_pct(overall)}, large greedy {_pct(large)}; "
        f"hard: best {hard_key} {_pct(hard)}, large greedy {_pct(large_hard)}"
    )

    vote = acc(rows, "majority_vote@64") - acc(rows, "majority_vote@16")
    weighted = acc(rows, "weighted_best_of_n@64") - acc(rows, "weighted_best_of_n@16")
    met["F2"] = vote < 0.02 and weighted > 0
    numbers["F2"] = f"N=16 → 64: majority {vote * 100:+.1f} points, weighted best-of-N {weighted * 100:+.1f} points"

    hard_rows = band["hard"]
    beam = {
        n: (acc(hard_rows, f"beam_search@{n}"), acc(hard_rows, f"best_of_n@{n}"), acc(hard_rows, f"best_of_n@{4 * n}"))
        for n in (4, 16)
    }
    met["F3"] = all(b >= o and b >= o4 - 0.03 for b, o, o4 in beam.values())
    numbers["F3"] = "; ".join(
        f"N={n}: beam {_pct(b)}, best-of-N@{n} {_pct(o)}, best-of-N@{4 * n} {_pct(o4)}"
        for n, (b, o, o4) in beam.items()
    )

    dvts = {b: (acc(band[b], "dvts@64"), acc(band[b], "beam_search@64")) for b in ("easy", "medium")}
    met["F4"] = all(d >= s for d, s in dvts.values())
    numbers["F4"] = "; ".join(f"{b}: DVTS {_pct(d)}, beam {_pct(s)}" for b, (d, s) in dvts.items())

    parts = []
    met["F5"] = True
    for n in budgets_of(rows, "compute_optimal"):
        router, _, high, _ = rate(rows, f"compute_optimal@{n}")
        fixed_key, fixed, held_out, oracle, _ = fixed_baselines(rows, n)
        four_n = rate(rows, f"best_of_n@{4 * n}")[0]
        met["F5"] = met["F5"] and high >= fixed and router > four_n
        beyond = " (no fixed strategy at this N beats it either)" if fixed <= four_n else ""
        parts.append(
            f"N={n}: router {_pct(router)} (interval to {_pct(high)}), best fixed {fixed_key} {_pct(fixed)}, "
            f"best-of-N@{4 * n} {_pct(four_n)}{beyond}; held out: best fixed "
            f"{_pct(held_out)}, difficulty known and free {_pct(oracle)}"
        )
    numbers["F5"] = "; ".join(parts)

    greedy_small, weighted16, pass16 = (acc(rows, k) for k in ("small_greedy@1", "weighted_best_of_n@16", "pass@16"))
    closed = (weighted16 - greedy_small) / (pass16 - greedy_small) if pass16 > greedy_small else float("nan")
    met["F6"] = closed >= 0.8
    numbers["F6"] = (
        f"small greedy {_pct(greedy_small)}, weighted best-of-N@16 {_pct(weighted16)}, pass@16 {_pct(pass16)}: "
        f"{closed:.0%} of the gap closed"
    )
    return [(fid, claim, met[fid], numbers[fid]) for fid, claim in CLAIMS.items()]


def calibration_section(table: StrategyTable) -> list[str]:
    """The shipped table's calibration: accuracy per bin per candidate; with and without self-refinement."""
    records = [json.loads(line) for line in (RESULTS / "calibration_records.jsonl").read_text().splitlines()]
    labels = list(records[0]["correct"][str(max(table.budgets))])
    parallel = [label for label in labels if not label.startswith("self_refine")]
    names = [b.name for b in table.bins]
    lines = [
        "## The router's table",
        "",
        f"Calibrated by `ttc calibrate` on {len(records)} problems (`calibration_records.jsonl`), estimator "
        f"`{table.estimator}`, {table.pilots} pilots: accuracy per difficulty bin of each candidate, the choice "
        "in bold.",
        "",
    ]
    for n in sorted(table.budgets):
        lines += [f"N={n}:", "", "| candidate | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
        for label in (la for la in labels if la in records[0]["correct"][str(n)]):
            row = []
            for name in names:
                members = [r for r in records if table.bin_of(r["difficulty"][table.estimator]) == name]
                value = f"{accuracy(members, n, label):.0%}"
                row.append(f"**{value}**" if table.budgets[n][name].label() == label else value)
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines.append("")
    options = {"estimator": table.estimator, "bin_count": len(table.bins), "folds": table.calibration["folds"]}
    with_refine = held_out_accuracy(records, labels=labels, **options)
    without = held_out_accuracy(records, labels=parallel, **options)
    fitted = {
        name: fit_choices(records, estimator=table.estimator, bin_count=len(table.bins), labels=subset).choices
        for name, subset in (("all", labels), ("parallel", parallel))
    }
    lines += [
        "Mixing sequential and parallel compute (held-out router accuracy on the calibration set, "
        f"{options['folds']} folds):",
        "",
        "| N | candidates with self-refinement | without |",
        "| ---: | ---: | ---: |",
        *(f"| {n} | {with_refine[n]:.1%} | {without[n]:.1%} |" for n in sorted(table.budgets)),
        "",
        "The tables fitted with and without self-refinement are "
        f"{'the same' if fitted['all'] == fitted['parallel'] else 'different'}.",
        "",
    ]
    return lines


def report(rows: Rows, sizes: dict[str, int], table: StrategyTable, seconds: float, per_difficulty: int) -> list[str]:
    lines = header("The study in miniature: test-time compute on the Arith world v2", __file__)
    lines += [
        f"- {len(rows)} held-out problems ({per_difficulty} per difficulty 1-8, none in the calibration set); small "
        f"policy ({sizes['small']:,} parameters) + Arith PRM, aggregation `last`, temperature 0.8; the large policy "
        f"({sizes['large']:,} parameters, {sizes['large'] / sizes['small']:.1f}x) greedy as the reference; "
        f"{seconds / 60:.0f} min",
        f"- sampling strategies: one pool of {max(budgets_of(rows, 'majority_vote'))} samples per problem, its "
        "first N used; beam search and DVTS: "
        "beam width 4; particle filtering: N particles; router: the shipped table "
        f"(`{table.estimator}`, {table.pilots} pilots, {len(table.bins)} bins)",
        "- accuracy with 95% Wilson intervals; `pass`: some of the N samples answers right; `process_pass`: some "
        "sample is right at every step (exact checker)",
        "",
        "## Findings",
        "",
        "| | claim | met | numbers |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {fid} | {claim} | {'**met**' if met else 'not met'} | {numbers} |"
        for fid, claim, met, numbers in findings(rows)
    ]
    lines += ["", "![accuracy against N, overall and per band](study.png)", "", "## Accuracy against N", ""]
    lines += accuracy_table(rows, "All problems:")
    for name, levels in BANDS.items():
        lines += accuracy_table(
            [r for r in rows if band_of(r) == name], f"{name.capitalize()} ({levels[0]}-{levels[-1]} steps):"
        )
    lines += [
        "## Against inference compute",
        "",
        "Mean FLOPs per problem, 2 x policy parameters x generated tokens (the PRM's reading not counted), "
        "and accuracy:",
        "",
        "![accuracy against FLOPs](study_flops.png)",
        "",
        "| run | FLOPs per problem | accuracy |",
        "| --- | ---: | ---: |",
        f"| large_greedy | {flops(rows, 'large_greedy@1', sizes['large']):.2e} | {cell(rows, 'large_greedy@1')} |",
        f"| small_greedy | {flops(rows, 'small_greedy@1', sizes['small']):.2e} | {cell(rows, 'small_greedy@1')} |",
    ]
    for strategy in (*SAMPLERS, *SEARCHES):
        for n in (n for n in budgets_of(rows, strategy) if n in (4, 16, 64)):
            key = f"{strategy}@{n}"
            lines.append(f"| {key} | {flops(rows, key, sizes['small']):.2e} | {cell(rows, key)} |")
    lines += ["", "## Routing decisions", ""]
    lines += [
        "Against fixed strategies chosen on held-out problems (2 folds: each half runs what did best on the "
        "other half): the best fixed strategy in hindsight is a maximum over the problems it is scored on, "
        "and the router with the difficulty known and free is the study's router (the band as difficulty, "
        "no pilots):",
        "",
        "| N | router (pilots in the budget) | best fixed, in hindsight | best fixed, held out | "
        "difficulty known and free, held out | its choices (all problems) |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for n in budgets_of(rows, "compute_optimal"):
        fixed_key, fixed, held_out, oracle, choices = fixed_baselines(rows, n)
        lines.append(
            f"| {n} | {cell(rows, f'compute_optimal@{n}')} | {fixed_key} {_pct(fixed)} | "
            f"{_pct(held_out)} | {_pct(oracle)} | "
            + ", ".join(f"{band}: {choice}" for band, choice in choices.items())
            + " |"
        )
    lines += ["", "The shipped router's choices:", ""]
    for n in budgets_of(rows, "compute_optimal"):
        counts: dict[str, int] = {}
        for r in rows:
            choice = r.get("routing", {}).get(f"compute_optimal@{n}", {}).get("strategy", "?")
            counts[choice] = counts.get(choice, 0) + 1
        lines.append(
            f"- N={n}: " + ", ".join(f"{s} {c / len(rows):.0%}" for s, c in sorted(counts.items(), key=lambda x: -x[1]))
        )
    return [*lines, "", *calibration_section(table)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-difficulty", type=int, default=12)
    parser.add_argument("--pool", type=int, default=256, help="Samples per problem for the sampling strategies.")
    parser.add_argument("--budgets", type=int, nargs="+", default=[4, 16, 64], help="Beam search, DVTS, router.")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=SEED, help="Problems and sampling: another seed, other problems.")
    parser.add_argument("--resume", action="store_true", help="Continue an interrupted run from its records.")
    parser.add_argument("--report-only", action="store_true", help="Rebuild the report from the saved records.")
    args = parser.parse_args()
    started = time.time()
    table = load_table()
    if args.report_only:
        saved = json.loads((RESULTS / "study_rows.json").read_text())
        rows, sizes, seconds = saved["rows"], saved["sizes"], saved["seconds"]
    else:
        rows, sizes = run(args, held_out_problems(args.per_difficulty, table, args.seed))
        seconds = time.time() - started
        (RESULTS / "study_rows.json").write_text(json.dumps({"rows": rows, "sizes": sizes, "seconds": seconds}))
    plot_accuracy(rows)
    plot_flops(rows, sizes)
    write("study.md", report(rows, sizes, table, seconds, args.per_difficulty))


if __name__ == "__main__":
    main()
