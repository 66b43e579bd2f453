"""Adaptive stopping: whether a vote is settled, so that sampling more solutions would not change it.

In: the votes so far, as one count (or weight) per answer in order of first appearance (the
``weight`` of the :class:`~langchain_ttc.core.types.AnswerGroup` objects a vote returns), or
the candidates themselves. Out: a :class:`StopDecision`: stop or not, the leading answer, its
share of the votes and, for the posterior rule, the probability that it stays the leader. Pure
functions, no models, no LangGraph.

Two rules, each for plain and for score-weighted votes:

- **dirichlet** (Adaptive-Consistency, Aggarwal et al., 2023): the answers' true shares
  ``p = (p_1, ..., p_k)`` get a uniform prior, so after counts ``c`` the posterior is
  ``Dirichlet(c_1 + 1, ..., c_k + 1)``. Stop when ``P(p_leader > p_j for every other j) >=
  threshold``: the probability that the current leader is the answer an unlimited vote would pick.
  The categories are the answers seen so far; with only one, a rival with count 0 stands for
  every other answer (the paper's Beta rule: after ``c`` agreeing votes the posterior of the
  leader's share against the rest is ``Beta(c + 1, 1)``, and ``P(p > 1/2) = 1 - 2^-(c+1)``).
  Unlike the paper's implementation, every answer seen takes part (it keeps only the five most
  frequent).
- **supermajority** (its_hub's ``AdaptiveSelfConsistency``): stop when the leader holds at least
  ``threshold`` of the votes so far (and at least two votes were cast: a lone vote is never a
  supermajority).

How the posterior probability is computed (:func:`leader_probability`):

- two categories: exactly, by the closed form ``P(p_1 > p_2) = P(p_1 > 1/2) = I_{1/2}(a_2, a_1)``
  with ``a_i = c_i + 1`` and ``I`` the regularized incomplete beta function (``mpmath.betainc``;
  error ~1e-15);
- three or more: by the Gamma representation of the Dirichlet (``p_i = G_i / sum_j G_j`` with
  independent ``G_i ~ Gamma(a_i)``), under which ``P(leader is largest) = P(G_L > max_j G_j) =
  integral_0^inf g_{a_L}(x) prod_{j != L} P(a_j, x) dx`` (``g`` the Gamma density, ``P`` the
  regularized lower incomplete gamma function): a one-dimensional integral, computed by
  tanh-sinh quadrature (``mpmath.fp.quad``) over the range holding all but ~1e-20 of the leader's
  Gamma mass. Deterministic (no Monte Carlo, no seed); absolute error below 1e-9 (the tests compare
  it with hand-computed values, the closed form, and 30-digit integrals).

**Weighted votes** (weighted best-of-N: each sample votes with its PRM score). Derivation: let the
policy give answer ``a`` with probability ``pi_a`` and let a sample's score ``s_i`` be a calibrated
probability that it is correct. The weighted vote picks ``argmax_a W_a`` with ``W_a = sum_i 1[ans_i
= a] s_i``, whose expectation over ``m`` samples is ``m pi_a q_a`` (``q_a`` the mean score of
``a``'s samples). So the vote estimates the shares ``theta_a = pi_a q_a / sum_b pi_b q_b`` of the
*correctness mass*, and an unlimited vote picks the largest ``theta``. The plug-in estimate of
``theta_a`` is ``W_a / W`` (``W`` the total weight). Treating the ``m`` samples as ``m`` independent
draws from ``Categorical(theta)`` gives the pseudo-counts ``c_a = m W_a / W`` (:func:`pseudo_counts`:
the summed scores, scaled so that they total the number of samples), and the same two rules apply
to them: ``Dirichlet(c + 1)`` for the posterior rule, ``W_leader / W`` for the supermajority.
The scaling keeps the evidence at ``m`` observations, so a weighted run is never surer than a plain
vote with as many samples, and it changes no ranking, so the leader is the weighted vote's pick.
What it assumes: (1) the samples are independent (true for whole-solution sampling; beams that
share a prefix, or particles drawn as copies, are correlated and make the rule optimistic);
(2) the scores behave like calibrated probabilities of correctness, on one scale across answers
(an uncalibrated PRM shifts ``theta``); (3) the scores are known, not estimated: their noise is
not in the posterior, which is therefore narrower than a full model's. With equal scores the
pseudo-counts are the plain counts and both rules give the plain decision.

Example:
    >>> dirichlet_stop([4], threshold=0.95).posterior  # four agreeing votes: 1 - 2**-5
    0.96875
    >>> supermajority_stop([3, 1], threshold=0.75).stop
    True
    >>> pseudo_counts([1.8, 0.2], samples=4)
    [3.6, 0.4]

"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Literal

import mpmath
from pydantic import BaseModel, ConfigDict

from langchain_ttc.core.answers import MATH_ANSWERS, AnswerKey
from langchain_ttc.core.types import Candidate
from langchain_ttc.core.voting import majority_vote, weighted_best_of_n

StopRule = Literal["dirichlet", "supermajority"]
"""How a vote is judged settled: the Dirichlet posterior of the leader, or its share of the votes."""
DEFAULT_THRESHOLDS: dict[StopRule, float] = {"dirichlet": 0.95, "supermajority": 0.75}
"""Each rule's threshold when none is given (Adaptive-Consistency's 0.95; its_hub's 0.75)."""
MIN_SUPERMAJORITY_VOTES = 2.0
"""The supermajority rule never stops on fewer votes than this (one vote is always 100%)."""

_MP = mpmath.MPContext()  # a private context: nobody else's precision setting reaches the closed form
_EPS = 1e-16
_MAX_TERMS = 100_000


class StopDecision(BaseModel):
    """Whether a vote is settled, and why.

    Attributes:
        stop: Whether the rule says to stop sampling.
        rule: ``"dirichlet"`` or ``"supermajority"``.
        threshold: The threshold the statistic was compared with.
        leader: Index of the leading answer in the counts (ties: the first), ``None`` without votes.
        answer: The leading answer, when the decision was taken over candidates.
        share: The leader's share of the votes (of the weight, for a weighted vote).
        posterior: For ``dirichlet``: P(the leader stays the leader); ``None`` for ``supermajority``.
        votes: The votes the decision read (for a weighted vote: the samples, the pseudo-counts' total).

    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    stop: bool
    rule: StopRule
    threshold: float
    leader: int | None
    answer: str | None = None
    share: float
    posterior: float | None = None
    votes: float


def check_threshold(threshold: float, *, parameter: str = "threshold") -> float:
    """Return ``threshold`` if it lies in (0.5, 1], else raise a ``ValueError`` naming it and the fix.

    At or below one half a tied vote would count as settled; above 1 no vote ever is.

    Example:
        >>> check_threshold(0.5)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: threshold=0.5 is outside (0.5, 1]: at or below 0.5 a tied vote would count as settled, ...

    """
    if not 0.5 < threshold <= 1.0:
        raise ValueError(
            f"{parameter}={threshold!r} is outside (0.5, 1]: at or below 0.5 a tied vote would count as settled, "
            "above 1 no vote ever is; pass e.g. 0.95 (dirichlet) or 0.75 (supermajority)."
        )
    return threshold


def _checked_counts(counts: Sequence[float]) -> list[float]:
    values = [float(c) for c in counts]
    if any(not math.isfinite(c) or c < 0 for c in values):
        raise ValueError(
            f"counts={list(counts)!r} must be finite and >= 0; pass one vote count (or weight) per answer."
        )
    return values


def _leader(counts: Sequence[float]) -> int | None:
    """The index of the largest count (the first of equal ones), ``None`` when no vote was cast."""
    if not counts or sum(counts) <= 0:
        return None
    return max(range(len(counts)), key=lambda i: (counts[i], -i))


def gamma_cdf(a: float, x: float) -> float:
    """The regularized lower incomplete gamma function ``P(a, x)``, the CDF of ``Gamma(a)`` at ``x``.

    Its power series below ``x = a + 1``, its continued fraction (modified Lentz) above; relative
    error ~1e-15 in each, ~1e-13 absolute overall.

    Example:
        >>> round(gamma_cdf(1.0, 1.0), 12)  # Exponential(1): 1 - e^-1
        0.632120558829

    """
    if x <= 0.0:
        return 0.0
    log_front = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        shape = a
        for _ in range(_MAX_TERMS):
            shape += 1.0
            term *= x / shape
            total += term
            if term < total * _EPS:
                break
        return min(1.0, total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    fraction = d
    for i in range(1, _MAX_TERMS):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        fraction *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return max(0.0, 1.0 - math.exp(log_front) * fraction)


def _leader_integral(alphas: Sequence[float], leader: int) -> float:
    """``P(G_leader > max_j G_j)`` for independent ``G_j ~ Gamma(alphas[j])`` (see the module docs)."""
    lead = alphas[leader]
    rivals = Counter(a for j, a in enumerate(alphas) if j != leader)  # equal rivals: one CDF, raised to a power
    log_norm = math.lgamma(lead)

    def integrand(x: float) -> float:
        if x <= 0.0:
            return 0.0
        value = math.exp((lead - 1.0) * math.log(x) - x - log_norm)
        for alpha, times in rivals.items():
            value *= gamma_cdf(alpha, x) ** times
        return value

    mode, spread = lead - 1.0, math.sqrt(lead)
    low, high = max(0.0, mode - 12.0 * spread), mode + 12.0 * spread + 50.0
    inner = [p for p in (mode - 3.0 * spread, mode, mode + 3.0 * spread) if low < p < high]
    value = mpmath.fp.quad(integrand, [low, *inner, high])
    return min(1.0, max(0.0, float(value)))


def leader_probability(counts: Sequence[float]) -> float:
    """P(the leader stays the leader) under the ``Dirichlet(counts + 1)`` posterior (see the module docs).

    The leader is the largest count (the first of equal ones); ``0.0`` when no vote was cast.

    Raises:
        ValueError: If a count is negative or not finite.

    Example:
        >>> leader_probability([3, 1])  # Beta(4, 2): P(p > 1/2) = 13/16
        0.8125
        >>> round(leader_probability([1, 0, 0]), 12)  # Dirichlet(2, 1, 1): 11/18
        0.611111111111

    """
    values = _checked_counts(counts)
    leader = _leader(values)
    if leader is None:
        return 0.0
    alphas = [c + 1.0 for c in values] + ([1.0] if len(values) == 1 else [])  # one answer: a zero-count rival
    if len(alphas) == 2:
        lead, rival = alphas[leader], alphas[1 - leader]
        return float(_MP.betainc(rival, lead, 0, 0.5, regularized=True))  # I_{1/2}(rival, lead) = P(p_lead > 1/2)
    return _leader_integral(alphas, leader)


def dirichlet_stop(counts: Sequence[float], *, threshold: float = DEFAULT_THRESHOLDS["dirichlet"]) -> StopDecision:
    """The Adaptive-Consistency rule: stop when P(the leader stays the leader) >= ``threshold``.

    Raises:
        ValueError: If ``threshold`` is outside (0.5, 1] or a count is negative.

    Example:
        >>> decision = dirichlet_stop([3, 1], threshold=0.8)
        >>> decision.stop, decision.leader, decision.posterior, decision.share
        (True, 0, 0.8125, 0.75)

    """
    check_threshold(threshold)
    values = _checked_counts(counts)
    leader = _leader(values)
    posterior = leader_probability(values)
    total = sum(values)
    return StopDecision(
        stop=leader is not None and posterior >= threshold,
        rule="dirichlet",
        threshold=threshold,
        leader=leader,
        share=values[leader] / total if leader is not None else 0.0,
        posterior=posterior,
        votes=total,
    )


def supermajority_stop(
    counts: Sequence[float],
    *,
    threshold: float = DEFAULT_THRESHOLDS["supermajority"],
    min_votes: float = MIN_SUPERMAJORITY_VOTES,
) -> StopDecision:
    """The supermajority rule: stop when the leader holds >= ``threshold`` of at least ``min_votes`` votes.

    Raises:
        ValueError: If ``threshold`` is outside (0.5, 1] or a count is negative.

    Example:
        >>> supermajority_stop([5, 2, 1], threshold=0.6).share
        0.625
        >>> supermajority_stop([1], threshold=0.75).stop  # one vote is no supermajority
        False

    """
    check_threshold(threshold)
    values = _checked_counts(counts)
    leader = _leader(values)
    total = sum(values)
    share = values[leader] / total if leader is not None else 0.0
    # a hair of slack: pseudo-counts (a weighted vote) carry rounding that must not turn 3/4 into "less than 0.75"
    stop = leader is not None and total >= min_votes - 1e-9 and share >= threshold - 1e-12
    return StopDecision(stop=stop, rule="supermajority", threshold=threshold, leader=leader, share=share, votes=total)


def stop_decision(counts: Sequence[float], *, rule: StopRule, threshold: float | None = None) -> StopDecision:
    """``rule`` applied to plain vote counts (``threshold`` ``None``: the rule's default).

    Raises:
        ValueError: If ``rule`` is unknown, ``threshold`` is outside (0.5, 1] or a count is negative.

    """
    if rule not in DEFAULT_THRESHOLDS:
        raise ValueError(f"stop_rule={rule!r} is not known; pass one of {', '.join(DEFAULT_THRESHOLDS)}.")
    limit = DEFAULT_THRESHOLDS[rule] if threshold is None else threshold
    if rule == "dirichlet":
        return dirichlet_stop(counts, threshold=limit)
    return supermajority_stop(counts, threshold=limit)


def pseudo_counts(weights: Sequence[float], *, samples: int) -> list[float]:
    """Summed scores per answer, scaled to total ``samples``: the weighted vote as counts (see the module docs).

    All-zero weights give zero counts (no evidence, never settled).

    Raises:
        ValueError: If a weight is negative (the rule reads scores as probabilities of correctness).

    Example:
        >>> pseudo_counts([0.9, 0.9, 0.0], samples=3)
        [1.5, 1.5, 0.0]

    """
    values = [float(w) for w in weights]
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ValueError(
            f"weights={list(weights)!r} must be finite and >= 0: the weighted stopping rule reads PRM scores as "
            "probabilities of correctness; use a PRM (or an aggregation) whose scores lie in [0, 1]."
        )
    total = sum(values)
    return [w * samples / total for w in values] if total > 0 else [0.0] * len(values)


def weighted_stop_decision(
    weights: Sequence[float], *, samples: int, rule: StopRule, threshold: float | None = None
) -> StopDecision:
    """``rule`` applied to a weighted vote: summed scores per answer, over ``samples`` scored samples.

    Raises:
        ValueError: If ``rule`` is unknown, ``threshold`` is outside (0.5, 1] or a weight is negative.

    Example:
        >>> decision = weighted_stop_decision([3.6, 0.4], samples=4, rule="supermajority", threshold=0.9)
        >>> decision.stop, decision.share, decision.votes
        (True, 0.9, 4.0)

    """
    return stop_decision(pseudo_counts(weights, samples=samples), rule=rule, threshold=threshold)


def vote_settled(
    candidates: Sequence[Candidate],
    *,
    rule: StopRule,
    threshold: float | None = None,
    weighted: bool = False,
    key: AnswerKey = MATH_ANSWERS,
) -> StopDecision:
    """Whether the vote over ``candidates`` is settled: the majority vote's counts, or the weighted vote's scores.

    Only the candidates a vote counts take part (finished, with an answer, and scored for a weighted
    vote). The leader is the heaviest answer group (with an answer key that has families, the
    vote's family-first pick can differ; the rule then judges the heaviest group).

    Raises:
        ValueError: As :func:`stop_decision` and :func:`weighted_stop_decision`.

    Example:
        >>> c = lambda a: Candidate(text=a, steps=[a], answer=a, finish_reason="eos", score=0.5)
        >>> vote_settled([c("1"), c("1"), c("1"), c("2")], rule="supermajority").answer
        '1'

    """
    groups = (weighted_best_of_n(candidates, key=key) if weighted else majority_vote(candidates, key=key)).groups
    weights = [g.weight for g in groups]
    samples = sum(len(g.indices) for g in groups)
    if weighted:
        decision = weighted_stop_decision(weights, samples=samples, rule=rule, threshold=threshold)
    else:
        decision = stop_decision(weights, rule=rule, threshold=threshold)
    answer = groups[decision.leader].answer if decision.leader is not None else None
    return decision.model_copy(update={"answer": answer})
