"""Picking the final answer among candidates: majority vote, best-of-N, weighted best-of-N.

In: :class:`~langchain_ttc.core.types.Candidate` objects (with aggregated scores for the PRM-based
rules). Out: a :class:`Selection`: the chosen candidate's index and the answer groups with their
weights. Pure functions, no models.

Only *eligible* candidates take part: finished (not cut off by ``max_tokens``) and with an
extracted answer (and, for PRM-based rules, a score). Ties break deterministically toward the
answer (or candidate) that appears first.

When the answer key has families (tool calls: act or reply), the family with the most weight is
picked first, then the heaviest answer inside it.

- majority vote: the answer with the most equivalent candidates;
- best-of-N: the candidate with the highest aggregated score;
- weighted best-of-N: the answer whose equivalent candidates have the largest summed score,
  ``argmax_a sum_i 1[ans_i == a] * score_i``; its best-scored candidate is returned.

Example:
    >>> from langchain_ttc.core.types import Candidate
    >>> c = lambda a, s: Candidate(text=a, steps=[a], answer=a, finish_reason="eos", score=s)
    >>> cands = [c("1", 0.9), c("2", 0.5), c("2", 0.5)]
    >>> best_of_n(cands).chosen_index, weighted_best_of_n(cands).chosen_index
    (0, 1)

"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from langchain_ttc.core.answers import MATH_ANSWERS, AnswerKey, group_equivalent
from langchain_ttc.core.types import AnswerGroup, Candidate


@dataclass(frozen=True)
class Selection:
    """The outcome of a selection rule."""

    chosen_index: int | None
    groups: list[AnswerGroup] = field(default_factory=list)


def _eligible(candidate: Candidate, *, needs_score: bool) -> bool:
    return candidate.finished and candidate.answer is not None and (candidate.score is not None or not needs_score)


def _grouped(
    candidates: Sequence[Candidate], weight: Callable[[Candidate], float], *, needs_score: bool, key: AnswerKey
) -> list[AnswerGroup]:
    eligible = [i for i, c in enumerate(candidates) if _eligible(c, needs_score=needs_score)]
    groups = group_equivalent([candidates[i].answer for i in eligible], key=key)
    result = []
    for group in groups:
        indices = [eligible[j] for j in group]
        answer = candidates[indices[0]].answer
        assert answer is not None
        result.append(AnswerGroup(answer=answer, indices=indices, weight=sum(weight(candidates[i]) for i in indices)))
    return result


def _heaviest(groups: list[AnswerGroup], key: AnswerKey) -> AnswerGroup | None:
    if key.family is not None and groups:  # the heaviest family first (ties: the family seen first)
        family = key.family
        weights: dict[str, float] = {}
        for group in groups:
            weights[family(group.answer)] = weights.get(family(group.answer), 0.0) + group.weight
        chosen = max(weights, key=lambda name: weights[name])  # max keeps the first of equal weights
        groups = [group for group in groups if family(group.answer) == chosen]
    best: AnswerGroup | None = None
    for group in groups:  # groups are in order of first appearance: strict > keeps the first on ties
        if best is None or group.weight > best.weight:
            best = group
    return best


def majority_vote(candidates: Sequence[Candidate], *, key: AnswerKey = MATH_ANSWERS) -> Selection:
    """The most frequent equivalent answer (equivalent by ``key``); ties go to the answer seen first."""
    groups = _grouped(candidates, lambda _: 1.0, needs_score=False, key=key)
    best = _heaviest(groups, key)
    return Selection(chosen_index=None if best is None else best.indices[0], groups=groups)


def best_of_n(candidates: Sequence[Candidate], *, key: AnswerKey = MATH_ANSWERS) -> Selection:
    """The candidate with the highest aggregated score; ties go to the lower index.

    ``key`` does not change which candidate scores highest; it is accepted so that every vote has one
    signature, ``vote(candidates, key=...)``.
    """
    del key
    chosen: int | None = None
    for index, candidate in enumerate(candidates):
        if _eligible(candidate, needs_score=True):
            assert candidate.score is not None
            if chosen is None or candidate.score > (candidates[chosen].score or 0.0):
                chosen = index
    return Selection(chosen_index=chosen)


def weighted_best_of_n(candidates: Sequence[Candidate], *, key: AnswerKey = MATH_ANSWERS) -> Selection:
    """The answer (equivalent by ``key``) with the largest summed score; returns its best-scored candidate."""
    groups = _grouped(candidates, lambda c: c.score or 0.0, needs_score=True, key=key)
    best = _heaviest(groups, key)
    if best is None:
        return Selection(chosen_index=None, groups=groups)
    chosen = max(best.indices, key=lambda i: (candidates[i].score or 0.0, -i))
    return Selection(chosen_index=chosen, groups=groups)
