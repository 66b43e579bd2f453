"""Difficulty of a problem estimated from a few pilot samples.

In: the pilot candidates (whole solutions, PRM-scored when the estimator needs it). Out: a
difficulty in [0, 1], higher is harder. Pure functions; the compute-optimal graph calls them in
its ``route`` node, and calibration calls the same ones.

- ``prm_score``: the DeepMind paper's model-predicted difficulty: 1 - the mean aggregated PRM score
  of the pilots (a truncated pilot counts as 0).
- ``agreement``: PRM-free: 1 - the share of pilots in the largest group of equivalent answers (a
  pilot without an answer agrees with nobody).

Example:
    >>> from langchain_ttc.core.types import Candidate
    >>> pilots = [Candidate(text="", steps=[], answer=a, finish_reason="stop", score=s)
    ...           for a, s in [("4", 0.9), ("4", 0.7), ("5", 0.2), ("4", 0.6)]]
    >>> round(prm_score_difficulty(pilots), 2), agreement_difficulty(pilots)
    (0.4, 0.25)

"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_ttc.core.answers import MATH_ANSWERS, AnswerKey, group_equivalent
from langchain_ttc.core.types import Candidate

DifficultyEstimator = Callable[[Sequence[Candidate]], float]
"""(pilot candidates) -> difficulty in [0, 1], higher is harder."""


def prm_score_difficulty(pilots: Sequence[Candidate]) -> float:
    """1 - the mean aggregated PRM score of the pilots (truncated or unscored pilots count as 0).

    Raises:
        ValueError: If there are no pilots.

    """
    if not pilots:
        raise ValueError("pilots=[] is empty; the difficulty estimate needs at least one pilot sample.")
    scores = [c.score if c.finished and c.score is not None else 0.0 for c in pilots]
    return 1.0 - sum(scores) / len(scores)


def agreement_difficulty(pilots: Sequence[Candidate], *, key: AnswerKey = MATH_ANSWERS) -> float:
    """1 - the share of pilots whose answers agree (by ``key``, the run's answer key) with the most common answer.

    Raises:
        ValueError: If there are no pilots.

    """
    if not pilots:
        raise ValueError("pilots=[] is empty; the difficulty estimate needs at least one pilot sample.")
    answers = [c.answer for c in pilots if c.finished and c.answer is not None]
    largest = max((len(group) for group in group_equivalent(answers, key=key)), default=0)
    return 1.0 - largest / len(pilots)


ESTIMATORS: dict[str, tuple[DifficultyEstimator, bool]] = {
    "prm_score": (prm_score_difficulty, True),
    "agreement": (agreement_difficulty, False),
}
"""Name -> (estimator, whether it needs PRM-scored pilots)."""


def estimate_difficulty(estimate: DifficultyEstimator, pilots: Sequence[Candidate], *, key: AnswerKey) -> float:
    """``estimate(pilots)``; the agreement estimator groups the pilots' answers with ``key`` (the run's answer key).

    Example:
        >>> from langchain_ttc.core.answers import AnswerKey
        >>> from langchain_ttc.core.types import Candidate
        >>> pilots = [Candidate(text="", steps=[], answer=a, finish_reason="stop") for a in ("1/2", "0.5")]
        >>> exact = AnswerKey(name="exact", extract=str.strip, equivalent=str.__eq__)
        >>> estimate_difficulty(agreement_difficulty, pilots, key=MATH_ANSWERS), estimate_difficulty(
        ...     agreement_difficulty, pilots, key=exact)
        (0.0, 0.5)

    """
    if estimate is agreement_difficulty:
        return agreement_difficulty(pilots, key=key)
    return float(estimate(pilots))


def check_estimator(name: str) -> str:
    """Return ``name`` if it is a known estimator, else raise a ``ValueError`` listing them."""
    if name not in ESTIMATORS:
        raise ValueError(f"estimator={name!r} is not known; pass one of {', '.join(ESTIMATORS)}.")
    return name
