"""Scaling curves from one run at N_max: majority@n, best-of-n and weighted best-of-n by subsampling.

In: the candidates of one sample-based run at ``n_max`` (scored by a PRM, or not). Out: for every
``n`` in 1, 2, 4, ..., ``n_max`` and each selection rule, the answer it picks from the first ``n``
candidates (the reference implementation's trick: one run gives the whole curve). Pure functions
of the candidates; the rules are the registry's (:attr:`~langchain_ttc.strategies.spec.StrategySpec.vote`).

Example:
    >>> budgets(16)
    [1, 2, 4, 8, 16]

"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_ttc.core.types import Candidate
from langchain_ttc.wiring import STRATEGIES, strategy_spec


def sample_strategies() -> list[str]:
    """The sample-then-select strategies (those with a selection rule: one sample set serves them all)."""
    return [name for name, spec in STRATEGIES.items() if spec.vote is not None]


def check_power_of_two(n_max: int, parameter: str = "--n-max") -> int:
    """Return ``n_max`` if it is a power of two (>= 1), else raise a ``ValueError`` with the fix."""
    if n_max < 1 or n_max & (n_max - 1):
        lower = 1 << max(0, n_max.bit_length() - 1)
        raise ValueError(
            f"{parameter}={n_max} is not a power of two; subsampling reports n = 1, 2, 4, ..., N: pass e.g. {lower}."
        )
    return n_max


def budgets(n_max: int) -> list[int]:
    """The budgets of a curve: 1, 2, 4, ..., ``n_max``."""
    check_power_of_two(n_max)
    return [1 << k for k in range(n_max.bit_length())]


def subsampled_answers(candidates: Sequence[Candidate], strategies: Sequence[str], n_max: int) -> dict[str, str | None]:
    """The answer of each strategy at each budget, keyed ``"<strategy>@<n>"``."""
    answers: dict[str, str | None] = {}
    for n in budgets(n_max):
        first = list(candidates[:n])
        for strategy in strategies:
            vote = strategy_spec(strategy).vote
            assert vote is not None, f"{strategy} is not a sample-then-select strategy"
            chosen = vote(first).chosen_index
            answers[f"{strategy}@{n}"] = None if chosen is None else first[chosen].answer
    return answers
