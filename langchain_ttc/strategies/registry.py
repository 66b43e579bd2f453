"""Strategy names and one factory that builds any strategy graph by name (used by the CLI).

In: a strategy name, the engines and the strategy's options. Out: its compiled graph.

Example:
    >>> sorted(STRATEGIES)
    ['beam_search', 'best_of_n', 'dvts', 'majority_vote', 'weighted_best_of_n']
    >>> strategy_needs_prm("majority_vote")
    False

"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langchain_ttc.strategies.beam_search import create_beam_search_graph
from langchain_ttc.strategies.best_of_n import create_best_of_n_graph, create_weighted_best_of_n_graph
from langchain_ttc.strategies.dvts import create_dvts_graph
from langchain_ttc.strategies.majority_vote import create_majority_vote_graph

STRATEGIES: dict[str, tuple[Callable[..., CompiledStateGraph], bool]] = {
    "majority_vote": (create_majority_vote_graph, False),
    "best_of_n": (create_best_of_n_graph, True),
    "weighted_best_of_n": (create_weighted_best_of_n_graph, True),
    "beam_search": (create_beam_search_graph, True),
    "dvts": (create_dvts_graph, True),
}
STEP_LEVEL_STRATEGIES = ("beam_search", "dvts")
"""Strategies that search step by step (they take ``beam_width``, ``max_iterations``, ``lookahead``)."""
"""Name -> (factory, whether it needs a PRM)."""


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` if known, else raise a ``ValueError`` listing the choices."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is not known; pass one of {', '.join(sorted(STRATEGIES))}.")
    return strategy


def strategy_needs_prm(strategy: str) -> bool:
    """Whether the strategy scores solutions with a PRM."""
    return STRATEGIES[check_strategy(strategy)][1]


def create_strategy_graph(strategy: str, policy: Any, prm: Any = None, **options: Any) -> CompiledStateGraph:
    """Build the graph of the named strategy.

    Raises:
        ValueError: If the strategy is unknown, or needs a PRM and ``prm`` is ``None``.

    """
    factory, needs_prm = STRATEGIES[check_strategy(strategy)]
    if not needs_prm:
        return factory(policy, **options)
    if prm is None:
        raise ValueError(f"strategy={strategy!r} scores solutions with a PRM; pass prm=.")
    return factory(policy, prm, **options)
