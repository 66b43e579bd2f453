"""Orchestration overhead: beam search through our LangGraph graph against a plain Python loop.

Both make the same engine calls with identical seeds (the plain loop re-implements the iteration with
the same pure functions: write one step for every beam, score, prune, expand). The report gives the
wall-time ratio (target: at most 1.05 at N=16) and the milliseconds of orchestration per iteration.
Each path runs first on half the problems (answer parsing is cached, so the second run of a problem
finds its answers parsed).

    python benchmarks/overhead.py [--problems 20] [--n 16]

Writes ``benchmarks/results/overhead.md``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _report import header, write

from langchain_ttc import create_beam_search_graph, make_problems
from langchain_ttc.core.aggregation import aggregate
from langchain_ttc.core.search import Beam, extend, interleave, prune, repeat_counts, split_steps, top_by_score
from langchain_ttc.core.seeds import derive_seed, seed_requests
from langchain_ttc.core.types import GenerationRequest, ScoreRequest
from langchain_ttc.core.voting import weighted_best_of_n
from langchain_ttc.engines.loading import load_policy, load_prm


def plain_beam_search(
    policy: Any, prm: Any, problem: str, *, n: int, width: int, seed: int, max_tokens: int
) -> tuple[str, int]:
    """Beam search as a plain loop over the same engines and pure functions; returns (chosen text, iterations).

    The reference's iteration: the survivors write n continuations (repeated in turn), the PRM scores
    them, the best n / width active ones survive; at the end, the weighted vote over the n best
    finished beams.
    """
    conversation = [{"role": "user", "content": problem}]
    frontier, finished = [Beam()], []
    iteration = 0
    for iteration in range(40):
        last = iteration == 39
        step = GenerationRequest(
            messages=conversation, stop=[] if last else ["\n\n"], max_tokens=max_tokens, temperature=0.8
        )
        requests = [
            step.model_copy(update={"partial": b.text, "n": k})
            for b, k in zip(frontier, repeat_counts(len(frontier), n), strict=True)
        ]
        results = policy.invoke(seed_requests(requests, derive_seed(seed, "iteration", iteration)))
        children = interleave(
            [[extend(b, c, iteration=iteration) for c in r.completions] for b, r in zip(frontier, results, strict=True)]
        )
        todo = [c for c in children if not c.truncated and split_steps(c.text, "\n\n")]
        scores = prm.invoke([ScoreRequest(problem=problem, steps=split_steps(c.text, "\n\n")) for c in todo])
        scored = {id(c): aggregate(s.scores, "last") for c, s in zip(todo, scores, strict=True)}
        children = [c.model_copy(update={"score": scored.get(id(c))}) for c in children]
        finished += [c for c in children if c.complete]
        frontier = prune([c for c in children if c.active], keep=n // width, filter_duplicates=False)
        if not frontier:
            break
    candidates = [b.to_candidate("\n\n") for b in top_by_score(finished, n)]
    chosen = weighted_best_of_n(candidates).chosen_index
    return ("" if chosen is None else candidates[chosen].text), iteration + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=20)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--width", type=int, default=4)
    args = parser.parse_args()
    policy, prm = load_policy("arith:small"), load_prm("arith:prm")
    problems = [p.problem for p in make_problems(args.problems, (4, 8), seed=3_000_017)]
    graph = create_beam_search_graph(policy, prm, n=args.n, beam_width=args.width, max_tokens=64, seed=0)
    plain_beam_search(policy, prm, problems[0], n=args.n, width=args.width, seed=0, max_tokens=64)  # warm up
    timings = {"graph": 0.0, "plain": 0.0}
    iterations = 0
    same = 0
    for index, problem in enumerate(problems):
        # Each path goes first on half the problems: the second one finds the answers' parses cached.
        outputs: dict[str, Any] = {}
        for path in ("graph", "plain") if index % 2 == 0 else ("plain", "graph"):
            started = time.perf_counter()
            if path == "graph":
                outputs[path] = graph.invoke({"problem": problem})["result"]["solution"]
            else:
                outputs[path], steps = plain_beam_search(
                    policy, prm, problem, n=args.n, width=args.width, seed=0, max_tokens=64
                )
            timings[path] += time.perf_counter() - started
        iterations += steps
        same += outputs["graph"] == outputs["plain"]
    ratio = timings["graph"] / timings["plain"]
    per_iteration_ms = 1000 * (timings["graph"] - timings["plain"]) / iterations
    lines = header("Orchestration overhead: LangGraph beam search against a plain loop", __file__)
    lines += [
        f"- beam search, N={args.n}, beam width {args.width}, {args.problems} Arith problems (4-8 steps), "
        f"small policy and Arith PRM (transformers, CPU), identical seeds",
        "",
        "| | wall time | per iteration |",
        "| --- | ---: | ---: |",
        f"| LangGraph graph | {timings['graph']:.2f} s | {1000 * timings['graph'] / iterations:.1f} ms |",
        f"| plain Python loop | {timings['plain']:.2f} s | {1000 * timings['plain'] / iterations:.1f} ms |",
        "",
        f"Ratio graph / plain: **{ratio:.3f}** (target <= 1.05); orchestration: **{per_iteration_ms:.2f} ms per "
        f"iteration** over {iterations} iterations. Same chosen solution on {same}/{len(problems)} problems "
        "(identical engine calls).",
    ]
    write("overhead.md", lines)


if __name__ == "__main__":
    main()
