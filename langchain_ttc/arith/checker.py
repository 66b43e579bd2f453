"""The exact Arith checker as a PRM (a perfect verifier, to separate what a search does from what a PRM knows).

In: Arith problems and solution steps. Out: 1.0 for a step that keeps the solution correct, else 0.0.

Example:
    >>> from langchain_ttc.arith import make_problems, split_steps
    >>> problem = make_problems(1, difficulty=2, seed=0)[0]
    >>> arith_checker_prm().invoke([{"problem": problem.problem, "steps": split_steps(problem.solution)}])[0].scores
    [1.0, 1.0]

"""

from __future__ import annotations

from langchain_ttc.arith.problems import check_steps
from langchain_ttc.engines.function_prm import FunctionPRM


def arith_checker_prm() -> FunctionPRM:
    """The exact Arith checker as a PRM: 1.0 for a step that keeps the solution correct, else 0.0."""
    return FunctionPRM(lambda problem, steps: [float(ok) for ok in check_steps(problem, steps)], name="arith_checker")
