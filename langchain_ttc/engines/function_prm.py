"""A PRM from any Python function: the "hard-coded heuristic" verifier (the Arith checker is one).

In: a callable ``(problem, steps) -> one score per step``. Out: a PRM engine that calls it for each
request of a batched call and checks its answers (one score per step, each in [0, 1]).

Example:
    >>> prm = FunctionPRM(lambda problem, steps: [1.0 if "=" in s else 0.0 for s in steps])
    >>> prm.invoke([{"problem": "p", "steps": ["1+1=2", "done"]}])[0].scores
    [1.0, 0.0]

"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_ttc.core.types import ScoreRequest, StepScores
from langchain_ttc.engines.base import PRMEngine

StepScorer = Callable[[str, list[str]], Sequence[float]]


class FunctionPRM(PRMEngine):
    """Score steps with a plain function.

    Args:
        function: ``(problem, steps) -> scores``, one score in [0, 1] per step.
        name: Shown in traces.

    Raises:
        TypeError: If ``function`` is not callable.

    """

    def __init__(self, function: StepScorer, *, name: str = "function") -> None:
        if not callable(function):
            raise TypeError(f"function={function!r} is not callable; pass a function (problem, steps) -> scores.")
        self.function = function
        self.function_name = self.model_name = name

    def _score(self, requests: list[ScoreRequest]) -> list[StepScores]:
        results = []
        for request in requests:
            scores = [float(s) for s in self.function(request.problem, list(request.steps))]
            if len(scores) != len(request.steps) or any(not 0.0 <= s <= 1.0 for s in scores):
                raise ValueError(
                    f"the PRM function {self.function_name!r} returned {scores} for {len(request.steps)} steps; "
                    "it must return one score in [0, 1] per step."
                )
            results.append(StepScores(scores=scores, num_tokens=0))
        return results
