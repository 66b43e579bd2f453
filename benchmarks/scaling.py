"""Accuracy against compute on held-out Arith problems, every strategy, against the large policy's greedy.

The small policy with search against the large policy's greedy accuracy: the study's headline, in miniature.

Sample-based strategies (majority vote, best-of-N, weighted best-of-N) run once at N=64 and are
subsampled for N = 1, 2, 4, ..., 64; beam search and DVTS (beam width 4) run at N = 4 and 16.

    python benchmarks/scaling.py [--per-difficulty 38] [--concurrency 8]

Writes ``benchmarks/results/scaling.md``, ``scaling.png`` and the raw ``scaling*.jsonl`` records.
"""

from __future__ import annotations

import argparse

from _report import RESULTS, header, wilson, write

from langchain_ttc import make_problems
from langchain_ttc.core.types import GenerationRequest
from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM
from langchain_ttc.engines.loading import load_policy, load_prm
from langchain_ttc.evaluation.datasets import EvalProblem
from langchain_ttc.evaluation.report import accuracy_table, plot
from langchain_ttc.evaluation.run import EvalConfig, grade, run_evaluation

SEED = 4_000_037


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-difficulty", type=int, default=38)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--resume", action="store_true", help="Continue an interrupted run from its records (default: start afresh)."
    )
    args = parser.parse_args()
    problems = [
        EvalProblem(id=f"d{d}-{i}", problem=p.problem, answer=p.answer, level=str(d))
        for d in range(1, 9)
        for i, p in enumerate(make_problems(args.per_difficulty, d, seed=SEED + d))
    ]
    policy = MicroBatchingPolicy(load_policy("arith:small"))
    prm = MicroBatchingPRM(load_prm("arith:prm"))
    configs = {
        "scaling_sampling.jsonl": EvalConfig(
            dataset="arith-heldout",
            strategies=["majority_vote", "best_of_n", "weighted_best_of_n"],
            n_max=64,
            max_tokens=256,
        ),
        "scaling_search.jsonl": EvalConfig(
            dataset="arith-heldout", strategies=["beam_search", "dvts"], n_max=16, max_tokens=64
        ),
    }
    records = []
    for name, config in configs.items():
        if not args.resume:  # records of an earlier run were made by earlier code: never mix them in
            (RESULTS / name).unlink(missing_ok=True)
        part = run_evaluation(config, problems, RESULTS / name, policy=policy, prm=prm, concurrency=args.concurrency)
        records += part
    merged: dict[str, dict] = {}
    for record in records:
        entry = merged.setdefault(record["id"], {**record, "correct": {}, "usage": {}})
        entry["correct"] |= record["correct"]
        entry["usage"] |= record["usage"]
    rows = list(merged.values())

    large = load_policy("arith:large")
    greedy = large.invoke(
        [
            GenerationRequest(messages=[{"role": "user", "content": p.problem}], temperature=0, max_tokens=256)
            for p in problems
        ]
    )
    from langchain_ttc.core.answers import extract_boxed

    large_correct = {
        p.id: grade(extract_boxed(r.completions[0].text), p.answer) for p, r in zip(problems, greedy, strict=True)
    }
    for row in rows:
        row["correct"]["large_greedy@1"] = large_correct[row["id"]]

    table = accuracy_table(rows)
    lines = header("Scaling test-time compute on the Arith world", __file__)
    lines += [
        f"- {len(rows)} held-out problems ({args.per_difficulty} per difficulty 1-8, seed {SEED}); small policy + "
        "Arith PRM (aggregation `last`, temperature 0.8); the large policy greedy as the reference",
        "",
        "| strategy | " + " | ".join(f"N={n}" for n in (1, 2, 4, 8, 16, 32, 64)) + " |",
        "| --- |" + " ---: |" * 7,
    ]
    for strategy, by_n in sorted(table.items()):
        cells = []
        for n in (1, 2, 4, 8, 16, 32, 64):
            if n in by_n:
                hits, total = by_n[n]
                low, high = wilson(hits, total)
                cells.append(f"{hits / total:.1%} ({low:.0%}–{high:.0%})")
            else:
                cells.append("")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    levels = [str(d) for d in range(1, 9)]
    lines += ["", "Per difficulty (steps):", "", "| strategy | " + " | ".join(levels) + " |", "| --- |" + " ---: |" * 8]
    for key in (
        "large_greedy@1",
        "majority_vote@1",
        "majority_vote@64",
        "best_of_n@64",
        "weighted_best_of_n@64",
        "beam_search@16",
        "dvts@16",
    ):
        cells = [
            f"{sum(r['correct'].get(key, False) for r in rows if r['level'] == lv) / args.per_difficulty:.0%}"
            for lv in levels
        ]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "![accuracy against N](scaling.png)"]
    plot(rows, RESULTS / "scaling.png", title="Arith, small policy: accuracy against N")
    write("scaling.md", lines)


if __name__ == "__main__":
    main()
