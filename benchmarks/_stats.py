"""The study's statistics (pure, no models): paired counts, exact McNemar tests, verdicts, cross-fitting, FLOPs.

A finding compares two strategies on the same problems. Each problem is right or wrong under each,
so the evidence is the pair of discordant counts: ``b`` problems strategy A got right and B wrong,
``c`` the reverse. Under "A and B are equally accurate" each discordant problem is a fair coin, so
the exact two-sided McNemar p-value is the binomial test of ``b`` out of ``b + c`` at one half.

Two kinds of claim, with rules fixed before any test problem is drawn:

- ``better`` (A > B): met only when ``b > c`` and ``p < alpha``;
- ``at_least`` (A ≥ B): met when A is better with ``p < alpha`` ("significant"), or when A's accuracy
  is at most ``margin`` below B's and B is not significantly better ("margin rule").

Example:
    >>> compare({"1": True, "2": True, "3": False}, {"1": False, "2": True, "3": False}, "A", "B")
    Paired(a='A', b='B', n=3, right_a=2, right_b=1, a_only=1, b_only=0, p=1.0)
    >>> verdict(compare({"1": True}, {"1": True}, "A", "B"), "at_least", margin=0.02).met
    True

"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

Claim = Literal["better", "at_least"]


def mcnemar_exact(b: int, c: int) -> float:
    """The exact two-sided McNemar p-value: a binomial test of ``b`` successes in ``b + c`` at p = 1/2.

    Twice the smaller tail, capped at 1 (the tails are symmetric at one half); 1 when nothing is discordant.

    Example:
        >>> mcnemar_exact(0, 0), mcnemar_exact(5, 5)
        (1.0, 1.0)
        >>> round(mcnemar_exact(10, 1), 5)
        0.01172

    """
    if b < 0 or c < 0:
        raise ValueError(f"b={b}, c={c}: discordant counts cannot be negative.")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


@dataclass(frozen=True)
class Paired:
    """Two strategies on the problems both were run on.

    Attributes:
        a: The first strategy's name.
        b: The second's.
        n: Problems both were run on.
        right_a: Of them, those A got right.
        right_b: Those B got right.
        a_only: ``b`` of McNemar's table: A right and B wrong.
        b_only: ``c``: B right and A wrong.
        p: The exact two-sided McNemar p-value of ``a_only`` against ``b_only``.

    """

    a: str
    b: str
    n: int
    right_a: int
    right_b: int
    a_only: int
    b_only: int
    p: float

    @property
    def accuracy_a(self) -> float:
        return self.right_a / self.n if self.n else math.nan

    @property
    def accuracy_b(self) -> float:
        return self.right_b / self.n if self.n else math.nan

    @property
    def difference(self) -> float:
        """A's accuracy minus B's, on the common problems (``(b - c) / n``)."""
        return (self.a_only - self.b_only) / self.n if self.n else math.nan


def compare(a: Mapping[str, bool], b: Mapping[str, bool], name_a: str, name_b: str) -> Paired:
    """Paired counts and the exact McNemar p-value of ``a`` against ``b`` (problem id -> right) on their common ids."""
    common = sorted(set(a) & set(b))
    a_only = sum(bool(a[i]) and not b[i] for i in common)
    b_only = sum(bool(b[i]) and not a[i] for i in common)
    return Paired(
        a=name_a,
        b=name_b,
        n=len(common),
        right_a=sum(bool(a[i]) for i in common),
        right_b=sum(bool(b[i]) for i in common),
        a_only=a_only,
        b_only=b_only,
        p=mcnemar_exact(a_only, b_only),
    )


@dataclass(frozen=True)
class Verdict:
    """Whether a claim about a :class:`Paired` comparison is met, and by which rule."""

    met: bool
    why: str


def verdict(paired: Paired, claim: Claim, *, margin: float, alpha: float = 0.05) -> Verdict:
    """Apply the pre-stated rule for ``claim`` ("A > B" or "A ≥ B") to ``paired``.

    Example:
        >>> verdict(Paired("A", "B", 100, 70, 71, 4, 5, 1.0), "at_least", margin=0.02).why
        'margin rule: at most 2 points below (-1.0 points, p = 1)'
        >>> verdict(Paired("A", "B", 100, 70, 71, 4, 5, 1.0), "better", margin=0.02).met
        False

    """
    if paired.n == 0:
        return Verdict(False, "not run on common problems")
    points = f"{paired.difference * 100:+.1f} points, p = {paired.p:.3g}"
    a_wins = paired.a_only > paired.b_only and paired.p < alpha
    b_wins = paired.b_only > paired.a_only and paired.p < alpha
    if a_wins:
        return Verdict(True, f"significant ({points})")
    if claim == "better":
        return Verdict(False, f"not significant ({points})" if not b_wins else f"reversed, significant ({points})")
    if b_wins:
        return Verdict(False, f"B significantly better ({points})")
    if paired.difference >= -margin - 1e-12:
        return Verdict(True, f"margin rule: at most {margin * 100:g} points below ({points})")
    return Verdict(False, f"below the {margin * 100:g}-point margin ({points})")


def stratified_folds(ids_by_group: Mapping[str, Sequence[str]], folds: int = 2) -> dict[str, int]:
    """Fold of each id: ids alternate folds in their given (draw) order, group after group.

    One running count over the groups keeps every group (band) split as evenly as it can be, and every
    fold non-empty once there are ``folds`` ids, however small the groups.

    Example:
        >>> stratified_folds({"easy": ["a", "b", "c"], "hard": ["d", "e"]})
        {'a': 0, 'b': 1, 'c': 0, 'd': 1, 'e': 0}

    """
    ordered = [i for ids in ids_by_group.values() for i in ids]
    return {i: k % folds for k, i in enumerate(ordered)}


def best_strategy(outcomes: Mapping[str, Mapping[str, bool]], ids: Sequence[str], order: Sequence[str]) -> str:
    """The strategy most accurate on ``ids`` among those run on all of them; ties go to the earliest in ``order``.

    Example:
        >>> best_strategy({"x": {"1": True, "2": False}, "y": {"1": False, "2": True}}, ["1", "2"], ["y", "x"])
        'y'

    """
    runnable = [s for s in order if s in outcomes and all(i in outcomes[s] for i in ids)]
    if not runnable:
        raise ValueError("no strategy was run on every one of these problems.")
    return max(runnable, key=lambda s: (sum(bool(outcomes[s][i]) for i in ids), -runnable.index(s)))


def cross_fitted(
    outcomes: Mapping[str, Mapping[str, bool]], folds: Mapping[str, int], order: Sequence[str]
) -> tuple[dict[str, bool], list[str]]:
    """The best fixed strategy chosen on held-out folds: each fold runs what was best on the others.

    Args:
        outcomes: strategy -> problem id -> right.
        folds: problem id -> fold (the ids to score).
        order: The tie order among strategies (the first wins a tie).

    Returns:
        Each id's outcome under the strategy chosen without it, and the choice made for each fold.

    Example:
        >>> outcomes = {"x": {"1": True, "2": True, "3": False}, "y": {"1": False, "2": True, "3": True}}
        >>> cross_fitted(outcomes, {"1": 0, "2": 1, "3": 0}, ["x", "y"])
        ({'1': True, '3': False, '2': True}, ['x', 'x'])

    """
    count = max(folds.values(), default=0) + 1
    if count < 2:
        raise ValueError(f"{len(folds)} problems in {count} fold: cross-fitting needs at least two folds.")
    result: dict[str, bool] = {}
    choices = []
    for fold in range(count):
        train = [i for i, f in folds.items() if f != fold]
        choice = best_strategy(outcomes, train, order)
        choices.append(choice)
        result |= {i: bool(outcomes[choice][i]) for i, f in folds.items() if f == fold}
    return result, choices


def share_closed(accuracy: float, base: float, ceiling: float) -> float:
    """The share of the gap from ``base`` (greedy) to ``ceiling`` (pass@N) that ``accuracy`` closes (NaN: no gap).

    Example:
        >>> share_closed(0.75, 0.5, 1.0)
        0.5

    """
    return (accuracy - base) / (ceiling - base) if ceiling > base else math.nan


@dataclass(frozen=True)
class Flops:
    """Inference FLOPs of one run: 2 x parameters x tokens, per model.

    Attributes:
        policy_generated: 2 x policy parameters x tokens the policy generated.
        policy_prompt: 2 x policy parameters x prompt tokens the policy read.
        verifier: 2 x verifier parameters x tokens the verifier read.

    """

    policy_generated: float
    policy_prompt: float
    verifier: float

    @property
    def policy(self) -> float:
        """The policy's share: generated and prompt tokens."""
        return self.policy_generated + self.policy_prompt

    @property
    def total(self) -> float:
        """Every model involved."""
        return self.policy + self.verifier


def flops(usage: Mapping[str, float], *, policy_parameters: int, verifier_parameters: int) -> Flops:
    """FLOPs from a run's usage (``completion_tokens``, ``prompt_tokens``, ``prm_tokens``).

    Example:
        >>> f = flops({"completion_tokens": 10, "prompt_tokens": 5, "prm_tokens": 20}, policy_parameters=100,
        ...           verifier_parameters=50)
        >>> f.policy, f.total
        (3000.0, 5000.0)

    """
    return Flops(
        policy_generated=2.0 * policy_parameters * usage.get("completion_tokens", 0),
        policy_prompt=2.0 * policy_parameters * usage.get("prompt_tokens", 0),
        verifier=2.0 * verifier_parameters * usage.get("prm_tokens", 0),
    )
