"""Measure the shipped Arith checkpoints against the properties the study needs.

- greedy accuracy by difficulty, small and large policy (and their parameter counts);
- reachability: P(correct step | correct prefix) at temperature 0.8, computed exactly from the small
  policy's logits for every fact at every position 1-8 (no step may be below 10%);
- coverage: pass@n and process pass@n (a sample right at every step, by the exact checker) of the
  small policy at temperature 0.8, and the lucky rate: wrong derivations that end on the right answer;
- the PRM on solutions sampled from the small policy: step accuracy on right and on wrong steps, AUROC.

Writes ``benchmarks/results/arith_models.md`` (with machine, date and command) and prints it.

    python benchmarks/arith_models.py [--per-difficulty 100] [--coverage-problems 25] [--samples 4]

Problems are drawn with seeds the training script never uses; at difficulties 1-2 the problem
space is small (230 and 53,000 problems), so "held out" there means fresh samples, not unseen problems.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
from _report import header, write

from langchain_ttc.arith import check_steps, make_problems, split_steps
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.arith.problems import (
    MAX_DIFFICULTY,
    STEP_DELIMITER,
    apply_operator,
    arithmetic_facts,
    draw_operation,
    format_problem,
    solution_is_correct,
    solve_expression,
)
from langchain_ttc.arith.train import RECIPES
from langchain_ttc.core.answers import extract_boxed
from langchain_ttc.core.metrics import auroc
from langchain_ttc.core.types import GenerationRequest, ScoreRequest
from langchain_ttc.engines.chat_template import prompt_token_ids
from langchain_ttc.engines.transformers_policy import TransformersPolicy
from langchain_ttc.engines.transformers_prm import MathShepherdPRM

SEED = 1_000_003
TEMPERATURE = 0.8
LEVELS = range(1, MAX_DIFFICULTY + 1)


def greedy_accuracy(policy: TransformersPolicy, per_difficulty: int) -> dict[int, float]:
    accuracy = {}
    for difficulty in LEVELS:
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


def _expression_with_fact(fact: tuple[int, str, int], position: int, rng: random.Random) -> str:
    """An 8-step expression whose step ``position`` (1-based) computes ``fact`` when solved right."""
    left, op, right = fact
    operations = [draw_operation(rng) for _ in range(MAX_DIFFICULTY)]
    operations[position - 1] = (op, right)
    for head in range(10):  # every operation is a permutation of the digits: exactly one head reaches `left`
        value = head
        for o, d in operations[: position - 1]:
            value = apply_operator(value, o, d)
        if value == left:
            return str(head) + "".join(f"{o}{d}" for o, d in operations)
    raise AssertionError("unreachable: the operations are permutations")


@torch.no_grad()
def step_reachability(policy: TransformersPolicy) -> list[tuple[tuple[int, str, int], int, float]]:
    """P(the policy writes the right step | a right prefix) at temperature 0.8, for every fact and position."""
    rng = random.Random(SEED)
    tokenizer, model = policy.tokenizer, policy.model
    rows, spans, keys = [], [], []
    for fact in arithmetic_facts():
        for position in LEVELS:
            expression = _expression_with_fact(fact, position, rng)
            steps, _ = solve_expression(expression)
            prefix = "".join(step + STEP_DELIMITER for step in steps[: position - 1])
            request = GenerationRequest(
                messages=[{"role": "user", "content": format_problem(expression)}], partial=prefix
            )
            before = prompt_token_ids(tokenizer, request)  # exactly what the engines feed the model
            ending = STEP_DELIMITER if position < len(steps) else tokenizer.eos_token
            target = tokenizer(steps[position - 1] + ending, add_special_tokens=False)["input_ids"]
            rows.append(before + target)
            spans.append((len(before), len(before) + len(target)))
            keys.append((fact, position))
    probabilities = []
    for start in range(0, len(rows), 128):
        chunk = rows[start : start + 128]
        width = max(len(r) for r in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        for i, row in enumerate(chunk):
            ids[i, : len(row)] = torch.tensor(row)
        logp = torch.log_softmax(model(input_ids=ids).logits.float() / TEMPERATURE, dim=-1)
        for i, row in enumerate(chunk):
            low, high = spans[start + i]
            picked = logp[i, low - 1 : high - 1].gather(-1, torch.tensor(row[low:high]).unsqueeze(-1))
            probabilities.append(float(picked.sum().exp()))
    return [(fact, position, p) for (fact, position), p in zip(keys, probabilities, strict=True)]


def coverage(policy: TransformersPolicy, problems_per_level: int, samples: int) -> dict[int, dict[str, float]]:
    """pass@n, process pass@n (n = 1 and ``samples``) and the lucky rate per difficulty, at temperature 0.8."""
    table = {}
    for difficulty in LEVELS:
        problems = make_problems(problems_per_level, difficulty, seed=2 * SEED + difficulty)
        requests = [
            GenerationRequest(
                messages=[{"role": "user", "content": p.problem}],
                n=samples,
                temperature=TEMPERATURE,
                max_tokens=256,
                seed=SEED + 100 * difficulty + i,
            )
            for i, p in enumerate(problems)
        ]
        results = policy.invoke(requests)
        answer_hits = process_hits = lucky = wrong_derivations = 0
        process_any = answer_any = 0
        for problem, result in zip(problems, results, strict=True):
            right_answers = [extract_boxed(c.text) == problem.answer for c in result.completions]
            right_processes = [solution_is_correct(problem.problem, split_steps(c.text)) for c in result.completions]
            answer_hits += sum(right_answers)
            process_hits += sum(right_processes)
            answer_any += any(right_answers)
            process_any += any(right_processes)
            wrong_derivations += sum(not p for p in right_processes)
            lucky += sum(a and not p for a, p in zip(right_answers, right_processes, strict=True))
        total = problems_per_level * samples
        table[difficulty] = {
            "pass@1": answer_hits / total,
            "process_pass@1": process_hits / total,
            f"pass@{samples}": answer_any / problems_per_level,
            f"process_pass@{samples}": process_any / problems_per_level,
            "lucky": lucky / max(1, wrong_derivations),
            "wrong_derivations": wrong_derivations,
        }
    return table


def prm_quality(policy: TransformersPolicy, prm: MathShepherdPRM, per_difficulty: int, samples: int) -> dict:
    """The PRM on solutions sampled from the small policy (temperature 1.0), labelled by the exact checker."""
    problems = make_problems(per_difficulty * MAX_DIFFICULTY, (1, MAX_DIFFICULTY), seed=SEED)
    requests = [
        GenerationRequest(
            messages=[{"role": "user", "content": p.problem}], n=samples, temperature=1.0, max_tokens=256, seed=SEED + i
        )
        for i, p in enumerate(problems)
    ]
    pairs = [
        (p.problem, split_steps(c.text))
        for p, r in zip(problems, policy.invoke(requests), strict=True)
        for c in r.completions
        if split_steps(c.text)
    ]
    scores = prm.invoke([ScoreRequest(problem=q, steps=s) for q, s in pairs])
    right: list[float] = []
    wrong: list[float] = []
    for (problem, steps), step_scores in zip(pairs, scores, strict=True):
        for label, score in zip(check_steps(problem, steps), step_scores.scores, strict=True):
            (right if label else wrong).append(score)
    return {
        "solutions": len(pairs),
        "right": len(right),
        "wrong": len(wrong),
        "accuracy": (sum(s >= 0.5 for s in right) + sum(s < 0.5 for s in wrong)) / (len(right) + len(wrong)),
        "on_right": sum(s >= 0.5 for s in right) / max(1, len(right)),
        "on_wrong": sum(s < 0.5 for s in wrong) / max(1, len(wrong)),
        "auroc": auroc(right, wrong),
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-difficulty", type=int, default=100)
    parser.add_argument("--coverage-problems", type=int, default=25, help="Problems per difficulty for pass@64.")
    parser.add_argument("--samples", type=int, default=4, help="Samples per problem for the PRM measurement.")
    args = parser.parse_args()
    started = time.time()
    small = TransformersPolicy.from_pretrained(arith_checkpoint("small"))
    large = TransformersPolicy.from_pretrained(arith_checkpoint("large"))
    prm = MathShepherdPRM.from_pretrained(arith_checkpoint("prm"), batch_size=64)
    sizes = {
        name: sum(p.numel() for p in policy.model.parameters()) for name, policy in (("small", small), ("large", large))
    }
    accuracy = {
        "small": greedy_accuracy(small, args.per_difficulty),
        "large": greedy_accuracy(large, args.per_difficulty),
    }
    reach = step_reachability(small)
    wrong_facts = RECIPES["small"].teacher.wrong_results() if RECIPES["small"].teacher else {}
    cover = coverage(small, args.coverage_problems, 64)
    quality = prm_quality(small, prm, args.per_difficulty // 4, args.samples)

    lines = header("Arith world v2: the checkpoints against the study's requirements", __file__)
    lines += [
        f"- wall time {time.time() - started:.0f} s; parameters: small {sizes['small']:,}, large {sizes['large']:,} "
        f"({sizes['large'] / sizes['small']:.1f}x), PRM {sum(p.numel() for p in prm.model.parameters()):,}",
        "",
        f"## Greedy accuracy ({args.per_difficulty} problems per difficulty)",
        "",
        "| policy | " + " | ".join(f"{d} steps" for d in LEVELS) + " |",
        "| --- |" + " ---: |" * len(LEVELS),
    ]
    for name, by_difficulty in accuracy.items():
        lines.append(f"| {name} | " + " | ".join(f"{a:.0%}" for a in by_difficulty.values()) + " |")
    values = [p for _, _, p in reach]
    by_kind = {
        "misconception facts": [p for fact, _, p in reach if fact in wrong_facts],
        "other facts": [p for fact, _, p in reach if fact not in wrong_facts],
    }
    lowest = min(reach, key=lambda item: item[2])
    lines += [
        "",
        f"## Reachability: P(right step | right prefix) at temperature {TEMPERATURE}, small policy",
        "",
        f"Every one of the {len(arithmetic_facts())} facts at every position 1-8 ({len(values)} cases), computed "
        "exactly from the logits (the product of the step's token probabilities):",
        "",
        "| cases | count | min | 1% | 5% | median | below 10% |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, subset in [("all", values), *by_kind.items()]:
        lines.append(
            f"| {name} | {len(subset)} | {min(subset):.1%} | {_quantile(subset, 0.01):.1%} | "
            f"{_quantile(subset, 0.05):.1%} | {statistics.median(subset):.1%} | {sum(p < 0.1 for p in subset)} |"
        )
    lines += [
        "",
        f"Lowest: `{''.join(map(str, lowest[0]))}` at position {lowest[1]}: {lowest[2]:.1%}.",
        "",
        f"## Coverage of the small policy at temperature {TEMPERATURE} ({args.coverage_problems} problems per "
        "difficulty, 64 samples each)",
        "",
        "process: some sample is right at every step (exact checker). lucky: the share of wrong derivations "
        "that still end on the right answer.",
        "",
        "| steps | pass@1 | process pass@1 | pass@64 | process pass@64 | lucky |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for difficulty, row in cover.items():
        lines.append(
            f"| {difficulty} | {row['pass@1']:.1%} | {row['process_pass@1']:.1%} | {row['pass@64']:.0%} | "
            f"{row['process_pass@64']:.0%} | {row['lucky']:.1%} of {row['wrong_derivations']} |"
        )
    lines += [
        "",
        f"## PRM on {quality['solutions']} solutions sampled from the small policy (temperature 1.0)",
        "",
        f"{quality['right'] + quality['wrong']} steps labelled by the exact checker (Math-Shepherd prefix labels): "
        f"{quality['right']} right, {quality['wrong']} wrong; threshold 0.5.",
        "",
        "| step accuracy | on right steps | on wrong steps | AUROC |",
        "| ---: | ---: | ---: | ---: |",
        f"| {quality['accuracy']:.1%} | {quality['on_right']:.1%} | {quality['on_wrong']:.1%} "
        f"| {quality['auroc']:.3f} |",
    ]
    write("arith_models.md", lines)


if __name__ == "__main__":
    main()
