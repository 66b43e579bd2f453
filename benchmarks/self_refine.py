"""Self-refinement, the self-verification PRM and the trained PRM on held-out Arith problems.

For each problem (small policy, N = 16 solutions):

- verifiers: every step of the 16 samples labelled by the exact Arith checker, scored by the
  policy's own self-verification (``SelfVerificationPRM``, 4 re-derivations per step) and by the
  trained Arith PRM: step accuracy at 0.5 and AUROC (how well scores rank right above wrong steps);
- selection at N=16 with each verifier (best-of-N, weighted best-of-N; aggregation ``min``), and
  majority vote;
- self-refinement at N=16: 4 chains of up to 3 revisions, the critic being the policy's own words,
  its self-verification, the trained PRM, or the exact checker (an oracle critic, for reference).

    python benchmarks/self_refine.py [--per-difficulty 10] [--concurrency 8]

Writes ``benchmarks/results/self_refine.md`` and the raw ``self_refine.jsonl`` records.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _report import RESULTS, header, wilson, write

from langchain_ttc import make_problems
from langchain_ttc.arith import check_steps
from langchain_ttc.arith.checker import arith_checker_prm
from langchain_ttc.core.metrics import auroc
from langchain_ttc.core.types import Candidate
from langchain_ttc.core.voting import best_of_n, majority_vote, weighted_best_of_n
from langchain_ttc.engines.batching import MicroBatchingPolicy, MicroBatchingPRM
from langchain_ttc.engines.loading import load_policy, load_prm
from langchain_ttc.engines.self_verification import SelfVerificationPRM
from langchain_ttc.evaluation.run import grade
from langchain_ttc.strategies.driver import run_calls
from langchain_ttc.strategies.generation import score_candidates
from langchain_ttc.strategies.refine.self_refine import create_self_refine_graph
from langchain_ttc.strategies.sampling.majority_vote import create_majority_vote_graph

SEED = 8_000_000
N = 16
MAX_TOKENS = 512


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-difficulty", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    problems = [(d, p) for d in range(1, 9) for p in make_problems(args.per_difficulty, d, seed=SEED + d)]
    policy = MicroBatchingPolicy(load_policy("arith:small"))
    verifiers = {
        "self_verification": MicroBatchingPRM(SelfVerificationPRM(policy, samples=4, seed=0)),
        "trained_prm": MicroBatchingPRM(load_prm("arith:prm")),
        "exact_checker": arith_checker_prm(),
    }
    sampler = create_majority_vote_graph(policy, n=N, seed=0, max_tokens=MAX_TOKENS)
    common = {"max_revisions": 3, "chains": N // 4, "seed": 0, "max_tokens": MAX_TOKENS}
    refiners = {
        "policy_words": create_self_refine_graph(policy, None, **common),
        **{name: create_self_refine_graph(policy, verifier, **common) for name, verifier in verifiers.items()},
    }

    def run(item: tuple[int, Any]) -> dict[str, Any]:
        difficulty, problem = item
        started = time.perf_counter()
        candidates = [
            Candidate.model_validate(c) for c in sampler.invoke({"problem": problem.problem})["result"]["candidates"]
        ]
        labels = [label for c in candidates for label in check_steps(problem.problem, c.steps)]
        correct = {
            "majority_vote": grade(candidates[majority_vote(candidates).chosen_index or 0].answer, problem.answer)
        }
        steps: dict[str, list[float]] = {}
        for name, verifier in verifiers.items():
            scored, _ = run_calls(score_candidates(verifier, problem.problem, candidates, aggregation="min"))
            steps[name] = [s for c in scored for s in c.step_scores or []]
            for rule_name, rule in (("best_of_n", best_of_n), ("weighted_best_of_n", weighted_best_of_n)):
                chosen = rule(scored).chosen_index
                correct[f"{rule_name}/{name}"] = grade(
                    None if chosen is None else scored[chosen].answer, problem.answer
                )
        tokens = {}
        for name, graph in refiners.items():
            result = graph.invoke({"problem": problem.problem})["result"]
            correct[f"self_refine/{name}"] = grade(result["answer"], problem.answer)
            tokens[f"self_refine/{name}"] = result["usage"]["completion_tokens"] + result["usage"]["prm_tokens"]
        return {"difficulty": difficulty, "answer": problem.answer, "labels": labels, "step_scores": steps,
                "correct": correct, "tokens": tokens, "seconds": time.perf_counter() - started}  # fmt: skip

    started = time.time()
    with ThreadPoolExecutor(max_workers=args.concurrency) as executor:
        records = list(executor.map(run, problems))
    (RESULTS / "self_refine.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    write("self_refine.md", report(records, list(verifiers), list(refiners), time.time() - started))


def cell(records: list[dict[str, Any]], key: str) -> str:
    hits = [r["correct"][key] for r in records]
    low, high = wilson(sum(hits), len(hits))
    return f"{sum(hits) / len(hits):.1%} ({low:.0%}–{high:.0%})"


def report(records: list[dict[str, Any]], verifiers: list[str], refiners: list[str], seconds: float) -> list[str]:
    lines = header("Self-refinement and self-verification on held-out Arith problems", __file__)
    lines += [
        f"- {len(records)} held-out problems ({len(records) // 8} per difficulty 1-8); small policy; N = {N}; "
        f"temperature 0.8, max_tokens {MAX_TOKENS}; {seconds / 60:.0f} min",
        "- accuracy with 95% Wilson intervals",
        "",
        "**Verifiers, step by step** (every step of the 16 samples, labelled by the exact checker):",
        "",
        "| verifier | steps | step accuracy at 0.5 | AUROC | mean score, right steps | wrong steps |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in verifiers:
        pairs = [(s, label) for r in records for s, label in zip(r["step_scores"][name], r["labels"], strict=True)]
        right = [s for s, label in pairs if label]
        wrong = [s for s, label in pairs if not label]
        accuracy = sum((s >= 0.5) == label for s, label in pairs) / len(pairs)
        lines.append(
            f"| {name} | {len(pairs)} | {accuracy:.1%} | {auroc(right, wrong):.3f} | "
            f"{sum(right) / max(1, len(right)):.2f} | {sum(wrong) / max(1, len(wrong)):.2f} |"
        )
    lines += ["", f"**Selection at N={N}** (the same 16 samples; aggregation `min`):", ""]
    lines += ["| rule | " + " | ".join(verifiers) + " |", "| --- |" + " ---: |" * len(verifiers)]
    lines.append(
        "| majority vote (no verifier) | " + " | ".join(cell(records, "majority_vote") for _ in verifiers) + " |"
    )
    for rule in ("best_of_n", "weighted_best_of_n"):
        lines.append(f"| {rule} | " + " | ".join(cell(records, f"{rule}/{v}") for v in verifiers) + " |")
    lines += ["", f"**Self-refinement at N={N}**: {N // 4} chains × up to 3 revisions, by critic "
              "(tokens: generated by the policy, critique included, plus verifier tokens):", ""]  # fmt: skip
    lines += ["| critic | accuracy | tokens / problem |", "| --- | ---: | ---: |"]
    for name in refiners:
        key = f"self_refine/{name}"
        mean = sum(r["tokens"][key] for r in records) / len(records)
        lines.append(f"| {name} | {cell(records, key)} | {mean:.0f} |")
    lines += ["", "Per difficulty (steps):", "", "| strategy | " + " | ".join(map(str, range(1, 9))) + " |",
              "| --- |" + " ---: |" * 8]  # fmt: skip
    keys = ["majority_vote", *(f"weighted_best_of_n/{v}" for v in verifiers), *(f"self_refine/{r}" for r in refiners)]
    for key in keys:
        row = []
        for d in range(1, 9):
            hits = [r["correct"][key] for r in records if r["difficulty"] == d]
            row.append(f"{sum(hits) / len(hits):.0%}")
        lines.append(f"| {key} | " + " | ".join(row) + " |")
    return lines


if __name__ == "__main__":
    main()
