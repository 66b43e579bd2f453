"""Measure the shipped Arith checkpoints: greedy accuracy by difficulty, PRM step-level accuracy.

Writes ``benchmarks/results/arith_models.md`` (with machine, date and command) and prints it.

    python benchmarks/arith_models.py [--per-difficulty 100] [--samples 4]

Problems are drawn with seeds the training script never uses; at difficulties 1-2 the problem
space is small (300 and 9000 problems), so "held out" there means fresh samples, not unseen problems.
"""

from __future__ import annotations

import argparse
import time

from _report import header, write

from langchain_ttc.arith import check_steps, make_problems, split_steps
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.arith.problems import MAX_DIFFICULTY
from langchain_ttc.core.answers import extract_boxed
from langchain_ttc.core.types import GenerationRequest, ScoreRequest
from langchain_ttc.engines.transformers_policy import TransformersPolicy
from langchain_ttc.engines.transformers_prm import MathShepherdPRM

SEED = 1_000_003


def greedy_accuracy(policy: TransformersPolicy, per_difficulty: int) -> dict[int, float]:
    accuracy = {}
    for difficulty in range(1, MAX_DIFFICULTY + 1):
        problems = make_problems(per_difficulty, difficulty, seed=SEED + difficulty)
        requests = [
            GenerationRequest(messages=[{"role": "user", "content": p.problem}], temperature=0, max_tokens=256)
            for p in problems
        ]
        results = policy.invoke(requests)
        accuracy[difficulty] = sum(
            extract_boxed(r.completions[0].text) == p.answer for r, p in zip(results, problems, strict=True)
        ) / len(problems)
    return accuracy


def prm_step_accuracy(
    policy: TransformersPolicy, prm: MathShepherdPRM, per_difficulty: int, samples: int
) -> dict[str, float]:
    problems = make_problems(per_difficulty * MAX_DIFFICULTY, (1, MAX_DIFFICULTY), seed=SEED)
    requests = [
        GenerationRequest(
            messages=[{"role": "user", "content": p.problem}], n=samples, temperature=1.0, max_tokens=256, seed=SEED
        )
        for p in problems
    ]
    pairs = [
        (p.problem, split_steps(c.text))
        for p, r in zip(problems, policy.invoke(requests), strict=True)
        for c in r.completions
        if split_steps(c.text)
    ]
    scores = prm.invoke([ScoreRequest(problem=q, steps=s) for q, s in pairs])
    hits = {True: 0, False: 0}
    totals = {True: 0, False: 0}
    for (problem, steps), step_scores in zip(pairs, scores, strict=True):
        for label, score in zip(check_steps(problem, steps), step_scores.scores, strict=True):
            totals[label] += 1
            hits[label] += (score >= 0.5) == label
    return {
        "solutions": len(pairs),
        "steps": totals[True] + totals[False],
        "correct_steps": totals[True],
        "accuracy": (hits[True] + hits[False]) / (totals[True] + totals[False]),
        "accuracy_on_correct_steps": hits[True] / max(1, totals[True]),
        "accuracy_on_wrong_steps": hits[False] / max(1, totals[False]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-difficulty", type=int, default=100)
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()
    started = time.time()
    small = TransformersPolicy.from_pretrained(arith_checkpoint("small"))
    large = TransformersPolicy.from_pretrained(arith_checkpoint("large"))
    prm = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"), batch_size=64)
    accuracy = {
        "small": greedy_accuracy(small, args.per_difficulty),
        "large": greedy_accuracy(large, args.per_difficulty),
    }
    step = prm_step_accuracy(small, prm, args.per_difficulty // 4, args.samples)
    lines = header("Arith checkpoints: greedy accuracy and PRM step accuracy", __file__)
    lines += [
        f"- {args.per_difficulty} problems per difficulty, greedy decoding; wall time {time.time() - started:.0f} s",
        "",
        "| policy | " + " | ".join(f"{d} steps" for d in range(1, MAX_DIFFICULTY + 1)) + " |",
        "| --- |" + " ---: |" * MAX_DIFFICULTY,
    ]
    for name, by_difficulty in accuracy.items():
        lines.append(f"| {name} | " + " | ".join(f"{a:.0%}" for a in by_difficulty.values()) + " |")
    lines += [
        "",
        f"PRM on {step['solutions']} solutions sampled from the small policy (temperature 1.0), "
        f"{step['steps']} steps ({step['correct_steps']} correct by the exact checker), threshold 0.5:",
        "",
        "| step accuracy | on correct steps | on wrong steps |",
        "| ---: | ---: | ---: |",
        f"| {step['accuracy']:.1%} | {step['accuracy_on_correct_steps']:.1%} | {step['accuracy_on_wrong_steps']:.1%} |",
    ]
    write("arith_models.md", lines)


if __name__ == "__main__":
    main()
