"""Metrics of a verifier's scores (pure functions).

In: the scores a verifier gave to right and to wrong steps. Out: how well they separate.

Example:
    >>> auroc([0.9, 0.8], [0.1, 0.8])
    0.875

"""

from __future__ import annotations

from itertools import groupby


def auroc(right: list[float], wrong: list[float]) -> float:
    """P(a right item scores above a wrong one), ties counting half (the Mann-Whitney statistic).

    Args:
        right: Scores of the right items (steps, solutions).
        wrong: Scores of the wrong items.

    Returns:
        The area under the ROC curve; ``nan`` when either list is empty. O(n log n).

    """
    if not right or not wrong:
        return float("nan")
    ranked = sorted([(score, True) for score in right] + [(score, False) for score in wrong], key=lambda x: x[0])
    rank_sum = 0.0
    position = 0
    for _, tied in groupby(ranked, key=lambda x: x[0]):
        group = list(tied)
        mean_rank = position + (len(group) + 1) / 2
        rank_sum += mean_rank * sum(is_right for _, is_right in group)
        position += len(group)
    return (rank_sum - len(right) * (len(right) + 1) / 2) / (len(right) * len(wrong))
