"""Strategy graphs: one strategy per module, each a factory returning a compiled LangGraph graph."""

from langchain_ttc.strategies.refine.self_refine import create_self_refine_graph
from langchain_ttc.strategies.routing.compute_optimal import create_compute_optimal_graph
from langchain_ttc.strategies.sampling.adaptive import (
    create_adaptive_majority_vote_graph,
    create_adaptive_weighted_best_of_n_graph,
)
from langchain_ttc.strategies.sampling.best_of_n import create_best_of_n_graph, create_weighted_best_of_n_graph
from langchain_ttc.strategies.sampling.majority_vote import create_majority_vote_graph
from langchain_ttc.strategies.sampling.tournament import create_tournament_graph
from langchain_ttc.strategies.sampling.usc import create_usc_graph
from langchain_ttc.strategies.search.beam_search import create_beam_search_graph
from langchain_ttc.strategies.search.dvts import create_dvts_graph
from langchain_ttc.strategies.search.particle_filtering import create_particle_filtering_graph

__all__ = [
    "create_adaptive_majority_vote_graph",
    "create_adaptive_weighted_best_of_n_graph",
    "create_beam_search_graph",
    "create_best_of_n_graph",
    "create_compute_optimal_graph",
    "create_dvts_graph",
    "create_majority_vote_graph",
    "create_particle_filtering_graph",
    "create_self_refine_graph",
    "create_tournament_graph",
    "create_usc_graph",
    "create_weighted_best_of_n_graph",
]
