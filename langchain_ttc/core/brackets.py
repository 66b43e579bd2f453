"""Knockout brackets for pairwise tournaments: who meets whom, who gets a bye, who wins a match, how ties break.

In: the candidates still in (their indices, in sampling order), a judge's pairwise preferences, the
candidates' answers. Out: the round's matches and bye, each match's winner, the next round. Pure
functions; :mod:`langchain_ttc.strategies.sampling.tournament` asks the judge.

The rules:

- **Pairing.** A round pairs its entrants in order: (1st, 2nd), (3rd, 4th), ... An odd entrant out
  (the last) gets a **bye**: it goes through unjudged and *opens* the next round, so it is never the
  odd one out twice in a row. Every match knocks one candidate out, so N entrants take exactly
  N - 1 matches, in ceil(log2 N) rounds.
- **Both orders.** A match asks the judge twice, A-then-B and B-then-A, so a judge that prefers
  whichever response comes first (position bias) cancels out: the preference for A is the mean of
  P(A wins | A first) and 1 - P(B wins | B first) (:func:`match_preference`). An unreadable reply
  counts as 0.5 (no preference) and is counted by the caller. With one order only, the preference is
  that reply's.
- **Ties.** A preference of exactly 0.5 (the two orders disagree with equal strength, the judge
  said "tie", or every reply was unreadable) is a tie. A tie goes to the candidate whose answer more
  candidates share (self-consistency, by the answer key; a candidate without an answer has support 0),
  then to the one sampled first.

Example:
    >>> knockout_round([0, 1, 2, 3, 4])
    ([(0, 1), (2, 3)], 4)
    >>> next_entrants([0, 3], bye=4)
    [4, 0, 3]
    >>> match_preference(0.9, 0.8)  # A first: A wins at 0.9; B first: B wins at 0.8
    0.55
    >>> decide(2, 5, 0.5, support=[1, 1, 1, 1, 1, 3])  # a tie: 5's answer is shared by more candidates
    (5, True)

"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_ttc.core.answers import MATH_ANSWERS, AnswerKey, group_equivalent
from langchain_ttc.core.types import Candidate

_TIE = 1e-9
"""Preferences this close to 0.5 are ties (exact halves come from hard verdicts; log-probabilities rarely tie)."""


def knockout_round(entrants: Sequence[int]) -> tuple[list[tuple[int, int]], int | None]:
    """The matches of one round (entrants paired in order) and the entrant with a bye (the odd one out, last).

    Example:
        >>> knockout_round([7]), knockout_round([3, 1])
        (([], 7), ([(3, 1)], None))

    """
    pairs = [(entrants[i], entrants[i + 1]) for i in range(0, len(entrants) - 1, 2)]
    bye = entrants[-1] if len(entrants) % 2 else None
    return pairs, bye


def next_entrants(winners: Sequence[int], bye: int | None) -> list[int]:
    """The next round's entrants: the bye first (so it is not the odd one out again), then the winners in order."""
    return ([] if bye is None else [bye]) + list(winners)


def match_preference(forward: float | None, backward: float | None = None, *, both_orders: bool = True) -> float:
    """P(A is the better), from P(first wins) with A first (``forward``) and with B first (``backward``).

    An unreadable reply (``None``) counts as 0.5. With ``both_orders=False`` only ``forward`` is used.

    Example:
        >>> match_preference(1.0, 1.0), match_preference(None, 0.0), match_preference(0.7, both_orders=False)
        (0.5, 0.75, 0.7)

    """
    first = 0.5 if forward is None else forward
    if not both_orders:
        return first
    second = 0.5 if backward is None else 1.0 - backward
    return (first + second) / 2


def decide(first: int, second: int, preference: float, *, support: Sequence[int]) -> tuple[int, bool]:
    """The winner of a match with this preference for ``first``, and whether it was a tie (broken by ``support``).

    Example:
        >>> decide(0, 1, 0.7, support=[1, 1]), decide(0, 1, 0.2, support=[1, 1]), decide(4, 1, 0.5, support=[0] * 5)
        ((0, False), (1, False), (1, True))

    """
    if preference > 0.5 + _TIE:
        return first, False
    if preference < 0.5 - _TIE:
        return second, False
    ranked = sorted((first, second), key=lambda i: (-support[i], i))
    return ranked[0], True


def answer_support(candidates: Sequence[Candidate], *, key: AnswerKey = MATH_ANSWERS) -> list[int]:
    """For each candidate, how many finished candidates give an equivalent answer (0 for none or truncated).

    Example:
        >>> c = lambda a: Candidate(text=str(a), steps=[], answer=a, finish_reason="eos")
        >>> answer_support([c("1"), c("2"), c("1.0"), c(None)])
        [2, 1, 2, 0]

    """
    eligible = [i for i, c in enumerate(candidates) if c.finished and c.answer is not None]
    support = [0] * len(candidates)
    for group in group_equivalent([candidates[i].answer for i in eligible], key=key):
        for j in group:
            support[eligible[j]] = len(group)
    return support
