"""The compute-optimal router against every fixed strategy, best-of-N at 4N, and the large policy.

Held-out Arith problems of every difficulty (disjoint from the shipped table's calibration
problems), budgets N in {4, 16, 64}, small policy + Arith PRM:

- the router (``create_compute_optimal_graph`` with the shipped table, whose candidates include
  self-refinement) at N; from the calibration records, the table and its held-out accuracy with and
  without self-refinement among the candidates (does mixing sequential and parallel compute help?);
- majority vote, best-of-N and weighted best-of-N at N (one pool of 4 x 64 samples per problem,
  its first N used), and best-of-N at 4N from the same pool;
- beam search and DVTS (beam width 4) at N; self-refinement (chains of up to 3 revisions, the
  trained PRM as critic) at N;
- the large policy's greedy accuracy.

    python benchmarks/compute_optimal.py [--per-difficulty 15] [--concurrency 8]

Writes ``benchmarks/results/compute_optimal.md`` and the raw ``compute_optimal.jsonl`` records.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _report import RESULTS, header, wilson, write

from langchain_ttc import create_compute_optimal_graph, make_problems
from langchain_ttc.core.answers import extract_boxed
from langchain_ttc.core.types import Candidate, GenerationRequest
from langchain_ttc.core.voting import best_of_n, majority_vote, weighted_best_of_n
from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM
from langchain_ttc.engines.loading import load_policy, load_prm
from langchain_ttc.evaluation.datasets import load_problems
from langchain_ttc.evaluation.fit import accuracy, fit_choices, held_out_accuracy
from langchain_ttc.evaluation.run import grade
from langchain_ttc.strategies.registry import create_strategy_graph
from langchain_ttc.strategies.routing.table import load_table

SEED = 7_000_000
BUDGETS = (4, 16, 64)
MAX_TOKENS = 512
RULES = {"majority_vote": majority_vote, "best_of_n": best_of_n, "weighted_best_of_n": weighted_best_of_n}


def answer_of(candidates: list[Candidate], rule: str) -> str | None:
    chosen = RULES[rule](candidates).chosen_index
    return None if chosen is None else candidates[chosen].answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-difficulty", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    table = load_table()
    options = table.calibration["dataset_options"]
    calibration = {p.problem for p in load_problems("arith", count=options["count"], seed=options["seed"])}
    problems = []
    for d in range(1, 9):
        fresh = [p for p in make_problems(args.per_difficulty * 2, d, seed=SEED + d) if p.problem not in calibration]
        problems += [(d, p) for p in fresh[: args.per_difficulty]]
    policy = MicroBatchingPolicy(load_policy("arith:small"))
    prm = MicroBatchingPRM(load_prm("arith:prm"))
    common = {"temperature": 0.8, "max_tokens": MAX_TOKENS, "seed": 0}
    pool_graph = create_strategy_graph("best_of_n", policy, prm, n=4 * max(BUDGETS), **common)
    searches = {
        f"{s}@{n}": create_strategy_graph(s, policy, prm, n=n, beam_width=4, **common)
        for s in ("beam_search", "dvts")
        for n in BUDGETS
    }
    searches |= {
        f"self_refine@{n}": create_strategy_graph(
            "self_refine", policy, prm, n=n, max_revisions=3, critic="prm", **common
        )
        for n in BUDGETS
    }
    routers = {f"router@{n}": create_compute_optimal_graph(policy, prm, budget=n, **common) for n in BUDGETS}

    def run(item: tuple[int, Any]) -> dict[str, Any]:
        difficulty, problem = item
        started = time.perf_counter()
        inputs = {"problem": problem.problem}
        pool = [Candidate.model_validate(c) for c in pool_graph.invoke(inputs)["result"]["candidates"]]
        correct: dict[str, bool] = {}
        tokens: dict[str, int] = {}
        for n in BUDGETS:
            for rule in RULES:
                correct[f"{rule}@{n}"] = grade(answer_of(pool[:n], rule), problem.answer)
                tokens[f"{rule}@{n}"] = sum(c.num_tokens for c in pool[:n])
            correct[f"best_of_n@{4 * n}"] = grade(answer_of(pool[: 4 * n], "best_of_n"), problem.answer)
            tokens[f"best_of_n@{4 * n}"] = sum(c.num_tokens for c in pool[: 4 * n])
        routed = {}
        for key, graph in [*searches.items(), *routers.items()]:
            result = graph.invoke(inputs)["result"]
            correct[key] = grade(result["answer"], problem.answer)
            tokens[key] = result["usage"]["completion_tokens"]
            if key.startswith("router"):
                routed[key] = result["metadata"]["routing"]
        return {"difficulty": difficulty, "problem": problem.problem, "answer": problem.answer, "correct": correct,
                "tokens": tokens, "routing": routed, "seconds": time.perf_counter() - started}  # fmt: skip

    started = time.time()
    with ThreadPoolExecutor(max_workers=args.concurrency) as executor:
        records = list(executor.map(run, problems))
    large = load_policy("arith:large").invoke(
        [
            GenerationRequest(messages=[{"role": "user", "content": p.problem}], temperature=0, max_tokens=MAX_TOKENS)
            for _, p in problems
        ]
    )
    for record, result in zip(records, large, strict=True):
        record["correct"]["large_greedy@1"] = grade(extract_boxed(result.completions[0].text), record["answer"])
    (RESULTS / "compute_optimal.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write("compute_optimal.md", report(records, table, time.time() - started))


def cell(records: list[dict[str, Any]], key: str) -> str:
    hits = [r["correct"][key] for r in records if key in r["correct"]]
    if not hits:
        return ""
    low, high = wilson(sum(hits), len(hits))
    return f"{sum(hits) / len(hits):.1%} ({low:.0%}–{high:.0%})"


def mean_tokens(records: list[dict[str, Any]], key: str) -> str:
    values = [r["tokens"][key] for r in records if key in r["tokens"]]
    return f"{sum(values) / len(values):.0f}" if values else ""


def report(records: list[dict[str, Any]], table: Any, seconds: float) -> list[str]:
    strategies = ["router", *RULES, "beam_search", "dvts", "self_refine"]
    lines = header("The compute-optimal router on held-out Arith problems", __file__)
    lines += [
        f"- {len(records)} held-out problems ({len(records) // 8} per difficulty 1-8, none in the calibration set); "
        f"small policy + Arith PRM; temperature 0.8, max_tokens {MAX_TOKENS}; {seconds / 60:.0f} min",
        "- router: the shipped table (`langchain_ttc/strategies/routing/arith_table.json`, "
        f"estimator `{table.estimator}`, "
        f"{table.pilots} pilots, {len(table.bins)} bins, calibrated on {table.calibration['problems']} problems)",
        "- accuracy with 95% Wilson intervals; tokens = mean generated tokens per problem",
        "",
        "| strategy | "
        + " | ".join(f"N={n}" for n in BUDGETS)
        + " | "
        + " | ".join(f"tokens N={n}" for n in BUDGETS)
        + " |",
        "| --- |" + " ---: |" * (2 * len(BUDGETS)),
    ]
    for strategy in strategies:
        keys = [f"{strategy}@{n}" for n in BUDGETS]
        lines.append(f"| {strategy} | " + " | ".join(cell(records, k) for k in keys) + " | "
                     + " | ".join(mean_tokens(records, k) for k in keys) + " |")  # fmt: skip
    lines.append("| best_of_n at 4N | " + " | ".join(cell(records, f"best_of_n@{4 * n}") for n in BUDGETS) + " | "
                 + " | ".join(mean_tokens(records, f"best_of_n@{4 * n}") for n in BUDGETS) + " |")  # fmt: skip
    lines.append(f"| large policy, greedy | {cell(records, 'large_greedy@1')} | | | | | |")
    lines += ["", "Router against the best fixed strategy at the same N, and against best-of-N at 4N:", ""]
    lines += [
        "| N | router | best fixed at N | best-of-N at 4N | large greedy |",
        "| ---: | ---: | --- | ---: | ---: |",
    ]
    for n in BUDGETS:
        fixed = {s: sum(r["correct"][f"{s}@{n}"] for r in records) for s in strategies[1:]}
        best = max(fixed, key=lambda s: fixed[s])
        lines.append(f"| {n} | {cell(records, f'router@{n}')} | {best} {cell(records, f'{best}@{n}')} | "
                     f"{cell(records, f'best_of_n@{4 * n}')} | {cell(records, 'large_greedy@1')} |")  # fmt: skip
    lines += ["", "Routing decisions (share of problems sent to each strategy) and router accuracy per difficulty:", ""]
    for n in BUDGETS:
        decisions: dict[str, int] = {}
        for r in records:
            key = r["routing"][f"router@{n}"]["strategy"]
            decisions[key] = decisions.get(key, 0) + 1
        shares = ", ".join(f"{s} {c / len(records):.0%}" for s, c in sorted(decisions.items(), key=lambda x: -x[1]))
        lines.append(f"- N={n}: {shares}")
    lines += ["", "| strategy | " + " | ".join(str(d) for d in range(1, 9)) + " |", "| --- |" + " ---: |" * 8]
    for key in [*(f"router@{n}" for n in BUDGETS), "weighted_best_of_n@16", "self_refine@16", "large_greedy@1"]:
        row = []
        for d in range(1, 9):
            hits = [r["correct"][key] for r in records if r["difficulty"] == d]
            row.append(f"{sum(hits) / len(hits):.0%}" if hits else "")
        lines.append(f"| {key} | " + " | ".join(row) + " |")
    return lines + calibration_section(table)


def calibration_section(table: Any) -> list[str]:
    """The calibration records: accuracy per bin per candidate; the table with and without self-refinement."""
    records = [json.loads(line) for line in (RESULTS / "calibration_records.jsonl").read_text().splitlines()]
    labels = list(records[0]["correct"][str(max(BUDGETS))])
    parallel = [label for label in labels if not label.startswith("self_refine")]
    lines = [
        "",
        f"**Calibration** ({len(records)} problems, `benchmarks/results/calibration_records.jsonl`): accuracy per "
        "difficulty bin of each candidate (pilots reused), the table's choice in bold:",
        "",
    ]
    names = [b.name for b in table.bins]
    for n in BUDGETS:
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
    same = fit_choices(records, estimator=table.estimator, bin_count=len(table.bins), labels=labels).choices == (
        fit_choices(records, estimator=table.estimator, bin_count=len(table.bins), labels=parallel).choices
    )
    lines += [
        "Mixing sequential and parallel compute (held-out router accuracy on the calibration set, "
        f"{table.calibration['folds']} folds):",
        "",
        "| N | candidates with self-refinement | without |",
        "| ---: | ---: | ---: |",
        *(f"| {n} | {with_refine[n]:.1%} | {without[n]:.1%} |" for n in BUDGETS),
        "",
        f"The tables fitted on all records with and without self-refinement are {'the same' if same else 'different'}.",
    ]
    return lines


if __name__ == "__main__":
    main()
