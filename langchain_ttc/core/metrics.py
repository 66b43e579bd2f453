"""Metrics (pure functions): how well a verifier's scores separate, and what inference costs in FLOPs.

In: the scores a verifier gave to right and to wrong steps; or a model's parameter count and the
tokens it processed. Out: the AUROC; the inference FLOPs (``2 x parameters x tokens``, the usual
forward-pass estimate of Kaplan et al., 2020, as the compute-optimal study counts them).

Example:
    >>> auroc([0.9, 0.8], [0.1, 0.8])
    0.875
    >>> inference_flops(1_000, 50)
    100000.0

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


def inference_flops(parameters: int | None, tokens: float) -> float | None:
    """``2 x parameters x tokens``: the FLOPs of a forward pass over ``tokens`` (``None``: the size is unknown).

    No tokens cost nothing, whatever the model's size (a strategy that never calls the verifier
    spends 0 verifier FLOPs even when the verifier's size is unknown).

    Args:
        parameters: The model's parameter count, ``None`` when unknown (a remote model).
        tokens: Tokens the model read or generated.

    Example:
        >>> inference_flops(None, 0), inference_flops(None, 3)
        (0.0, None)

    """
    if tokens == 0:
        return 0.0
    return None if parameters is None else 2.0 * parameters * tokens
