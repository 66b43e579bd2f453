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

from collections.abc import Iterable, Sequence
from typing import Any

from langchain_ttc.core.answers import MATH_ANSWERS, AnswerKey
from langchain_ttc.core.types import Candidate
from langchain_ttc.strategies.config import limits, validated
from langchain_ttc.wiring import STRATEGIES, applicable, strategy_spec


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


def _over(parameter: str, value: int, limit: int, variable: str, *, listed: bool = False) -> ValueError:
    what, fix = (
        (f"{parameter} has {value}, which", f"smaller {parameter}")
        if listed
        else (f"{parameter}={value}", f"a smaller {parameter}")
    )
    return ValueError(
        f"{what} is over the limit of {limit}; pass {fix}, or raise the limit with the environment variable "
        f"{variable} (e.g. {variable}={value})."
    )


def check_limits(
    runs: Iterable[tuple[str, int]], *, max_tokens: int, options: dict[str, Any], budget_flag: str, listed: bool = False
) -> None:
    """Refuse, before any model loads, a run over the limits every strategy config enforces (``TTC_MAX_*``).

    Args:
        runs: ``(strategy, n)`` pairs the run will build.
        max_tokens: The run's ``--max-tokens``.
        options: The options every strategy gets (those a strategy lacks are left out for it).
        budget_flag: The flag that sets the budgets, for the message (``--n-max``, ``--budgets``).
        listed: Whether that flag takes a list of budgets (``--budgets 4 16``).

    Raises:
        ValueError: Naming the flag, the limit and the variable that raises it.

    Example:
        >>> check_limits([("majority_vote", 4096)], max_tokens=64, options={}, budget_flag="--n-max")
        Traceback (most recent call last):
        ...
        ValueError: --n-max=4096 is over the limit of 1024; pass a smaller --n-max, or raise the limit with the \
environment variable TTC_MAX_N (e.g. TTC_MAX_N=4096).

    """
    bounds, runs = limits(), list(runs)
    largest = max((n for _, n in runs), default=0)
    if largest > bounds.max_n:
        raise _over(budget_flag, largest, bounds.max_n, "TTC_MAX_N", listed=listed)
    if max_tokens > bounds.max_tokens:
        raise _over("--max-tokens", max_tokens, bounds.max_tokens, "TTC_MAX_TOKENS")
    for strategy, n in runs:  # what else a config limits (a search's planned steps)
        try:
            validated(
                strategy_spec(strategy).config, **applicable(strategy, {**options, "max_tokens": max_tokens}), n=n
            )
        except ValueError as error:
            if "TTC_MAX_" in str(error):
                raise ValueError(f"{strategy} at n={n}: {error}") from None
            # any other misfit (a beam width that does not divide n) only skips that budget


def budgets(n_max: int) -> list[int]:
    """The budgets of a curve: 1, 2, 4, ..., ``n_max``."""
    check_power_of_two(n_max)
    return [1 << k for k in range(n_max.bit_length())]


def subsampled_answers(
    candidates: Sequence[Candidate], strategies: Sequence[str], n_max: int, *, key: AnswerKey = MATH_ANSWERS
) -> dict[str, str | None]:
    """The answer of each strategy at each budget, keyed ``"<strategy>@<n>"`` (votes group answers by ``key``)."""
    answers: dict[str, str | None] = {}
    for n in budgets(n_max):
        first = list(candidates[:n])
        for strategy in strategies:
            vote = strategy_spec(strategy).vote
            assert vote is not None, f"{strategy} is not a sample-then-select strategy"
            chosen = vote(first, key=key).chosen_index
            answers[f"{strategy}@{n}"] = None if chosen is None else first[chosen].answer
    return answers
