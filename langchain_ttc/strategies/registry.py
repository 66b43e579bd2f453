"""Strategy names and one factory that builds any strategy graph by name (used by the CLI).

In: a strategy name, the engines and the strategy's options. Out: its compiled graph.

Example:
    >>> sorted(STRATEGIES)
    ['beam_search', 'best_of_n', 'compute_optimal', 'dvts', 'majority_vote', 'self_refine', 'weighted_best_of_n']
    >>> strategy_needs_prm("majority_vote")
    False

"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from langchain_ttc.strategies.sampling.best_of_n import create_best_of_n_graph, create_weighted_best_of_n_graph
from langchain_ttc.strategies.sampling.majority_vote import create_majority_vote_graph
from langchain_ttc.strategies.search.beam_search import create_beam_search_graph
from langchain_ttc.strategies.search.dvts import create_dvts_graph


def _compute_optimal(policy: Any, prm: Any = None, *, n: int, **options: Any) -> CompiledStateGraph:
    """The compute-optimal graph with ``n`` as its budget (imported late: it builds the others by name)."""
    from langchain_ttc.strategies.routing.compute_optimal import create_compute_optimal_graph

    return create_compute_optimal_graph(policy, prm, budget=n, **options)


CRITICS = ("self", "prm", "policy")
"""Self-refinement critics by name: the policy's self-verification, the PRM, or the policy's own written critique."""


def _self_refine(
    policy: Any, prm: Any = None, *, n: int, max_revisions: int = 2, critic: str = "self", **options: Any
) -> CompiledStateGraph:
    """Self-refinement with N = chains × (max_revisions + 1) drafts and a critic chosen by name."""
    from langchain_ttc.engines.self_verification import SelfVerificationPRM
    from langchain_ttc.strategies.refine.self_refine import check_max_revisions, create_self_refine_graph

    drafts_per_chain = check_max_revisions(max_revisions) + 1
    if critic not in CRITICS:
        raise ValueError(f"critic={critic!r} is not known; pass one of {', '.join(CRITICS)}.")
    if critic == "prm" and prm is None:
        raise ValueError("critic='prm' needs a PRM; pass prm=, or critic='self'.")
    if n < drafts_per_chain:
        raise ValueError(f"n={n} is below one chain of {drafts_per_chain} drafts; pass n >= {drafts_per_chain}.")
    chosen = (
        SelfVerificationPRM(
            policy, seed=options.get("seed"), step_delimiter=options.get("step_delimiter", "\n\n"),
            system_prompt=options.get("system_prompt"),
        )
        if critic == "self"
        else prm if critic == "prm" else None
    )  # fmt: skip
    return create_self_refine_graph(
        policy, chosen, max_revisions=max_revisions, chains=n // drafts_per_chain, **options
    )


STRATEGIES: dict[str, tuple[Callable[..., CompiledStateGraph], bool]] = {
    "majority_vote": (create_majority_vote_graph, False),
    "best_of_n": (create_best_of_n_graph, True),
    "weighted_best_of_n": (create_weighted_best_of_n_graph, True),
    "beam_search": (create_beam_search_graph, True),
    "dvts": (create_dvts_graph, True),
    "compute_optimal": (_compute_optimal, True),
    "self_refine": (_self_refine, False),
}
"""Name -> (factory, whether it needs a PRM; the compute-optimal router's shipped table does)."""
STEP_LEVEL_STRATEGIES = ("beam_search", "dvts")
"""Strategies that search step by step (they take ``beam_width``, ``max_iterations``, ``lookahead``)."""


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
    if strategy == "self_refine":
        return factory(policy, prm, **options)
    if not needs_prm:
        return factory(policy, **options)
    if prm is None:
        raise ValueError(f"strategy={strategy!r} scores solutions with a PRM; pass prm=.")
    return factory(policy, prm, **options)
