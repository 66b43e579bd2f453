"""Aggregating a solution's per-step PRM scores into one score.

In: a list of step scores and an aggregation name. Out: one float.

- ``last``: the score of the final step (the reference implementation's default);
- ``min``: the weakest step;
- ``prod``: the product (the probability every step is right, if independent);
- ``mean``: the average.

Example:
    >>> aggregate([0.9, 0.5, 0.8], "min")
    0.5

"""

from __future__ import annotations

import math
from typing import Literal, get_args

Aggregation = Literal["last", "min", "prod", "mean"]
AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)


def check_aggregation(aggregation: str) -> Aggregation:
    """Return ``aggregation`` if it is known, else raise a ``ValueError`` that lists the choices."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation={aggregation!r} is not supported; pass one of {', '.join(AGGREGATIONS)}.")
    return aggregation  # type: ignore[return-value]


def aggregate(scores: list[float], aggregation: str = "last") -> float:
    """Aggregate step scores.

    Args:
        scores: One score per step; must not be empty.
        aggregation: ``"last"``, ``"min"``, ``"prod"`` or ``"mean"``.

    Raises:
        ValueError: If ``scores`` is empty or ``aggregation`` is unknown.

    """
    check_aggregation(aggregation)
    if not scores:
        raise ValueError("scores=[] is empty; a solution needs at least one scored step.")
    if aggregation == "last":
        return scores[-1]
    if aggregation == "min":
        return min(scores)
    if aggregation == "prod":
        return math.prod(scores)
    return sum(scores) / len(scores)
