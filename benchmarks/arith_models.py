"""Measure the Arith checkpoints (v3) against the properties the study needs.

- parameter counts of every model, and the large/small size ratio (the study compares model sizes);
- greedy accuracy by difficulty, small and large policy;
- reachability: P(correct step | correct prefix) at temperature 0.8, computed exactly from the small
  policy's logits for every fact at every position 1-12;
- coverage: pass@n and process pass@n (a sample right at every step, by the exact checker) of the
  small policy at temperature 0.8 by difficulty, and the lucky rate (wrong derivations that end on the
  right answer); and, per difficulty band, process pass@16 and pass@256 from 256 samples per problem
  (the unbiased estimator);
- the verifier ladder on solutions sampled from the small policy (temperature 0.8, every band): per
  PRM, step accuracy, AUROC, and the miss rate (a wrong step scored >= 0.5) on first wrong steps that
  are the small policy's misconceptions (split into those the PRM's training teacher shared and those
  it never had) and on other first wrong steps (slips, miscopies), and on steps after an error.

Writes ``benchmarks/results/arith_models_v3.md`` (with machine, date and command) and prints it.

    python benchmarks/arith_models.py [--models DIR] [--per-difficulty 100] [--coverage-problems 16]
        [--band-problems 40] [--samples 2] [--verifier-band-problems 50] [--output arith_models_v3.md]

``--models`` reads the checkpoints from another directory (a training run's output, before it ships).
Problems are drawn with seeds the training script never uses; at difficulties 1-2 the problem
space is small (230 and 5,290 problems), so "held out" there means fresh samples, not unseen problems.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from _bands import band_thresholds, problems_by_band
from _report import header, write

from langchain_ttc.arith import check_steps, make_problems, split_steps
from langchain_ttc.arith.checkpoints import arith_checkpoint
from langchain_ttc.arith.problems import (
    MAX_DIFFICULTY,
    STEP_DELIMITER,
    ArithProblem,
    apply_operator,
    arithmetic_facts,
    draw_operation,
    format_problem,
    parse_expression,
    solution_is_correct,
    solve_expression,
    step_is_well_formed,
)
from langchain_ttc.core.answers import extract_boxed
from langchain_ttc.core.metrics import auroc
from langchain_ttc.core.types import GenerationRequest, ScoreRequest
from langchain_ttc.engines.chat_template import prompt_token_ids
from langchain_ttc.engines.transformers_policy import TransformersPolicy
from langchain_ttc.engines.transformers_prm import MathShepherdPRM

SEED = 1_000_003
TEMPERATURE = 0.8
LEVELS = range(1, MAX_DIFFICULTY + 1)
TRAINING = Path(__file__).resolve().parents[1] / "scripts" / "train_arith.py"


def _training_script():  # type: ignore[no-untyped-def]
    """The training script as a module (it is not part of the package): its teachers say which facts are whose."""
    spec = importlib.util.spec_from_file_location("train_arith", TRAINING)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


def greedy_accuracy(policy: TransformersPolicy, per_difficulty: int) -> dict[int, float]:
    accuracy = {}
    for difficulty in LEVELS:
        problems = make_problems(per_difficulty, difficulty, seed=SEED + difficulty)
        requests = [
            GenerationRequest(messages=[{"role": "user", "content": p.problem}], temperature=0, max_tokens=512)
            for p in problems
        ]
        results = policy.invoke(requests)
        accuracy[difficulty] = sum(
            extract_boxed(r.completions[0].text) == p.answer for r, p in zip(results, problems, strict=True)
        ) / len(problems)
    return accuracy


def _expression_with_fact(fact: tuple[int, str, int], position: int, rng: random.Random) -> str:
    """A longest-chain expression whose step ``position`` (1-based) computes ``fact`` when solved right."""
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
                max_tokens=512,
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


def sampled_solutions(
    policy: TransformersPolicy, problems: list[ArithProblem], samples: int
) -> list[tuple[str, list[str]]]:
    """Solutions the small policy samples at temperature 0.8 for ``problems`` (a verifiers' test set)."""
    requests = [
        GenerationRequest(
            messages=[{"role": "user", "content": p.problem}], n=samples, temperature=TEMPERATURE, max_tokens=512,
            seed=SEED + i,
        )
        for i, p in enumerate(problems)
    ]  # fmt: skip
    return [
        (p.problem, split_steps(c.text))
        for p, r in zip(problems, policy.invoke(requests), strict=True)
        for c in r.completions
        if split_steps(c.text)
    ]


def _fact_and_result(step: str) -> tuple[tuple[int, str, int], int] | None:
    """The fact a well-formed step computes and the result it writes."""
    step = step.strip()
    if not step_is_well_formed(step):
        return None
    return (int(step[0]), step[1], int(step[2])), int(step[4])


def prm_quality(
    prm: MathShepherdPRM,
    pairs: list[tuple[str, list[str]]],
    *,
    small_wrong: dict[tuple[int, str, int], int],
    teacher_wrong: dict[tuple[int, str, int], int],
) -> dict[str, float]:
    """A PRM on the small policy's solutions: step accuracy, AUROC, and misses by kind of wrong step.

    A solution's first wrong step is a *misconception* when it computes one of the small policy's
    misconception facts from the right operands and writes that misconception's wrong result; it is
    *shared* when the PRM's training teacher had the same misconception, *unseen* otherwise. Every other
    first wrong step (a slip, a miscopy) is *other*; the steps after a solution's first error are *after*.
    """
    scores = prm.invoke([ScoreRequest(problem=q, steps=s) for q, s in pairs])
    right: list[float] = []
    wrong: list[float] = []
    kinds: dict[str, list[float]] = {"unseen": [], "shared": [], "other": [], "after": []}
    for (problem, steps), step_scores in zip(pairs, scores, strict=True):
        gold, _ = solve_expression(parse_expression(problem))
        erred = False
        for index, (label, score) in enumerate(zip(check_steps(problem, steps), step_scores.scores, strict=True)):
            if label:
                right.append(score)
                continue
            wrong.append(score)
            if erred:
                kinds["after"].append(score)
                continue
            erred = True
            found = _fact_and_result(steps[index])
            expected = _fact_and_result(gold[index]) if index < len(gold) else None
            fact = found[0] if found else None
            if found and expected and fact == expected[0] and small_wrong.get(fact) == found[1]:
                kinds["shared" if teacher_wrong.get(fact) == found[1] else "unseen"].append(score)
            else:
                kinds["other"].append(score)
    row: dict[str, float] = {
        "solutions": len(pairs),
        "right": len(right),
        "wrong": len(wrong),
        "accuracy": (sum(s >= 0.5 for s in right) + sum(s < 0.5 for s in wrong)) / (len(right) + len(wrong)),
        "on_right": sum(s >= 0.5 for s in right) / max(1, len(right)),
        "on_wrong": sum(s < 0.5 for s in wrong) / max(1, len(wrong)),
        "auroc": auroc(right, wrong),
    }
    for kind, values in kinds.items():
        row[f"{kind}_count"] = len(values)
        row[f"{kind}_miss"] = sum(s >= 0.5 for s in values) / max(1, len(values))
    return row


def pass_at(k: int, samples: int, correct: int) -> float:
    """The unbiased pass@k estimate from ``samples`` draws of which ``correct`` are right (Chen et al., 2021)."""
    if samples - correct < k:
        return 1.0
    return 1.0 - math.comb(samples - correct, k) / math.comb(samples, k)


def band_coverage(
    policy: TransformersPolicy, problems_per_band: int, samples: int = 256
) -> tuple[list[float], dict[str, dict[str, float]]]:
    """The study's bands (quartiles of the exact pass@1) and, per band, process pass@1, @16 and @256 from samples."""
    thresholds = band_thresholds(policy)
    table = {}
    bands = problems_by_band(policy, problems_per_band, seed=5 * SEED, thresholds=thresholds)
    for index, (band, found) in enumerate(bands.items()):
        rows = {"exact pass@1": sum(p for _, p in found) / len(found), "pass@1": 0.0, "pass@16": 0.0}
        rows[f"pass@{samples}"] = 0.0
        for i, (problem, _) in enumerate(found):
            request = GenerationRequest(
                messages=[{"role": "user", "content": problem.problem}], n=samples, temperature=TEMPERATURE,
                max_tokens=512, seed=7 * SEED + 1000 * index + i,
            )  # fmt: skip
            (result,) = policy.invoke([request])
            correct = sum(solution_is_correct(problem.problem, split_steps(c.text)) for c in result.completions)
            for k in (1, 16, samples):
                rows[f"pass@{k}"] += pass_at(k, samples, correct) / len(found)
        rows["steps"] = statistics.mean(p.difficulty for p, _ in found)
        table[band] = rows
    return thresholds, table


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=None, help="Checkpoint directory (default: the shipped ones).")
    parser.add_argument("--per-difficulty", type=int, default=100)
    parser.add_argument("--coverage-problems", type=int, default=16, help="Problems per difficulty for pass@64.")
    parser.add_argument("--band-problems", type=int, default=40, help="Problems per band for pass@16 and pass@256.")
    parser.add_argument("--verifier-problems", type=int, default=25, help="Problems per difficulty for the PRMs.")
    parser.add_argument("--samples", type=int, default=2, help="Samples per problem for the PRM measurement.")
    parser.add_argument("--verifier-band-problems", type=int, default=50, help="Problems per band for the PRMs.")
    parser.add_argument("--output", default="arith_models_v3.md", help="The report's name under benchmarks/results.")
    args = parser.parse_args()
    started = time.time()

    def path(name: str) -> Path:
        return args.models / name if args.models else arith_checkpoint(name)

    training = _training_script()
    small = TransformersPolicy.from_pretrained(path("small"))
    large = TransformersPolicy.from_pretrained(path("large"))
    ladder = {  # the verifiers trained so far, the realistic one first
        name: MathShepherdPRM.from_pretrained(path(name), batch_size=64)
        for name in training.PRM_RECIPES
        if (path(name) / "config.json").is_file()
    }
    sizes = {
        name: sum(p.numel() for p in engine.model.parameters())
        for name, engine in {"small": small, "large": large, **ladder}.items()
    }
    accuracy = {
        "small": greedy_accuracy(small, args.per_difficulty),
        "large": greedy_accuracy(large, args.per_difficulty),
    }
    reach = step_reachability(small)
    small_wrong = training.RECIPES["small"].teacher.wrong_results()
    cover = coverage(small, args.coverage_problems, 64)
    thresholds, bands = band_coverage(small, args.band_problems)
    by_difficulty = [p for d in LEVELS for p in make_problems(args.verifier_problems, d, seed=3 * SEED + d)]
    by_band = problems_by_band(small, args.verifier_band_problems, seed=4 * SEED, thresholds=thresholds)
    test_sets = {  # the study's problems (its bands, 1-9 steps) first: the target is set on them
        "the study's bands": sampled_solutions(small, [p for found in by_band.values() for p, _ in found], 3),
        f"1-{MAX_DIFFICULTY} steps": sampled_solutions(small, by_difficulty, args.samples),
    }
    quality = {
        (population, name): prm_quality(
            prm, pairs, small_wrong=small_wrong, teacher_wrong=training.PRM_RECIPES[name].teacher.wrong_results()
        )
        for population, pairs in test_sets.items()
        for name, prm in ladder.items()
    }

    lines = header("Arith world v3: the checkpoints against the study's requirements", __file__)
    lines += [
        f"- wall time {time.time() - started:.0f} s; models from `{args.models or 'the package'}`",
        "",
        "## Sizes",
        "",
        "| model | parameters | vs small |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {count:,} | {count / sizes['small']:.2f}x |" for name, count in sizes.items()),
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
        "misconception facts": [p for fact, _, p in reach if fact in small_wrong],
        "other facts": [p for fact, _, p in reach if fact not in small_wrong],
    }
    lowest = min(reach, key=lambda item: item[2])
    lines += [
        "",
        f"## Reachability: P(right step | right prefix) at temperature {TEMPERATURE}, small policy",
        "",
        f"Every one of the {len(arithmetic_facts())} facts at every position 1-{MAX_DIFFICULTY} ({len(values)} "
        "cases), computed exactly from the logits (the product of the step's token probabilities):",
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
        f"## Process pass@k by band ({args.band_problems} problems per band, 256 samples each, unbiased estimator)",
        "",
        "The study's bands (`benchmarks/_bands.py`): quartiles of the small policy's exact process pass@1 at "
        f"temperature {TEMPERATURE} (the probability of the gold solution, from its logits: Snell et al.'s oracle "
        "difficulty) over a calibration pool of 400 problems of 1-9 steps; thresholds "
        + ", ".join(f"{t:.2%}" for t in thresholds)
        + ". The study needs the hardest band's process pass@16 between 40% and 75% and its pass@256 at 85% or more.",
        "",
        "| band | mean steps | exact pass@1 | pass@1 (sampled) | pass@16 | pass@256 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for band, row in bands.items():
        lines.append(
            f"| {band} | {row['steps']:.1f} | {row['exact pass@1']:.1%} | {row['pass@1']:.1%} | {row['pass@16']:.1%} "
            f"| {row['pass@256']:.1%} |"
        )
    lines += [
        "",
        "## The verifier ladder on solutions sampled from the small policy (temperature 0.8)",
        "",
        "Steps labelled by the exact checker (Math-Shepherd prefix labels); threshold 0.5. A miss is a wrong step "
        "scored >= 0.5. First wrong steps: *unseen misconception* (one of the small policy's misconceptions that "
        "the PRM's training teacher never had), *shared misconception*, *other* (slips and miscopies); *after*: the "
        f"steps after a solution's first error. Two test sets: the study's bands ({args.verifier_band_problems} "
        f"problems per band, 3 samples each; the issue's target, AUROC 0.80-0.92, is set on these) and "
        f"{args.verifier_problems} problems at each of 1-{MAX_DIFFICULTY} steps ({args.samples} samples each).",
        "",
        "| problems | PRM | solutions | right / wrong steps | step accuracy | on right steps | on wrong steps "
        "| AUROC | miss: unseen misconception | miss: shared misconception | miss: other first errors "
        "| miss: after an error |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (population, name), q in quality.items():
        misses = " | ".join(
            f"{q[f'{kind}_miss']:.1%} of {int(q[f'{kind}_count'])}" for kind in ("unseen", "shared", "other", "after")
        )
        lines.append(
            f"| {population} | {name} | {int(q['solutions'])} | {int(q['right'])} / {int(q['wrong'])} | "
            f"{q['accuracy']:.1%} | {q['on_right']:.1%} | {q['on_wrong']:.1%} | {q['auroc']:.3f} | {misses} |"
        )
    write(args.output, lines)


if __name__ == "__main__":
    main()
