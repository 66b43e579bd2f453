"""Traces for the study's findings that do not hold: what a strategy chose on a problem another got right, and why.

In: a strategy's result on one problem, run again with ``record_tree=True`` (the searches and the router),
or a sampler's pool with its verifier's step scores. Out: a plain summary (JSON) and its Markdown: the
chosen solution step by step with the verifier's score and the exact checker's label of each step, how
many right solutions the strategy had to choose from, and a one-line diagnosis:

- *coverage*: no right solution among the candidates (for a search: whether right partial solutions
  were written and then pruned, and when);
- *verifier miss*: a right solution was there and the verifier scored the chosen wrong one above it
  (the first wrong step's score shows the blind spot);
- *vote*: a right solution scored higher, but the wrong answer won the (weighted) vote.
"""

from __future__ import annotations

from typing import Any

from langchain_ttc.arith.problems import check_steps
from langchain_ttc.core.search import split_steps
from langchain_ttc.core.types import Candidate
from langchain_ttc.evaluation.run import grade


def _labelled(problem: str, candidate: Candidate) -> list[tuple[str, float | None, bool]]:
    labels = check_steps(problem, candidate.steps) if candidate.steps else []
    scores = candidate.step_scores or [None] * len(candidate.steps)
    return list(zip(candidate.steps, scores, labels, strict=True))


def _right(problem: str, candidate: Candidate, gold: str) -> bool:
    return candidate.finished and grade(candidate.answer, gold) and all(check_steps(problem, candidate.steps))


def _pruned_right(problem: str, tree: list[dict[str, Any]], delimiter: str) -> tuple[int, int | None]:
    """How many right partial solutions the search pruned, and the first iteration it pruned one."""
    nodes = {n["id"]: n for n in tree}

    def text(node: dict[str, Any]) -> str:
        parts = []
        while node is not None:
            parts.append(node.get("step", ""))
            node = nodes.get(node["parent"]) if node.get("parent") is not None else None
        return "".join(reversed(parts))

    pruned = [n for n in tree if n["fate"] == "pruned" and split_steps(text(n), delimiter)]
    right = [n for n in pruned if all(check_steps(problem, split_steps(text(n), delimiter)))]
    return len(right), min((n["iteration"] for n in right), default=None)


def summarize(
    *,
    problem: str,
    gold: str,
    candidates: list[Candidate],
    chosen: int | None,
    tree: list[dict[str, Any]] | None,
    delimiter: str,
    vote: str,
) -> dict[str, Any]:
    """A trace's summary and diagnosis (``vote``: how the strategy picks among finished candidates)."""
    right = [c for c in candidates if _right(problem, c, gold)]
    right_answers = [c for c in candidates if c.finished and grade(c.answer, gold)]
    pick = candidates[chosen] if chosen is not None else None
    summary: dict[str, Any] = {
        "candidates": len(candidates),
        "finished": sum(c.finished for c in candidates),
        "right": len(right),
        "right_answer": len(right_answers),
        "chosen": None
        if pick is None
        else {"answer": pick.answer, "score": pick.score, "steps": _labelled(problem, pick)},
        "best_right_score": max((c.score for c in right if c.score is not None), default=None),
    }
    if tree is not None:
        summary["pruned_right"], summary["first_pruned_right_iteration"] = _pruned_right(problem, tree, delimiter)
    if pick is None:
        summary["diagnosis"] = "coverage: no finished solution with an answer to choose"
    elif grade(pick.answer, gold):
        summary["diagnosis"] = "not reproduced: the traced runs chose the right answer (the failure is a rare draw)"
    elif not right_answers:
        where = ""
        if tree is not None and summary["pruned_right"]:
            where = (
                f"; the search wrote {summary['pruned_right']} right partial solutions and pruned them (first at "
                f"iteration {summary['first_pruned_right_iteration']})"
            )
        elif tree is not None:
            where = "; no right partial solution was ever pruned: the policy never wrote the right next step"
        summary["diagnosis"] = f"coverage: none of the {len(candidates)} candidates has the right answer{where}"
    else:
        wrong_at = next((i for i, (_, _, ok) in enumerate(summary["chosen"]["steps"]) if not ok), None)
        blind = ""
        if wrong_at is not None:
            step, score, _ = summary["chosen"]["steps"][wrong_at]
            blind = f"; its first wrong step {step!r} (step {wrong_at + 1}) scored " + (
                f"{score:.2f}" if score is not None else "unscored"
            )
        best = max((c.score or 0.0) for c in right_answers)
        if vote != "majority_vote" and pick.score is not None and pick.score >= best:
            summary["diagnosis"] = (
                f"verifier miss: the chosen wrong solution scored {pick.score:.2f}, above every one of the "
                f"{len(right_answers)} with the right answer (best {best:.2f}){blind}"
            )
        else:
            summary["diagnosis"] = (
                f"vote: {len(right_answers)} of {len(candidates)} candidates had the right answer (best score "
                f"{best:.2f}) but the {vote.replace('_', ' ')} picked another{blind}"
            )
    return summary


def markdown(trace: dict[str, Any]) -> list[str]:
    """A trace as a few Markdown lines."""
    lines = [
        f"- `{trace['id']}` ({trace['band']}), {trace['strategy']} wrong, {trace['other']} right: "
        f"{trace['problem']!r} (gold {trace['gold']}): **{trace['summary']['diagnosis']}**",
    ]
    chosen = trace["summary"]["chosen"]
    if chosen:
        steps = "; ".join(
            f"{'✓' if ok else '✗'} `{step}` {'' if score is None else f'{score:.2f}'}"
            for step, score, ok in chosen["steps"]
        )
        lines.append(f"  - chosen (answer {chosen['answer']}): {steps}")
    attempt = trace.get("attempt", 0)
    if attempt:
        lines.append(
            f"  - traced run: {'none of the reruns failed' if attempt < 0 else f'rerun {attempt + 1}'} (the records'"
            " run drew other samples: the engine seeds merged batches)"
        )
    if trace.get("routing"):
        r = trace["routing"]
        lines.append(f"  - routed: difficulty {r.get('difficulty', 0):.2f}, bin {r.get('bin')}, {r.get('strategy')}")
    return lines
